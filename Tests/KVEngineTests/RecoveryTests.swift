import Foundation
import XCTest

@testable import KVEngine

/// Torn tails, damage before the tail, and what each does to an open.
final class RecoveryTests: XCTestCase {
    /// Writes `count` sync puts one by one: each commit chain writes its own log page, so
    /// put `i` (0-based) sits in page `i + 1` of the log.
    private func writeOnePerPage(_ path: String, count: Int) throws -> String {
        let db = try Database(path: path, options: testOptions())
        for index in 0..<count { try db.put("key\(index)", "value\(index)") }
        XCTAssertEqual(db.stats.logChains, count)
        try db.close()
        let logs = logFiles(path)
        XCTAssertEqual(logs.count, 1)
        XCTAssertEqual(fileSize(logs[0]), Int64((count + 1) * 4096), "a closed log holds only its written pages")
        return logs[0]
    }

    func testTornLastPageIsCutOffAndTheRestOpens() throws {
        let dir = TestPath()
        let log = try writeOnePerPage(dir.path, count: 10)
        // The last page torn: its second half never reached the disk.
        scribble(log, at: 10 * 4096 + 2048, count: 2048, byte: 0)
        scribble(log, at: 10 * 4096 + 30, count: 4, byte: 0x33)
        let db = try Database(path: dir.path, options: testOptions())
        for index in 0..<9 { XCTAssertEqual(try db.get("key\(index)"), "value\(index)") }
        XCTAssertNil(try db.get("key9"), "the torn record is not returned")
        XCTAssertEqual(db.stats.lastSequence, 9)
        // The log was cut at the torn page, replayed, and its records are in a table now.
        XCTAssertFalse(FileManager.default.fileExists(atPath: log), "the recovered log went into a table")
        XCTAssertEqual(db.stats.levels[0].tables, 1)
        try db.put("after", "x")
        try db.close()
        // Idempotent: a second recovery finds the same state plus the new write.
        let again = try Database(path: dir.path, options: testOptions())
        XCTAssertEqual(again.stats.lastSequence, 10)
        XCTAssertEqual(try again.get("after"), "x")
        XCTAssertEqual(try again.get("key8"), "value8")
    }

    func testTornRecordWithUnsyncedLaterPagesIsATornTail() throws {
        // A multi-page chain torn in the middle: its later pages persisted, an earlier one
        // did not. Nothing from the damaged page on was acknowledged.
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        try db.put("durable", "yes")
        var batch = WriteBatch()
        batch.put(bytes("big"), [UInt8](repeating: 9, count: 3 * 4096))
        try db.write(batch)
        try db.close()
        let log = logFiles(dir.path)[0]
        // Page 1: "durable"; pages 2-5: the big record. Zero page 3 (a hole in its chain).
        scribble(log, at: 3 * 4096, count: 4096, byte: 0)
        let reopened = try Database(path: dir.path, options: testOptions())
        XCTAssertEqual(try reopened.get("durable"), "yes")
        XCTAssertNil(try reopened.get("big"), "no partial batch")
        XCTAssertEqual(reopened.stats.lastSequence, 1)
    }

    func testDamageBeforeTheTailRefusesToOpen() throws {
        let dir = TestPath()
        let log = try writeOnePerPage(dir.path, count: 10)
        let damagedOffset: Int64 = 4 * 4096 + 30
        scribble(log, at: damagedOffset, count: 8)
        XCTAssertThrowsError(try Database(path: dir.path, options: testOptions())) { error in
            let error = error as! KVError
            XCTAssertEqual(error.code, .corruption)
            XCTAssertEqual(error.path, log)
            XCTAssertEqual(error.offsetBytes, 4 * 4096, "the damaged fragment starts the page")
            XCTAssertTrue(error.message.hasPrefix("log \(log) is corrupt at offset 16384: checksum mismatch"), error.message)
        }
        XCTAssertEqual(fileSize(log), 11 * 4096, "a refused open changes nothing")
    }

    func testDamageBeforeTheTailCanOpenReadOnly() throws {
        let dir = TestPath()
        let log = try writeOnePerPage(dir.path, count: 10)
        scribble(log, at: 4 * 4096 + 30, count: 8)
        let db = try Database(path: dir.path, options: testOptions { $0.onLogCorruption = .openReadOnly })
        XCTAssertEqual(try db.get("key2"), "value2")
        XCTAssertNil(try db.get("key3"), "nothing from the damage on")
        XCTAssertNil(try db.get("key9"))
        XCTAssertThrowsError(try db.put("x", "y")) { XCTAssertEqual(($0 as! KVError).code, .readOnly) }
        try db.close()
        XCTAssertEqual(fileSize(log), 11 * 4096, "read-only recovery truncates nothing")
    }

    func testStalePageFromAnotherLogNeverParses() throws {
        // Two logs (two sessions); copy a valid page of the first log into the tail of the
        // second. Its checksum is bound to the first log's number and position.
        let dir = TestPath()
        _ = try writeOnePerPage(dir.path, count: 3)
        let first = try XCTUnwrap(logFiles(dir.path).first)
        let stale = try Data(contentsOf: URL(fileURLWithPath: first))[(2 * 4096)..<(3 * 4096)]
        let db = try Database(path: dir.path, options: testOptions())
        try db.put("second", "session")
        try db.close()
        // The second open put the first log's records into a table and removed it.
        let logs = logFiles(dir.path)
        XCTAssertEqual(logs.count, 1)
        XCTAssertNotEqual(logs[0], first)
        let handle = FileHandle(forUpdatingAtPath: logs[0])!
        handle.seekToEndOfFile()
        handle.write(stale)
        try handle.close()
        let reopened = try Database(path: dir.path, options: testOptions())
        XCTAssertEqual(reopened.stats.lastSequence, 4, "the stale page added nothing")
        XCTAssertEqual(try reopened.get("second"), "session")
    }

    func testLogWithUnfinishedHeaderIsRemoved() throws {
        let dir = TestPath()
        _ = try writeOnePerPage(dir.path, count: 2)
        // A crash while creating the next log: the file exists, its header never landed.
        XCTAssertTrue(FileManager.default.createFile(atPath: dir.path + "/000002.log", contents: Data(count: 8192)))
        let db = try Database(path: dir.path, options: testOptions())
        XCTAssertEqual(db.stats.lastSequence, 2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.path + "/000002.log"))
        try db.put("k", "v")
        try db.close()
        XCTAssertEqual(try Database(path: dir.path, options: testOptions()).get("k"), "v")
    }

    func testSequenceGapBetweenLogsIsCorruption() throws {
        let dir = TestPath()
        _ = try writeOnePerPage(dir.path, count: 2)
        let db = try Database(path: dir.path, options: testOptions())
        try db.put("k", "v")
        try db.close()
        // Losing the first log whole: the manifest records it as live (a manifest from
        // before format version 3 would show the gap: the second starting at sequence 3).
        let lost = logFiles(dir.path)[0]
        try FileManager.default.removeItem(atPath: lost)
        XCTAssertThrowsError(try Database(path: dir.path, options: testOptions())) { error in
            XCTAssertEqual((error as! KVError).code, .corruption)
            XCTAssertEqual((error as! KVError).path, lost)
            XCTAssertTrue("\(error)".contains("is missing"), "\(error)")
        }
    }

    /// A log holding acknowledged writes, overwritten whole with garbage (its header too),
    /// is damage, not a log whose creation was cut short: the open refuses, naming it.
    func testWholeLogOverwrittenWithGarbageIsCorruption() throws {
        let dir = TestPath()
        do {
            let db = try Database(path: dir.path, options: testOptions())
            for index in 0..<20 { try db.put("k\(index)", "v\(index)") }
            try db.close()
        }
        let log = try XCTUnwrap(logFiles(dir.path).last)
        scribble(log, at: 0, count: Int(fileSize(log)))
        XCTAssertThrowsError(try Database(path: dir.path, options: testOptions())) { error in
            XCTAssertEqual((error as! KVError).code, .corruption, "\(error)")
            XCTAssertEqual((error as! KVError).path, log)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: log), "the damaged log is kept")
        XCTAssertTrue(try Database.check(path: dir.path, options: testOptions()).isDamaged)
    }

    /// The manifest's last edit, a flush's, damaged after the flush removed the log it
    /// replaced: dropping it as a torn tail would lose the flushed writes without a word.
    /// The log it removed is still live in the edits before it, so its absence is damage.
    func testDamagedLastFlushEditIsCorruptionOnceItsLogIsGone() throws {
        let dir = TestPath()
        let options = testOptions { $0.inlineBackgroundWork = true }
        do {
            let db = try Database(path: dir.path, options: options)
            for index in 0..<10 { try db.put("k\(index)", "v\(index)") }
            try db.rotate(from: try XCTUnwrap(db.currentView.log))  // flushes on this thread
            XCTAssertEqual(db.stats.flushes, 1)
            try db.close()
        }
        let manifest = try XCTUnwrap(
            FileManager.default.contentsOfDirectory(atPath: dir.path).first { $0.hasPrefix("MANIFEST-") })
        let file = dir.path + "/" + manifest
        scribble(file, at: fileSize(file) - 4096, count: 4096)
        XCTAssertThrowsError(try Database(path: dir.path, options: options)) { error in
            XCTAssertEqual((error as! KVError).code, .corruption, "\(error)")
            XCTAssertTrue("\(error)".contains("is missing"), "\(error)")
        }
    }
}
