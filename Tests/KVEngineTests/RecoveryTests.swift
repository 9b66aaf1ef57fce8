import Foundation
import XCTest

@testable import KVEngine

/// Torn tails, damage before the tail, and what each does to an open.
///
/// The databases here close without the flush a clean close makes (`flushOnClose` off),
/// so their logs stay behind to be torn and damaged as a crash would leave them.
final class RecoveryTests: XCTestCase {
    private func logKeepingOptions(_ change: (inout Options) -> Void = { _ in }) -> Options {
        testOptions {
            $0.flushOnClose = false
            change(&$0)
        }
    }

    /// Writes `count` sync puts one by one: each commit chain writes its own log page, so
    /// put `i` (0-based) sits in page `i + 1` of the log.
    private func writeOnePerPage(_ path: String, count: Int) throws -> String {
        let db = try Database(path: path, options: logKeepingOptions())
        for index in 0..<count { try db.put("key\(index)", "value\(index)") }
        XCTAssertEqual(db.stats.logChains, count)
        try db.close()
        let logs = logFiles(path)
        XCTAssertEqual(logs.count, 1)
        XCTAssertEqual(fileSize(logs[0]), Int64((count + 1) * 4096), "a closed log holds only its written pages")
        return logs[0]
    }

    /// Nine small sync puts (pages 1-9 of the log), then one of 3000 bytes (page 10,
    /// sectors 0-5 of it); the database is closed and the log returned.
    private func writeWithBigLast(_ path: String) throws -> String {
        let db = try Database(path: path, options: logKeepingOptions())
        for index in 0..<9 { try db.put("key\(index)", "value\(index)") }
        try db.put(bytes: bytes("key9"), [UInt8](repeating: 0x5A, count: 3000))
        try db.close()
        let log = try XCTUnwrap(logFiles(path).first)
        XCTAssertEqual(fileSize(log), 11 * 4096)
        return log
    }

    func testTornLastPageIsCutOffAndTheRestOpens() throws {
        let dir = TestPath()
        let log = try writeWithBigLast(dir.path)
        // The last chain torn: one sector of its page never reached the disk (it reads as
        // it was, zero); the others did.
        scribble(log, at: 10 * 4096 + 1024, count: 512, byte: 0)
        let db = try Database(path: dir.path, options: logKeepingOptions())
        for index in 0..<9 { XCTAssertEqual(try db.get("key\(index)"), "value\(index)") }
        XCTAssertNil(try db.get("key9"), "the torn record is not returned")
        XCTAssertEqual(db.stats.lastSequence, 9)
        // The log was cut at the torn page, replayed, and its records are in a table now.
        XCTAssertFalse(FileManager.default.fileExists(atPath: log), "the recovered log went into a table")
        XCTAssertEqual(db.stats.levels[0].tables, 1)
        try db.put("after", "x")
        try db.close()
        // Idempotent: a second recovery finds the same state plus the new write.
        let again = try Database(path: dir.path, options: logKeepingOptions())
        XCTAssertEqual(again.stats.lastSequence, 10)
        XCTAssertEqual(try again.get("after"), "x")
        XCTAssertEqual(try again.get("key8"), "value8")
    }

    /// The same page with one sector of garbage instead: every sector the record spans
    /// holds written bytes, so no power cut explains the failed checksum. The last
    /// chain's write was acknowledged; the open refuses rather than drop it as torn.
    func testGarbageInTheLastChainIsCorruptionNotATornTail() throws {
        let dir = TestPath()
        let log = try writeWithBigLast(dir.path)
        scribble(log, at: 10 * 4096 + 1024, count: 512, byte: 0xC3)
        XCTAssertThrowsError(try Database(path: dir.path, options: logKeepingOptions())) { error in
            let error = error as! KVError
            XCTAssertEqual(error.code, .corruption)
            XCTAssertEqual(error.path, log)
            XCTAssertEqual(error.offsetBytes, 10 * 4096)
            XCTAssertTrue(error.message.contains("checksum mismatch, in sectors that were all written"), error.message)
        }
        XCTAssertEqual(fileSize(log), 11 * 4096, "a refused open changes nothing")
        let report = try Database.check(path: dir.path, options: logKeepingOptions())
        XCTAssertTrue(report.isDamaged)
        // A few bytes are enough, anywhere in the record, header included.
        for (offset, count) in [(10 * 4096 + 3, 2), (10 * 4096 + 20, 1), (10 * 4096 + 2999, 1)] {
            let other = TestPath()
            let otherLog = try writeWithBigLast(other.path)
            scribble(otherLog, at: Int64(offset), count: count, byte: 0xFF)
            XCTAssertThrowsError(try Database(path: other.path, options: logKeepingOptions()), "garbage at \(offset)") { error in
                XCTAssertEqual((error as! KVError).code, .corruption, "garbage at \(offset): \(error)")
            }
        }
        // Read-only, the writes before the damage are there.
        let readOnly = try Database(path: dir.path, options: testOptions { $0.onLogCorruption = .openReadOnly })
        XCTAssertEqual(readOnly.stats.lastSequence, 9)
        XCTAssertEqual(try readOnly.get("key8"), "value8")
    }

    func testTornRecordWithUnsyncedLaterPagesIsATornTail() throws {
        // A multi-page chain torn in the middle: its later pages persisted, an earlier one
        // did not. Nothing from the damaged page on was acknowledged.
        let dir = TestPath()
        let db = try Database(path: dir.path, options: logKeepingOptions())
        try db.put("durable", "yes")
        var batch = WriteBatch()
        batch.put(bytes("big"), [UInt8](repeating: 9, count: 3 * 4096))
        try db.write(batch)
        try db.close()
        let log = logFiles(dir.path)[0]
        // Page 1: "durable"; pages 2-5: the big record. Zero page 3 (a hole in its chain).
        scribble(log, at: 3 * 4096, count: 4096, byte: 0)
        let reopened = try Database(path: dir.path, options: logKeepingOptions())
        XCTAssertEqual(try reopened.get("durable"), "yes")
        XCTAssertNil(try reopened.get("big"), "no partial batch")
        XCTAssertEqual(reopened.stats.lastSequence, 1)
    }

    func testDamageBeforeTheTailRefusesToOpen() throws {
        let dir = TestPath()
        let log = try writeOnePerPage(dir.path, count: 10)
        let damagedOffset: Int64 = 4 * 4096 + 30
        scribble(log, at: damagedOffset, count: 8)
        XCTAssertThrowsError(try Database(path: dir.path, options: logKeepingOptions())) { error in
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
        // second. Its checksum is bound to the first log's number and position, so it adds
        // no record; and since the engine never wrote it there, it is damage.
        let dir = TestPath()
        _ = try writeOnePerPage(dir.path, count: 3)
        let first = try XCTUnwrap(logFiles(dir.path).first)
        let stale = try Data(contentsOf: URL(fileURLWithPath: first))[(2 * 4096)..<(3 * 4096)]
        let db = try Database(path: dir.path, options: logKeepingOptions())
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
        XCTAssertThrowsError(try Database(path: dir.path, options: logKeepingOptions())) { error in
            XCTAssertEqual((error as! KVError).code, .corruption, "\(error)")
            XCTAssertEqual((error as! KVError).offsetBytes, 2 * 4096)
        }
        let reopened = try Database(path: dir.path, options: testOptions { $0.onLogCorruption = .openReadOnly })
        XCTAssertEqual(reopened.stats.lastSequence, 4, "the stale page added nothing")
        XCTAssertEqual(try reopened.get("second"), "session")
    }

    func testLogWithUnfinishedHeaderIsRemoved() throws {
        let dir = TestPath()
        _ = try writeOnePerPage(dir.path, count: 2)
        // A crash while creating the next log: the file exists, its header never landed.
        XCTAssertTrue(FileManager.default.createFile(atPath: dir.path + "/000002.log", contents: Data(count: 8192)))
        let db = try Database(path: dir.path, options: logKeepingOptions())
        XCTAssertEqual(db.stats.lastSequence, 2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.path + "/000002.log"))
        try db.put("k", "v")
        try db.close()
        XCTAssertEqual(try Database(path: dir.path, options: logKeepingOptions()).get("k"), "v")
    }

    func testSequenceGapBetweenLogsIsCorruption() throws {
        let dir = TestPath()
        _ = try writeOnePerPage(dir.path, count: 2)
        let db = try Database(path: dir.path, options: logKeepingOptions())
        try db.put("k", "v")
        try db.close()
        // Losing the first log whole: the manifest records it as live (a manifest from
        // before format version 3 would show the gap: the second starting at sequence 3).
        let lost = logFiles(dir.path)[0]
        try FileManager.default.removeItem(atPath: lost)
        XCTAssertThrowsError(try Database(path: dir.path, options: logKeepingOptions())) { error in
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
            let db = try Database(path: dir.path, options: logKeepingOptions())
            for index in 0..<20 { try db.put("k\(index)", "v\(index)") }
            try db.close()
        }
        let log = try XCTUnwrap(logFiles(dir.path).last)
        scribble(log, at: 0, count: Int(fileSize(log)))
        XCTAssertThrowsError(try Database(path: dir.path, options: logKeepingOptions())) { error in
            XCTAssertEqual((error as! KVError).code, .corruption, "\(error)")
            XCTAssertEqual((error as! KVError).path, log)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: log), "the damaged log is kept")
        XCTAssertTrue(try Database.check(path: dir.path, options: logKeepingOptions()).isDamaged)
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
        let edit = try Data(contentsOf: URL(fileURLWithPath: file)).suffix(4096)
        // Garbage over the edit: the sector rule sees bytes the engine never wrote.
        scribble(file, at: fileSize(file) - 4096, count: 4096)
        XCTAssertThrowsError(try Database(path: dir.path, options: options)) { error in
            XCTAssertEqual((error as! KVError).code, .corruption, "\(error)")
            XCTAssertTrue("\(error)".contains("in sectors that were all written"), "\(error)")
        }
        // Zeros over it (a lost write) look like an append that never arrived; but the
        // edit before it still lists the log the flush removed, and that is missing.
        scribble(file, at: fileSize(file) - 4096, count: 4096, byte: 0)
        XCTAssertThrowsError(try Database(path: dir.path, options: options)) { error in
            XCTAssertEqual((error as! KVError).code, .corruption, "\(error)")
            XCTAssertTrue("\(error)".contains("is missing"), "\(error)")
        }
        // The edit back: the database opens with every write.
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: file))
        handle.seek(toFileOffset: UInt64(fileSize(file) - 4096))
        handle.write(edit)
        try handle.close()
        let db = try Database(path: dir.path, options: options)
        for index in 0..<10 { XCTAssertEqual(try db.get("k\(index)"), "v\(index)") }
        try db.close()
    }
}

extension RecoveryTests {
    /// A damaged manifest edit under `onLogCorruption: .openReadOnly`: the open goes on
    /// read-only with the version before the damage (here, the first of two flushes) and
    /// refuses writes; by default it refuses, naming the manifest and offset.
    func testDamagedManifestEditCanOpenReadOnlyAtTheVersionBefore() throws {
        let dir = TestPath()
        let options = logKeepingOptions { $0.inlineBackgroundWork = true }
        do {
            let db = try Database(path: dir.path, options: options)
            for index in 0..<10 { try db.put("first\(index)", "v\(index)") }
            try db.rotate(from: try XCTUnwrap(db.currentView.log))
            for index in 0..<10 { try db.put("second\(index)", "v\(index)") }
            try db.rotate(from: try XCTUnwrap(db.currentView.log))
            XCTAssertEqual(db.stats.flushes, 2)
            try db.close()
        }
        let manifest = try XCTUnwrap(
            FileManager.default.contentsOfDirectory(atPath: dir.path).first { $0.hasPrefix("MANIFEST-") })
        let file = dir.path + "/" + manifest
        let damagedAt = fileSize(file) - 4096
        scribble(file, at: damagedAt + 30, count: 4)
        XCTAssertThrowsError(try Database(path: dir.path, options: options)) { error in
            let error = error as! KVError
            XCTAssertEqual(error.code, .corruption)
            XCTAssertEqual(error.path, file)
            XCTAssertEqual(error.offsetBytes, damagedAt)
        }
        let db = try Database(path: dir.path, options: logKeepingOptions { $0.onLogCorruption = .openReadOnly })
        for index in 0..<10 { XCTAssertEqual(try db.get("first\(index)"), "v\(index)") }
        XCTAssertNil(try db.get("second0"), "the second flush's edit is the damaged one, and its log is gone")
        XCTAssertThrowsError(try db.put("x", "y")) { XCTAssertEqual(($0 as! KVError).code, .readOnly) }
        try db.close()
        XCTAssertEqual(fileSize(file), damagedAt + 4096, "a read-only open changes nothing")
        XCTAssertTrue(FileManager.default.fileExists(atPath: file))
    }
}

extension RecoveryTests {
    /// Every page of every file a cleanly closed database holds, overwritten with zeros
    /// and then with garbage, one at a time: the open, a full scan and a get of every key
    /// either fail with corruption or I/O, or return every write. Nothing acknowledged
    /// disappears without an error. (A clean close leaves no log; the logs' own rules have
    /// the tests above.)
    func testNoPageOfACleanlyClosedDatabaseLosesAWriteSilently() throws {
        let dir = TestPath()
        var expected: [String: String] = [:]
        do {
            let db = try Database(path: dir.path, options: testOptions())
            for index in 0..<300 {
                let key = "key\(index % 120)"
                let value = "value\(index)-" + String(repeating: "x", count: index % 50)
                try db.put(key, value)
                expected[key] = value
            }
            try db.close()
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0 != "LOCK" }.sorted()
        XCTAssertEqual(names.filter { $0.hasSuffix(".log") }, [], "a clean close leaves no log")
        XCTAssertFalse(names.filter { $0.hasSuffix(".sst") }.isEmpty)
        var damagesTried = 0
        var detected = 0
        let trial = dir.root + "/trial"
        for name in names {
            let size = fileSize(dir.path + "/" + name)
            for page in 0..<Int((size + 4095) / 4096) {
                for byte: UInt8 in [0, 0xA5] {
                    // Each trial on a fresh copy: an open that succeeds rewrites the directory.
                    try? FileManager.default.removeItem(atPath: trial)
                    try FileManager.default.copyItem(atPath: dir.path, toPath: trial)
                    scribble(trial + "/" + name, at: Int64(page * 4096), count: min(4096, Int(size) - page * 4096), byte: byte)
                    damagesTried += 1
                    let what = "\(name) page \(page) set to \(byte)"
                    switch Self.readAll(trial) {
                    case .failure(let error):
                        XCTAssertTrue([.corruption, .io].contains(error.code), "\(what): \(error)")
                        detected += 1
                    case .success(let found):
                        XCTAssertEqual(found, expected, "\(what): a write changed or went missing without an error")
                    }
                }
            }
        }
        XCTAssertGreaterThan(detected, damagesTried / 2, "most damage is detected (\(detected) of \(damagesTried))")
        XCTAssertEqual(try Self.readAll(dir.path).get(), expected, "the undamaged database is whole")
    }

    /// Opens read-write (as a user would), scans everything and gets every key.
    private static func readAll(_ path: String) -> Result<[String: String], KVError> {
        do throws(KVError) {
            let db = try Database(path: path, options: testOptions())
            defer { try? db.close() }
            var found: [String: String] = [:]
            let cursor = db.scan()
            while let (key, value) = try cursor.next() { found[String(decoding: key, as: UTF8.self)] = String(decoding: value, as: UTF8.self) }
            for key in found.keys { _ = try db.get(key) }
            for index in 0..<120 where found["key\(index)"] == nil {
                if let value = try db.get("key\(index)") { found["key\(index)"] = value }
            }
            return .success(found)
        } catch {
            return .failure(error)
        }
    }
}

/// `Database.salvage` on damaged databases.
final class SalvageTests: XCTestCase {
    private func options(_ change: (inout Options) -> Void = { _ in }) -> Options {
        testOptions {
            $0.allowTinySizes = true
            $0.inlineBackgroundWork = true
            $0.memtableBytes = 16 << 10
            $0.tableTargetBytes = 8 << 10
            $0.levelBaseBytes = 1 << 30
            $0.flushOnClose = false
            change(&$0)
        }
    }

    private func key(_ index: Int) -> String { String(format: "key%05d", index) }
    private func value(_ index: Int, _ round: Int) -> String { "value\(index)-round\(round)-" + String(repeating: "v", count: 60) }

    /// Tables in level 1 (distinct key ranges) and newer writes in a log. One table gets a
    /// page of garbage in its first data block, and the log's last chain a sector of it:
    /// the open refuses; salvage keeps every key of the other tables, the log's records
    /// before the damage, sets both files aside in lost/, and the database then opens.
    func testSalvageKeepsWhatVerifiesAndSetsTheRestAside() throws {
        let dir = TestPath()
        do {
            let db = try Database(path: dir.path, options: options())
            for index in 0..<600 { try db.put(key(index), value(index, 0), durability: .buffered) }
            try db.compactRange()
            for index in 0..<10 { try db.put("new\(index)", "n\(index)") }
            try db.close()
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        let tables = names.filter { $0.hasSuffix(".sst") }.sorted()
        XCTAssertGreaterThan(tables.count, 4)
        let victim = tables[tables.count / 2]
        scribble(dir.path + "/" + victim, at: 0, count: 4096)
        let log = try XCTUnwrap(logFiles(dir.path).last)
        let logSize = fileSize(log)
        scribble(log, at: logSize - 4096 + 10, count: 4)  // inside the last record
        XCTAssertThrowsError(try Database(path: dir.path, options: options())) { error in
            XCTAssertEqual((error as! KVError).code, .corruption, "\(error)")
        }
        let report = try Database.salvage(path: dir.path, options: options())
        XCTAssertEqual(report.tablesDamaged, 1, report.description)
        XCTAssertEqual(report.logsDamaged, 1, report.description)
        XCTAssertEqual(report.recordsKept, 9, report.description)
        XCTAssertEqual(Set(report.setAside.map { URL(fileURLWithPath: $0).lastPathComponent }), [victim, URL(fileURLWithPath: log).lastPathComponent])
        XCTAssertTrue(report.dropped.contains { $0.contains(victim) }, report.description)
        for path in report.setAside { XCTAssertTrue(FileManager.default.fileExists(atPath: path), "\(path) kept") }
        XCTAssertTrue(try Database.check(path: dir.path, options: options()).findings.isEmpty)
        let db = try Database(path: dir.path, options: options())
        var present = 0
        for index in 0..<600 {
            if let got = try db.get(key(index)) {
                XCTAssertEqual(got, value(index, 0))
                present += 1
            }
        }
        XCTAssertEqual(present, report.keys - 9, "every key outside the damaged table")
        XCTAssertGreaterThan(present, 450)
        for index in 0..<9 { XCTAssertEqual(try db.get("new\(index)"), "n\(index)") }
        XCTAssertNil(try db.get("new9"), "the damaged record is gone")
        try db.put("after", "salvage")
        XCTAssertEqual(try db.get("after"), "salvage")
        XCTAssertEqual(db.stats.lastSequence, 610, "new writes follow the kept sequence numbers")
        try db.close()
    }

    /// A garbage identity file is set aside and written again; everything else is kept.
    func testSalvageRewritesADamagedIdentity() throws {
        let dir = TestPath()
        do {
            let db = try Database(path: dir.path, options: options())
            for index in 0..<50 { try db.put(key(index), value(index, 1)) }
            try db.close()
        }
        scribble(dir.path + "/KVENGINE", at: 0, count: 64)
        XCTAssertThrowsError(try Database(path: dir.path, options: options()))
        let report = try Database.salvage(path: dir.path, options: options())
        XCTAssertEqual(report.keys, 50)
        XCTAssertEqual(report.setAside.count, 1)
        let db = try Database(path: dir.path, options: options())
        for index in 0..<50 { XCTAssertEqual(try db.get(key(index)), value(index, 1)) }
        try db.close()
    }
}

extension RecoveryTests {
    /// A chain's page whose last two sectors never arrived, where the lost part begins
    /// exactly at a fragment boundary (byte 3072): the zeros read as padding, and the next
    /// page of the chain begins with the last fragment of a record whose first never
    /// arrived. That is a torn tail, not corruption: the open goes on without the record.
    func testTornSectorsAtAFragmentBoundaryAreATornTail() throws {
        let dir = TestPath()
        let options = logKeepingOptions { $0.bufferedFlushIntervalMs = 60_000 }
        do {
            let db = try Database(path: dir.path, options: options)
            // Record 1's fragment is 24 + 3048 bytes: it ends at byte 3072 of page 1.
            try db.put(bytes("a"), [UInt8](repeating: 0x61, count: 3031), durability: .buffered)
            // Record 2 starts there and runs into page 2.
            try db.put(bytes("b"), [UInt8](repeating: 0x62, count: 2000), durability: .buffered)
            try db.sync()
            XCTAssertEqual(db.stats.logChains, 1)
            try db.close()
        }
        let log = try XCTUnwrap(logFiles(dir.path).first)
        XCTAssertEqual(fileSize(log), 3 * 4096)
        scribble(log, at: 4096 + 3072, count: 1024, byte: 0)
        let db = try Database(path: dir.path, options: options)
        XCTAssertEqual(db.stats.lastSequence, 1)
        XCTAssertEqual(try db.get(bytes: bytes("a")), [UInt8](repeating: 0x61, count: 3031))
        XCTAssertNil(try db.get(bytes: bytes("b")))
        try db.close()
    }
}

extension RecoveryTests {
    /// Page 1: `a` (ending at byte 3072), then `b` filling the page to its end; pages 2-3:
    /// `c`, in two fragments. With `syncBetween`, `a` and `b` are made durable (one chain)
    /// before `c` is written (another chain, whose fragments record that page 1 was
    /// durable). Then `b`'s sectors (bytes 3072..<4096 of page 1) are set to zero.
    private func zeroedRecordBeforeATwoPageRecord(syncBetween: Bool) throws -> (TestPath, Options) {
        let dir = TestPath()
        let options = logKeepingOptions { $0.bufferedFlushIntervalMs = 60_000 }
        let db = try Database(path: dir.path, options: options)
        try db.put(bytes("a"), [UInt8](repeating: 0x61, count: 3031), durability: .buffered)
        try db.put(bytes("b"), [UInt8](repeating: 0x62, count: 983), durability: syncBetween ? .sync : .buffered)
        try db.put(bytes("c"), [UInt8](repeating: 0x63, count: 6000), durability: .buffered)
        try db.sync()
        XCTAssertEqual(db.stats.logChains, syncBetween ? 2 : 1)
        try db.close()
        let log = try XCTUnwrap(logFiles(dir.path).first)
        XCTAssertEqual(fileSize(log), 4 * 4096)
        scribble(log, at: 4096 + 3072, count: 1024, byte: 0)
        return (dir, options)
    }

    /// All in one chain that never completed: the zeros are sectors that never arrived, and
    /// `c`, whose sequence number does not follow `a`'s, shows it only at its last
    /// fragment. A torn tail: the open goes on with `a` alone.
    func testTornSectorsBeforeAMultiPageRecordAreATornTail() throws {
        let (dir, options) = try zeroedRecordBeforeATwoPageRecord(syncBetween: false)
        let db = try Database(path: dir.path, options: options)
        XCTAssertEqual(db.stats.lastSequence, 1)
        XCTAssertNotNil(try db.get(bytes: bytes("a")))
        XCTAssertNil(try db.get(bytes: bytes("c")))
        try db.close()
    }

    /// `b` was acknowledged, and `c`'s fragments say page 1 was durable: its zeros are
    /// damage, not a torn write. The open refuses.
    func testZeroedAcknowledgedRecordWitnessedByALaterChainIsCorruption() throws {
        let (dir, options) = try zeroedRecordBeforeATwoPageRecord(syncBetween: true)
        XCTAssertThrowsError(try Database(path: dir.path, options: options)) { error in
            XCTAssertEqual((error as! KVError).code, .corruption, "\(error)")
            XCTAssertEqual((error as! KVError).offsetBytes, 4096 + 3072)
        }
    }
}
