/// A position in the internal key order (user key ascending, newest version first).
protocol InternalIterator: AnyObject {
    var isValid: Bool { get }
    /// User key of the current entry.
    var key: UnsafeRawBufferPointer { get }
    /// The current entry's `Tag`.
    var tag: UInt64 { get }
    var value: UnsafeRawBufferPointer { get }
    func seekToFirst()
    func seekToLast()
    /// First entry at or after (key, tag).
    func seek(_ key: UnsafeRawBufferPointer, tag: UInt64)
    func next()
    func prev()
    /// Why the walk ended early (an I/O error or corruption), if it did.
    var error: KVError? { get }
    /// Before `seek(key, tag:)` with the same target, called right before it: the table
    /// block the seek will read that the cache does not hold (nil if none). The source
    /// keeps what it found for the seek, so the two do the lookup work once.
    func prepareSeek(_ key: UnsafeRawBufferPointer, tag: UInt64) -> (table: Table, block: Int)?
    /// The block `prepareSeek` asked for, read by the caller (with other sources' blocks).
    func supplyPrepared(_ block: Block)
    /// An unretained reference to this iterator (see `IteratorRef`; each kind of
    /// iterator names itself there).
    var unretained: IteratorRef { get }
    /// The newest sequence number the source holds (a bound): sources all older than a
    /// range delete can skip the range (`skipOlder`).
    var newestSequence: UInt64 { get }
    /// The newest sequence number among entries with user keys in [lower, upper] (a
    /// bound; by default `newestSequence`).
    func newestSequence(lower: UnsafeRawBufferPointer, upper: UnsafeRawBufferPointer) -> UInt64
    /// Moves the sources whose entries are all older than `sequence` past the range
    /// delete's fragment: forward to its `end`, backward to before its `start`. A source
    /// with newer entries stays where it is. Only a merging iterator has sources to move.
    func skipOlder(than sequence: UInt64, start: UnsafeRawBufferPointer, end: UnsafeRawBufferPointer)
    /// `seek(key)` where a range delete at `sequence` covers [key, end): a merging iterator
    /// seeks its sources whose entries there are all older straight to `end`.
    func seek(_ key: UnsafeRawBufferPointer, olderThan sequence: UInt64, skippingTo end: UnsafeRawBufferPointer)
    /// Back to no position, letting go of every table, block and read-ahead buffer it
    /// holds but keeping its own objects, so that it can walk again (a parked iterator
    /// stack: `View.park(_:)`). Its next call must be a seek.
    func park()
}

extension InternalIterator {
    func seek(_ key: UnsafeRawBufferPointer, olderThan sequence: UInt64, skippingTo end: UnsafeRawBufferPointer) {
        seek(key, tag: UInt64.max)
    }
    func newestSequence(lower: UnsafeRawBufferPointer, upper: UnsafeRawBufferPointer) -> UInt64 { newestSequence }
    func skipOlder(than sequence: UInt64, start: UnsafeRawBufferPointer, end: UnsafeRawBufferPointer) {}
    var error: KVError? { nil }
    func prepareSeek(_ key: UnsafeRawBufferPointer, tag: UInt64) -> (table: Table, block: Int)? { nil }
    func supplyPrepared(_ block: Block) {}
    func park() {}
}

extension MemtableIterator {
    var unretained: IteratorRef { IteratorRef(.memtable(.passUnretained(self))) }
}

extension TableIterator {
    var unretained: IteratorRef { IteratorRef(.table(.passUnretained(self))) }
}

extension LevelIterator {
    var unretained: IteratorRef { IteratorRef(.level(.passUnretained(self))) }
}

extension MergingIterator {
    var unretained: IteratorRef { IteratorRef(.merging(.passUnretained(self))) }
}

/// An unretained reference to an iterator that its owner keeps alive, for the loops that
/// step iterators once per entry: a call through it takes no retain and release, where
/// one through an array element or an optional `var` takes both (in a scan those were
/// half the time: docs/BENCHMARKS.md). The owner must outlive every use.
struct IteratorRef {
    fileprivate enum Kind {
        case memtable(Unmanaged<MemtableIterator>)
        case table(Unmanaged<TableIterator>)
        case level(Unmanaged<LevelIterator>)
        case merging(Unmanaged<MergingIterator>)
    }
    private let kind: Kind

    fileprivate init(_ kind: Kind) { self.kind = kind }

    /// Runs `body` with the iterator, unretained (each case's concrete type is known to
    /// the optimizer there, so the calls in `body` are direct).
    @inline(__always)
    private func with<R>(_ body: (any InternalIterator) -> R) -> R {
        switch kind {
        case .memtable(let it): return it._withUnsafeGuaranteedRef { body($0) }
        case .table(let it): return it._withUnsafeGuaranteedRef { body($0) }
        case .level(let it): return it._withUnsafeGuaranteedRef { body($0) }
        case .merging(let it): return it._withUnsafeGuaranteedRef { body($0) }
        }
    }

    var isValid: Bool { @inline(__always) get { with { $0.isValid } } }
    var key: UnsafeRawBufferPointer { @inline(__always) get { with { $0.key } } }
    var tag: UInt64 { @inline(__always) get { with { $0.tag } } }
    var value: UnsafeRawBufferPointer { @inline(__always) get { with { $0.value } } }
    @inline(__always) func next() { with { $0.next() } }
    @inline(__always) func prev() { with { $0.prev() } }
}
