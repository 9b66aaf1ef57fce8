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
///
/// A shard is one open-addressing table (linear probing from the key's `shardHash`) that
/// is also the CLOCK ring: a lookup is one probe sequence over one array, with no hashing
/// beyond `shardHash` and no second indirection (what a point read pays on every block).
final class ClockCache<Key: CacheKey, Value: CacheCharged>: Sendable {
    private struct Bucket {
        var key: Key?
        var value: Value?
        var referenced = false
    }

    private struct Shard {
        /// A power of two long, at most half full (`count`), or empty before the first insert.
        var buckets: [Bucket] = []
        var count = 0
        var hand = 0
        var usage = 0
        var hits = 0
        var misses = 0

        var mask: Int { buckets.count - 1 }

        /// Where `key`'s probe sequence starts: bits of its hash above those that chose
        /// the shard.
        @inline(__always)
        func home(_ key: Key) -> Int { Int(truncatingIfNeeded: key.shardHash >> 16) & mask }

        /// The bucket holding `key`, or nil.
        @inline(__always)
        func find(_ key: Key) -> Int? {
            guard !buckets.isEmpty else { return nil }
            var index = home(key)
            while let resident = buckets[index].key {
                if resident == key { return index }
                index = (index + 1) & mask
            }
            return nil
        }

        /// Places an entry whose key is absent; the table grows first when it would be
        /// more than half full.
        mutating func place(_ key: Key, _ value: Value) {
            if (count + 1) * 2 > buckets.count { grow() }
            var index = home(key)
            while buckets[index].key != nil { index = (index + 1) & mask }
            buckets[index] = Bucket(key: key, value: value, referenced: false)
            count += 1
        }

        private mutating func grow() {
            let old = buckets
            buckets = Array(repeating: Bucket(), count: max(16, old.count * 2))
            count = 0
            hand = 0
            for bucket in old {
                if let key = bucket.key, let value = bucket.value {
                    var index = home(key)
                    while buckets[index].key != nil { index = (index + 1) & mask }
                    buckets[index] = Bucket(key: key, value: value, referenced: bucket.referenced)
                    count += 1
                }
            }
        }

        /// Empties bucket `start` and shifts later entries of its cluster back so that no
        /// probe sequence crosses a hole; returns the value removed.
        mutating func remove(at start: Int) -> Value? {
            let removed = buckets[start].value
            usage -= removed?.charge ?? 0
            count -= 1
            var hole = start
            var index = start
            while true {
                index = (index + 1) & mask
                guard let key = buckets[index].key else { break }
                let wanted = home(key)
                // The entry stays when its home lies cyclically in (hole, index].
                let stays = hole <= index ? (hole < wanted && wanted <= index) : (hole < wanted || wanted <= index)
                if !stays {
                    buckets[hole] = buckets[index]
                    hole = index
                }
            }
            buckets[hole] = Bucket()
            return removed
        }
    }

    private final class ShardBox: Sendable {
        let state = Mutex(Shard())
    }

    let capacity: Int
    private let shardCapacity: Int
    private let shards: [ShardBox]
    /// `shards`, unretained (`shards` keeps them): a lookup takes no reference count on
    /// its shard.
    private let shardRefs: [Unmanaged<ShardBox>]
    /// `shards.count - 1`: the count is a power of two, so a key's shard is its hash's low
    /// bits (a mask, not a division, on every lookup).
    private let shardMask: UInt64

    /// A cache of at most `capacity` summed charge, split evenly over `shardCount` shards
    /// (rounded down to a power of two; a value is kept only when it fits its shard's
    /// share).
    init(capacity: Int, shardCount: Int) {
        let count = 1 << (Int.bitWidth - 1 - max(1, shardCount).leadingZeroBitCount)
        self.capacity = capacity
        shardCapacity = max(0, capacity / count)
        shards = (0..<count).map { _ in ShardBox() }
        shardRefs = shards.map(Unmanaged.passUnretained)
        shardMask = UInt64(count - 1)
    }

    /// Runs `body` holding the lock of `key`'s shard.
    @inline(__always)
    private func withShard<R>(_ key: Key, _ body: (inout Shard) -> R) -> R {
        shardRefs[Int(truncatingIfNeeded: key.shardHash & shardMask)]._withUnsafeGuaranteedRef { $0.state.withLock { body(&$0) } }
    }

    func lookup(_ key: Key) -> Value? {
        withShard(key) { shard -> Value? in
            guard let index = shard.find(key) else {
                shard.misses += 1
                return nil
            }
            shard.hits += 1
            shard.buckets[index].referenced = true
            return shard.buckets[index].value
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
        let kept = withShard(key) { shard -> Value in
            if let index = shard.find(key), let resident = shard.buckets[index].value { return resident }
            var steps = 0
            let limit = 3 * shard.buckets.count
            while shard.usage + charge > shardCapacity && shard.count > 0 && steps < limit {
                steps += 1
                let hand = shard.hand
                guard shard.buckets[hand].key != nil else {
                    shard.hand = (hand + 1) & shard.mask
                    continue
                }
                if shard.buckets[hand].referenced {
                    shard.buckets[hand].referenced = false
                    shard.hand = (hand + 1) & shard.mask
                    continue
                }
                // The hand stays: the removal may shift a later entry into this bucket.
                if let gone = shard.remove(at: hand) { evicted.append(gone) }
            }
            guard shard.usage + charge <= shardCapacity else { return value }
            shard.place(key, value)
            shard.usage += charge
            return value
        }
        withExtendedLifetime(evicted) {}
        return kept
    }

    /// Keeps `value` under `key` only when it fits beside what the shard holds, evicting
    /// nothing; false when it was not kept (no room, or `key` already there).
    @discardableResult
    func insertIfRoom(_ key: Key, _ value: Value) -> Bool {
        let charge = value.charge
        return withShard(key) { shard -> Bool in
            guard shard.usage + charge <= shardCapacity, shard.find(key) == nil else { return false }
            shard.place(key, value)
            shard.usage += charge
            return true
        }
    }

    /// Drops what the cache holds under `key` (released outside the lock).
    func remove(_ key: Key) {
        let removed = withShard(key) { shard -> Value? in
            guard let index = shard.find(key) else { return nil }
            return shard.remove(at: index)
        }
        withExtendedLifetime(removed) {}
    }

    /// Every value held right now.
    var values: [Value] {
        shards.flatMap { shard in shard.state.withLock { $0.buckets.compactMap(\.value) } }
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
