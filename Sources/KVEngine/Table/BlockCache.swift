import Synchronization

/// Names a block: its table and its offset there.
struct BlockKey: Hashable, Sendable {
    let table: UInt64
    let offset: Int64
}

/// A byte-bounded cache of verified data blocks, in shards, each a CLOCK (second chance)
/// ring: a hit sets the entry's reference bit; eviction sweeps the ring, clearing set bits
/// and evicting the first entry whose bit is clear. Blocks are reference-counted, so one
/// evicted while a reader still uses it lives until that reader lets go.
///
/// O_DIRECT bypasses the kernel's page cache, so this is the engine's only read cache.
final class BlockCache: Sendable {
    static let shardCount = 16

    private struct Slot {
        var key: BlockKey
        var block: Block?
        var referenced: Bool
    }

    private struct Shard {
        var slots: [Slot] = []
        var index: [BlockKey: Int] = [:]
        var free: [Int] = []
        var hand = 0
        var usage = 0
        var hits = 0
        var misses = 0
    }

    let capacityBytes: Int
    private let shardCapacity: Int
    private let shards: [ShardBox]

    private final class ShardBox: Sendable {
        let state = Mutex(Shard())
    }

    init(capacityBytes: Int) {
        self.capacityBytes = capacityBytes
        shardCapacity = max(0, capacityBytes / BlockCache.shardCount)
        shards = (0..<BlockCache.shardCount).map { _ in ShardBox() }
    }

    private func shard(_ key: BlockKey) -> Int {
        var hash = key.table &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(bitPattern: key.offset >> 12) &* 0xC2B2_AE3D_27D4_EB4F
        hash ^= hash >> 29
        return Int(hash % UInt64(BlockCache.shardCount))
    }

    func lookup(_ key: BlockKey) -> Block? {
        shards[shard(key)].state.withLock { shard -> Block? in
            guard let slot = shard.index[key] else {
                shard.misses += 1
                return nil
            }
            shard.hits += 1
            shard.slots[slot].referenced = true
            return shard.slots[slot].block
        }
    }

    func insert(_ key: BlockKey, _ block: Block) {
        let charge = block.charge
        guard charge <= shardCapacity else { return }
        // Evicted blocks are released outside the lock.
        var evicted: [Block] = []
        shards[shard(key)].state.withLock { shard in
            if shard.index[key] != nil { return }
            var sweeps = 0
            while shard.usage + charge > shardCapacity && !shard.slots.isEmpty && sweeps < 3 * shard.slots.count {
                sweeps += 1
                let hand = shard.hand
                shard.hand = (hand + 1) % shard.slots.count
                guard let resident = shard.slots[hand].block else { continue }
                if shard.slots[hand].referenced {
                    shard.slots[hand].referenced = false
                    continue
                }
                shard.usage -= resident.charge
                shard.index[shard.slots[hand].key] = nil
                shard.slots[hand].block = nil
                shard.free.append(hand)
                evicted.append(resident)
            }
            guard shard.usage + charge <= shardCapacity else { return }
            let slot = Slot(key: key, block: block, referenced: false)
            if let reuse = shard.free.popLast() {
                shard.slots[reuse] = slot
                shard.index[key] = reuse
            } else {
                shard.slots.append(slot)
                shard.index[key] = shard.slots.count - 1
            }
            shard.usage += charge
        }
        _ = evicted
    }

    /// Bytes held, hits and misses since open.
    var counters: (usage: Int, hits: Int, misses: Int) {
        var total = (usage: 0, hits: 0, misses: 0)
        for shard in shards {
            shard.state.withLock {
                total.usage += $0.usage
                total.hits += $0.hits
                total.misses += $0.misses
            }
        }
        return total
    }
}
