import Foundation
import PageStore
import Synchronization
import TestSupport

@testable import KVEngine

/// Why a metamorphic run failed: the operation (index into the run's list) and what was
/// wrong there.
struct MetaFailure: CustomStringConvertible {
    let index: Int
    let message: String
    var description: String { "operation \(index + 1): \(message)" }
}

/// Carries out a list of operations on a database on a simulated disk (or, when the run
/// starts under an option set with `inMemory`, on a ``MemoryStorage``), under one option
/// set, checking every answer against `MetaModel` and recording each operation's output
/// (what the database said) for the comparison between option sets.
///
/// Deterministic: the same operations, option set and seed give the same outputs (unless
/// an option set used runs background threads: `isDeterministic`).
///
/// Beside the answers the model checks, the outputs carry what the model takes from the
/// engine instead of predicting it (the sequence numbers of commits and snapshots, the
/// last sequence after a reopen): those must agree between option sets too.
final class MetaRunner {
    static let directory = "/sim"
    static let path = "/sim/db"

    let operations: [MetaOp]
    let seed: UInt64
    private(set) var optionSet: MetaOptionSet
    /// One line per operation carried out, then the final check's.
    private(set) var outputs: [String] = []
    private(set) var failure: MetaFailure?
    /// Whether every option set the run used replays exactly.
    private(set) var isDeterministic: Bool

    private var disk: SimulatedDisk?
    /// The run's storage when it is in memory (`MetaOptionSet.inMemory` of the set it
    /// starts under; a reopen under another set keeps it).
    private var memory: MemoryStorage?
    private var db: Database?
    private var model = MetaModel()
    private var snapshots: [Int: Snapshot] = [:]
    private var cursors: [Int: Cursor] = [:]
    private var random: SplitMix
    private var index = 0
    /// Checkpoints and the backup made so far, with the entries each must hold.
    private var copies: [String: [(key: [UInt8], value: [UInt8])]] = [:]
    static let backupPath = "/sim/backup"
    /// The follower the `follow` operations keep: its directory, and its handle while open.
    private var follower: (path: String, db: Database?)?
    private var followers = 0

    init(operations: [MetaOp], optionSet: MetaOptionSet, seed: UInt64) {
        self.operations = operations
        self.optionSet = optionSet
        self.seed = seed
        isDeterministic = optionSet.isDeterministic
        random = SplitMix(seed: seed ^ 0x6D65_7461)
        CrashRun.quietLogs
    }

    /// Runs every operation (stopping at the first failure), then checks the whole state.
    func run() {
        defer { tearDown() }
        do {
            // The same draws either way, so what follows draws the same too.
            let (diskSeed, plan) = (random.next(), drawPlan())
            if optionSet.inMemory {
                let memory = try MemoryStorage()
                try memory.createDirectory(atPath: MetaRunner.directory)
                self.memory = memory
            } else {
                disk = try SimulatedDisk(seed: diskSeed, plan: plan, directories: [MetaRunner.directory])
            }
            db = try open()
        } catch {
            failure = MetaFailure(index: 0, message: "cannot open the database: \(error)")
            return
        }
        for (position, operation) in operations.enumerated() {
            index = position
            do {
                outputs.append(try perform(operation))
            } catch let error as MetaMismatch {
                failure = MetaFailure(index: position, message: "\(operation): \(error.message)")
                return
            } catch {
                failure = MetaFailure(index: position, message: "\(operation): unexpected error: \(error)")
                return
            }
        }
        index = operations.count
        do {
            outputs.append(try finalCheck())
        } catch let error as MetaMismatch {
            failure = MetaFailure(index: operations.count, message: "final check: \(error.message)")
        } catch {
            failure = MetaFailure(index: operations.count, message: "final check: unexpected error: \(error)")
        }
    }

    private func tearDown() {
        try? follower?.db?.close()
        follower = nil
        cursors.removeAll()
        snapshots.removeAll()
        try? db?.close()
        db = nil
        if let violation = disk?.violations.first, failure == nil {
            failure = MetaFailure(index: index, message: "O_DIRECT alignment violated: \(violation)")
        }
    }

    /// How a power cut treats the writes not yet synced: dropped, kept or torn (whole
    /// sectors), each with some probability. No I/O errors: every operation
    /// must succeed.
    private func drawPlan() -> SimulatedDisk.FaultPlan {
        var plan = SimulatedDisk.FaultPlan()
        plan.tornMode = random.below(3) == 0 ? .dropOnly : .torn
        plan.persistProbability = [0.0, 0.5, 1.0][random.below(3)]
        plan.pessimisticSizes = random.chance(0.3)
        return plan
    }

    private func open(_ path: String = MetaRunner.path, readOnly: Bool = false) throws -> Database {
        var options = optionSet.options
        options.readOnly = readOnly
        guard let memory else { return try Database(path: path, options: options, storage: try simulatedDisk) }
        // In memory through the public seam, as a user would.
        options.storage = memory
        return try Database(path: path, options: options)
    }

    private var database: Database {
        get throws {
            guard let db else { throw MetaMismatch("no database is open") }
            return db
        }
    }

    // MARK: operations

    private func perform(_ operation: MetaOp) throws -> String {
        switch operation {
        case .put(let key, let value, let sync):
            return try commit([.put(key, value)], sync: sync)
        case .delete(let key, let sync):
            return try commit([.delete(key)], sync: sync)
        case .deleteRange(let start, let end, let sync):
            return try commit([.deleteRange(start, end)], sync: sync)
        case .batch(let entries, let sync):
            return try commit(entries, sync: sync)
        case .get(let key, let snapshot):
            guard let handle = try snapshotHandle(snapshot) else { return "skip" }
            let db = try database
            let at = handle.snapshot
            let got = optionSet.asyncAPI ? try awaitAsync { try await db.get(key, snapshot: at) } : try db.get(key, snapshot: at)
            try expect(got, model.value(key, snapshot: snapshot), "get \(MetaText.key(key))")
            // The borrowing read answers the same, from wherever the value lies.
            let borrowed = try db.withValue(forKey: key, snapshot: at) { $0.map(Array.init) }
            try expect(borrowed, model.value(key, snapshot: snapshot), "withValue \(MetaText.key(key))")
            return MetaText.value(got)
        case .getMany(let keys, let snapshot):
            guard let handle = try snapshotHandle(snapshot) else { return "skip" }
            let db = try database
            let at = handle.snapshot
            let got = optionSet.asyncAPI
                ? try awaitAsync { try await db.get(keys: keys, snapshot: at) } : try db.get(keys: keys, snapshot: at)
            guard got.count == keys.count else { throw MetaMismatch("\(got.count) answers for \(keys.count) keys") }
            for (key, value) in zip(keys, got) { try expect(value, model.value(key, snapshot: snapshot), "getmany \(MetaText.key(key))") }
            return got.map(MetaText.value).joined(separator: ",")
        case .takeSnapshot(let id):
            let snapshot = try database.snapshot()
            snapshots[id] = snapshot
            model.takeSnapshot(id)
            return "ok seq=\(snapshot.sequence)"
        case .releaseSnapshot(let id):
            guard snapshots.removeValue(forKey: id) != nil else { return "skip" }
            model.releaseSnapshot(id)
            return "ok"
        case .openCursor(let id, let scan, let snapshot):
            guard let handle = try snapshotHandle(snapshot) else { return "skip" }
            cursors[id] = try database.scan(scanOptions(scan), snapshot: handle.snapshot)
            model.openCursor(id, scan: scan, snapshot: snapshot)
            return "ok"
        case .next(let id, let count):
            guard let cursor = cursors[id] else { return "skip" }
            var seen: [String] = []
            for step in 0..<count {
                let got = (try? cursor.next()) ?? nil
                if let error = cursor.error { throw MetaMismatch("cursor c\(id) failed: \(error)") }
                let expected = model.nextEntry(cursor: id)
                try expectEntry(got, expected, "next c\(id) (step \(step + 1))")
                guard let got else {
                    seen.append("end")
                    break
                }
                seen.append("\(MetaText.key(got.key))=\(MetaText.value(got.value))")
            }
            return seen.joined(separator: " ")
        case .closeCursor(let id):
            guard cursors.removeValue(forKey: id) != nil else { return "skip" }
            model.closeCursor(id)
            return "ok"
        case .scan(let scan, let snapshot):
            guard let handle = try snapshotHandle(snapshot) else { return "skip" }
            var got: [(key: [UInt8], value: [UInt8])] = []
            try database.forEach(scanOptions(scan), snapshot: handle.snapshot) { key, value in
                got.append((Array(key), Array(value)))
                return true
            }
            let expected = model.scan(scan, snapshot: snapshot)
            try expectEntries(got, expected, "scan")
            return "\(got.count) entries, digest \(MetaText.digest(got))"
        case .count(let snapshot):
            guard let handle = try snapshotHandle(snapshot) else { return "skip" }
            let expected = model.scan(MetaScan(), snapshot: snapshot).count
            let fromProperties = try database.countFromProperties(snapshot: handle.snapshot)
            let counted = try database.count(snapshot: handle.snapshot)
            guard counted == expected else { throw MetaMismatch("count \(counted), expected \(expected)") }
            if let fromProperties, fromProperties != expected {
                throw MetaMismatch("countFromProperties \(fromProperties), expected \(expected)")
            }
            return "\(counted) keys"
        case .flush:
            try flush(try database)
            model.markDurable()
            return "ok"
        case .compact(let start, let end):
            try database.compactRange(start: start, end: end)
            model.markDurable()
            return "ok"
        case .sync:
            let db = try database
            if optionSet.asyncAPI { try awaitAsync { try await db.sync() } } else { try db.sync() }
            model.markDurable()
            return "ok"
        case .reopen(let name):
            if let name {
                guard let next = MetaOptionSet.named(name) else { throw MetaMismatch("no option set named \(name)") }
                optionSet = next
                isDeterministic = isDeterministic && next.isDeterministic
            }
            try closeDatabase()
            let db = try open()
            self.db = db
            let recovered = db.currentView.log?.lastSequence ?? db.currentView.visibleSequence
            return "reopen: through \(recovered); " + (try checkWholeState("reopen"))
        case .reopenReadOnly:
            try closeDatabase()
            let before = try files()
            var options = optionSet.options
            options.readOnly = true
            let reader = try Database(path: MetaRunner.path, options: options, storage: try storage)
            db = reader
            let state = try checkWholeState("read-only open")
            var refused: KVError.Code? = nil
            do { try reader.put([0x61], [0x62]) } catch { refused = error.code }
            guard refused == .readOnly else {
                throw MetaMismatch("a read-only open answered a write with \(refused.map { "\($0)" } ?? "success")")
            }
            try reader.close()
            db = nil
            let after = try files()
            guard before == after else { throw MetaMismatch("a read-only open changed the directory: \(before) -> \(after)") }
            db = try open()
            return "read-only: " + state
        case .salvage:
            try closeDatabase()
            let report = try Database.salvage(path: MetaRunner.path, options: optionSet.options, storage: try storage)
            guard report.dropped.isEmpty, report.setAside.isEmpty, report.keys == model.sortedEntries.count else {
                throw MetaMismatch("salvage of an undamaged database: \(report)")
            }
            db = try open()
            return "salvage: \(report.keys) keys; " + (try checkWholeState("salvage"))
        case .ingest(let entries):
            let pairs = entries.compactMap { entry -> (key: [UInt8], value: [UInt8])? in
                if case .put(let key, let value) = entry { return (key, value.bytes) }
                return nil
            }
            // Keys out of order, or an empty key (the engine takes none), refuse the whole ingest.
            let valid = zip(pairs, pairs.dropFirst()).allSatisfy { $0.key.lexicographicallyPrecedes($1.key) }
                && !pairs.contains { $0.key.isEmpty }
            do {
                let report = try database.ingest(sorted: pairs)
                guard valid else { throw MetaMismatch("an ingest with keys out of order or empty was accepted") }
                guard report.entries == pairs.count else { throw MetaMismatch("ingested \(report.entries) of \(pairs.count) entries") }
                model.commit(entries, sync: true, sequence: report.sequence)
                return "ok seq=\(report.sequence)"
            } catch let error as KVError where !valid && error.code == .invalidArgument {
                return "refused"
            }
        case .noRoom(let key, let value, let sync):
            // Memory does not fill: the put goes in as any other.
            guard memory == nil else { return try commit([.put(key, value)], sync: sync) }
            let disk = try simulatedDisk
            disk.failNext("write", pathContaining: "", errno: ENOSPC)
            var output: String
            do {
                output = try commit([.put(key, value)], sync: sync)
            } catch let error as KVError where error.code == .full {
                // The failed put left no trace.
                try expect(try database.get(key), model.value(key, snapshot: nil), "get \(MetaText.key(key)) after the failed put")
                guard try database.resumeWrites() else { throw MetaMismatch("the put met a full disk, and writes would not resume: \(error)") }
                output = try commit([.put(key, value)], sync: sync)
            }
            // The refused write may have been a flush's or a buffered chain's, after the put
            // was acknowledged: the writes it stopped go on too, once the background work
            // under way when the fault fired has finished and recorded its failure.
            disk.disarmFaults()
            let db = try database
            try? db.waitForFlushes()
            db.compacting.withLock { _ in }
            try db.resumeWrites()
            return output
        case .transaction(let transaction):
            return try run(transaction)
        case .checkpoint, .backup:
            let db = try database
            let backup = operation == .backup
            let target = backup ? MetaRunner.backupPath : MetaRunner.directory + "/checkpoint\(index + 1)"
            let report: CheckpointReport
            if optionSet.asyncAPI {
                report = try awaitAsync { backup ? try await db.backup(to: target) : try await db.checkpoint(to: target) }
            } else {
                report = backup ? try db.backup(to: target) : try db.checkpoint(to: target)
            }
            // The memtable's writes went into a closed log first: all are durable now.
            model.markDurable()
            let expected = model.sortedEntries
            copies[target] = expected
            // A checkpoint opens for writing (its own database); a backup stays one (read-only).
            let copy = try open(target, readOnly: backup)
            defer { try? copy.close() }
            guard copy.currentView.visibleSequence == report.sequence else {
                throw MetaMismatch("\(target) opens through sequence \(copy.currentView.visibleSequence), the copy said \(report.sequence)")
            }
            let state = try checkWholeState("\(operation) \(target)", of: copy, expected: expected)
            try copy.close()
            return "\(operation): through \(report.sequence); " + state
        case .follow:
            let db = try database
            if optionSet.asyncAPI { try awaitAsync { try await db.sync() } } else { try db.sync() }
            model.markDurable()
            let follower = try catchUpFollower(db)
            let leader = db.currentView.visibleSequence
            let at = try follower.snapshot().sequence
            guard at == leader else { throw MetaMismatch("the follower is through \(at), the leader through \(leader)") }
            return "follow: through \(leader); " + (try checkWholeState("follower", of: follower, expected: model.sortedEntries))
        case .crash:
            // The follower is on the disk that goes: it reopens on the new one when next used.
            try? follower?.db?.close()
            follower?.db = nil
            dropHandles()
            if memory != nil {
                // Memory loses nothing at a crash: what a clean close keeps, which the
                // model must accept as one of a crash's outcomes.
                try closeDatabase()
                let db = try open()
                self.db = db
                let recovered = db.currentView.log?.lastSequence ?? db.currentView.visibleSequence
                if let problem = model.recover(sequence: recovered) { throw MetaMismatch("after the crash: \(problem)") }
                return "crash: recovered through \(recovered); " + (try checkWholeState("crash"))
            }
            let old = try simulatedDisk
            old.cutPower()
            try? db?.close()  // fails on the dead disk, as it would after a power cut
            db = nil
            // What survives of the unsynced writes follows the old disk's plan.
            let disk = old.restarted(plan: drawPlan(), seed: random.next())
            self.disk = disk
            let db = try open()
            self.db = db
            let recovered = db.currentView.log?.lastSequence ?? db.currentView.visibleSequence
            if let problem = model.recover(sequence: recovered) { throw MetaMismatch("after the crash: \(problem)") }
            return "crash: recovered through \(recovered); " + (try checkWholeState("crash"))
        }
    }

    /// The follower, caught up with `db`'s change feed: reopened if a crash closed it, or
    /// made again from a checkpoint when the feed cannot serve it.
    private func catchUpFollower(_ db: Database) throws -> Database {
        func fresh() throws -> Database {
            try? follower?.db?.close()
            followers += 1
            let path = MetaRunner.directory + "/follower\(followers)"
            try db.checkpoint(to: path)
            let opened = try open(path)
            follower = (path, opened)
            return opened
        }
        var handle = try follower.map { existing in try existing.db ?? open(existing.path) } ?? fresh()
        follower?.db = handle
        for attempt in 0..<2 {
            do {
                let feed = try db.changes(since: try handle.snapshot().sequence, follow: false)
                if optionSet.asyncAPI {
                    let target = handle
                    try awaitAsync {
                        for try await change in feed { try await target.apply(change, durability: .buffered) }
                    }
                } else {
                    while let change = try feed.next() { try handle.apply(change, durability: .buffered) }
                }
                return handle
            } catch let error as KVError where error.code == .notRetained && attempt == 0 {
                handle = try fresh()
            }
        }
        return handle
    }

    /// Runs a transaction (async when the option set says so) whose first attempt lets
    /// the meanwhile write in between its reads and its commit; checks each attempt's
    /// reads against the model and the number of attempts against the conflict rules.
    private func run(_ transaction: MetaTransaction) throws -> String {
        let db = try database
        let scanned = transaction.scan.map { model.scan($0, snapshot: nil) } ?? []
        let expectedAttempts = transaction.meanwhileConflicts(scanned: scanned) ? 2 : 1
        let attempts = Mutex(0)
        let options = TransactionOptions(maxAttempts: 2, durability: transaction.sync ? .sync : .buffered)
        // The body's checks, shared by both forms: the model is consulted as each attempt
        // reads, so a second attempt expects the meanwhile write.
        let check = { (got: [UInt8]?, key: [UInt8]) throws in
            try self.expect(got, self.model.value(key, snapshot: nil), "txn read \(MetaText.key(key))")
        }
        let interfere = { () throws in
            let attempt = attempts.withLock { value -> Int in
                value += 1
                return value
            }
            if attempt == 1, let meanwhile = transaction.meanwhile { _ = try self.commit([meanwhile], sync: transaction.sync) }
        }
        if optionSet.asyncAPI {
            let box = UncheckedBox((check, interfere))
            let scanOptions = transaction.scan.map(scanOptions)
            let model = UncheckedBox(self)
            try awaitAsync {
                try await db.transaction(options) { tx in
                    for key in transaction.reads { try box.value.0(try await tx.get(key), key) }
                    if let scan = transaction.scan, let scanOptions {
                        try model.value.expectEntries(try await tx.scan(scanOptions), model.value.model.scan(scan, snapshot: nil), "txn scan")
                    }
                    try MetaRunner.write(transaction.writes, to: tx)
                    try box.value.1()
                }
            }
        } else {
            try db.transaction(options) { tx in
                for key in transaction.reads { try check(try tx.get(key), key) }
                if let scan = transaction.scan {
                    try expectEntries(try tx.scan(scanOptions(scan)), model.scan(scan, snapshot: nil), "txn scan")
                }
                try MetaRunner.write(transaction.writes, to: tx)
                try interfere()
            }
        }
        let taken = attempts.withLock { $0 }
        guard taken == expectedAttempts else {
            throw MetaMismatch("the transaction took \(taken) attempts, expected \(expectedAttempts)")
        }
        guard !transaction.writes.isEmpty else { return "read-only, 1 attempt" }
        let sequence = db.currentView.log?.lastSequence ?? 0
        model.commit(transaction.writes, sync: transaction.sync, sequence: sequence)
        return "ok seq=\(sequence), \(taken) attempts"
    }

    /// A transaction's writes, then a read of each back through it (its own writes win).
    private static func write(_ writes: [MetaBatchEntry], to tx: Transaction) throws {
        var latest: [[UInt8]: [UInt8]?] = [:]
        for entry in writes {
            switch entry {
            case .put(let key, let value):
                try tx.put(key, value.bytes)
                latest[key] = .some(value.bytes)
            case .delete(let key):
                try tx.delete(key)
                latest[key] = .some(nil)
            case .deleteRange(let start, let end):
                try tx.deleteRange(start, end)
                for key in latest.keys where entry.touches(key) { latest[key] = .some(nil) }
            }
        }
        for (key, value) in latest where try tx.get(key) != value {
            throw MetaMismatch("a transaction's read of \(MetaText.key(key)) does not see its own write")
        }
    }

    private func commit(_ entries: [MetaBatchEntry], sync: Bool) throws -> String {
        let db = try database
        var batch = WriteBatch()
        for entry in entries {
            switch entry {
            case .put(let key, let value): batch.put(key, value.bytes)
            case .delete(let key): batch.delete(key)
            case .deleteRange(let start, let end): batch.deleteRange(start, end)
            }
        }
        if entries.contains(where: { !$0.isValid }) {
            // The engine takes no empty key (as LMDB), nor an empty or reversed range: the
            // whole batch is refused.
            let refused: KVError.Code?
            do {
                try write(batch, sync: sync, to: db)
                refused = nil
            } catch {
                refused = (error as? KVError)?.code
            }
            guard refused == .invalidArgument else {
                throw MetaMismatch("a batch with an empty key was \(refused.map { "refused with \($0)" } ?? "accepted")")
            }
            return "rejected"
        }
        try write(batch, sync: sync, to: db)
        let sequence = db.currentView.log?.lastSequence ?? 0
        model.commit(entries, sync: sync, sequence: sequence)
        return "ok seq=\(sequence)"
    }

    private func write(_ batch: WriteBatch, sync: Bool, to db: Database) throws {
        let durability: Durability = sync ? .sync : .buffered
        if optionSet.asyncAPI {
            _ = try awaitAsync { try await db.write(batch, durability: durability) }
        } else {
            try db.write(batch, durability: durability)
        }
    }

    /// Runs `body` (a call of the async API) in a task and waits for it, delivering the
    /// simulated disk's held-back completions meanwhile, as a ring would on its own.
    private func awaitAsync<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let result = Mutex<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            let outcome: Result<T, any Error>
            do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
            result.withLock { $0 = outcome }
            done.signal()
        }
        while done.wait(timeout: .now() + .milliseconds(1)) == .timedOut { disk?.willWait() }
        return try result.withLock { $0! }.get()
    }

    /// Freezes the memtable (even an empty one) and waits until every frozen memtable is
    /// in a table.
    private func flush(_ db: Database) throws {
        if let log = db.currentView.log { try db.rotate(from: log) }
        try db.waitForFlushes()
    }

    /// Every file of the database directory with a digest of its bytes.
    private func files() throws -> [String] {
        let storage = try storage
        return try storage.contentsOfDirectory(atPath: MetaRunner.path).sorted().map { name in
            let file = try storage.openFile(atPath: MetaRunner.path + "/" + name, mode: .readOnly)
            defer { try? storage.closeFile(file) }
            // In aligned pieces through the arena, as the engine reads (files need not end
            // on a sector).
            let piece = try storage.allocator.allocate(pages: 64)
            defer { storage.allocator.free(piece) }
            var bytes: [UInt8] = []
            while true {
                let got = try storage.read(file, offsetBytes: Int64(bytes.count), into: piece)
                bytes += piece.bytes[0..<got]
                if got < piece.count { break }
            }
            return "\(name):\(bytes.count)/\(String(bytes.withUnsafeBytes { Checksum.xxh3($0, seed: 0) }, radix: 16))"
        }
    }

    /// The storage the run's database is on.
    private var storage: any Storage {
        get throws {
            if let memory { return memory }
            return try simulatedDisk
        }
    }

    private var simulatedDisk: SimulatedDisk {
        get throws {
            guard let disk else { throw MetaMismatch("no simulated disk") }
            return disk
        }
    }

    /// The handle of model snapshot `id` (a wrapper so that "no snapshot" differs from
    /// "a snapshot that is gone"): nil when the run has no such snapshot (the operation is
    /// skipped, as reductions may leave such references behind).
    private func snapshotHandle(_ id: Int?) throws -> (snapshot: Snapshot?, Void)? {
        guard let id else { return (nil, ()) }
        guard let snapshot = snapshots[id] else { return nil }
        return (snapshot, ())
    }

    private func scanOptions(_ scan: MetaScan) -> ScanOptions {
        ScanOptions(start: scan.start, end: scan.end, prefix: scan.prefix, reverse: scan.reverse, limit: scan.limit)
    }

    /// Closes the handle (a close makes everything durable) and forgets its snapshots and
    /// cursors.
    private func closeDatabase() throws {
        dropHandles()
        try database.close()
        db = nil
        model.markDurable()
    }

    private func dropHandles() {
        cursors.removeAll()
        snapshots.removeAll()
        model.dropHandles()
    }

    // MARK: checks

    /// Every key by `get` and by a batched get, and the whole database forward and reverse:
    /// the run's database against the model, or `other` against `expected`.
    private func checkWholeState(
        _ what: String, of other: Database? = nil, expected entries: [(key: [UInt8], value: [UInt8])]? = nil
    ) throws -> String {
        let db = try other ?? database
        let expected = entries ?? model.sortedEntries
        var forward: [(key: [UInt8], value: [UInt8])] = []
        let cursor = db.scan()
        while let entry = (try? cursor.next()) ?? nil { forward.append(entry) }
        if let error = cursor.error { throw MetaMismatch("\(what): full scan failed: \(error)") }
        try expectEntries(forward, expected, "\(what): full scan")
        let reverse = try db.scan(ScanOptions(reverse: true)).collect()
        try expectEntries(reverse, expected.reversed(), "\(what): full reverse scan")
        return "\(expected.count) keys, digest \(MetaText.digest(expected))"
    }

    private func finalCheck() throws -> String {
        let db = try database
        var keys = Set<[UInt8]>()
        for operation in operations { keys.formUnion(operation.keys) }
        let sorted = keys.sorted { $0.lexicographicallyPrecedes($1) }
        for key in sorted { try expect(try db.get(key), model.value(key, snapshot: nil), "final get \(MetaText.key(key))") }
        let batched = try db.get(keys: sorted)
        for (key, value) in zip(sorted, batched) { try expect(value, model.value(key, snapshot: nil), "final getmany \(MetaText.key(key))") }
        // Every copy made, after whatever crashes came since, still holds what it held.
        for (path, expected) in copies.sorted(by: { $0.key < $1.key }) {
            let copy = try open(path, readOnly: true)
            defer { try? copy.close() }
            _ = try checkWholeState("final open of \(path)", of: copy, expected: expected)
        }
        return try checkWholeState("final")
    }

    private func expect(_ got: [UInt8]?, _ expected: [UInt8]?, _ what: String) throws {
        if got != expected {
            throw MetaMismatch("\(what) returned \(MetaText.value(got)), the model says \(MetaText.value(expected))")
        }
    }

    private func expectEntry(_ got: (key: [UInt8], value: [UInt8])?, _ expected: (key: [UInt8], value: [UInt8])?, _ what: String) throws {
        switch (got, expected) {
        case (nil, nil): return
        case (let got?, let expected?) where got.key == expected.key && got.value == expected.value: return
        default:
            func show(_ entry: (key: [UInt8], value: [UInt8])?) -> String {
                entry.map { "\(MetaText.key($0.key))=\(MetaText.value($0.value))" } ?? "the end"
            }
            throw MetaMismatch("\(what) returned \(show(got)), the model says \(show(expected))")
        }
    }

    private func expectEntries(
        _ got: [(key: [UInt8], value: [UInt8])], _ expected: [(key: [UInt8], value: [UInt8])], _ what: String
    ) throws {
        for position in 0..<max(got.count, expected.count) {
            let left = position < got.count ? got[position] : nil
            let right = position < expected.count ? expected[position] : nil
            try expectEntry(left, right, "\(what), entry \(position + 1)")
        }
    }
}

/// A read that disagrees with the model (or another check that failed).
struct MetaMismatch: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

extension MetaText {
    /// A value as the failure messages show it: `v12/300` when it is that generated value,
    /// `nil` when absent, else its length and a digest.
    static func value(_ bytes: [UInt8]?) -> String {
        guard let bytes else { return "nil" }
        if let slash = bytes.firstIndex(of: UInt8(ascii: "/")), bytes.first == UInt8(ascii: "v"),
            let stamp = Int(String(decoding: bytes[1..<slash], as: UTF8.self)),
            MetaValue(stamp: stamp, length: bytes.count).bytes == bytes
        {
            return MetaValue(stamp: stamp, length: bytes.count).description
        }
        return "\(bytes.count)B#\(String(digest([(key: [], value: bytes)]).prefix(8)))"
    }

    /// FNV-1a over keys and values: outputs that are equal print equal.
    static func digest(_ entries: [(key: [UInt8], value: [UInt8])]) -> String {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        func mix(_ byte: UInt8) {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01B3
        }
        for entry in entries {
            for byte in entry.key { mix(byte) }
            mix(0xA5)
            for byte in entry.value { mix(byte) }
            mix(0x5A)
        }
        return String(hash, radix: 16)
    }
}
