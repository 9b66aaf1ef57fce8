import Atomics
import PageStore
import Synchronization

extension Table: CacheCharged {
    /// Each open table counts once against `Options.maxOpenTables`.
    var charge: Int { 1 }
}

/// The open tables: at most `capacity` (`Options.maxOpenTables`) at once, each holding a
/// file descriptor, a registered-file slot and its index and filter in memory. A table is
/// opened when a read, a seek or a compaction first needs it, and closed when the CLOCK
/// hand passes it by unused or when it is compacted away; reading it again opens it again
/// (LevelDB's `TableCache`).
///
/// A table in use by a cursor or a compaction when it is evicted stays open until that
/// user lets go. So that such tables cannot take the file slots the logs, the manifest and
/// the tables being written need, at most `capacity` plus half of
/// `Options.reservedFileSlots` tables are open at once, in the cache or not: a read that
/// would open one more fails (`isBusy`) instead, and a compaction that meets the limit
/// tries again later.
final class TableCache: Sendable {
    let storage: any Storage
    let directory: String
    /// The block cache the opened tables read through.
    let blocks: BlockCache
    private let open: ClockCache<UInt64, Table>
    /// Tables open now, in the cache or only in the hands of their readers.
    private let live = ManagedAtomic<Int>(0)
    /// The most tables open at once.
    let ceiling: Int
    /// Read-triggered compaction: file bytes per lookup a table may waste, 0 for none
    /// (`Options.readCompactionBytesPerLookup`), and the fewest lookups any table gets.
    private let readCompaction: (bytesPerLookup: Int, minimum: Int)
    /// Tables whose allowance of wasted lookups ran out, oldest first (at most 64).
    private let readExhausted = Mutex<[UInt64]>([])

    init(
        storage: any Storage, directory: String, blocks: BlockCache, capacity: Int,
        readCompaction: (bytesPerLookup: Int, minimum: Int) = (0, 0)
    ) {
        self.storage = storage
        self.directory = directory
        self.blocks = blocks
        self.readCompaction = readCompaction
        open = ClockCache(capacity: capacity, shardCount: max(1, min(16, capacity / 64)))
        ceiling = capacity + Options.reservedFileSlots / 2
    }

    var capacity: Int { open.capacity }

    static let busyMessage = "too many tables are open at once"

    /// Whether `error` is a read refused at the ceiling (it says nothing of the table).
    static func isBusy(_ error: KVError) -> Bool { error.message.hasPrefix(busyMessage) }

    /// The open table `meta` names, opening it (reading and verifying its footer, index,
    /// filter and properties) when the cache does not hold it. `admitting`: a table just
    /// written, opened before a version names it, past the ceiling if need be (its
    /// writer's file slot was just given back).
    func table(_ meta: TableMeta, admitting: Bool = false) throws(KVError) -> Table {
        if let table = open.lookup(meta.number) { return table }
        let count = live.loadThenWrappingIncrement(ordering: .relaxed)
        guard count < ceiling || admitting else {
            live.wrappingDecrement(ordering: .relaxed)
            throw KVError(
                .io,
                "\(TableCache.busyMessage) (\(ceiling): maxOpenTables \(capacity) and tables that cursors, batched reads and compactions still hold); table \(meta.number) was not opened: close cursors, or raise maxOpenTables",
                path: directory + "/" + FileNames.table(meta.number))
        }
        let table: Table
        do throws(KVError) {
            table = try Table.open(storage: storage, directory: directory, meta: meta, cache: blocks) { [live] in
                live.wrappingDecrement(ordering: .relaxed)
            }
        } catch {
            live.wrappingDecrement(ordering: .relaxed)
            throw error
        }
        return open.insert(meta.number, table)
    }

    /// Closes table `number` (once its users let go): it was compacted away or closed.
    func evict(_ number: UInt64) { open.remove(number) }

    /// Drops the cached data blocks of table `number`, compacted away, when its reader is
    /// open (it knows where the blocks are); blocks of a table closed before are left to
    /// the CLOCK hand, which finds them unreferenced.
    func forgetBlocks(of number: UInt64) {
        guard let table = open.lookup(number) else { return }
        for handle in table.handles { blocks.remove(BlockKey(table: number, offset: handle.offset)) }
    }

    /// Tables open (in the cache or still held by readers), lookups the cache answered and
    /// tables it had to open.
    var counters: (open: Int, hits: Int, opens: Int) {
        let counters = open.counters
        return (live.load(ordering: .relaxed), counters.hits, counters.misses)
    }

    /// How many lookups may pass through a table of `fileBytes` in vain before reads ask
    /// for its compaction; 0 when reads never do.
    func readAllowance(fileBytes: Int64) -> Int {
        guard readCompaction.bytesPerLookup > 0 else { return 0 }
        return max(readCompaction.minimum, Int(fileBytes / Int64(readCompaction.bytesPerLookup)))
    }

    /// Table `number` used up its allowance: reads ask for its compaction. False when
    /// 64 tables already wait for theirs (this one is not noted).
    @discardableResult
    func noteReadExhausted(_ number: UInt64) -> Bool {
        readExhausted.withLock {
            if $0.contains(number) { return true }
            guard $0.count < 64 else { return false }
            $0.append(number)
            return true
        }
    }

    /// The allowance a table whose request found no room starts again with.
    var readAllowanceAfterRefusal: Int { readCompaction.minimum }

    /// Visits the tables reads asked to compact, oldest first, until `take` returns true
    /// for one; each visited is forgotten unless `take` returns nil for it (kept for later).
    func takeReadExhausted(_ take: (UInt64) -> Bool?) {
        readExhausted.withLock { numbers in
            var kept: [UInt64] = []
            var index = 0
            while index < numbers.count {
                let number = numbers[index]
                index += 1
                switch take(number) {
                case .some(true):
                    numbers = kept + numbers[index...]
                    return
                case .some(false): break
                case .none: kept.append(number)
                }
            }
            numbers = kept
        }
    }

    /// Memory the open tables' indexes and filters hold.
    var memoryBytes: Int { open.values.reduce(0) { $0 + $1.memoryBytes } }
}

/// A live table as versions know it: its manifest record and where its reader comes from.
/// Versions, iterators and snapshots share it; when the last of them lets go of a table
/// that was compacted away, its reader is closed and its file removed.
final class TableFile: Sendable {
    let meta: TableMeta
    let tables: TableCache
    private let obsolete = ManagedAtomic<Bool>(false)
    /// Lookups that may still consult this table in vain (find their answer in a table
    /// consulted after it) before reads ask for its compaction into the next level
    /// (LevelDB's `allowed_seeks`): such a lookup costs about what compacting a few KiB of
    /// the table does.
    private let readAllowance: ManagedAtomic<Int>

    init(meta: TableMeta, tables: TableCache) {
        self.meta = meta
        self.tables = tables
        readAllowance = ManagedAtomic(tables.readAllowance(fileBytes: meta.fileBytes))
    }

    /// A lookup consulted this table first and found its answer (or none) further down.
    @inline(__always)
    func chargeWastedLookup() {
        guard readAllowance.load(ordering: .relaxed) > 0 else { return }
        if readAllowance.loadThenWrappingDecrement(ordering: .relaxed) == 1 && !tables.noteReadExhausted(meta.number) {
            // No room among the tables waiting: this one asks again after a while.
            readAllowance.store(tables.readAllowanceAfterRefusal, ordering: .relaxed)
        }
    }

    var number: UInt64 { meta.number }

    /// The table's open reader, from the table cache (opened now if it is not there).
    func open() throws(KVError) -> Table { try tables.table(meta) }

    /// Marks the table compacted away: its file goes when the last version lets go.
    func markObsolete() { obsolete.store(true, ordering: .releasing) }

    deinit {
        let obsolete = obsolete.load(ordering: .acquiring)
        if obsolete { tables.forgetBlocks(of: meta.number) }
        tables.evict(meta.number)
        guard obsolete else { return }
        let path = tables.directory + "/" + FileNames.table(meta.number)
        do {
            try tables.storage.removeFile(atPath: path)
        } catch {
            engineLogger.warning("could not remove obsolete table \(path): \(error)")
        }
    }
}
