import Synchronization

/// What a ``ClockCache`` holds: a value that says what it costs to keep.
protocol CacheCharged: AnyObject, Sendable {
    /// The value's share of the cache's capacity (bytes for blocks, 1 for open tables).
    var charge: Int { get }
}

/// A key of a ``ClockCache``, with a cheap hash that picks its shard.
protocol CacheKey: Hashable, Sendable {
    var shardHash: UInt64 { get }
}

/// Names a block: its table and its offset there.
struct BlockKey: CacheKey {
    let table: UInt64
    let offset: Int64

    var shardHash: UInt64 {
        var hash = table &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(bitPattern: offset >> 12) &* 0xC2B2_AE3D_27D4_EB4F
        hash ^= hash >> 29
        return hash
    }
}

extension UInt64: CacheKey {
    var shardHash: UInt64 {
        let hash = self &* 0x9E37_79B9_7F4A_7C15
        return hash ^ hash >> 29
    }
}

/// A cache bounded by the summed charge of what it holds, in shards, each a CLOCK (second
/// chance) ring: a hit sets the entry's reference bit; eviction sweeps the ring, clearing
/// set bits and evicting the first entry whose bit is clear. Values are
/// reference-counted, so one evicted while a reader still uses it lives until that reader
/// lets go.
final class ClockCache<Key: CacheKey, Value: CacheCharged>: Sendable {
    private struct Slot {
        var key: Key
        var value: Value?
        var referenced: Bool
    }

    private struct Shard {
        var slots: [Slot] = []
        var index: [Key: Int] = [:]
        var free: [Int] = []
        var hand = 0
        var usage = 0
        var hits = 0
        var misses = 0
    }

    private final class ShardBox: Sendable {
        let state = Mutex(Shard())
    }

    let capacity: Int
    private let shardCapacity: Int
    private let shards: [ShardBox]

    /// A cache of at most `capacity` summed charge, split evenly over `shardCount` shards
    /// (a value is kept only when it fits its shard's share).
    init(capacity: Int, shardCount: Int) {
        self.capacity = capacity
        shardCapacity = max(0, capacity / shardCount)
        shards = (0..<shardCount).map { _ in ShardBox() }
    }

    private func shard(_ key: Key) -> ShardBox {
        shards[Int(key.shardHash % UInt64(shards.count))]
    }

    func lookup(_ key: Key) -> Value? {
        shard(key).state.withLock { shard -> Value? in
            guard let slot = shard.index[key] else {
                shard.misses += 1
                return nil
            }
            shard.hits += 1
            shard.slots[slot].referenced = true
            return shard.slots[slot].value
        }
    }

    /// Keeps `value` under `key` (evicting what the CLOCK hand finds unreferenced) and
    /// returns what the cache now holds there: a value already under `key` wins, so two
    /// readers that missed at once share one. A value that does not fit is not kept.
    @discardableResult
    func insert(_ key: Key, _ value: Value) -> Value {
        let charge = value.charge
        guard charge <= shardCapacity else { return value }
        // Evicted values are released outside the lock.
        var evicted: [Value] = []
        let kept = shard(key).state.withLock { shard -> Value in
            if let slot = shard.index[key], let resident = shard.slots[slot].value { return resident }
            var sweeps = 0
            while shard.usage + charge > shardCapacity && !shard.slots.isEmpty && sweeps < 3 * shard.slots.count {
                sweeps += 1
                let hand = shard.hand
                shard.hand = (hand + 1) % shard.slots.count
                guard let resident = shard.slots[hand].value else { continue }
                if shard.slots[hand].referenced {
                    shard.slots[hand].referenced = false
                    continue
                }
                shard.usage -= resident.charge
                shard.index[shard.slots[hand].key] = nil
                shard.slots[hand].value = nil
                shard.free.append(hand)
                evicted.append(resident)
            }
            guard shard.usage + charge <= shardCapacity else { return value }
            let slot = Slot(key: key, value: value, referenced: false)
            if let reuse = shard.free.popLast() {
                shard.slots[reuse] = slot
                shard.index[key] = reuse
            } else {
                shard.slots.append(slot)
                shard.index[key] = shard.slots.count - 1
            }
            shard.usage += charge
            return value
        }
        withExtendedLifetime(evicted) {}
        return kept
    }

    /// Drops what the cache holds under `key` (released outside the lock).
    func remove(_ key: Key) {
        let removed = shard(key).state.withLock { shard -> Value? in
            guard let slot = shard.index.removeValue(forKey: key) else { return nil }
            let value = shard.slots[slot].value
            shard.usage -= value?.charge ?? 0
            shard.slots[slot].value = nil
            shard.free.append(slot)
            return value
        }
        withExtendedLifetime(removed) {}
    }

    /// Every value held right now.
    var values: [Value] {
        shards.flatMap { shard in shard.state.withLock { $0.slots.compactMap(\.value) } }
    }

    /// Charge held, hits and misses since the cache was made.
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

/// The cache of verified data blocks, bounded in bytes (`Options.cacheBytes`). O_DIRECT
/// bypasses the kernel's page cache, so this is the engine's only read cache.
typealias BlockCache = ClockCache<BlockKey, Block>

extension ClockCache where Key == BlockKey, Value == Block {
    /// A block cache of `capacityBytes`, in 16 shards.
    convenience init(capacityBytes: Int) {
        self.init(capacity: capacityBytes, shardCount: 16)
    }
}
