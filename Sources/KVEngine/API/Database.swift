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
    private let ownedStore: PageStore?
    /// Nil when opened on a simulated storage (no real directory to lock).
    private let lock: DirectoryLock
    /// What readers see: memtables and tables (replaced whole on every change).
    let view: Mutex<View>
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
    /// Signalled when the version, the frozen memtables, the background failure or the
    /// open state change: what a stalled writer and a wait for flushes block on.
    let changes = ChangeSignal()
    /// Where the async API runs what blocks (at most 8 threads at once).
    let blocking = BlockingPool(limit: 8)
    /// Why a writable open went on read-only: no room to start its log or manifest.
    private let fullAtOpen: KVError?
    let backgroundThreads: BackgroundThreads?
    private let flusher: FlushTimer?
    /// Round-robin positions of background compactions, per level (in memory only).
    let compactPointers = Mutex<[[UInt8]?]>(Array(repeating: nil, count: Version.levelCount))
    /// Test hook: holds background compactions (a test of write stalls).
    let compactionPaused = ManagedAtomic<Bool>(false)
    /// When writes stopped by a full disk last tried to resume, or when the stop was first
    /// met (uptime nanoseconds; 0: writes are not known to be stopped).
    let resumeAttempt = Mutex<UInt64>(0)
    private let closed = Mutex(false)
    let metrics = EngineMetrics()

    /// Opens (or creates, per `options`) the database in directory `path`.
    ///
    /// Recovery reads CURRENT and the manifest it names, checks that every live table is
    /// there (tables open when first read, at most ``Options/maxOpenTables`` at once), and
    /// replays the logs not yet in tables: a torn tail (a crash mid-write) is cut off and
    /// logged; damage before the tail is corruption and the open fails with `.corruption`
    /// naming the file and offset (or opens read-only, with `onLogCorruption: .openReadOnly`).
    public convenience init(path: String, options: Options = Options()) throws(KVError) {
        try options.validate()
        if let storage = options.storage {
            try self.init(path: path, options: options, storage: storage)
            return
        }
        var storeOptions = options.pageStore
        storeOptions.arenaBytes = max(storeOptions.arenaBytes, Options.minimumArenaBytes)
        let store = try io("open page store") { try PageStore(options: storeOptions) }
        do {
            try self.init(path: path, options: options, storage: store, ownedStore: store)
        } catch {
            store.shutdown()
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
        var identityVersion = Identity.formatVersion
        if exists {
            identityVersion = try Identity.verify(in: path, storage: storage)
        } else {
            try Identity.create(in: path, storage: storage)
            engineLogger.debug("created database at \(path)")
        }
        let cache = BlockCache(capacityBytes: options.cacheBytes)
        self.cache = cache
        let tables = TableCache(
            storage: storage, directory: path, blocks: cache,
            capacity: tableCapacity)
        let names = try io("list \(path)") { try storage.contentsOfDirectory(atPath: path) }
        let (versions, manifest) = try VersionSet.recover(
            directory: path, storage: storage, tables: tables, names: names, manifestRollBytes: options.manifestRollBytes,
            keepingWhatPrecedesDamage: options.onLogCorruption == .openReadOnly)
        self.versions = versions
        let recovered = Memtable()
        var recovery = try Recovery(
            directory: path, storage: storage, memtable: recovered, options: options,
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
                    path: path, storage: storage, options: options, metrics: metrics, versions: versions,
                    manifest: manifest, recovery: recovery, recovered: recovered, upgrade: identityVersion < Identity.formatVersion)
            } catch where error.isFull {
                engineLogger.warning("\(path): no room to start a log and a manifest (\(error.message)); open read-only")
                fullAtOpen = error
            }
        }
        self.fullAtOpen = fullAtOpen
        guard let (log, memtable, immutables) = started else {
            view = Mutex(View(log: nil, memtable: recovered, immutables: [], version: version, readOnlySequence: recovery.lastSequence))
            flusher = nil
            backgroundThreads = nil
            return
        }
        view = Mutex(View(log: log, memtable: memtable, immutables: immutables, version: version, readOnlySequence: 0))
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
        path: String, storage: any Storage, options: Options, metrics: EngineMetrics, versions: VersionSet,
        manifest: ManifestState, recovery: Recovery.Outcome, recovered: Memtable, upgrade: Bool
    ) throws(KVError) -> (log: LogWriter, memtable: Memtable, immutables: [FrozenMemtable]) {
        let logNumber = versions.newFileNumber()
        let memtable = Memtable()
        let log: LogWriter
        do {
            log = try LogWriter.create(
                directory: path, number: logNumber, storage: storage, memtable: memtable,
                lastSequence: recovery.lastSequence, options: options, metrics: metrics)
        } catch {
            // Recorded nowhere yet: what was made of it goes.
            try? storage.removeFile(atPath: path + "/" + FileNames.log(logNumber))
            throw error
        }
        var immutables: [FrozenMemtable] = []
        if recovered.count > 0 {
            immutables = [FrozenMemtable(memtable: recovered, nextLogNumber: logNumber, lastSequence: recovery.lastSequence)]
        }
        do {
            // An older database is marked with this format first: its new manifest uses
            // this format's fields, which an older build must refuse by the identity
            // rather than misread (this build reads an older manifest under a new identity).
            if upgrade { try Identity.create(in: path, storage: storage) }
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

    // MARK: reads

    /// The value stored under `key`, or nil.
    public func get(_ key: [UInt8], snapshot: Snapshot? = nil) throws(KVError) -> [UInt8]? {
        try lookup(key, snapshot: snapshot)
    }

    func lookup(_ key: [UInt8], snapshot: Snapshot?) throws(KVError) -> [UInt8]? {
        try checkOpen()
        metrics.gets.increment()
        let view = currentView
        let sequence = snapshot?.sequence ?? view.visibleSequence
        let found = key.withUnsafeBytes { key in
            Result { () throws(KVError) -> Memtable.Lookup in try view.get(key, snapshot: sequence) }
        }
        if case .value(let value) = try found.get() { return value }
        return nil
    }

    /// A lookup that only consults the memtables: nil when the key's fate lies in tables.
    func lookupInMemory(_ key: [UInt8], view: View, snapshot: Snapshot?) throws(KVError) -> (value: [UInt8]?, Void)? {
        try checkOpen()
        let sequence = snapshot?.sequence ?? view.visibleSequence
        return key.withUnsafeBytes { key -> (value: [UInt8]?, Void)? in
            switch view.getFromMemtables(key, snapshot: sequence) {
            case .value(let value): return (value, ())
            case .deleted: return (nil, ())
            case .missing: return view.version.tableCount == 0 ? (nil, ()) : nil
            }
        }
    }

    /// Takes a snapshot: reads through it see the database as it is now, and compaction
    /// keeps the versions it needs until it is released.
    public func snapshot() -> Snapshot {
        snapshots.take { currentView.visibleSequence }
    }

    /// An ordered walk over the keys in `options`' range, at `snapshot` (default: now).
    public func scan(_ options: ScanOptions = ScanOptions(), snapshot: Snapshot? = nil) -> Cursor {
        metrics.scans.increment()
        let view = currentView
        return Cursor(source: view.makeIterator(fillCache: options.fillCache), snapshot: snapshot?.sequence ?? view.visibleSequence, options: options)
    }

    /// Calls `body` with each key and value in `options`' range, in order, without copying
    /// them (the buffers are valid only during the call); return false to stop. Throws
    /// when a table cannot be read or is corrupt.
    public func forEach(
        _ options: ScanOptions = ScanOptions(), snapshot: Snapshot? = nil,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        let cursor = scan(options, snapshot: snapshot)
        try cursor.forEach(body)
        if let error = cursor.error { throw error }
    }

    /// The newest sequence number readers see.
    var visibleSequence: UInt64 { currentView.visibleSequence }

    // MARK: writes

    /// Stores `value` under `key`.
    public func put(_ key: [UInt8], _ value: [UInt8], durability: Durability? = nil) throws(KVError) {
        var batch = WriteBatch()
        batch.put(key, value)
        try write(batch, durability: durability)
    }

    /// Removes `key` (a no-op when it is absent).
    public func delete(_ key: [UInt8], durability: Durability? = nil) throws(KVError) {
        var batch = WriteBatch()
        batch.delete(key)
        try write(batch, durability: durability)
    }

    /// Applies every entry of `batch` atomically.
    ///
    /// When level 0 or the compaction backlog runs too far ahead, the write is first
    /// slowed (a millisecond) or held until background work catches up.
    public func write(_ batch: WriteBatch, durability: Durability? = nil) throws(KVError) {
        let durability = durability ?? options.defaultDurability
        let started = DispatchTime.now().uptimeNanoseconds
        do throws(KVError) {
            try validateForAsync(batch)
            do throws(KVError) {
                try commit(batch, durability: durability)
            } catch where error.isFull {
                // Writes stopped on a full disk: go on if there is room again.
                guard try resumeAfterFullDisk() else { throw error }
                try commit(batch, durability: durability)
            }
        } catch {
            metrics.writeErrors.increment()
            throw error
        }
        countWrite(batch, durability: durability, startedNanos: started)
    }

    /// Appends `batch` and waits until it is acknowledged.
    private func commit(_ batch: WriteBatch, durability: Durability) throws(KVError) {
        try makeRoomForWrite()
        while true {
            let log = try writableLog()
            let done = OneShot<Result<Void, KVError>>()
            // A sync writer may block anyway: it runs its commit chain on its own thread.
            let appended = log.append(batch, durability: durability, lead: durability == .sync) { done.fulfil($0) }
            if case .rotate = appended {
                try rotate(from: log)
                continue
            }
            try settle(appended, on: log, done)
            return
        }
    }

    /// Blocks until what `appended` says the log took is acknowledged, first running on
    /// this thread the chain it handed back.
    private func settle(_ appended: LogWriter.Appended, on log: LogWriter, _ done: OneShot<Result<Void, KVError>>) throws(KVError) {
        guard case .waiting(let chain) = appended else { return }
        if let chain { log.lead(chain, while: { !done.isFulfilled }) }
        storage.willWait()
        try done.wait().get()
    }

    /// Counts an acknowledged write in the metrics.
    func countWrite(_ batch: WriteBatch, durability: Durability, startedNanos: UInt64) {
        if durability == .sync {
            metrics.syncWrites.increment()
            metrics.commitDuration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - startedNanos))
        } else {
            metrics.bufferedWrites.increment()
        }
        metrics.writeEntries.increment(by: Int64(batch.count))
        counters.userBytes.wrappingIncrement(by: batch.encodedBytes, ordering: .relaxed)
    }

    /// Makes every write acknowledged so far durable (writes and syncs the log's pending
    /// pages), for callers that wrote `.buffered` and now need a durability point.
    public func sync() throws(KVError) {
        try checkOpen()
        guard let log = currentView.log else { return }
        try makeDurable(log)
    }

    /// Makes every write appended to `log` durable, running the chain on this thread.
    func makeDurable(_ log: LogWriter) throws(KVError) {
        let done = OneShot<Result<Void, KVError>>()
        try settle(log.sync(lead: true) { done.fulfil($0) }, on: log, done)
    }

    /// The log that takes writes now, or why there is none.
    func writableLog() throws(KVError) -> LogWriter {
        guard let log = currentView.log else {
            if let fullAtOpen {
                throw KVError(
                    .full, "database at \(path) was opened without room to write, so read-only (\(fullAtOpen.message)); reopen once there is room",
                    path: fullAtOpen.path)
            }
            throw KVError(
                .readOnly,
                options.readOnly
                    ? "database at \(path) is open read-only (Options.readOnly)"
                    : "database at \(path) was opened read-only after damage (Options.onLogCorruption = .openReadOnly)",
                path: path)
        }
        if let error = backgroundError.withLock({ $0 }) { throw error }
        return log
    }

    /// Checks the handle is open and the batch within limits.
    func validateForAsync(_ batch: WriteBatch) throws(KVError) {
        try checkOpen()
        if let problem = batch.oversize { throw KVError(.invalidArgument, "write rejected: \(problem)") }
        if batch.count == 0 { throw KVError(.invalidArgument, "write rejected: the batch is empty") }
    }

    // MARK: closing

    /// Makes every acknowledged write durable, closes the files and releases the lock.
    /// A flush or compaction in progress finishes first; memtables not yet flushed stay in
    /// their logs and are replayed at the next open. Later calls fail with `.closed`.
    /// Calling it again does nothing.
    public func close() throws(KVError) {
        let wasOpen = closed.withLock { closed -> Bool in
            defer { closed = true }
            return !closed
        }
        guard wasOpen else { return }
        changes.signal()  // writers waiting for room see the close
        flusher?.stop()
        backgroundThreads?.stop()
        var failure: KVError?
        // No rotation can start now (writers see `closed`); wait out one in progress.
        rotation.withLock { _ in }
        if let log = currentView.log {
            log.beginClose()
            do { try makeDurable(log) } catch { failure = error }
            do { try log.close() } catch { failure = failure ?? error }
            if options.flushOnClose && failure == nil && backgroundError.withLock({ $0 }) == nil {
                let idle = currentView.memtable.count == 0 && currentView.immutables.isEmpty
                do {
                    try flushAtClose(log)
                } catch where idle && error.isFull {
                    // Only an empty log to remove: nothing is lost by keeping it.
                } catch {
                    failure = error
                }
            }
        }
        versions.close()
        // Tables close when the last view, cursor or snapshot that holds them goes.
        view.withLock { $0 = View(log: nil, memtable: Memtable(), immutables: [], version: Version(), readOnlySequence: 0) }
        ownedStore?.shutdown()
        lock.release()
        if let failure { throw failure }
    }

    /// A clean close leaves no log: what the memtables hold goes into level-0 tables and
    /// the logs are removed, so the next open replays nothing, and every acknowledged write
    /// sits in checksummed table blocks (a log's last chain is the one place where damage
    /// that resets bytes to zero can pass for a write that never arrived). When this fails,
    /// the log stays and the next open replays it.
    private func flushAtClose(_ log: LogWriter) throws(KVError) {
        // The view's memtable, which is the log's but after an ingest or a resume that
        // stopped between retiring a log and starting the next (the log's is frozen then).
        let frozen = FrozenMemtable(memtable: currentView.memtable, nextLogNumber: versions.newFileNumber(),
            lastSequence: max(log.lastSequence, versions.lastSequence))
        view.withLock { $0 = $0.with(memtable: Memtable(), immutables: [frozen] + $0.immutables) }
        while try flushOldest() {}
    }

    func checkOpen() throws(KVError) {
        if closed.withLock({ $0 }) { throw KVError(.closed, "database at \(path) is closed", path: path) }
    }


    var ownedStoreStats: PageStoreStats? { ownedStore?.stats }
}

/// Writes and syncs buffered log pages every `intervalMs`.
final class FlushTimer: Sendable {
    private let stopped = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private let intervalMs: Int

    init(intervalMs: Int) {
        self.intervalMs = intervalMs
    }

    private let threadID = ManagedAtomic<UInt>(0)

    func start(_ database: Database) {
        let thread = Thread { [self, weak database] in
            threadID.store(UInt(pthread_self()), ordering: .releasing)
            while stopped.wait(timeout: .now() + .milliseconds(intervalMs)) == .timedOut {
                guard let log = database?.currentView.log else { break }
                log.flush()
            }
            finished.signal()
        }
        thread.name = "KVEngine.flush"
        thread.start()
    }

    /// Stops the timer; waits for its thread unless called on it (a drop of the last
    /// handle there closes the database).
    func stop() {
        stopped.signal()
        if threadID.load(ordering: .acquiring) == UInt(pthread_self()) { return }
        finished.wait()
    }
}
