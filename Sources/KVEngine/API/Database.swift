import Dispatch
import Atomics
import Foundation
import Logging
import PageStore
import Synchronization

/// The engine's logger, made at each use (open, recovery, failures: never a hot path), so
/// that a logging backend bootstrapped after the first database opened is still used.
var engineLogger: Logger {
    var logger = Logger(label: "KVEngine")
    if let level = engineLogLevel.withLock({ $0 }) { logger.logLevel = level }
    return logger
}

/// The level the engine logs at, over the logging backend's (nil: the backend's). The
/// tests raise it, so that the damage they make on purpose does not fill their output.
package let engineLogLevel = Mutex<Logger.Level?>(nil)

/// An open database: a directory of logs (and, later, sorted tables) with ordered byte
/// keys and values.
///
/// ```swift
/// let db = try Database(path: "/var/lib/app/db")
/// try db.put("greeting", "hello")                         // durable when it returns
/// let value = try db.get("greeting")                      // "hello"
/// var batch = WriteBatch()
/// batch.put("a", "1"); batch.delete("greeting")
/// try db.write(batch)                                      // all or nothing
/// for (key, value) in db.scan(ScanOptions(prefix: Array("a".utf8))) { ... }
/// try db.close()
/// ```
///
/// Thread safety: a `Database` is `Sendable`; every method may be called from any thread
/// or task at once. Writes from many threads are group-committed: they share log chains
/// (one write -> fdatasync chain per group). The `async` variants suspend instead of
/// blocking, so they are safe on Swift's cooperative pool; the synchronous ones block the
/// calling thread while a sync write waits for the disk.
///
/// Only one handle may have a directory open at a time; a second open (from this or
/// another process) fails with `.locked`.
public final class Database: Sendable {
    /// The directory the database lives in.
    public let path: String
    /// The options it was opened with.
    public let options: Options
    let storage: any Storage
    let ownedStore: PageStore?
    /// Nil when opened on a simulated storage (no real directory to lock).
    let lock: DirectoryLock
    /// What readers see: memtables and tables (replaced whole on every change).
    let view: PlainLock<View>
    let versions: VersionSet
    let cache: BlockCache
    let snapshots = SnapshotList()
    /// Serializes memtable rotations.
    let rotation = Mutex<Void>(())
    /// Serializes compactions (background and `compactRange`).
    let compacting = Mutex<Void>(())
    let counters = EngineCounters()
    /// The first error of background work; writes fail with it from then on.
    let backgroundError = Mutex<KVError?>(nil)
    /// Whether `backgroundError` is set: what every write checks without the lock (set
    /// after it, cleared before it, as `fail` and a resume change it).
    let hasBackgroundError = ManagedAtomic<Bool>(false)
    /// Signalled when the version, the frozen memtables, the background failure or the
    /// open state change: what a stalled writer and a wait for flushes block on.
    let changes = ChangeSignal()
    /// Where the async API runs what blocks: writes (rotations, stalls, resumes) and reads
    /// (table lookups) apart, so that writers held by a stall never hold up a read. At
    /// most 8 threads each.
    let blocking = BlockingPool(name: "KVEngine.blocking-writes", limit: 8)
    let blockingReads = BlockingPool(name: "KVEngine.blocking-reads", limit: 8)
    /// Why a writable open went on read-only: no room to start its log or manifest.
    let fullAtOpen: KVError?
    let backgroundThreads: BackgroundThreads?
    let flusher: FlushTimer?
    /// Round-robin positions of background compactions, per level (in memory only).
    let compactPointers = Mutex<[[UInt8]?]>(Array(repeating: nil, count: Version.levelCount))
    /// Test hook: holds background compactions (a test of write stalls).
    let compactionPaused = ManagedAtomic<Bool>(false)
    /// Test hook: runs in a transaction's commit between its check over the whole view and
    /// its check under the log's lock (a write or a rotation made there must be seen).
    let betweenConflictChecks = Mutex<(@Sendable () -> Void)?>(nil)
    /// When writes stopped by a full disk last tried to resume, or when the stop was first
    /// met (uptime nanoseconds; 0: writes are not known to be stopped).
    let resumeAttempt = Mutex<UInt64>(0)
    /// Set once by `close()` (every call checks it: an atomic, no lock).
    let closed = ManagedAtomic<Bool>(false)
    /// Logs that checkpoints and backups in progress are copying: each pins the logs from
    /// its key up (with a count of the copies), so that no flush removes them meanwhile.
    let logPins = Mutex<[UInt64: Int]>([:])
    /// What change feeds that follow new commits wait on: signalled as log chains
    /// complete and as logs rotate (`changes(since:)`).
    let feedSignal: FeedSignal
    /// When each log this handle retired was closed (uptime nanoseconds): the age
    /// `Options.logRetention` counts (a log of an earlier session counts from the open).
    let logsClosedAt = Mutex<[UInt64: UInt64]>([:])
    let openedAt = DispatchTime.now().uptimeNanoseconds

    /// Opens (or creates, per `options`) the database in directory `path`.
    ///
    /// Recovery reads CURRENT and the manifest it names, checks that every live table is
    /// there (tables open when first read, at most ``Options/maxOpenTables`` at once), and
    /// replays the logs not yet in tables: a torn tail (a crash mid-write) is cut off and
    /// logged; damage before the tail is corruption and the open fails with `.corruption`
    /// naming the file and offset (or opens read-only, with `onLogCorruption: .openReadOnly`).
    public convenience init(path: String, options: Options = Options()) throws(KVError) {
        try options.validate()
        let (storage, owned) = try options.openStorage()
        do {
            try self.init(path: path, options: options, storage: storage, ownedStore: owned)
        } catch {
            owned?.shutdown()
            throw error
        }
    }

    /// Opens the database on `storage` (`Options.storage`, the crash tests' simulated disk,
    /// or a storage wrapping `ownedStore`, which the database shuts down at close). The
    /// directory lock goes through the storage.
    package init(
        path: String, options: Options, storage: any Storage, ownedStore: PageStore? = nil
    ) throws(KVError) {
        try options.validate()
        let tableCapacity = try options.tableCacheCapacity(openFileLimit: Options.openFileLimit)
        self.path = path
        self.options = options
        self.storage = storage
        self.ownedStore = ownedStore
        let feed = FeedSignal()
        self.feedSignal = feed
        let exists = storage.fileExists(atPath: path + "/" + FileNames.identity)
        if exists {
            if options.errorIfExists {
                throw KVError(.alreadyExists, "a database already exists at \(path)", path: path)
            }
        } else if options.readOnly {
            throw KVError(.notADatabase, "no database at \(path) (a read-only open creates nothing)", path: path)
        } else {
            try Database.prepareToCreate(path, options: options, storage: storage)
        }
        lock = try DirectoryLock(directory: path, shared: options.readOnly, storage: storage)
        var identity = Identity.Info(version: Identity.formatVersion)
        if exists {
            identity = try Identity.read(in: path, storage: storage)
        } else {
            identity.id = Identity.newID()
            try Identity.create(in: path, storage: storage, id: identity.id!)
            engineLogger.debug("created database at \(path)")
        }
        let cache = BlockCache(capacityBytes: options.cacheBytes)
        self.cache = cache
        let tables = TableCache(
            storage: storage, directory: path, blocks: cache, capacity: tableCapacity,
            readCompaction: (options.readCompactionBytesPerLookup, options.readCompactionMinimumLookups))
        let names = try io("list \(path)") { try storage.contentsOfDirectory(atPath: path) }
        let (versions, manifest) = try VersionSet.recover(
            directory: path, storage: storage, tables: tables, names: names, manifestRollBytes: options.manifestRollBytes,
            keepingWhatPrecedesDamage: options.onLogCorruption == .openReadOnly)
        self.versions = versions
        var recovery = try Recovery(
            directory: path, storage: storage, options: options,
            minimumLog: manifest.logNumber, tableSequence: manifest.lastSequence,
            liveLogs: manifest.tracksLogs ? manifest.liveLogs : nil, readOnly: manifest.damage != nil || options.readOnly
        ).run()
        if let damage = manifest.damage {
            engineLogger.error("\(damage.message); opening read-only with the version before it, through sequence \(recovery.lastSequence)")
            recovery.readOnly = true
        }
        let version = versions.current
        engineLogger.debug(
            "opened database at \(path): \(version.tableCount) tables, \(recovery.logsReplayed) logs replayed through sequence \(recovery.lastSequence)\(recovery.tornTails > 0 ? ", \(recovery.tornTails) torn tails cut off" : "")\(recovery.readOnly ? ", read-only" : "")")
        // A fresh log and memtable take the writes; what the logs held is flushed first.
        // Without room for the log or the manifest the open goes on read-only: reading
        // needs no free space.
        var started: (log: LogWriter, memtable: Memtable, immutables: [FrozenMemtable])? = nil
        var fullAtOpen: KVError? = nil
        if !recovery.readOnly {
            do {
                started = try Database.startWriting(
                    path: path, storage: storage, options: options, counters: counters, versions: versions,
                    manifest: manifest, recovery: recovery, identity: identity, feed: feed)
            } catch where error.isFull {
                engineLogger.warning("\(path): no room to start a log and a manifest (\(error.message)); open read-only")
                fullAtOpen = error
            }
        }
        self.fullAtOpen = fullAtOpen
        guard let (log, memtable, immutables) = started else {
            // Read-only: what the logs held stays in memtables (none is flushed).
            view = PlainLock(View(
                log: nil, memtable: Memtable(), immutables: recovery.frozen(nextLog: manifest.logNumber), version: version,
                readOnlySequence: recovery.lastSequence))
            flusher = nil
            backgroundThreads = nil
            return
        }
        view = PlainLock(View(log: log, memtable: memtable, immutables: immutables, version: version, readOnlySequence: 0))
        flusher = FlushTimer(intervalMs: options.bufferedFlushIntervalMs)
        backgroundThreads = options.inlineBackgroundWork ? nil : BackgroundThreads()
        // What the logs held goes into a level-0 table before the open returns, and the
        // logs with it: a short session (one put, then close) must not leave a log behind
        // for every open. A failure here stops writes as a background flush's would; the
        // data stays in the logs.
        // Files no state needs go first, before any edit of this open: after a failed edit
        // nothing it might name may be removed.
        removeObsoleteFiles()
        if !immutables.isEmpty { flushWhileDue(stopping: { false }) }
        flusher?.start(self)
        backgroundThreads?.start(self)
        if options.inlineBackgroundWork { runInlineWork() }
    }

    /// A writable open's new log and manifest (recording the new log, and the replayed
    /// logs until what they held is flushed). On failure nothing of it is left that a
    /// manifest does not record.
    private static func startWriting(
        path: String, storage: any Storage, options: Options, counters: EngineCounters, versions: VersionSet,
        manifest: ManifestState, recovery: Recovery.Outcome, identity: Identity.Info, feed: FeedSignal
    ) throws(KVError) -> (log: LogWriter, memtable: Memtable, immutables: [FrozenMemtable]) {
        let logNumber = versions.newFileNumber()
        let memtable = Memtable(filterBytes: MemtableFilter.bytes(forMemtable: options.memtableBytes))
        let log: LogWriter
        do {
            log = try LogWriter.create(
                directory: path, number: logNumber, storage: storage, memtable: memtable,
                lastSequence: recovery.lastSequence, options: options, counters: counters, feed: feed)
        } catch {
            // Recorded nowhere yet: what was made of it goes.
            try? storage.removeFile(atPath: path + "/" + FileNames.log(logNumber))
            throw error
        }
        let immutables = recovery.frozen(nextLog: logNumber)
        do {
            // An older database is marked with this format first: its new manifest uses
            // this format's fields, which an older build must refuse by the identity
            // rather than misread (this build reads an older manifest under a new identity).
            // One without an id gets one. A backup opened for writing becomes a database
            // of its own (a new id), which later backups of the original then refuse.
            if identity.isBackup {
                engineLogger.warning("\(path) is a backup, opened for writing: it is a database of its own from now on, and later backups of its source refuse it (open it read-only to look inside)")
            }
            if identity.version < Identity.formatVersion || identity.id == nil || identity.isBackup {
                try Identity.create(in: path, storage: storage, id: identity.isBackup ? Identity.newID() : identity.id ?? Identity.newID())
            }
            // Logs that held nothing are obsolete at once. The new log is recorded before
            // any write in it is acknowledged; so are the replayed logs, until the flush of
            // what they held.
            try versions.startManifest(
                logNumber: immutables.isEmpty ? logNumber : manifest.logNumber,
                lastSequence: immutables.isEmpty ? recovery.lastSequence : manifest.lastSequence,
                liveLogs: Set(immutables.isEmpty ? [] : recovery.logs).union([logNumber]))
        } catch {
            // The log stays: if the failure came after CURRENT was switched, the new
            // manifest records it. (Holding only its header, it costs the next open nothing.)
            log.beginClose()
            try? log.close()
            throw error
        }
        return (log, memtable, immutables)
    }

    /// Checks that `path` may become a new database: missing or an empty directory.
    private static func prepareToCreate(_ path: String, options: Options, storage: any Storage) throws(KVError) {
        let present = storage.fileExists(atPath: path)
        guard options.createIfMissing else {
            throw KVError(.notADatabase, "no database at \(path)", path: path)
        }
        if present {
            let entries: [String]
            do {
                entries = try storage.contentsOfDirectory(atPath: path)
            } catch {
                throw KVError(.notADatabase, "no database at \(path): it is not a directory", path: path)
            }
            let foreign = entries.filter { $0 != FileNames.lock && $0 != FileNames.temporary(FileNames.identity) }
            if !foreign.isEmpty {
                throw KVError(
                    .notADatabase,
                    "no database at \(path): the directory is not empty (\(foreign.prefix(3).joined(separator: ", "))\(foreign.count > 3 ? ", ..." : "")) and has no \(FileNames.identity) file",
                    path: path)
            }
        } else {
            try io("create directory \(path)") {
                try storage.createDirectory(atPath: path)
                try storage.syncDirectory(atPath: Database.parentDirectory(of: path))
            }
        }
    }

    /// The directory holding `path` ("." for a bare name). By hand: Foundation's
    /// `deletingLastPathComponent` traps on some short relative paths.
    static func parentDirectory(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        if slash == trimmed.startIndex { return "/" }
        return String(trimmed[..<slash])
    }

    deinit {
        // Dropped without close: make what was acknowledged as buffered durable and let go
        // of the lock, as close() would. Errors have nowhere to go but the log.
        do {
            try close()
        } catch {
            engineLogger.error("closing \(path) on release: \(error)")
        }
    }

    /// The sources readers see now.
    var currentView: View { view.withLock { $0 } }

    var ownedStoreStats: PageStoreStats? { ownedStore?.stats }
}
