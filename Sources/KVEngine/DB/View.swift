import Atomics
import Synchronization

/// A memtable that is full and waits for its flush to level 0.
struct FrozenMemtable: Sendable {
    let memtable: Memtable
    /// The log started when it froze: once it is in a table, logs before this one go.
    let nextLogNumber: UInt64
    /// Its last sequence number.
    let lastSequence: UInt64
}

/// Every source a read consults, at one moment: the memtable taking writes, the frozen
/// ones waiting for their flush (newest first), and the tables of a version. A view never
/// changes; flushes, compactions and rotations install a new one. Whoever holds a view
/// keeps its memtables and tables alive.
final class View: Sendable {
    let log: LogWriter?
    let memtable: Memtable
    let immutables: [FrozenMemtable]
    let version: Version
    private let readOnlySequence: UInt64
    /// Iterator stacks cursors gave back (`park(_:)`), for the next cursors.
    private let parkedIterators = Mutex<[ParkedIterator]>([])

    init(log: LogWriter?, memtable: Memtable, immutables: [FrozenMemtable], version: Version, readOnlySequence: UInt64) {
        self.log = log
        self.memtable = memtable
        self.immutables = immutables
        self.version = version
        self.readOnlySequence = readOnlySequence
    }

    func with(log: LogWriter? = nil, memtable: Memtable? = nil, immutables: [FrozenMemtable]? = nil, version: Version? = nil) -> View {
        View(
            log: log ?? self.log, memtable: memtable ?? self.memtable, immutables: immutables ?? self.immutables,
            version: version ?? self.version, readOnlySequence: readOnlySequence)
    }

    /// The newest sequence number readers see.
    var visibleSequence: UInt64 { log?.visibleSequence.load(ordering: .acquiring) ?? readOnlySequence }

    /// The newest version of `key` at or below `snapshot`: memtables, then level 0 newest
    /// first, then one table per deeper level, each pruned by key range and bloom filter.
    func get(_ key: UnsafeRawBufferPointer, snapshot: UInt64) throws(KVError) -> Memtable.Lookup {
        let floor = rangeDeleteFloor(key, snapshot: snapshot)
        let hash = BloomFilter.hash(key)
        let found = getFromMemtables(key, hash: hash, snapshot: snapshot, floor: floor)
        if found != .missing { return found }
        var result = Memtable.Lookup.missing
        try forEachTableToRead(key, hash: hash) { table throws(KVError) -> Bool in
            result = try table.get(key, hash: hash, snapshot: snapshot, floor: floor, filterPassed: true)
            return result == .missing
        }
        return result
    }

    /// Visits, in lookup order, the tables a point lookup of `key` reads a block of (key
    /// range and filter let it through) until `visit` returns false. When it goes on to a
    /// second such table, the first is charged a wasted lookup (read-triggered compaction,
    /// `TableFile.chargeWastedLookup`; LevelDB's `seek_file`); a table its filter rules
    /// out costs no read and is not charged.
    func forEachTableToRead(
        _ key: UnsafeRawBufferPointer, hash: UInt64, _ visit: (Table) throws(KVError) -> Bool
    ) throws(KVError) {
        // Unretained: the version holds its tables for the whole walk.
        var first: Unmanaged<TableFile>? = nil
        var charged = false
        try forEachCandidate(key) { (file) throws(KVError) -> Bool in
            let table = try file.open()
            guard table.mayContain(hash: hash) else { return true }
            if let first {
                if !charged {
                    charged = true
                    first._withUnsafeGuaranteedRef { $0.chargeWastedLookup() }
                }
            } else {
                first = Unmanaged.passUnretained(file)
            }
            return try visit(table)
        }
    }

    /// Whether any source holds a range delete (reads skip the checks when none does). The
    /// memtable taking writes may gain one at any time, with a sequence number past every
    /// snapshot taken before: a point read asks each time, a cursor once, after its
    /// snapshot is taken (`Cursor.checksRangeDeletes`).
    var hasRangeDeletes: Bool {
        memtable.hasRangeDeletes || !version.rangeDeletes.isEmpty || immutables.contains { $0.memtable.hasRangeDeletes }
    }

    /// The newest range delete covering `key` that a reader at `snapshot` sees, over every
    /// source, with the fragment of that source's range deletes around `key` (all of which
    /// that range delete covers). Nil at once when no source holds a range delete.
    func rangeDeleteCover(_ key: UnsafeRawBufferPointer, snapshot: UInt64) -> (sequence: UInt64, fragment: RangeTombstones.Fragment)? {
        guard hasRangeDeletes else { return nil }
        var best = version.rangeDeletes.cover(key, snapshot: snapshot)
        func consider(_ source: Memtable) {
            guard source.hasRangeDeletes, let found = source.rangeDeletes.cover(key, snapshot: snapshot) else { return }
            if found.sequence > (best?.sequence ?? 0) { best = found }
        }
        consider(memtable)
        for frozen in immutables { consider(frozen.memtable) }
        return best
    }

    /// The sequence number below which versions of `key` are deleted for a reader at
    /// `snapshot` (0: no range delete covers it).
    func rangeDeleteFloor(_ key: UnsafeRawBufferPointer, snapshot: UInt64) -> UInt64 {
        rangeDeleteCover(key, snapshot: snapshot)?.sequence ?? 0
    }

    /// Calls `body` with the newest value of `key` at or below `snapshot` where it lies (in
    /// a memtable's arena or a cached block, held for the call), or with nil.
    func withValue<R>(_ key: UnsafeRawBufferPointer, snapshot: UInt64, _ body: (UnsafeRawBufferPointer?) throws -> R) throws -> R {
        let floor = rangeDeleteFloor(key, snapshot: snapshot)
        let hash = BloomFilter.hash(key)
        var found = memtable.find(key, hash: hash, snapshot: snapshot, floor: floor)
        for frozen in immutables {
            guard case .missing = found else { break }
            found = frozen.memtable.find(key, hash: hash, snapshot: snapshot, floor: floor)
        }
        switch found {
        case .value(let bytes): return try body(bytes)
        case .deleted: return try body(nil)
        case .missing: break
        }
        var answer: Result<R, any Error>? = nil
        try forEachTableToRead(key, hash: hash) { table throws(KVError) -> Bool in
            try table.withFound(key, hash: hash, snapshot: snapshot, floor: floor, filterPassed: true) { found -> Bool in
                switch found {
                case .missing: return true
                case .deleted: answer = Result { try body(nil) }
                case .value(let bytes): answer = Result { try body(bytes) }
                }
                return false
            }
        }
        return try (answer ?? Result { try body(nil) }).get()
    }

    /// The newest version of `key` at or below `snapshot` in the memtables alone (`hash`:
    /// the key's `BloomFilter.hash` when the caller has it).
    func getFromMemtables(_ key: UnsafeRawBufferPointer, hash: UInt64? = nil, snapshot: UInt64, floor: UInt64? = nil) -> Memtable.Lookup {
        let floor = floor ?? rangeDeleteFloor(key, snapshot: snapshot)
        let hash = hash ?? BloomFilter.hash(key)
        var found = memtable.get(key, hash: hash, snapshot: snapshot, floor: floor)
        for frozen in immutables where found == .missing { found = frozen.memtable.get(key, hash: hash, snapshot: snapshot, floor: floor) }
        return found
    }

    /// Tables whose key range holds `key`, in the order a lookup consults them.
    func candidates(_ key: UnsafeRawBufferPointer) -> [TableFile] {
        var result: [TableFile] = []
        forEachCandidate(key) { table in
            result.append(table)
            return true
        }
        return result
    }

    /// Visits the tables whose key range holds `key` in lookup order (level 0 newest
    /// first, then one table per deeper level) until `visit` returns false; no array per
    /// lookup.
    func forEachCandidate<E: Error>(_ key: UnsafeRawBufferPointer, _ visit: (TableFile) throws(E) -> Bool) throws(E) {
        for table in version.levels[0] where table.meta.contains(key) {
            if try !visit(table) { return }
        }
        for level in 1..<Version.levelCount {
            guard let table = version.firstTable(level: level, reaching: key), table.meta.contains(key) else { continue }
            if try !visit(table) { return }
        }
    }

    /// Charges a wasted lookup to the first table of those holding `key`'s range when
    /// there are two or more (a scan's sample of where it reads; LevelDB's
    /// `RecordReadSample`): a scan reads every table under its key, filters or not.
    func sampleRead(_ key: UnsafeRawBufferPointer) {
        var first: TableFile? = nil
        forEachCandidate(key) { table in
            guard let first else {
                first = table
                return true
            }
            first.chargeWastedLookup()
            return false
        }
    }

    /// A merged walk over every source; table blocks it reads enter the cache when
    /// `fillCache`. A stack a cursor parked (`park(_:)`) is taken before one is built.
    func makeIterator(fillCache: Bool = true) -> any InternalIterator {
        if immutables.isEmpty && version.tableCount == 0 { return memtable.makeIterator() }
        if fillCache, let parked = parkedIterators.withLock({ $0.popLast() }) { return parked.iterator }
        var children: [any InternalIterator] = []
        children.reserveCapacity(1 + immutables.count + version.levels[0].count + Version.levelCount - 1)
        children.append(memtable.makeIterator())
        for frozen in immutables { children.append(frozen.memtable.makeIterator()) }
        for table in version.levels[0] { children.append(LevelIterator(tables: [table], fillCache: fillCache)) }
        for level in 1..<Version.levelCount where !version.levels[level].isEmpty {
            children.append(LevelIterator(tables: version.levels[level], fillCache: fillCache))
        }
        let merged = MergingIterator(children)
        if fillCache { merged.parkingView = ObjectIdentifier(self) }
        return merged
    }

    /// Takes back a stack `makeIterator` built here once its cursor is done with it: it
    /// lets go of every table and block it holds and waits, up to `parkedIteratorLimit`
    /// of them, for the next cursor over this view (a seek then builds nothing). The
    /// stacks go with the view.
    func park(_ iterator: any InternalIterator) {
        guard let merged = iterator as? MergingIterator, merged.parkingView == ObjectIdentifier(self),
            parkedIterators.withLock({ $0.count < View.parkedIteratorLimit })
        else { return }  // (a full pool: the stack just goes, unparked)
        merged.park()
        let parked = ParkedIterator(iterator: merged)
        parkedIterators.withLock { stacks in
            if stacks.count < View.parkedIteratorLimit { stacks.append(parked) }
        }
    }

    /// Stacks kept per view: as many cursors as are likely open at once over one view.
    static let parkedIteratorLimit = 8
}

/// A parked iterator stack: only one cursor uses it at a time, and a parked one is
/// touched by no one until `View.makeIterator` hands it out again.
struct ParkedIterator: @unchecked Sendable {
    let iterator: MergingIterator
}

extension TableMeta {
    /// Whether `key` lies within the table's user-key range.
    func contains(_ key: UnsafeRawBufferPointer) -> Bool {
        smallestUserKey.withUnsafeBytes { SkipList.compareKeys($0, key) <= 0 }
            && largestUserKey.withUnsafeBytes { SkipList.compareKeys($0, key) >= 0 }
    }
}

/// The sequence numbers of live snapshots (compaction keeps what they can see).
final class SnapshotList: Sendable {
    private let live = Mutex<[UInt64: Int]>([:])

    func take(_ sequence: () -> UInt64) -> Snapshot {
        live.withLock { live in
            let value = sequence()
            live[value, default: 0] += 1
            return Snapshot(sequence: value, list: self)
        }
    }

    func release(_ sequence: UInt64) {
        live.withLock { live in
            if let count = live[sequence] {
                live[sequence] = count > 1 ? count - 1 : nil
            }
        }
    }

    /// The oldest live snapshot, or nil.
    var oldest: UInt64? { live.withLock { $0.keys.min() } }
    var count: Int { live.withLock { $0.values.reduce(0, +) } }
}
