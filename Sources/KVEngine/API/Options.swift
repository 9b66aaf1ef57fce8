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
    /// Bytes the memtable may hold. Until memtables are flushed to sorted tables, a write
    /// that would exceed this fails with `.full` (nothing is applied); reopening replays
    /// the logs into a fresh memtable of the same bound.
    public var memtableBytes = 64 << 20
    /// Bytes of the block cache (used once sorted tables exist).
    public var cacheBytes = 32 << 20
    /// Durability of writes that do not name one.
    public var defaultDurability = Durability.sync
    /// Longest time a `.buffered` write waits for its log page to be written and synced.
    public var bufferedFlushIntervalMs = 10
    /// Bytes reserved (fallocate) for a new log file, and by which it grows.
    public var logPreallocateBytes: Int64 = 64 << 20
    /// What to do when a log is damaged before its tail.
    public var onLogCorruption = CorruptionPolicy.refuse
    /// How the page store reaches the disk (io_uring, O_DIRECT, fixed buffers, arena).
    public var pageStore = PageStoreOptions()
    /// Full log pages that start a chain when only buffered writes wait (the crash tests
    /// lower it so buffered chains are in flight beside sync ones).
    var bufferedChainPages = LogWriter.blockPages

    /// What to do with a damaged log.
    public enum CorruptionPolicy: Sendable, Equatable {
        /// Refuse to open, naming the file and offset.
        case refuse
        /// Open read-only with everything before the damage.
        case openReadOnly
    }

    /// The defaults: create if missing, sync writes, 64 MiB memtable.
    public init() {}

    func validate() throws(KVError) {
        if memtableBytes < 1 << 16 {
            throw KVError(.invalidArgument, "memtableBytes \(memtableBytes) is below the minimum of 65536")
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
        if pageStore.arenaBytes < 4 << 20 {
            throw KVError(.invalidArgument, "pageStore.arenaBytes \(pageStore.arenaBytes) is below the engine's minimum of 4 MiB")
        }
    }
}

/// A consistent, read-only view of the database at one moment.
///
/// Reads through a snapshot see exactly the writes acknowledged before it was taken.
public final class Snapshot: Sendable {
    /// The last sequence number the snapshot includes.
    public let sequence: UInt64

    init(sequence: UInt64) { self.sequence = sequence }
}
