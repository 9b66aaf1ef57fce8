import Dispatch
import Foundation
import Logging
import PageStore
import Synchronization

let engineLogger = Logger(label: "KVEngine")

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
    private let lock: DirectoryLock?
    let memtable: Memtable
    /// Nil when opened read-only after log corruption.
    let log: LogWriter?
    private let flusher: FlushTimer?
    private let closed = Mutex(false)
    let metrics = EngineMetrics()
    /// Sequence number visible when opened read-only.
    private let readOnlySequence: UInt64

    /// Opens (or creates, per `options`) the database in directory `path`.
    ///
    /// Recovery replays the logs: a torn tail (a crash mid-write) is cut off and logged;
    /// damage before the tail is corruption and the open fails with `.corruption` naming
    /// the file and offset (or opens read-only, with `onLogCorruption: .openReadOnly`).
    public convenience init(path: String, options: Options = Options()) throws(KVError) {
        try options.validate()
        let store = try io("open page store") { try PageStore(options: options.pageStore) }
        do {
            try self.init(path: path, options: options, storage: store, ownedStore: store)
        } catch {
            store.shutdown()
            throw error
        }
    }

    /// Opens the database on another storage (the crash tests' simulated disk). `locking`
    /// takes the real `flock` on `path/LOCK`; a simulated storage has no real directory.
    init(
        path: String, options: Options, storage: any Storage, ownedStore: PageStore? = nil, locking: Bool = true
    ) throws(KVError) {
        try options.validate()
        self.path = path
        self.options = options
        self.storage = storage
        self.ownedStore = ownedStore
        let exists = storage.fileExists(atPath: path + "/" + Identity.fileName)
        if exists {
            if options.errorIfExists {
                throw KVError(.alreadyExists, "a database already exists at \(path)", path: path)
            }
        } else {
            try Database.prepareToCreate(path, options: options, storage: storage)
        }
        lock = locking ? try DirectoryLock(directory: path) : nil
        if exists {
            try Identity.verify(in: path, storage: storage)
        } else {
            try Identity.create(in: path, storage: storage)
            engineLogger.info("created database at \(path)")
        }
        let memtable = Memtable()
        self.memtable = memtable
        let recovery = try Recovery(directory: path, storage: storage, memtable: memtable, options: options).run()
        readOnlySequence = recovery.lastSequence
        engineLogger.info(
            "opened database at \(path): \(recovery.logsReplayed) logs replayed through sequence \(recovery.lastSequence)\(recovery.tornTails > 0 ? ", \(recovery.tornTails) torn tails cut off" : "")\(recovery.readOnly ? ", read-only" : "")")
        if recovery.readOnly {
            log = nil
            flusher = nil
            return
        }
        let log = try LogWriter.create(
            directory: path, number: recovery.nextLogNumber, storage: storage, memtable: memtable,
            lastSequence: recovery.lastSequence, options: options, metrics: metrics)
        self.log = log
        flusher = FlushTimer(log: log, intervalMs: options.bufferedFlushIntervalMs)
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
            let foreign = entries.filter { $0 != "LOCK" && $0 != Identity.fileName + ".tmp" }
            if !foreign.isEmpty {
                throw KVError(
                    .notADatabase,
                    "no database at \(path): the directory is not empty (\(foreign.prefix(3).joined(separator: ", "))\(foreign.count > 3 ? ", ..." : "")) and has no \(Identity.fileName) file",
                    path: path)
            }
        } else {
            try io("create directory \(path)") {
                try storage.createDirectory(atPath: path)
                let parent = (path as NSString).deletingLastPathComponent
                try storage.syncDirectory(atPath: parent.isEmpty ? "." : parent)
            }
        }
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

    // MARK: reads

    /// The value stored under `key`, or nil.
    public func get(_ key: [UInt8], snapshot: Snapshot? = nil) throws(KVError) -> [UInt8]? {
        try lookup(key, snapshot: snapshot)
    }

    func lookup(_ key: [UInt8], snapshot: Snapshot?) throws(KVError) -> [UInt8]? {
        try checkOpen()
        metrics.gets.increment()
        let sequence = snapshot?.sequence ?? visibleSequence
        let found = key.withUnsafeBytes { memtable.get($0, snapshot: sequence) }
        if case .value(let value) = found { return value }
        return nil
    }

    /// Takes a snapshot: reads through it see the database as it is now.
    public func snapshot() -> Snapshot {
        Snapshot(sequence: visibleSequence)
    }

    /// An ordered walk over the keys in `options`' range, at `snapshot` (default: now).
    public func scan(_ options: ScanOptions = ScanOptions(), snapshot: Snapshot? = nil) -> Cursor {
        metrics.scans.increment()
        return Cursor(source: memtable.makeIterator(), snapshot: snapshot?.sequence ?? visibleSequence, options: options)
    }

    /// Calls `body` with each key and value in `options`' range, in order, without copying
    /// them (the buffers are valid only during the call); return false to stop.
    public func forEach(
        _ options: ScanOptions = ScanOptions(), snapshot: Snapshot? = nil,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) rethrows {
        try scan(options, snapshot: snapshot).forEach(body)
    }

    /// The newest sequence number readers see.
    var visibleSequence: UInt64 {
        log?.visibleSequence.load(ordering: .acquiring) ?? readOnlySequence
    }

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
    public func write(_ batch: WriteBatch, durability: Durability? = nil) throws(KVError) {
        let log: LogWriter
        do {
            log = try writableLog(batch)
        } catch {
            metrics.writeErrors.increment()
            throw error
        }
        let durability = durability ?? options.defaultDurability
        let started = DispatchTime.now().uptimeNanoseconds
        let done = OneShot<Result<Void, KVError>>()
        // A sync writer may block anyway: it runs its commit chain on its own thread.
        let appended = log.append(batch, durability: durability, lead: durability == .sync) { done.fulfil($0) }
        if !appended.immediate {
            if let chain = appended.chain { log.lead(chain, while: { !done.isFulfilled }) }
            storage.willWait()
            do {
                try done.wait().get()
            } catch {
                metrics.writeErrors.increment()
                throw error
            }
        }
        countWrite(batch, durability: durability, startedNanos: started)
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
    }

    /// Makes every write acknowledged so far durable (writes and syncs the log's pending
    /// pages), for callers that wrote `.buffered` and now need a durability point.
    public func sync() throws(KVError) {
        guard let log = log else { return }
        try checkOpen()
        let done = OneShot<Result<Void, KVError>>()
        let appended = log.sync(lead: true) { done.fulfil($0) }
        if appended.immediate { return }
        if let chain = appended.chain { log.lead(chain, while: { !done.isFulfilled }) }
        storage.willWait()
        try done.wait().get()
    }

    private func writableLog(_ batch: WriteBatch) throws(KVError) -> LogWriter {
        guard let log else {
            throw KVError(.readOnly, "database at \(path) was opened read-only after log corruption", path: path)
        }
        try validateForAsync(batch)
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
    /// Later calls fail with `.closed`. Calling it again does nothing.
    public func close() throws(KVError) {
        let wasOpen = closed.withLock { closed -> Bool in
            defer { closed = true }
            return !closed
        }
        guard wasOpen else { return }
        flusher?.stop()
        var failure: KVError?
        if let log {
            log.beginClose()
            let done = OneShot<Result<Void, KVError>>()
            let appended = log.sync(lead: true) { done.fulfil($0) }
            if !appended.immediate {
                if let chain = appended.chain { log.lead(chain, while: { !done.isFulfilled }) }
                storage.willWait()
                if case .failure(let error) = done.wait() { failure = error }
            }
            do { try log.close() } catch { failure = failure ?? error }
        }
        ownedStore?.shutdown()
        lock?.release()
        if let failure { throw failure }
    }

    func checkOpen() throws(KVError) {
        if closed.withLock({ $0 }) { throw KVError(.closed, "database at \(path) is closed", path: path) }
    }

    // MARK: stats

    /// Counters of the engine and its page store.
    public var stats: DatabaseStats {
        DatabaseStats(
            memtableBytes: memtable.approximateBytes, memtableEntries: memtable.count,
            lastSequence: log?.lastSequence ?? readOnlySequence, visibleSequence: visibleSequence,
            logChains: log?.chainsCompleted ?? 0, pageStore: ownedStore?.stats)
    }
}

/// A snapshot of engine counters.
public struct DatabaseStats: Sendable {
    /// Approximate bytes in the memtable.
    public var memtableBytes: Int
    /// Entries (versions and tombstones) in the memtable.
    public var memtableEntries: Int
    /// Highest sequence number written.
    public var lastSequence: UInt64
    /// Highest sequence number readers see.
    public var visibleSequence: UInt64
    /// Log commit chains completed since open.
    public var logChains: Int
    /// The page store's counters, when the database owns its page store.
    public var pageStore: PageStoreStats?
}

/// Writes and syncs buffered log pages every `intervalMs`.
final class FlushTimer: Sendable {
    private let stopped = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    init(log: LogWriter, intervalMs: Int) {
        let thread = Thread { [stopped, finished] in
            while stopped.wait(timeout: .now() + .milliseconds(intervalMs)) == .timedOut {
                log.flush()
            }
            finished.signal()
        }
        thread.name = "KVEngine.flush"
        thread.start()
    }

    func stop() {
        stopped.signal()
        finished.wait()
    }
}
