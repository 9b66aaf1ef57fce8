import Atomics

/// A bloom filter over the user keys a memtable holds (RocksDB's
/// `memtable_whole_key_filtering`), so that a point lookup of a key the memtable lacks,
/// most lookups once the data is mostly in tables, skips the skip list's walk (a cache
/// miss per level). One 64-bit word per key, four bits set in it: a lookup costs one
/// hash and one load.
///
/// One writer (the memtable's, serialized by the log's lock) sets bits before it links
/// the entry into the skip list; a reader that can see an entry (through the visible
/// sequence or the list's links, both published after) sees its bits.
final class MemtableFilter: @unchecked Sendable {
    // @unchecked: `words` is only touched through atomic loads and stores.
    private let words: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    private let mask: UInt64

    /// A filter of about `bytes` (a power of two of 64-bit words, at least 8).
    init(bytes: Int) {
        var count = 8
        while count * 8 < bytes && count < 1 << 24 { count *= 2 }
        words = .allocate(capacity: count)
        words.initialize(repeating: UnsafeAtomic<UInt64>.Storage(0), count: count)
        mask = UInt64(count - 1)
    }

    deinit { words.deallocate() }

    /// The filter's size for a memtable of `memtableBytes`: a bit per 16 bytes of it,
    /// about 10 bits per key for entries of 100-byte values.
    static func bytes(forMemtable memtableBytes: Int) -> Int { max(64, memtableBytes / 128) }

    @inline(__always)
    private func slot(_ hash: UInt64) -> (word: UnsafeAtomic<UInt64>, bits: UInt64) {
        let one: UInt64 = 1
        let bits = one << (hash & 63) | one << (hash >> 6 & 63) | one << (hash >> 12 & 63) | one << (hash >> 18 & 63)
        return (UnsafeAtomic(at: words + Int(truncatingIfNeeded: (hash >> 32) & mask)), bits)
    }

    /// Records the key whose `BloomFilter.hash` is `hash` (the writer only). The tables'
    /// filters take the same hash: a lookup hashes its key once for all of them.
    func add(hash: UInt64) {
        let (word, bits) = slot(hash)
        word.store(word.load(ordering: .relaxed) | bits, ordering: .relaxed)
    }

    /// False only when no key of `BloomFilter.hash` `hash` was added.
    func mayContain(hash: UInt64) -> Bool {
        let (word, bits) = slot(hash)
        return word.load(ordering: .relaxed) & bits == bits
    }

    /// Memory the filter holds.
    var memoryBytes: Int { Int(mask + 1) * 8 }
}
