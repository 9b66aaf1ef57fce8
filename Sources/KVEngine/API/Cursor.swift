import Dispatch

/// What a scan covers and how it walks.
///
///     ScanOptions(prefix: "user:")                      // keys that begin with "user:"
///     ScanOptions(start: "a", end: "m", reverse: true)  // [a, m), from the last key
///     ScanOptions(after: lastKeyOfPage, limit: 100)     // the next page
public struct ScanOptions: Sendable {
    /// First key included (nil: from the first key).
    public var start: [UInt8]?
    /// First key excluded (nil: to the last key).
    public var end: [UInt8]?
    /// Only keys that begin with these bytes.
    public var prefix: [UInt8]?
    /// Walk from the last key to the first.
    public var reverse = false
    /// Stop after this many entries (nil: no limit; zero or less: none).
    public var limit: Int?
    /// Whether the table blocks this scan reads enter the block cache (as in LevelDB and
    /// RocksDB, on by default). Turn it off for a one-off scan of much more data than the
    /// cache holds (an export, a backup) so that it does not push out the hot blocks.
    public var fillCache = true

    /// A scan of `[start, end)` (and `prefix`), forward unless `reverse`. Keys are any
    /// ``KVBytes`` (`[UInt8]`, `String`, `Data`...). `after` starts just past a key (the
    /// exclusive start a paging loop needs: the smallest key greater than `after` is
    /// `after` followed by a zero byte); with `start` too, the later of the two applies.
    public init(
        start: (any KVBytes)? = nil, after: (any KVBytes)? = nil, end: (any KVBytes)? = nil,
        prefix: (any KVBytes)? = nil, reverse: Bool = false, limit: Int? = nil, fillCache: Bool = true
    ) {
        var lower = start?.kvArray
        if let after = after?.kvArray {
            let past = after + [0]
            if lower.map({ $0.lexicographicallyPrecedes(past) }) ?? true { lower = past }
        }
        self.start = lower
        self.end = end?.kvArray
        self.prefix = prefix?.kvArray
        self.reverse = reverse
        self.limit = limit
        self.fillCache = fillCache
    }
}

/// An ordered walk over the database's keys and values at one snapshot.
///
/// A cursor sees exactly the state at the sequence number it was opened with, however
/// much is written meanwhile. Read it with `next()`, which throws when a table cannot be
/// read or is corrupt (an error is never mistaken for the end of the range):
///
///     let cursor = db.scan(ScanOptions(prefix: "user:"))
///     while let (key, value) = try cursor.next() { ... }
///
/// or, from async code, as an `AsyncSequence`, whose reads run on the database's own
/// threads, a batch of entries at a time, never blocking Swift's cooperative pool:
///
///     for try await (key, value) in db.scan(ScanOptions(prefix: "user:")) { ... }
///
/// `next()` walks once (nil at the end, and from then on; ``restart()`` walks again).
/// Each `for try await` loop is a walk of its own from the start, at the same snapshot.
/// A scan of a closed database throws ``KVError/Code/closed`` from its first `next()`.
/// Not thread-safe: use one cursor from one task at a time.
public final class Cursor: AsyncSequence {
    /// A key and its value.
    public typealias Element = (key: [UInt8], value: [UInt8])
    /// What a walk throws.
    public typealias Failure = KVError

    /// What the walk reads, kept so that it can walk again; nil when the scan failed at
    /// its start (`failure`).
    private let view: View?
    private let database: Database?
    /// Whether any source held a range delete when the cursor opened. One written later
    /// has a sequence number past the snapshot (which was taken first), so it cannot hide
    /// anything from this cursor: when there was none, no entry needs the check.
    private let checksRangeDeletes: Bool
    /// A `let`: the walk's hot loop reads it without a retain and a release per access
    /// (`restart` seeks it again rather than replacing it).
    private let source: any InternalIterator
    private let snapshot: UInt64
    private let options: ScanOptions
    /// Upper bound (exclusive): the smaller of `end` and the prefix's successor.
    private let upper: [UInt8]?
    /// Lower bound (inclusive): the larger of `start` and the prefix.
    private let lower: [UInt8]?
    private var returned = 0
    private var started = false
    /// Forward: `source` sits on the entry last handed out.
    private var positioned = false
    /// Forward: the key last handed out or skipped as deleted; its older versions follow.
    private let skipKey = KeyBuffer()
    private var hasSkipKey = false
    /// Entries left to hand out before the next one is a read sample (read-triggered
    /// compaction: `View.sampleRead`); it starts anywhere in the first two periods.
    private var untilSample = 0
    /// Why the walk ended early: a table could not be read, a block failed its checksum,
    /// or the database was closed when the scan began. Nil when the cursor reached the end
    /// of its range (or has not yet). `next()` throws it.
    public private(set) var error: KVError?

    init(view: View, database: Database, snapshot: UInt64, options: ScanOptions) {
        self.view = view
        self.database = database
        self.source = view.makeIterator(fillCache: options.fillCache)
        self.snapshot = snapshot
        self.checksRangeDeletes = view.hasRangeDeletes
        self.options = options
        (self.lower, self.upper) = Cursor.bounds(options)
        untilSample = Cursor.firstSample()
    }

    /// Entries a scan hands out per read sample.
    static let samplePeriod = 4096

    /// Where a walk takes its first read sample: 0 (its start, one seek in four) or
    /// somewhere in the first two periods, chosen by the clock's nanoseconds, mixed (no
    /// shared counter and no random source on the scan's path, and a scan repeated from
    /// one key does not always choose alike).
    private static func firstSample() -> Int {
        var mixed = DispatchTime.now().uptimeNanoseconds &* 0xFF51_AFD7_ED55_8CCD
        mixed ^= mixed >> 29
        return mixed & 3 == 0 ? 0 : 1 + Int(truncatingIfNeeded: (mixed >> 2) % UInt64(2 * samplePeriod))
    }

    /// An entry handed out: every `samplePeriod`-th is a read sample.
    @inline(__always)
    private func countSample(_ key: UnsafeRawBufferPointer) {
        untilSample -= 1
        if untilSample <= 0 {
            untilSample = Cursor.samplePeriod
            view?.sampleRead(key)
        }
    }

    /// A cursor whose walk fails at once with `failure`.
    init(failing failure: KVError, options: ScanOptions) {
        self.view = nil
        self.database = nil
        self.checksRangeDeletes = false
        self.source = Memtable().makeIterator()
        self.snapshot = 0
        self.options = options
        (self.lower, self.upper) = Cursor.bounds(options)
        self.error = failure
    }

    deinit {
        // The iterator stack goes back to the view, for the next cursor over it.
        view?.park(source)
    }

    /// A fresh walk over what this one reads (the same sources and snapshot).
    private init(again cursor: Cursor) {
        self.view = cursor.view
        self.database = cursor.database
        self.checksRangeDeletes = cursor.checksRangeDeletes
        self.source = cursor.view?.makeIterator(fillCache: cursor.options.fillCache) ?? Memtable().makeIterator()
        self.snapshot = cursor.snapshot
        self.options = cursor.options
        self.lower = cursor.lower
        self.upper = cursor.upper
        if cursor.view == nil { self.error = cursor.error }
    }

    private static func bounds(_ options: ScanOptions) -> (lower: [UInt8]?, upper: [UInt8]?) {
        let range = KeyRange(options)
        return (range.lower, range.upper)
    }

    /// The next entry, or nil at the end of the range; throws when a table cannot be read
    /// or is corrupt (and again on every later call), and `.closed` when a walk starts
    /// (the first call, or the first after `restart()`) after the database was closed.
    public func next() throws(KVError) -> Element? {
        if !started { checkOpen() }
        if let error { throw error }
        let entry = nextEntry()
        if let error { throw error }
        return entry
    }

    /// The entries from here to the end of the range (or the limit).
    public func collect() throws(KVError) -> [Element] {
        var entries: [Element] = []
        while let entry = try next() { entries.append(entry) }
        return entries
    }

    /// Starts the walk again from the beginning of the range, at the same snapshot.
    public func restart() {
        returned = 0
        started = false  // the next step seeks `source` to the start of the range again
        positioned = false
        hasSkipKey = false
        error = view == nil ? error : source.error
    }

    /// The next entry without the error check (`error` says why it is nil early).
    private func nextEntry() -> Element? {
        if options.reverse {
            guard withinLimit() else { return nil }
            let entry = previousVisible()
            if let entry {
                returned += 1
                entry.key.withUnsafeBytes { countSample($0) }
            }
            return entry
        }
        guard advance() else { return nil }
        return (Array(source.key), Array(source.value))
    }

    /// Fails the walk with `.closed` if the database was closed (a cursor opened before
    /// the close keeps the tables it reads, but a new walk, or an async batch, refuses).
    fileprivate func checkOpen() {
        guard error == nil, let database else { return }
        do throws(KVError) { try database.checkOpen() } catch { self.error = error }
    }

    /// Up to `count` entries or about `bytes` of them (at least one), for the async walk.
    fileprivate func nextBatch(count: Int, bytes: Int) -> [Element] {
        var batch: [Element] = []
        var taken = 0
        while batch.count < count && taken < bytes, let entry = nextEntry() {
            taken += entry.key.count + entry.value.count + 32
            batch.append(entry)
        }
        return batch
    }

    /// Whether a walk reads only memtables (no table, so no block read that could block).
    fileprivate var readsOnlyMemory: Bool {
        guard let view else { return true }
        return view.immutables.isEmpty && view.version.tableCount == 0
    }

    /// A walk of its own, from the start of the range.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(Cursor(again: self))
    }

    /// One async walk: entries are read a batch at a time (256 entries or 256 KiB) on the
    /// database's read threads, then handed out from memory.
    public struct AsyncIterator: AsyncIteratorProtocol {
        private let walk: WalkBox
        private var buffered: [Element] = []
        private var position = 0
        private var finished = false

        fileprivate init(_ cursor: Cursor) { walk = WalkBox(cursor) }

        /// The next entry, or nil at the end of the range.
        public mutating func next(isolation actor: isolated (any Actor)?) async throws(KVError) -> Element? {
            if position < buffered.count {
                defer { position += 1 }
                return buffered[position]
            }
            if finished { return nil }
            let walk = self.walk
            let batch: [Element]
            if walk.cursor.readsOnlyMemory || walk.cursor.database == nil {
                batch = try walk.fill()
            } else {
                batch = try await walk.cursor.database!.blockingReads.run { () throws(KVError) -> [Element] in try walk.fill() }
            }
            buffered = batch
            position = 0
            if batch.isEmpty {
                finished = true
                return nil
            }
            position = 1
            return batch[0]
        }

        /// The next entry, or nil at the end of the range.
        public mutating func next() async throws(KVError) -> Element? {
            try await next(isolation: nil)
        }
    }

    /// The walk of an async iterator, handed to a read thread for a batch at a time; only
    /// one thread touches it at once (the iterator awaits each batch).
    fileprivate final class WalkBox: @unchecked Sendable {
        let cursor: Cursor
        init(_ cursor: Cursor) { self.cursor = cursor }

        func fill() throws(KVError) -> [Element] {
            cursor.checkOpen()
            if let error = cursor.error { throw error }
            let batch = cursor.nextBatch(count: 256, bytes: 256 << 10)
            if batch.isEmpty, let error = cursor.error { throw error }
            return batch
        }
    }

    /// Calls `body` with each remaining entry's key and value, without copying them; the
    /// buffers are valid only during the call. Return false from `body` to stop. Throws
    /// what `body` throws, or the cursor's ``error`` when the walk fails.
    public func forEach(_ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool) throws {
        if !started { checkOpen() }
        if let error { throw error }
        if options.reverse {
            while let (key, value) = nextEntry() {
                let proceed = try key.withUnsafeBytes { k in try value.withUnsafeBytes { v in try body(k, v) } }
                if !proceed { return }
            }
        } else {
            while advance() {
                if try !body(source.key, source.value) { return }
            }
        }
        if let error { throw error }
    }

    /// Steps through the remaining entries without handing them out, and returns how
    /// many there were.
    func countRemaining() throws(KVError) -> Int {
        if !started { checkOpen() }
        if let error { throw error }
        var count = 0
        if options.reverse {
            while nextEntry() != nil { count += 1 }
        } else {
            while advance() { count += 1 }
        }
        if let error { throw error }
        return count
    }

    private func withinLimit() -> Bool {
        if let limit = options.limit, returned >= limit { return false }
        if !started {
            started = true
            position()
        }
        return true
    }

    /// Forward: moves `source` to the next visible entry and leaves it there (the caller
    /// reads it in place); false at the end of the range.
    private func advance() -> Bool {
        guard withinLimit() else { return false }
        if positioned {
            source.next()
            positioned = false
        }
        while source.isValid {
            let key = source.key
            if let upper, upper.withUnsafeBytes({ SkipList.compareKeys(key, $0) }) >= 0 { return false }
            let tag = source.tag
            if Tag.sequence(tag) > snapshot || (hasSkipKey && SkipList.compareKeys(key, skipKey.bytes) == 0) {
                source.next()
                continue
            }
            // The newest visible version of this key: older ones are skipped after it.
            skipKey.set(key)
            hasSkipKey = true
            if Tag.isPut(tag) {
                if checksRangeDeletes, let view, let cover = view.rangeDeleteCover(key, snapshot: snapshot),
                    cover.sequence > Tag.sequence(tag)
                {
                    // Deleted by a range delete: the sources all older than it jump past
                    // the part of the range around this key (a scan across a deleted
                    // range does not step through what it deleted).
                    cover.fragment.start.withUnsafeBytes { start in
                        cover.fragment.end.withUnsafeBytes { end in source.skipOlder(than: cover.sequence, start: start, end: end) }
                    }
                    continue
                }
                positioned = true
                returned += 1
                countSample(key)
                return true
            }
            source.next()
        }
        error = error ?? source.error
        return false
    }

    private func position() {
        if options.reverse {
            if let upper {
                if untilSample == 0, let view {
                    upper.withUnsafeBytes { view.sampleRead($0) }
                    untilSample = Cursor.samplePeriod
                }
                upper.withUnsafeBytes { source.seek($0, tag: UInt64.max) }
                if source.isValid { source.prev() } else { source.seekToLast() }
            } else {
                source.seekToLast()
            }
        } else if let lower {
            lower.withUnsafeBytes { lower in
                if untilSample == 0, let view {
                    // A seek meets every source holding its key: it samples where it lands.
                    view.sampleRead(lower)
                    untilSample = Cursor.samplePeriod
                }
                // Starting inside a deleted range: what it deleted is not read at all.
                if checksRangeDeletes, let view, let cover = view.rangeDeleteCover(lower, snapshot: snapshot) {
                    cover.fragment.end.withUnsafeBytes { source.seek(lower, olderThan: cover.sequence, skippingTo: $0) }
                } else {
                    source.seek(lower, tag: UInt64.max)
                }
            }
        } else {
            source.seekToFirst()
        }
    }

    private func aboveLower(_ key: UnsafeRawBufferPointer) -> Bool {
        lower.map { bound in bound.withUnsafeBytes { SkipList.compareKeys(key, $0) >= 0 } } ?? true
    }

    /// Walking backwards a key's versions go oldest to newest: the last visible one seen
    /// before the key changes is its state at the snapshot.
    private func previousVisible() -> Element? {
        var current: (key: [UInt8], put: Bool, value: [UInt8], sequence: UInt64)? = nil
        /// Whether a range delete the snapshot sees covers `found`; if so, the sources all
        /// older than it jump back before the part of the range around it.
        func deletedByRange(_ found: (key: [UInt8], put: Bool, value: [UInt8], sequence: UInt64)) -> Bool {
            guard checksRangeDeletes, let view,
                let cover = found.key.withUnsafeBytes({ view.rangeDeleteCover($0, snapshot: snapshot) }), cover.sequence > found.sequence
            else { return false }
            cover.fragment.start.withUnsafeBytes { start in
                cover.fragment.end.withUnsafeBytes { end in source.skipOlder(than: cover.sequence, start: start, end: end) }
            }
            return true
        }
        while source.isValid {
            let key = source.key
            if let found = current, found.key.withUnsafeBytes({ SkipList.compareKeys(key, $0) }) != 0 {
                current = nil
                if found.put && !deletedByRange(found) { return (found.key, found.value) }
                continue  // (the skip may have moved the sources)
            }
            guard aboveLower(key) else { break }
            let tag = source.tag
            if Tag.sequence(tag) <= snapshot {
                let isPut = Tag.isPut(tag)
                current = (Array(key), isPut, isPut ? Array(source.value) : [], Tag.sequence(tag))
            }
            source.prev()
        }
        error = error ?? source.error
        if error != nil { return nil }
        if let found = current, found.put {
            current = nil
            if !deletedByRange(found) { return (found.key, found.value) }
        }
        return nil
    }

    /// The smallest byte string greater than every string with `prefix`, or nil.
    static func successor(of prefix: [UInt8]) -> [UInt8]? {
        var bytes = prefix
        while let last = bytes.last {
            if last < 0xFF {
                bytes[bytes.count - 1] = last + 1
                return bytes
            }
            bytes.removeLast()
        }
        return nil
    }
}
