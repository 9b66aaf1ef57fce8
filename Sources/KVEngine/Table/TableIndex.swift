/// A table's index in memory: the last internal key of each data block, and what
/// `findBlock` needs to find the block that may hold a key with few comparisons of whole
/// keys. Built once from the index block when the table opens.
struct TableIndex: Sendable {
    /// Last internal key of each data block, concatenated; `keyEnds[i]` ends key `i`.
    private let keys: [UInt8]
    private let keyEnds: [Int32]
    /// The bytes every index key's user key begins with (the common prefix of the first
    /// and the last), and for each index key the 8 user-key bytes after them, big-endian,
    /// zero-padded: `findBlock` narrows its search on these before comparing whole keys.
    private let sharedPrefix: [UInt8]
    private let prefixes: [UInt64]
    /// Every `sampleStride`-th prefix: a search starts here (a few cache lines for the
    /// whole table) and finishes in one stride of `prefixes`, instead of touching a new
    /// cache line at every step of a search over the whole array.
    private let samples: [UInt64]
    static let sampleStride = 64

    /// Blocks the index names.
    var count: Int { keyEnds.count }
    /// Memory the index holds.
    var memoryBytes: Int { keys.count + keyEnds.count * 4 + (prefixes.count + samples.count) * 8 }

    /// The index over `keys` (each block's last internal key, in block order; at least one).
    init(keys: [UInt8], keyEnds: [Int32]) {
        precondition(!keyEnds.isEmpty, "a table has at least one block")
        self.keys = keys
        self.keyEnds = keyEnds
        (sharedPrefix, prefixes) = keys.withUnsafeBytes { keys in
            func userKey(_ index: Int) -> UnsafeRawBufferPointer {
                let start = index == 0 ? 0 : Int(keyEnds[index - 1])
                return InternalKey.userKey(UnsafeRawBufferPointer(rebasing: keys[start..<Int(keyEnds[index])]))
            }
            let first = userKey(0)
            let last = userKey(keyEnds.count - 1)
            var shared = 0
            while shared < min(first.count, last.count) && first[shared] == last[shared] { shared += 1 }
            return (Array(first.prefix(shared)), (0..<keyEnds.count).map { TableIndex.prefix(of: userKey($0), after: shared) })
        }
        let prefixes = self.prefixes
        samples = stride(from: 0, to: prefixes.count, by: TableIndex.sampleStride).map { prefixes[$0] }
    }

    /// The last internal key of block `index`.
    func key(_ index: Int) -> UnsafeRawBufferPointer {
        let start = index == 0 ? 0 : Int(keyEnds[index - 1])
        return keys.withUnsafeBytes { UnsafeRawBufferPointer(rebasing: $0[start..<Int(keyEnds[index])]) }
    }

    /// The 8 bytes of `key` after its first `skip`, big-endian, zero-padded. Between keys
    /// that share their first `skip` bytes, a smaller prefix means a smaller key.
    @inline(__always)
    static func prefix(of key: UnsafeRawBufferPointer, after skip: Int) -> UInt64 {
        var value: UInt64 = 0
        for offset in 0..<8 {
            value <<= 8
            if skip + offset < key.count { value |= UInt64(key[skip + offset]) }
        }
        return value
    }

    /// The first block whose last key is at or after (userKey, tag), or `count`.
    func findBlock(_ userKey: UnsafeRawBufferPointer, tag: UInt64) -> Int {
        // A key outside the shared prefix's range is before or after every index key.
        let shared = sharedPrefix.count
        let head = sharedPrefix.withUnsafeBytes { SkipList.compareKeys($0, UnsafeRawBufferPointer(rebasing: userKey.prefix(shared))) }
        if head > 0 { return 0 }
        if head < 0 { return count }
        // Index keys with a smaller prefix are before the target, with a larger one after:
        // only those with an equal prefix need whole-key comparisons.
        let target = TableIndex.prefix(of: userKey, after: shared)
        var (low, high) = prefixes.withUnsafeBufferPointer { prefixes in
            samples.withUnsafeBufferPointer { samples -> (Int, Int) in
                /// The first index in `low..<high` of `values` at or above `target`
                /// (`orEqual`), or above it.
                func bound(_ values: UnsafeBufferPointer<UInt64>, _ low: Int, _ high: Int, orEqual: Bool) -> Int {
                    var low = low
                    var high = high
                    while low < high {
                        let mid = (low + high) / 2
                        if values[mid] < target || (!orEqual && values[mid] == target) { low = mid + 1 } else { high = mid }
                    }
                    return low
                }
                /// The same over all of `prefixes`: sample `j` is the first at or above (or
                /// above), so the answer lies after sample `j - 1` and at or before sample `j`.
                func bound(orEqual: Bool) -> Int {
                    let sample = bound(samples, 0, samples.count, orEqual: orEqual)
                    let low = sample == 0 ? 0 : (sample - 1) * TableIndex.sampleStride + 1
                    return bound(prefixes, low, min(prefixes.count, sample * TableIndex.sampleStride), orEqual: orEqual)
                }
                return (bound(orEqual: true), bound(orEqual: false))
            }
        }
        return keys.withUnsafeBytes { keys in
            while low < high {
                let mid = (low + high) / 2
                let start = mid == 0 ? 0 : Int(keyEnds[mid - 1])
                let key = UnsafeRawBufferPointer(rebasing: keys[start..<Int(keyEnds[mid])])
                if InternalKey.compare(key, userKey, tag) < 0 { low = mid + 1 } else { high = mid }
            }
            return low
        }
    }
}
