import Foundation
import XCTest

@testable import KVEngine

final class DatabaseTests: XCTestCase {
    func testPutGetDeleteAndReopen() throws {
        let dir = TestPath()
        do {
            let db = try Database(path: dir.path, options: testOptions())
            try db.put("alpha", "1")
            try db.put("beta", "2")
            try db.put("alpha", "3")
            try db.delete("beta")
            XCTAssertEqual(try db.get("alpha"), "3")
            XCTAssertNil(try db.get("beta"))
            XCTAssertNil(try db.get("gamma"))
            try db.close()
            XCTAssertThrowsError(try db.get("alpha")) { XCTAssertEqual(($0 as! KVError).code, .closed) }
        }
        let db = try Database(path: dir.path, options: testOptions())
        XCTAssertEqual(try db.get("alpha"), "3")
        XCTAssertNil(try db.get("beta"))
        try db.put("gamma", "4")
        try db.close()
        let again = try Database(path: dir.path, options: testOptions())
        XCTAssertEqual(try again.get("gamma"), "4")
        XCTAssertEqual(try again.get("alpha"), "3")
        XCTAssertEqual(again.stats.lastSequence, 5)
    }

    /// `kvctl D put k v` on a fresh directory `D` (a bare relative name) trapped inside
    /// Foundation while working out the parent directory to fsync.
    func testCreatesADatabaseAtABareRelativeName() throws {
        let dir = TestPath()
        let previous = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(dir.root))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(previous) }
        let db = try Database(path: "D", options: testOptions())
        try db.put("k", "v")
        try db.close()
        XCTAssertEqual(try Database(path: "D", options: testOptions()).get("k"), "v")
        XCTAssertEqual(Database.parentDirectory(of: "D"), ".")
        XCTAssertEqual(Database.parentDirectory(of: "D/"), ".")
        XCTAssertEqual(Database.parentDirectory(of: "/D"), "/")
        XCTAssertEqual(Database.parentDirectory(of: "a/b/D//"), "a/b")
        XCTAssertEqual(Database.parentDirectory(of: "/var/lib/D"), "/var/lib")
    }

    /// The borrowing read sees what `get` sees, from the memtable and from a table, at a
    /// snapshot too, and hands back what its body returns or throws.
    func testWithValueReadsInPlace() throws {
        struct Stop: Error {}
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        try db.put("table", "in a table")
        try db.put("gone", "soon deleted")
        try db.compactRange()
        let before = try db.snapshot()
        try db.put("memtable", "in the memtable")
        try db.delete("gone")
        for key in ["table", "memtable", "gone", "never"] {
            let bytes = Array(key.utf8)
            XCTAssertEqual(try db.withValue(forKey: bytes) { $0.map(Array.init) }, try db.get(bytes), key)
            XCTAssertEqual(try db.withValue(forKey: bytes, snapshot: before) { $0.map(Array.init) }, try db.get(bytes, snapshot: before), key)
        }
        XCTAssertEqual(try db.withValue(forKey: Array("gone".utf8), snapshot: before) { $0.map { String(decoding: $0, as: UTF8.self) } }, "soon deleted")
        XCTAssertNil(try db.withValue(forKey: Array("gone".utf8)) { $0 })
        XCTAssertEqual(try db.withValue(forKey: Array("table".utf8)) { $0?.count }, 10)
        XCTAssertThrowsError(try db.withValue(forKey: Array("table".utf8)) { _ in throw Stop() }) { XCTAssertTrue($0 is Stop) }
        try db.close()
        XCTAssertThrowsError(try db.withValue(forKey: Array("table".utf8)) { $0 }) { XCTAssertEqual(($0 as? KVError)?.code, .closed) }
    }

    func testBinaryKeysAndValuesRoundTrip() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        let key: [UInt8] = [0, 255, 10, 13, 0]
        let value = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 * 31) }
        try db.put(key, value)
        try db.put(bytes: Data([1, 2, 3]), Data([4, 5]))
        try db.close()
        let reopened = try Database(path: dir.path, options: testOptions())
        XCTAssertEqual(try reopened.get(key), value, "a value spanning many log pages survives reopen")
        XCTAssertEqual(try reopened.get(bytes: Data([1, 2, 3])), [4, 5])
    }

    func testDroppedWithoutCloseReleasesLockAndKeepsWrites() throws {
        let dir = TestPath()
        do {
            let db = try Database(path: dir.path, options: testOptions())
            try db.put("k", "v", durability: .buffered)
        }
        let db = try Database(path: dir.path, options: testOptions())
        XCTAssertEqual(try db.get("k"), "v")
    }

    func testSecondOpenIsLocked() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        XCTAssertThrowsError(try Database(path: dir.path, options: testOptions())) { error in
            let error = error as! KVError
            XCTAssertEqual(error.code, .locked)
            XCTAssertEqual(error.message, "database at \(dir.path) is locked by another handle in this process")
        }
        try db.close()
        XCTAssertNoThrow(try Database(path: dir.path, options: testOptions()).close())
    }

    func testMissingDatabaseWithoutCreateCreatesNothing() {
        let dir = TestPath()
        XCTAssertThrowsError(try Database(path: dir.path, options: testOptions { $0.createIfMissing = false })) { error in
            XCTAssertEqual((error as! KVError).code, .notADatabase)
            XCTAssertEqual((error as! KVError).message, "no database at \(dir.path)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.path))
    }

    func testForeignDirectoryIsNotADatabase() throws {
        let dir = TestPath()
        try FileManager.default.createDirectory(atPath: dir.path, withIntermediateDirectories: true)
        XCTAssertTrue(FileManager.default.createFile(atPath: dir.path + "/notes.txt", contents: Data("x".utf8)))
        XCTAssertThrowsError(try Database(path: dir.path, options: testOptions())) { error in
            XCTAssertEqual((error as! KVError).code, .notADatabase)
            XCTAssertTrue((error as! KVError).message.contains("not empty (notes.txt)"), "\(error)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["notes.txt"], "nothing was added")
    }

    /// A damaged identity file is corruption naming it, not "no database".
    func testDamagedIdentityFileIsCorruption() throws {
        let dir = TestPath()
        try Database(path: dir.path, options: testOptions()).close()
        let identity = dir.path + "/KVENGINE"
        for (offset, count) in [(0, 8), (8, 1), (16, 8)] as [(Int64, Int)] {
            let original = try Data(contentsOf: URL(fileURLWithPath: identity))
            scribble(identity, at: offset, count: count)
            XCTAssertThrowsError(try Database(path: dir.path, options: testOptions())) { error in
                XCTAssertEqual((error as! KVError).code, .corruption, "\(error)")
                XCTAssertEqual((error as! KVError).path, identity)
            }
            try original.write(to: URL(fileURLWithPath: identity))
        }
        try Data(repeating: 0x41, count: 10).write(to: URL(fileURLWithPath: identity))
        XCTAssertThrowsError(try Database(path: dir.path, options: testOptions())) { error in
            XCTAssertEqual((error as! KVError).code, .corruption, "\(error)")
        }
    }

    func testErrorIfExists() throws {
        let dir = TestPath()
        try Database(path: dir.path, options: testOptions()).close()
        XCTAssertThrowsError(try Database(path: dir.path, options: testOptions { $0.errorIfExists = true })) { error in
            XCTAssertEqual((error as! KVError).code, .alreadyExists)
        }
    }

    /// The identity file of format `version`, with a valid checksum.
    private func writeIdentity(version: UInt32, in directory: String) throws {
        var page = [UInt8](repeating: 0, count: 4096)
        page.replaceSubrange(0..<8, with: Array("KVENGINE".utf8))
        withUnsafeBytes(of: version.littleEndian) { page.replaceSubrange(8..<12, with: $0) }
        let checksum = page.withUnsafeBytes { Checksum.xxh3(UnsafeRawBufferPointer(rebasing: $0[0..<16]), seed: 0) }
        withUnsafeBytes(of: checksum.littleEndian) { page.replaceSubrange(16..<24, with: $0) }
        try Data(page).write(to: URL(fileURLWithPath: directory + "/KVENGINE"))
    }

    /// A version 2, 3, 4 or 5 database opens, and its identity is rewritten as version 6
    /// (after the new manifest, which records the live logs, is in place).
    func testOlderFormatIsUpgraded() throws {
        for older: UInt32 in [2, 3, 4, 5] {
            let dir = TestPath()
            do {
                let db = try Database(path: dir.path, options: testOptions())
                try db.put("k", "v")
                try db.close()
            }
            try writeIdentity(version: older, in: dir.path)
            let db = try Database(path: dir.path, options: testOptions())
            XCTAssertEqual(try db.get("k"), "v")
            try db.close()
            let identity = try Data(contentsOf: URL(fileURLWithPath: dir.path + "/KVENGINE"))
            XCTAssertEqual(identity[8], UInt8(Identity.formatVersion), "from version \(older)")
        }
        XCTAssertEqual(Identity.formatVersion, 6)
    }

    func testNewerFormatIsRefused() throws {
        let dir = TestPath()
        try Database(path: dir.path, options: testOptions()).close()
        // Rewrite the identity file as the next version, with a valid checksum.
        try writeIdentity(version: Identity.formatVersion + 1, in: dir.path)
        XCTAssertThrowsError(try Database(path: dir.path, options: testOptions())) { error in
            XCTAssertEqual((error as! KVError).code, .newerFormat)
            XCTAssertTrue("\(error)".contains("format version \(Identity.formatVersion + 1); this build reads up to \(Identity.formatVersion)"), "\(error)")
        }
    }

    /// A ring too small for the log's longest commit chain is refused at open, instead of
    /// failing the first long chain (and stopping writes) later.
    func testRingTooSmallForTheLongestChainIsRefused() throws {
        let dir = TestPath()
        XCTAssertThrowsError(try Database(path: dir.path, options: testOptions { $0.pageStore.ringEntries = 128 })) { error in
            XCTAssertEqual((error as! KVError).code, .invalidArgument)
            XCTAssertTrue("\(error)".contains("cannot hold the log's longest commit chain (130 linked SQEs"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.path), "a refused open creates nothing")
        try Database(path: dir.path, options: testOptions { $0.pageStore.ringEntries = 256 }).close()
    }

    func testSizeLimitsAndNothingHalfApplied() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        XCTAssertThrowsError(try db.put([UInt8](repeating: 1, count: Limits.maxKeyBytes + 1), [1])) { error in
            XCTAssertEqual((error as! KVError).code, .invalidArgument)
            XCTAssertTrue("\(error)".contains("key of 65536 bytes exceeds the limit of 65535"), "\(error)")
        }
        XCTAssertThrowsError(try db.put([1], [UInt8](repeating: 1, count: Limits.maxValueBytes + 1))) { error in
            XCTAssertTrue("\(error)".contains("value of \(Limits.maxValueBytes + 1) bytes exceeds the limit"), "\(error)")
        }
        XCTAssertThrowsError(try db.put([], [1])) { error in
            XCTAssertTrue("\(error)".contains("empty key"), "\(error)")
        }
        var batch = WriteBatch()
        batch.put("good", "1")
        batch.put([UInt8](repeating: 2, count: Limits.maxKeyBytes + 1), [2])
        XCTAssertThrowsError(try db.write(batch))
        XCTAssertNil(try db.get("good"), "a rejected batch applies nothing")
        XCTAssertThrowsError(try db.write(WriteBatch())) { error in
            XCTAssertTrue("\(error)".contains("the batch is empty"), "\(error)")
        }
        XCTAssertEqual(db.stats.lastSequence, 0)
    }

    func testBatchIsAtomicAndOrderedWithinItself() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        var batch = WriteBatch()
        batch.put("a", "1")
        batch.put("b", "2")
        batch.delete("a")
        batch.put("c", "3")
        try db.write(batch)
        XCTAssertNil(try db.get("a"), "the later delete in the batch wins")
        XCTAssertEqual(try db.get("b"), "2")
        try db.close()
        let reopened = try Database(path: dir.path, options: testOptions())
        XCTAssertNil(try reopened.get("a"))
        XCTAssertEqual(try reopened.get("c"), "3")
        XCTAssertEqual(reopened.stats.lastSequence, 4)
    }

    func testSnapshotIsStable() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        try db.put("k", "old")
        try db.put("gone", "here")
        let snapshot = try db.snapshot()
        try db.put("k", "new")
        try db.delete("gone")
        try db.put("added", "later")
        XCTAssertEqual(try db.get(Array("k".utf8), snapshot: snapshot), bytes("old"))
        XCTAssertEqual(try db.get(Array("gone".utf8), snapshot: snapshot), bytes("here"))
        XCTAssertNil(try db.get(Array("added".utf8), snapshot: snapshot))
        let keys = try db.scan(snapshot: snapshot).collect().map { String(decoding: $0.key, as: UTF8.self) }
        XCTAssertEqual(keys, ["gone", "k"])
        XCTAssertEqual(try db.scan().collect().map { String(decoding: $0.key, as: UTF8.self) }, ["added", "k"])
    }

    func testBufferedWritesAreFlushedWithinTheInterval() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions { $0.bufferedFlushIntervalMs = 5 })
        let before = db.stats.logChains
        try db.put("b", "1", durability: .buffered)
        XCTAssertEqual(try db.get("b"), "1", "a buffered write is visible at once")
        let deadline = Date().addingTimeInterval(2)
        while db.stats.logChains == before && Date() < deadline { usleep(1000) }
        XCTAssertGreaterThan(db.stats.logChains, before, "the timer wrote and synced the buffered page")
    }

    func testAsyncCallsFromManyTasks() async throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<100 {
                group.addTask {
                    try await db.put(bytes("task\(task)"), bytes("value\(task)"), durability: task % 2 == 0 ? .sync : .buffered)
                    let value = try await db.get(bytes("task\(task)"))
                    XCTAssertEqual(value, bytes("value\(task)"))
                }
            }
            try await group.waitForAll()
        }
        try await db.sync()
        let batch = try await db.get(keys: (0..<100).map { bytes("task\($0)") } + [bytes("absent")])
        XCTAssertEqual(batch, (0..<100).map { bytes("value\($0)") } + [nil])
        XCTAssertEqual(try db.scan().collect().reduce(0) { count, _ in count + 1 }, 100)
        try await db.close()
    }
}

/// `Options.readOnly`: opens that change nothing and run beside each other.
final class ReadOnlyOpenTests: XCTestCase {
    /// Names, sizes, modification times and contents of every file in `path`.
    private func listing(_ path: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: path).sorted().map { name in
            let attributes = try FileManager.default.attributesOfItem(atPath: path + "/" + name)
            let data = try Data(contentsOf: URL(fileURLWithPath: path + "/" + name))
            let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            return "\(name) \(data.count) \(modified) \(data.hashValue)"
        }
    }

    private func readOnly() -> Options { testOptions { $0.readOnly = true } }

    func testReadOnlyOpensChangeNothingAndRunSideBySide() throws {
        let dir = TestPath()
        do {
            // A session that ends without its flush: the next opens find a log to replay.
            let db = try Database(path: dir.path, options: testOptions { $0.flushOnClose = false })
            for index in 0..<50 { try db.put("k\(index)", "v\(index)") }
            try db.close()
        }
        let before = try listing(dir.path)
        XCTAssertEqual(logFiles(dir.path).count, 1)
        let first = try Database(path: dir.path, options: readOnly())
        let second = try Database(path: dir.path, options: readOnly())
        for index in 0..<50 {
            XCTAssertEqual(try first.get("k\(index)"), "v\(index)")
            XCTAssertEqual(try second.get("k\(index)"), "v\(index)")
        }
        XCTAssertEqual(try second.scan().collect().count, 50)
        XCTAssertThrowsError(try first.put("x", "y")) { error in
            XCTAssertEqual((error as! KVError).code, .readOnly)
            XCTAssertTrue((error as! KVError).message.contains("Options.readOnly"), "\(error)")
        }
        XCTAssertThrowsError(try first.compactRange()) { XCTAssertEqual(($0 as! KVError).code, .readOnly) }
        // A writer is refused while readers hold the lock.
        XCTAssertThrowsError(try Database(path: dir.path, options: testOptions())) { error in
            XCTAssertEqual((error as! KVError).code, .locked, "\(error)")
        }
        try first.close()
        try second.close()
        XCTAssertEqual(try listing(dir.path), before, "read-only opens changed the directory")
        // And a reader is refused while a writer holds it.
        let writer = try Database(path: dir.path, options: testOptions())
        XCTAssertThrowsError(try Database(path: dir.path, options: readOnly())) { error in
            XCTAssertEqual((error as! KVError).code, .locked, "\(error)")
            XCTAssertTrue("\(error)".contains("a writing handle in this process"), "\(error)")
        }
        try writer.close()
    }

    func testReadOnlyOpenCreatesNothing() throws {
        let dir = TestPath()
        XCTAssertThrowsError(try Database(path: dir.path, options: readOnly())) { error in
            XCTAssertEqual((error as! KVError).code, .notADatabase)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.path))
    }

    /// A torn tail is left as it is (cut only by a writing open), and read as a writer would.
    func testReadOnlyOpenReadsPastATornTailWithoutCuttingIt() throws {
        let dir = TestPath()
        do {
            let db = try Database(path: dir.path, options: testOptions { $0.flushOnClose = false })
            for index in 0..<5 { try db.put("k\(index)", "v\(index)") }
            try db.close()
        }
        let log = try XCTUnwrap(logFiles(dir.path).first)
        // A torn write after the last page: a page whose only written sector is its last.
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: log))
        handle.seekToEndOfFile()
        handle.write(Data(count: 3584) + Data(repeating: 0x42, count: 512))
        try handle.close()
        let before = try listing(dir.path)
        let reader = try Database(path: dir.path, options: readOnly())
        XCTAssertEqual(reader.stats.lastSequence, 5)
        XCTAssertEqual(try reader.get("k4"), "v4")
        try reader.close()
        XCTAssertEqual(try listing(dir.path), before)
    }
}
