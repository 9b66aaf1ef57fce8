/// One range delete: every version of every key in [start, end) with a sequence number
/// below `sequence` is deleted, for readers at or after `sequence`.
struct RangeTombstone: Hashable, Sendable {
    var start: [UInt8]
    var end: [UInt8]
    var sequence: UInt64

    /// Whether `key` lies in [start, end).
    func covers(_ key: UnsafeRawBufferPointer) -> Bool {
        start.withUnsafeBytes { SkipList.compareKeys($0, key) <= 0 } && end.withUnsafeBytes { SkipList.compareKeys(key, $0) < 0 }
    }

    /// Whether [start, end) meets the user-key range [lower, upper] (both included).
    func overlaps(lower: ArraySlice<UInt8>, upper: ArraySlice<UInt8>) -> Bool {
        start.withUnsafeBytes { s in upper.withUnsafeBytes { SkipList.compareKeys(s, $0) <= 0 } }
            && end.withUnsafeBytes { e in lower.withUnsafeBytes { SkipList.compareKeys($0, e) < 0 } }
    }

    /// Whether the table may hold a version this range delete covers: one older than it,
    /// in a key range that meets the range (what keeps it in the version).
    func mayCover(_ table: TableMeta) -> Bool {
        table.properties.smallestSequence < sequence && overlaps(lower: table.smallestUserKey, upper: table.largestUserKey)
    }
}

/// A set of range deletes cut into fragments that do not overlap (Pebble's fragmenter):
/// each fragment [start, end) lists, newest first, the sequence numbers of the range
/// deletes that cover all of it. A lookup is a binary search for the fragment, then the
/// first sequence number a snapshot sees.
struct RangeTombstones: Sendable {
    struct Fragment: Sendable {
        let start: [UInt8]
        let end: [UInt8]
        /// Newest first.
        let sequences: [UInt64]
    }

    let fragments: [Fragment]
    static let empty = RangeTombstones(fragments: [])

    var isEmpty: Bool { fragments.isEmpty }

    init(fragments: [Fragment]) { self.fragments = fragments }

    /// Fragments `tombstones` (any order, overlapping, repeated).
    init(_ tombstones: some Collection<RangeTombstone>) {
        guard !tombstones.isEmpty else {
            fragments = []
            return
        }
        func less(_ a: [UInt8], _ b: [UInt8]) -> Bool { a.lexicographicallyPrecedes(b) }
        var bounds = Set<[UInt8]>()
        for tombstone in tombstones {
            bounds.insert(tombstone.start)
            bounds.insert(tombstone.end)
        }
        let sortedBounds = bounds.sorted(by: less)
        let byStart = tombstones.sorted { less($0.start, $1.start) }
        var next = 0
        var active: [RangeTombstone] = []
        var result: [Fragment] = []
        for (index, bound) in sortedBounds.enumerated() where index + 1 < sortedBounds.count {
            active.removeAll { !less(bound, $0.end) }
            while next < byStart.count && byStart[next].start == bound {
                active.append(byStart[next])
                next += 1
            }
            guard !active.isEmpty else { continue }
            let sequences = Array(Set(active.map(\.sequence))).sorted(by: >)
            result.append(Fragment(start: bound, end: sortedBounds[index + 1], sequences: sequences))
        }
        fragments = result
    }

    /// The fragment holding `key`, if any.
    func fragment(_ key: UnsafeRawBufferPointer) -> Fragment? {
        var low = 0
        var high = fragments.count
        while low < high {
            let mid = (low + high) / 2
            if fragments[mid].end.withUnsafeBytes({ SkipList.compareKeys($0, key) <= 0 }) { low = mid + 1 } else { high = mid }
        }
        guard low < fragments.count, fragments[low].start.withUnsafeBytes({ SkipList.compareKeys($0, key) <= 0 }) else { return nil }
        return fragments[low]
    }

    /// The newest range delete covering `key` that a reader at `snapshot` sees: its
    /// sequence number and the fragment (nil: none).
    func cover(_ key: UnsafeRawBufferPointer, snapshot: UInt64) -> (sequence: UInt64, fragment: Fragment)? {
        guard !fragments.isEmpty, let fragment = fragment(key), let sequence = fragment.sequences.first(where: { $0 <= snapshot }) else {
            return nil
        }
        return (sequence, fragment)
    }

    /// Whether a range delete newer than `snapshot` meets [lower, upper) (nil: unbounded).
    func anyNewer(than snapshot: UInt64, lower: [UInt8]?, upper: [UInt8]?) -> Bool {
        fragments.contains { fragment in
            guard fragment.sequences.first.map({ $0 > snapshot }) ?? false else { return false }
            if let upper, !fragment.start.lexicographicallyPrecedes(upper) { return false }
            if let lower, !lower.lexicographicallyPrecedes(fragment.end) { return false }
            return true
        }
    }
}
