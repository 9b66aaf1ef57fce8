import Foundation
import PageStore
import XCTest

@testable import KVEngine

/// `Database.checkpoint(to:)` and `Database.backup(to:)`: consistent copies that open as
/// databases of their own.
final class CheckpointTests: XCTestCase {
    private func options(_ change: (inout Options) -> Void = { _ in }) -> Options {
        testOptions {
            $0.allowTinySizes = true
            $0.memtableBytes = 32 << 10
            $0.tableTargetBytes = 16 << 10
            change(&$0)
        }
    }

    private func key(_ index: Int) -> [UInt8] { CheckpointTests.key(index) }
    private func value(_ index: Int) -> [UInt8] { CheckpointTests.value(index) }
    private static func key(_ index: Int) -> [UInt8] { bytes(String(format: "key%07d", index)) }
    private static func value(_ index: Int) -> [UInt8] { bytes("value-\(index)-" + String(repeating: "c", count: 40)) }

    private func contents(_ db: Database) throws -> [(key: [UInt8], value: [UInt8])] { try db.scan().collect() }

    private func files(_ path: String, _ suffix: String) -> Set<String> {
        Set(((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(suffix) })
    }

    private func inode(_ path: String) -> UInt64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.systemFileNumber] as? NSNumber)?.uint64Value ?? 0
    }

    /// A checkpoint of tables and of writes still in the memtable (buffered ones too)
    /// opens as a database equal to the source; its tables are links to the source's; the
    /// source goes on, and later writes do not reach the copy.
    func testCheckpointOpensEqualToTheSource() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options())
        for index in 0..<3000 { try db.put(key(index), value(index), durability: .buffered) }
        try db.compactRange()
        for index in stride(from: 0, to: 3000, by: 7) { try db.delete(key(index), durability: .buffered) }
        try db.put(key(5000), bytes("in the memtable"), durability: .buffered)
        let expected = try contents(db)
        let copy = dir.root + "/copy"
        let report = try db.checkpoint(to: copy)
        XCTAssertEqual(report.sequence, try db.snapshot().sequence)
        XCTAssertGreaterThan(report.tables, 0)
        XCTAssertEqual(report.copiedFiles, 0, "on one file system every file is linked: \(report)")
        XCTAssertEqual(report.linkedFiles, report.tables + report.logs)
        let linked = files(copy, ".sst").intersection(files(dir.path, ".sst"))
        XCTAssertFalse(linked.isEmpty)
        for name in linked { XCTAssertEqual(inode(copy + "/" + name), inode(dir.path + "/" + name), "\(name) is a hard link") }
        try db.put(key(6000), bytes("after the checkpoint"))
        try db.compactRange()
        let reopened = try Database(path: copy, options: options())
        let got = try contents(reopened)
        XCTAssertEqual(got.map(\.key), expected.map(\.key))
        XCTAssertEqual(got.map(\.value), expected.map(\.value))
        XCTAssertNil(try reopened.get(key(6000)))
        XCTAssertEqual(reopened.currentView.visibleSequence, report.sequence)
        // The copy is a database of its own: it takes writes, and the source never sees them.
        try reopened.put(key(7000), bytes("in the copy"))
        try reopened.compactRange()
        try reopened.close()
        XCTAssertNil(try db.get(key(7000)))
        XCTAssertEqual(try db.get(key(6000)), bytes("after the checkpoint"))
        try db.close()
        let again = try Database(path: copy, options: options())
        XCTAssertEqual(try again.get(key(7000)), bytes("in the copy"))
        try again.close()
    }

    /// Writers go on during the checkpoint; the copy holds a prefix of each writer's puts
    /// (no gap: writes land in sequence order), at least every put acknowledged before the
    /// call, and exactly the writes through the sequence it reports.
    func testCheckpointDuringWritesIsConsistent() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options())
        let writers = 3
        let stop = ManagedAtomicFlag()
        let acknowledged = (0..<writers).map { _ in Counter() }
        let group = DispatchGroup()
        for writer in 0..<writers {
            DispatchQueue.global().async(group: group) {
                var index = 0
                while !stop.isSet {
                    try! db.put(bytes("w\(writer)-") + CheckpointTests.key(index), CheckpointTests.value(index), durability: writer == 0 ? .sync : .buffered)
                    index += 1
                    acknowledged[writer].set(index)
                }
            }
        }
        var reports: [(CheckpointReport, [Int], String)] = []
        for round in 0..<4 {
            Thread.sleep(forTimeInterval: 0.05)
            let before = acknowledged.map { $0.value }
            let copy = dir.root + "/copy\(round)"
            reports.append((try db.checkpoint(to: copy), before, copy))
        }
        stop.set()
        group.wait()
        for (report, before, copy) in reports {
            let reopened = try Database(path: copy, options: options { $0.readOnly = true })
            XCTAssertEqual(reopened.currentView.visibleSequence, report.sequence)
            var total = 0
            for writer in 0..<writers {
                let entries = try reopened.scan(ScanOptions(prefix: bytes("w\(writer)-"))).collect()
                XCTAssertEqual(entries.map(\.key), (0..<entries.count).map { bytes("w\(writer)-") + key($0) }, "writer \(writer)'s puts in \(copy) have no gap")
                XCTAssertGreaterThanOrEqual(entries.count, before[writer], "every put acknowledged before the checkpoint is in \(copy)")
                total += entries.count
            }
            XCTAssertEqual(UInt64(total), report.sequence, "one sequence number a put: the copy holds exactly the writes through \(report.sequence)")
            try reopened.close()
        }
        try db.close()
    }

    /// The directory must be new or empty; a copy of a closed handle is refused; a
    /// checkpoint of a read-only handle works; a checkpoint cut short before its identity
    /// file is not a database.
    func testCheckpointRefusals() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options())
        try db.put(key(1), value(1))
        let busy = dir.root + "/busy"
        try FileManager.default.createDirectory(atPath: busy, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: busy + "/notes.txt", contents: Data("x".utf8))
        XCTAssertThrowsError(try db.checkpoint(to: busy)) { XCTAssertEqual(($0 as? KVError)?.code, .alreadyExists, "\($0)") }
        XCTAssertThrowsError(try db.checkpoint(to: dir.root + "/missing/parent/copy")) {
            XCTAssertEqual(($0 as? KVError)?.code, .invalidArgument, "\($0)")
        }
        XCTAssertThrowsError(try db.checkpoint(to: dir.path)) { XCTAssertEqual(($0 as? KVError)?.code, .alreadyExists, "\($0)") }
        try db.close()
        XCTAssertThrowsError(try db.checkpoint(to: dir.root + "/closed")) { XCTAssertEqual(($0 as? KVError)?.code, .closed) }
        let reader = try Database(path: dir.path, options: options { $0.readOnly = true })
        try reader.checkpoint(to: dir.root + "/fromReader")
        try reader.close()
        let copy = try Database(path: dir.root + "/fromReader", options: options())
        XCTAssertEqual(try copy.get(key(1)), value(1))
        try copy.close()
        // A copy without its identity file (cut short) is no database.
        let cut = dir.root + "/cut"
        let source = try Database(path: dir.path, options: options())
        try source.checkpoint(to: cut)
        try source.close()
        try FileManager.default.removeItem(atPath: cut + "/" + FileNames.identity)
        XCTAssertThrowsError(try Database(path: cut, options: options())) { XCTAssertEqual(($0 as? KVError)?.code, .notADatabase, "\($0)") }
    }

    /// The first backup copies everything, the next only the tables it lacks, and it
    /// drops what the database no longer has; each opens equal to the source.
    func testIncrementalBackupCopiesOnlyNewTables() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options())
        for index in 0..<4000 { try db.put(key(index), value(index), durability: .buffered) }
        try db.compactRange()
        let backup = dir.root + "/backup"
        let first = try db.backup(to: backup)
        XCTAssertEqual(first.linkedFiles, 0)
        XCTAssertEqual(first.copiedFiles, first.tables + first.logs)
        XCTAssertEqual(first.keptFiles, 0)
        for name in files(backup, ".sst") { XCTAssertNotEqual(inode(backup + "/" + name), inode(dir.path + "/" + name), "a backup copies") }
        try verify(backup, equals: db)
        // A few writes: one new table, the rest kept.
        for index in 0..<20 { try db.put(key(10_000 + index), value(index)) }
        try flushMemtable(db)
        let second = try db.backup(to: backup)
        XCTAssertEqual(second.keptFiles, first.tables, "\(second)")
        XCTAssertEqual(second.copiedFiles, second.tables - first.tables + second.logs, "\(second)")
        XCTAssertLessThan(second.copiedBytes, first.copiedBytes / 4, "\(second)")
        try verify(backup, equals: db)
        // After a compaction rewrote everything, the old tables leave the backup too.
        try db.compactRange()
        let third = try db.backup(to: backup)
        XCTAssertGreaterThan(third.removedFiles, 0, "\(third)")
        XCTAssertEqual(files(backup, ".sst"), files(dir.path, ".sst"))
        try verify(backup, equals: db)
        try db.close()
    }

    /// A backup of another database is refused with nothing changed (two databases made
    /// the same way number their files alike); one that is open is locked; one that was
    /// opened and written since is either refused or, when no file number collides,
    /// brought back to the database's state.
    func testBackupRefusesAForeignOrOpenBackup() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options())
        for index in 0..<2000 { try db.put(key(index), value(index), durability: .buffered) }
        try db.compactRange()
        let backup = dir.root + "/backup"
        try db.backup(to: backup)
        let open = try Database(path: backup, options: options())
        XCTAssertThrowsError(try db.backup(to: backup)) { XCTAssertEqual(($0 as? KVError)?.code, .locked, "\($0)") }
        for index in 0..<2000 { try open.put(key(index), bytes("diverged")) }
        try open.compactRange()
        try open.close()
        for index in 0..<2000 { try db.put(key(index), bytes("source")) }
        try db.compactRange()
        let before = files(backup, "")
        XCTAssertThrowsError(try db.backup(to: backup)) { XCTAssertEqual(($0 as? KVError)?.code, .invalidArgument, "\($0)") }
        XCTAssertEqual(files(backup, ""), before, "a refused backup changes nothing")
        let still = try Database(path: backup, options: options { $0.readOnly = true })
        XCTAssertEqual(try still.get(key(1)), bytes("diverged"))
        try still.close()
        // A database is no backup either.
        XCTAssertThrowsError(try db.backup(to: dir.path)) { XCTAssertEqual(($0 as? KVError)?.code, .locked, "\($0)") }
        // Another database, made as this one was, with other values.
        let otherPath = dir.root + "/other"
        let other = try Database(path: otherPath, options: options())
        for index in 0..<2000 { try other.put(key(index), bytes("other"), durability: .buffered) }
        try other.compactRange()
        let foreign = dir.root + "/foreign"
        try other.backup(to: foreign)
        let foreignFiles = files(foreign, "")
        XCTAssertThrowsError(try db.backup(to: foreign)) { XCTAssertEqual(($0 as? KVError)?.code, .invalidArgument, "\($0)") }
        XCTAssertEqual(files(foreign, ""), foreignFiles, "a refused backup changes nothing")
        try verify(foreign, equals: other)
        try other.close()
        let checkpoint = dir.root + "/checkpoint"
        try db.checkpoint(to: checkpoint)
        XCTAssertThrowsError(try db.backup(to: checkpoint)) { XCTAssertEqual(($0 as? KVError)?.code, .invalidArgument, "\($0)") }
        // A backup read-only opened is still a backup.
        let fresh = dir.root + "/fresh"
        try db.backup(to: fresh)
        try Database(path: fresh, options: options { $0.readOnly = true }).close()
        try db.put(key(1), bytes("newer"))
        XCTAssertGreaterThan(try db.backup(to: fresh).copiedFiles, 0)
        try verify(fresh, equals: db)
        try db.close()
    }

    /// A backup's directory may hold what an earlier first backup, cut short, left.
    func testBackupOverLeftoversOfAFirstBackupCutShort() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options())
        for index in 0..<1500 { try db.put(key(index), value(index), durability: .buffered) }
        try db.compactRange()
        let backup = dir.root + "/backup"
        try db.backup(to: backup)
        try FileManager.default.removeItem(atPath: backup + "/" + FileNames.identity)
        _ = FileManager.default.createFile(atPath: backup + "/999999.sst", contents: Data(repeating: 7, count: 100))
        let report = try db.backup(to: backup)
        XCTAssertEqual(report.keptFiles, 0, "without an identity file nothing there is trusted")
        XCTAssertFalse(FileManager.default.fileExists(atPath: backup + "/999999.sst"))
        try verify(backup, equals: db)
        try db.close()
    }

    /// A backup into what an unfinished checkpoint left (links to the source's tables,
    /// no identity file) replaces those links and never writes through them.
    func testBackupOverAnUnfinishedCheckpointLeavesTheSourceWhole() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options())
        for index in 0..<2000 { try db.put(key(index), value(index), durability: .buffered) }
        try db.compactRange()
        let expected = try contents(db)
        let target = dir.root + "/target"
        try db.checkpoint(to: target)
        try FileManager.default.removeItem(atPath: target + "/" + FileNames.identity)
        try db.backup(to: target)
        XCTAssertEqual(try contents(db).map(\.value), expected.map(\.value))
        for name in files(target, ".sst") { XCTAssertNotEqual(inode(target + "/" + name), inode(dir.path + "/" + name), "\(name) is a copy now") }
        try verify(target, equals: db)
        try db.close()
        let reopened = try Database(path: dir.path, options: options())
        XCTAssertEqual(try contents(reopened).map(\.value), expected.map(\.value))
        try reopened.close()
    }

    /// A backup cut short after copying a log of the new state (the log is in the backup,
    /// no manifest names it) leaves the previous state opening as it was; the next backup
    /// completes it.
    func testABackupCutShortLeavesThePreviousState() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options { $0.flushOnClose = false })
        for index in 0..<500 { try db.put(key(index), value(index), durability: .buffered) }
        try db.compactRange()
        let backup = dir.root + "/backup"
        try db.backup(to: backup)
        let before = try contents(db)
        for index in 0..<50 { try db.put(key(20_000 + index), value(index)) }
        // What a cut-short backup leaves: the source's logs copied, then nothing.
        for log in logFiles(dir.path) {
            try FileManager.default.copyItem(atPath: log, toPath: backup + "/" + (log as NSString).lastPathComponent)
        }
        let old = try Database(path: backup, options: options { $0.readOnly = true })
        let held = try contents(old)
        XCTAssertTrue(held.map(\.key) == before.map(\.key), "the previous state: \(held.count) keys, expected \(before.count)")
        try old.close()
        try db.backup(to: backup)
        try verify(backup, equals: db)
        try db.close()
    }

    /// A read-only handle copies the logs its open replayed, none the manifest does not
    /// record, and copies rather than links them; a backup of a database without an id
    /// (made by an older build) from a read-only handle is refused.
    func testCopiesOfAReadOnlyHandle() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options { $0.flushOnClose = false })
        for index in 0..<100 { try db.put(key(index), value(index), durability: .buffered) }
        try db.close()
        let logs = logFiles(dir.path)
        XCTAssertEqual(logs.count, 1)
        // A log no manifest records (its creation cut short): a copy of the live one.
        try FileManager.default.copyItem(atPath: logs[0], toPath: dir.path + "/999999.log")
        let reader = try Database(path: dir.path, options: options { $0.readOnly = true })
        let report = try reader.checkpoint(to: dir.root + "/copy")
        XCTAssertEqual(report.logs, 1)
        XCTAssertEqual(report.linkedFiles, report.tables, "tables linked, the log copied: \(report)")
        try reader.close()
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.path + "/999999.log"), "a read-only handle removes nothing")
        let copy = try Database(path: dir.root + "/copy", options: options())
        XCTAssertEqual(try contents(copy).count, 100)
        try copy.close()
        // No id: as an older build left it.
        var identity = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir.path + "/" + FileNames.identity)))
        identity.replaceSubrange(24..<64, with: [UInt8](repeating: 0, count: 40))
        try Data(identity).write(to: URL(fileURLWithPath: dir.path + "/" + FileNames.identity))
        let old = try Database(path: dir.path, options: options { $0.readOnly = true })
        XCTAssertThrowsError(try old.backup(to: dir.root + "/backup")) { XCTAssertEqual(($0 as? KVError)?.code, .invalidArgument, "\($0)") }
        try old.close()
    }

    /// On a storage without links, a checkpoint copies.
    func testCheckpointCopiesWhereLinksAreRefused() throws {
        let storage = NoLinks(try MemoryStorage())
        try storage.createDirectory(atPath: "/m")
        var opts = options()
        opts.storage = storage
        let db = try Database(path: "/m/db", options: opts)
        for index in 0..<1500 { try db.put(key(index), value(index), durability: .buffered) }
        try flushMemtable(db)
        try db.put(key(99_999), bytes("memtable"))
        let report = try db.checkpoint(to: "/m/copy")
        XCTAssertEqual(report.linkedFiles, 0)
        XCTAssertEqual(report.copiedFiles, report.tables + report.logs)
        XCTAssertGreaterThan(report.logs, 0)
        let copy = try Database(path: "/m/copy", options: opts)
        XCTAssertEqual(try copy.scan().collect().map(\.key), try db.scan().collect().map(\.key))
        try copy.close()
        try db.close()
    }

    private func flushMemtable(_ db: Database) throws {
        if let log = db.currentView.log { try db.rotate(from: log) }
        try db.waitForFlushes()
    }

    private func verify(_ backup: String, equals db: Database) throws {
        let reopened = try Database(path: backup, options: options { $0.readOnly = true })
        defer { try? reopened.close() }
        let got = try contents(reopened)
        let expected = try contents(db)
        XCTAssertEqual(got.count, expected.count)
        XCTAssertTrue(got.map(\.key) == expected.map(\.key) && got.map(\.value) == expected.map(\.value), "\(backup) equals the database")
    }
}

/// A storage that refuses hard links (as the default of `Storage` does).
private final class NoLinks: Storage, @unchecked Sendable {
    let inner: MemoryStorage
    init(_ inner: MemoryStorage) { self.inner = inner }
    var allocator: PageAllocator { inner.allocator }
    func openFile(atPath path: String, mode: FileOpenMode) throws -> FileID { try inner.openFile(atPath: path, mode: mode) }
    func closeFile(_ file: FileID) throws { try inner.closeFile(file) }
    func fileInfo(_ file: FileID) throws -> FileInfo { try inner.fileInfo(file) }
    func fileSize(_ file: FileID) throws -> Int64 { try inner.fileSize(file) }
    func truncateFile(_ file: FileID, toBytes size: Int64) throws { try inner.truncateFile(file, toBytes: size) }
    func submit(_ request: IORequest, completion: @escaping @Sendable (IOResult) -> Void) { inner.submit(request, completion: completion) }
    func withIOQueue<T, Failure: Error>(_ body: (any IOQueue) throws(Failure) -> T) throws(Failure) -> T { try inner.withIOQueue(body) }
    func syncDirectory(atPath path: String) throws { try inner.syncDirectory(atPath: path) }
    func renameFile(atPath source: String, toPath target: String) throws { try inner.renameFile(atPath: source, toPath: target) }
    func removeFile(atPath path: String) throws { try inner.removeFile(atPath: path) }
    func createDirectory(atPath path: String) throws { try inner.createDirectory(atPath: path) }
    func contentsOfDirectory(atPath path: String) throws -> [String] { try inner.contentsOfDirectory(atPath: path) }
    func fileExists(atPath path: String) -> Bool { inner.fileExists(atPath: path) }
    func lockFile(atPath path: String, shared: Bool, holder: String) throws -> (any FileLock)? {
        try inner.lockFile(atPath: path, shared: shared, holder: holder)
    }
}

/// A number one thread writes and others read.
private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var number = 0
    var value: Int { lock.withLock { number } }
    func set(_ value: Int) { lock.withLock { number = value } }
}
