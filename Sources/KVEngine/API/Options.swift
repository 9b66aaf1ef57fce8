import Atomics
import Glibc
import PageStore

/// When a write is acknowledged.
public enum Durability: Sendable, Equatable {
    /// After the fdatasync of the log chain that holds it has completed: survives a power cut.
    case sync
    /// After it is in the memtable. Its log page is written (with an fdatasync) within
    /// ``Options/bufferedFlushIntervalMs`` or as soon as the page fills, so a crash loses at
    /// most the buffered writes of that last interval, never an earlier one (no holes).
    case buffered
}

/// How a database is opened.
public struct Options: Sendable {
    /// Create the database when the directory is missing or empty.
    public var createIfMissing = true
    /// Fail with `.alreadyExists` when a database is already there.
    public var errorIfExists = false
    /// Bytes the memtable may hold. A full memtable is frozen, a new log and memtable
    /// take the writes, and a background thread writes the frozen one to a level-0 table.
    /// 4 MiB by default (LevelDB's): a lookup or a seek in a skip list costs a cache miss
    /// per level, so a small memtable keeps reads of fresh data cheap (measured at 1M
    /// keys: readrandom and seekrandom right after fillrandom about 1.7x faster than with
    /// RocksDB's 64 MiB, fills as fast), at the price of more flushes and compaction work.
    /// Raise it for write-heavy loads that read little of what they just wrote.
    public var memtableBytes = 4 << 20
    /// Frozen memtables that may wait for their flush; a write that needs another one
    /// waits (a stall) until the oldest is in a table. Memory for memtables is bounded by
    /// `memtableBytes * (1 + maxFrozenMemtables)`.
    public var maxFrozenMemtables = 1
    /// Bytes of the block cache of data blocks. O_DIRECT bypasses the kernel's page cache,
    /// so this is the only read cache: it stands where the page cache stands under LevelDB,
    /// RocksDB and LMDB, and by default (``Options/defaultCacheBytes``) it is sized as a
    /// share of memory, not as a fixed small buffer. It fills only as blocks are read or
    /// written (a flush's blocks, and a compaction's while there is free room), so an idle
    /// database costs nothing; several databases in one process each take this share by
    /// default, so set it explicitly for them.
    /// Index and filter blocks of open tables are held in memory outside it (about 1.4
    /// bytes per key plus 40 bytes per 4 KiB block), bounded by ``Options/maxOpenTables``.
    public var cacheBytes = Options.defaultCacheBytes
    /// The default ``Options/cacheBytes``: a quarter of the memory the process may use (its
    /// cgroup's memory limit when it has one, else physical memory), at least 32 MiB.
    /// Measured once, when first used.
    public static let defaultCacheBytes: Int = max(32 << 20, MemoryLimit.processBytes / 4)
    /// Tables held open at once by the table cache, each with a file descriptor, a
    /// registered-file slot and its index and filter in memory; a read that reaches a
    /// table not open opens it (one read of its index, filter and footer), closing the one
    /// least recently used. nil (the default): 1000, or fewer when the page store's
    /// registered file slots (`pageStore.maxOpenFiles`) or the process's `RLIMIT_NOFILE`
    /// leave less room, keeping ``Options/reservedFileSlots`` of them for logs, manifests
    /// and tables being written. A value that does not fit is refused at open.
    public var maxOpenTables: Int? = nil
    /// Block reads a batched lookup (`Database.get(keys:snapshot:)`) keeps in flight at
    /// once: the queue depth it gives the device. Each completion starts the next read.
    public var batchReadDepth = 32
    /// Tables written by compaction are cut at about this size (8 MiB: with 4 MiB
    /// memtables, RocksDB's 64 MiB made every level-0 compaction rewrite a level 1 of
    /// several such tables; see `levelBaseBytes`).
    public var tableTargetBytes = 8 << 20
    /// Entries of a data block between restart points (a key stored whole, where a seek's
    /// binary search can land); the entries in between store only what differs from the
    /// key before them. Smaller: seeks and point reads decode fewer entries; larger:
    /// smaller blocks when keys share long prefixes. 1 to 128; a table records nothing of
    /// it, so changing it between opens is safe.
    public var blockRestartInterval = 16
    /// Read-triggered compaction (LevelDB's seek compaction): a table may be consulted
    /// in vain (a point lookup reads one of its blocks, or a scan's sampled key passes
    /// through it, and finds its answer further down) once per this many bytes of its
    /// file, and at least 100 times,
    /// before reads ask for its compaction into the next level, when no compaction is due
    /// by size. After a burst of writes, reads so compact the level-0 tables and the
    /// overlaps that every read pays for. 0 turns it off; default 16 KiB, LevelDB's.
    public var readCompactionBytesPerLookup = 16 << 10
    /// The fewest wasted lookups any table is allowed (tests lower it).
    var readCompactionMinimumLookups = 100
    /// Level-0 tables that start a level-0 compaction.
    public var level0CompactionTrigger = 4
    /// Level-0 tables at which each write is delayed by a millisecond.
    public var level0SlowdownTrigger = 20
    /// Level-0 tables at which writes wait until compaction catches up.
    public var level0StopTrigger = 36
    /// Target size of level 1; each deeper level is `levelMultiplier` times larger.
    /// 32 MiB, a few level-0 compactions' worth of 4 MiB memtables: RocksDB's 256 MiB
    /// suits its 64 MiB memtables, and beside 4 MiB ones made each level-0 compaction
    /// rewrite far more of level 1 than it brought (measured at 10M random keys: write
    /// amplification 11.0 against 6.1, fills 151k against 242k puts/s; docs/BENCHMARKS.md).
    public var levelBaseBytes: Int64 = 32 << 20
    /// Growth factor between levels.
    public var levelMultiplier = 10
    /// Estimated bytes compaction is behind at which writes are delayed.
    public var pendingCompactionSlowdownBytes: Int64 = 64 << 30
    /// Estimated bytes compaction is behind at which writes wait.
    public var pendingCompactionStopBytes: Int64 = 256 << 30
    /// Durability of writes that do not name one.
    public var defaultDurability = Durability.sync
    /// Longest time a `.buffered` write waits for its log page to be written and synced.
    public var bufferedFlushIntervalMs = 10
    /// Bytes reserved (fallocate) for a new log file, and by which it grows. A new log
    /// reserves at most what its memtable can hold (`memtableBytes` and an eighth), and
    /// nothing when the disk has no room for it (the log then grows as it is written).
    public var logPreallocateBytes: Int64 = 64 << 20
    /// What to do when a log is damaged before its tail.
    public var onLogCorruption = CorruptionPolicy.refuse
    /// Opens without changing a byte of the directory: nothing is created, replayed logs
    /// are neither cut nor flushed, no log or manifest is started, and the `LOCK` file is
    /// held with a shared `flock`, so read-only opens run beside each other (also on a
    /// read-only mount) while a writer is refused, and a writer's open is refused while
    /// they run. Writes fail with `.readOnly`. Damage is treated per `onLogCorruption`.
    public var readOnly = false
    /// How long logs stay once their writes are in tables, for the change feed
    /// (``Database/changes(since:follow:)``) to read: nil (the default) removes them at once.
    public var logRetention: LogRetention? = nil
    /// How data blocks of new tables are compressed (LZ4 by default; docs/FORMAT.md,
    /// "Data blocks"). A block that does not shrink by more than an eighth is stored raw, and the
    /// block cache holds blocks uncompressed. Tables keep the codec they were written
    /// with: a change applies to what flushes and compactions write from then on.
    public var compression = Compression.lz4
    /// Per-level exceptions to ``compression``, by level (0 to 6; the bottom level, which
    /// holds most of the data, is 6): RocksDB's `compression_per_level` and
    /// `bottommost_compression`, e.g. `[0: .none, 6: .zstd()]`. Ingested tables take the
    /// bottom level's.
    public var compressionByLevel: [Int: Compression] = [:]

    /// The codec for tables written to `level`.
    func compression(forLevel level: Int) -> Compression { compressionByLevel[level] ?? compression }
    /// The page arena of a read-only open (8 MiB by default, at least
    /// ``minimumReadOnlyArenaBytes``), in place of `pageStore.arenaBytes`: such an open
    /// writes nothing (no log, no table writer, no compaction), so its arena holds the
    /// reads in flight (a block, a log replay's chunk, a small table's index and filter;
    /// larger ones are read into ordinary memory) and read-ahead, which never takes its
    /// last quarter. A small arena keeps a short-lived reader (`kvctl DB get`) from
    /// spending most of its time having the kernel zero and pin memory it never uses.
    /// Raise it for many batched gets or scans at once.
    public var readOnlyArenaBytes = 8 << 20
    /// The smallest arena a read-only open takes, 8 MiB: its last quarter, which
    /// read-ahead leaves free, holds the largest read made whole (1 MiB) twice over.
    public static let minimumReadOnlyArenaBytes = 8 << 20
    /// Whether `close()` writes what the memtables hold to level-0 tables and removes the
    /// logs (default). Then the next open replays nothing, and every acknowledged write
    /// sits in checksummed table blocks. Without it `close()` only makes the log durable,
    /// which is faster, and the next open replays the log (RocksDB's
    /// `avoid_flush_during_shutdown`).
    public var flushOnClose = true
    /// Where the database's files live, when not in a page store of its own: a
    /// `MemoryStorage` (a database in memory, gone with the storage; for tests and
    /// caches), or any `Storage` (a wrapper that injects faults, say). The caller owns
    /// it: the database neither configures it (`pageStore` is not used) nor shuts it down.
    /// The directory lock goes through it too (`Storage.lockFile(atPath:shared:holder:)`).
    /// LevelDB's `Options::env`, Pebble's `vfs.FS`.
    public var storage: (any Storage)? = nil
    /// How the page store reaches the disk (io_uring, O_DIRECT, fixed buffers, arena).
    /// Its arena (64 MiB by default) is raised to ``minimumArenaBytes`` when smaller; a
    /// read-only open uses ``readOnlyArenaBytes`` instead.
    public var pageStore = PageStoreOptions()
    /// The smallest page arena a database opens its page store with, 48 MiB: room for the
    /// log's pages, two table writers, compaction read-ahead and lookups at once. A
    /// smaller `pageStore.arenaBytes` is raised to it (`stats` shows the arena in use).
    public static let minimumArenaBytes = 48 << 20
    /// Log commit chains in flight at once (`LogWriter.maxChainsInFlight` by default). The
    /// crash tests raise it so that chains complete out of order and one fails while
    /// others are in flight.
    var logChainsInFlight = LogWriter.maxChainsInFlight
    /// Full log pages that start a chain when only buffered writes wait (the crash tests
    /// lower it so buffered chains are in flight beside sync ones).
    var bufferedChainPages = LogPages.blockPages
    /// Flushes and compactions run on the writing thread right after a rotation instead of
    /// on background threads, so a run is deterministic (the crash tests' replays).
    var inlineBackgroundWork = false
    /// The table format flushes and compactions write (the tests write format 1 too, to
    /// check that tables from before cache-local filters still read).
    var tableFormatVersion = TableFormat.version
    /// Manifest bytes after which the next edit starts a new manifest (the tests lower it
    /// so that manifests roll over, and CURRENT switches, often).
    var manifestRollBytes = VersionSet.defaultManifestRollBytes
    /// Lets memtables, tables and level targets be tiny, so a short test workload makes
    /// many flushes and compactions (the crash tests).
    var allowTinySizes = false

    /// File slots (and descriptors) kept out of the table cache's reach: the logs, the
    /// manifest, the tables a flush and a compaction are writing, and tables a cursor
    /// still reads after the cache let them go.
    public static let reservedFileSlots = 64

    /// The table cache's capacity: `maxOpenTables`, or the default it stands for, within
    /// the registered file slots and `RLIMIT_NOFILE` (`openFileLimit`, the soft limit).
    func tableCacheCapacity(openFileLimit: Int) throws(KVError) -> Int {
        let slots = pageStore.maxOpenFiles - Options.reservedFileSlots
        let descriptors = openFileLimit - Options.reservedFileSlots
        let room = min(slots, descriptors)
        guard let maxOpenTables else { return max(1, min(1000, room)) }
        if maxOpenTables < 1 {
            throw KVError(.invalidArgument, "maxOpenTables \(maxOpenTables) must be at least 1")
        }
        if maxOpenTables > slots {
            throw KVError(
                .invalidArgument,
                "maxOpenTables \(maxOpenTables) does not fit in pageStore.maxOpenFiles \(pageStore.maxOpenFiles) registered file slots less the \(Options.reservedFileSlots) kept for logs, manifests and tables being written (at most \(slots))")
        }
        if maxOpenTables > descriptors {
            throw KVError(
                .invalidArgument,
                "maxOpenTables \(maxOpenTables) does not fit in the process's open file limit (RLIMIT_NOFILE \(openFileLimit)) less the \(Options.reservedFileSlots) kept for logs, manifests and tables being written (at most \(descriptors); raise it with ulimit -n)")
        }
        return maxOpenTables
    }

    /// The soft `RLIMIT_NOFILE` of this process.
    static var openFileLimit: Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        return Int(clamping: min(limit.rlim_cur, UInt(Int32.max)))
    }

    /// What to do with a damaged log.
    public enum CorruptionPolicy: Sendable, Equatable {
        /// Refuse to open, naming the file and offset.
        case refuse
        /// Open read-only with everything before the damage.
        case openReadOnly
    }

    /// The defaults, with any of the public options given by label; an argument left out
    /// (or nil) keeps its default:
    ///
    ///     let options = Options(createIfMissing: false, defaultDurability: .buffered)
    public init(
        createIfMissing: Bool? = nil,
        errorIfExists: Bool? = nil,
        readOnly: Bool? = nil,
        defaultDurability: Durability? = nil,
        memtableBytes: Int? = nil,
        maxFrozenMemtables: Int? = nil,
        cacheBytes: Int? = nil,
        maxOpenTables: Int? = nil,
        batchReadDepth: Int? = nil,
        tableTargetBytes: Int? = nil,
        level0CompactionTrigger: Int? = nil,
        level0SlowdownTrigger: Int? = nil,
        level0StopTrigger: Int? = nil,
        levelBaseBytes: Int64? = nil,
        levelMultiplier: Int? = nil,
        pendingCompactionSlowdownBytes: Int64? = nil,
        pendingCompactionStopBytes: Int64? = nil,
        bufferedFlushIntervalMs: Int? = nil,
        logPreallocateBytes: Int64? = nil,
        onLogCorruption: CorruptionPolicy? = nil,
        flushOnClose: Bool? = nil,
        storage: (any Storage)? = nil,
        pageStore: PageStoreOptions? = nil
    ) {
        if let createIfMissing { self.createIfMissing = createIfMissing }
        if let errorIfExists { self.errorIfExists = errorIfExists }
        if let readOnly { self.readOnly = readOnly }
        if let defaultDurability { self.defaultDurability = defaultDurability }
        if let memtableBytes { self.memtableBytes = memtableBytes }
        if let maxFrozenMemtables { self.maxFrozenMemtables = maxFrozenMemtables }
        if let cacheBytes { self.cacheBytes = cacheBytes }
        if let maxOpenTables { self.maxOpenTables = maxOpenTables }
        if let batchReadDepth { self.batchReadDepth = batchReadDepth }
        if let tableTargetBytes { self.tableTargetBytes = tableTargetBytes }
        if let level0CompactionTrigger { self.level0CompactionTrigger = level0CompactionTrigger }
        if let level0SlowdownTrigger { self.level0SlowdownTrigger = level0SlowdownTrigger }
        if let level0StopTrigger { self.level0StopTrigger = level0StopTrigger }
        if let levelBaseBytes { self.levelBaseBytes = levelBaseBytes }
        if let levelMultiplier { self.levelMultiplier = levelMultiplier }
        if let pendingCompactionSlowdownBytes { self.pendingCompactionSlowdownBytes = pendingCompactionSlowdownBytes }
        if let pendingCompactionStopBytes { self.pendingCompactionStopBytes = pendingCompactionStopBytes }
        if let bufferedFlushIntervalMs { self.bufferedFlushIntervalMs = bufferedFlushIntervalMs }
        if let logPreallocateBytes { self.logPreallocateBytes = logPreallocateBytes }
        if let onLogCorruption { self.onLogCorruption = onLogCorruption }
        if let flushOnClose { self.flushOnClose = flushOnClose }
        if let storage { self.storage = storage }
        if let pageStore { self.pageStore = pageStore }
    }

    func validate() throws(KVError) {
        for (level, codec) in [(-1, compression)] + compressionByLevel.sorted(by: { $0.key < $1.key }) {
            if level != -1 && !(0..<Version.levelCount).contains(level) {
                throw KVError(.invalidArgument, "compressionByLevel names level \(level); levels are 0 to \(Version.levelCount - 1)")
            }
            if case .zstd(let zstdLevel) = codec, !(1...19).contains(zstdLevel) {
                throw KVError(.invalidArgument, "Zstd level \(zstdLevel)\(level == -1 ? "" : " for level \(level)") must be 1 to 19")
            }
        }
        let tiny = allowTinySizes ? 1 << 12 : 1 << 16
        if memtableBytes < tiny {
            throw KVError(.invalidArgument, "memtableBytes \(memtableBytes) is below the minimum of 65536")
        }
        if maxFrozenMemtables < 1 || maxFrozenMemtables > 16 {
            throw KVError(.invalidArgument, "maxFrozenMemtables \(maxFrozenMemtables) must be between 1 and 16")
        }
        if cacheBytes < 0 {
            throw KVError(.invalidArgument, "cacheBytes \(cacheBytes) must not be negative")
        }
        if batchReadDepth < 1 || batchReadDepth > 1024 {
            throw KVError(.invalidArgument, "batchReadDepth \(batchReadDepth) must be between 1 and 1024")
        }
        if readCompactionBytesPerLookup < 0 {
            throw KVError(.invalidArgument, "readCompactionBytesPerLookup \(readCompactionBytesPerLookup) must not be negative")
        }
        if !(1...128).contains(blockRestartInterval) {
            throw KVError(.invalidArgument, "blockRestartInterval \(blockRestartInterval) must be between 1 and 128")
        }
        if tableTargetBytes < (allowTinySizes ? 1 << 12 : 1 << 14) {
            throw KVError(.invalidArgument, "tableTargetBytes \(tableTargetBytes) is below the minimum of 16384")
        }
        if level0CompactionTrigger < 1 || level0SlowdownTrigger < level0CompactionTrigger || level0StopTrigger < level0SlowdownTrigger {
            throw KVError(
                .invalidArgument,
                "level-0 triggers must satisfy 1 <= compaction (\(level0CompactionTrigger)) <= slowdown (\(level0SlowdownTrigger)) <= stop (\(level0StopTrigger))")
        }
        if levelBaseBytes < Int64(tiny) || levelMultiplier < 2 {
            throw KVError(.invalidArgument, "levelBaseBytes must be at least 65536 and levelMultiplier at least 2")
        }
        if pendingCompactionStopBytes < pendingCompactionSlowdownBytes {
            throw KVError(.invalidArgument, "pendingCompactionStopBytes must be at least pendingCompactionSlowdownBytes")
        }
        if bufferedFlushIntervalMs < 1 || bufferedFlushIntervalMs > 60_000 {
            throw KVError(.invalidArgument, "bufferedFlushIntervalMs \(bufferedFlushIntervalMs) must be between 1 and 60000")
        }
        if logPreallocateBytes < 0 || logPreallocateBytes % Int64(LogFormat.pageBytes) != 0 {
            throw KVError(.invalidArgument, "logPreallocateBytes \(logPreallocateBytes) must be a non-negative multiple of \(LogFormat.pageBytes)")
        }
        if pageStore.pageSizeBytes != LogFormat.pageBytes {
            throw KVError(.invalidArgument, "pageStore.pageSizeBytes must be \(LogFormat.pageBytes) (the log page size)")
        }
        // The longest request the engine submits is a log's commit chain: its blocks, a
        // zero-fill and the fdatasync, linked, so all in the ring's submission queue at once.
        if pageStore.ringEntries - 1 < LogWriter.largestChainSQEs {
            throw KVError(
                .invalidArgument,
                "pageStore.ringEntries \(pageStore.ringEntries) cannot hold the log's longest commit chain (\(LogWriter.largestChainSQEs) linked SQEs: \(LogWriter.maxChainBlocks) log blocks, a zero-fill and the fdatasync); use at least 256")
        }
    }

    /// The storage a database, a salvage or a check runs on: `storage` when set (checked:
    /// the engine's page size, and an arena of at least `minimumArenaBytes`, without which
    /// a flush could wait forever for buffers; `minimumReadOnlyArenaBytes` when read-only),
    /// else a new page store with an arena of at least `minimumArenaBytes` (read-only:
    /// `readOnlyArenaBytes`), which the caller owns and shuts down.
    func openStorage(forWriting: Bool = false) throws(KVError) -> (storage: any Storage, owned: PageStore?) {
        let readOnly = readOnly && !forWriting
        if let storage {
            let allocator = storage.allocator
            guard allocator.pageSizeBytes == LogFormat.pageBytes else {
                throw KVError(.invalidArgument, "Options.storage has \(allocator.pageSizeBytes)-byte pages; the engine's formats use \(LogFormat.pageBytes)")
            }
            let minimum = readOnly ? Options.minimumReadOnlyArenaBytes : Options.minimumArenaBytes
            guard allocator.pageCount * allocator.pageSizeBytes >= minimum else {
                throw KVError(
                    .invalidArgument,
                    "Options.storage's arena holds \(allocator.pageCount * allocator.pageSizeBytes) bytes; the engine needs at least \(readOnly ? "Options.minimumReadOnlyArenaBytes" : "Options.minimumArenaBytes") (\(minimum))")
            }
            return (storage, nil)
        }
        var storeOptions = pageStore
        storeOptions.arenaBytes = readOnly
            ? max(readOnlyArenaBytes, Options.minimumReadOnlyArenaBytes) : max(storeOptions.arenaBytes, Options.minimumArenaBytes)
        let store = try io("open page store") { try PageStore(options: storeOptions) }
        return (store, store)
    }
}

/// A consistent, read-only view of the database at one moment.
///
/// Reads through a snapshot see exactly the writes acknowledged before it was taken.
///
/// Compaction keeps every version a live snapshot can see; release a snapshot (drop the
/// last reference) when done with it.
public final class Snapshot: Sendable {
    /// The last sequence number the snapshot includes.
    public let sequence: UInt64
    private let list: SnapshotList?
    private let released = ManagedAtomic(false)

    init(sequence: UInt64, list: SnapshotList? = nil) {
        self.sequence = sequence
        self.list = list
    }

    /// Lets compaction drop what only this snapshot needed (once; a transaction's
    /// snapshot goes when its attempt ends).
    func release() {
        if !released.exchange(true, ordering: .relaxed) { list?.release(sequence) }
    }

    deinit { release() }
}

/// How long a database keeps its logs after their writes are in tables, so that a change
/// feed can start from an older sequence number (RocksDB's `WAL_ttl_seconds` and
/// `WAL_size_limit_MB`). A log is kept while the kept logs, it and those newer than it, hold
/// at most `maxBytes` and it closed at most `maxAgeSeconds` ago (a log of an earlier session
/// counts from the open). Checked whenever a flush removes logs, and at open.
public struct LogRetention: Sendable, Equatable {
    /// Bytes the kept logs may hold in all.
    public var maxBytes: Int64
    /// Seconds a log is kept after it closed.
    public var maxAgeSeconds: Double

    /// Keeps logs within both bounds (each unbounded by default).
    public init(maxBytes: Int64 = .max, maxAgeSeconds: Double = .infinity) {
        self.maxBytes = maxBytes
        self.maxAgeSeconds = maxAgeSeconds
    }
}
