import Foundation
import XCTest

@testable import KVEngine

/// `Database.ingest(sorted:)`: sorted entries added as tables in one manifest edit.
final class IngestTests: XCTestCase {
    private func options(_ change: (inout Options) -> Void = { _ in }) -> Options {
        testOptions {
            $0.allowTinySizes = true
            $0.memtableBytes = 16 << 10
            $0.tableTargetBytes = 8 << 10
            change(&$0)
        }
    }

    private func key(_ index: Int) -> [UInt8] { bytes(String(format: "key%05d", index)) }
    private func entries(_ range: some Sequence<Int>, _ tag: String) -> [(key: [UInt8], value: [UInt8])] {
        range.map { (key: key($0), value: bytes("\(tag)-\($0)-" + String(repeating: "i", count: 50))) }
    }

    private func tableFiles(_ path: String) -> Set<String> {
        Set(((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(".sst") })
    }

    /// Ingested values replace what their keys held (in tables, the memtable and
    /// tombstones alike), a snapshot from before sees none of them, writes after it go on
    /// in order, and a reopen (clean, or after a session that did not close) sees the same.
    func testIngestReplacesOlderValuesAndWritesGoOn() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options { $0.flushOnClose = false })
        for index in 0..<600 { try db.put(key(index), bytes("old-\(index)")) }
        try db.compactRange()
        for index in 300..<400 { try db.delete(key(index)) }  // tombstones in the memtable
        try db.put(key(450), bytes("memtable"))
        let before = try db.snapshot()
        let report = try db.ingest(sorted: entries(stride(from: 200, to: 500, by: 2), "new"))
        XCTAssertEqual(report.entries, 150)
        XCTAssertEqual(report.tables, 1, "over the level-0 table of the memtable's flush, the ingest goes to level 0 as one table")
        XCTAssertEqual(report.sequence, before.sequence + 1)
        try db.put(key(202), bytes("after"))
        func check(_ db: Database, after: Bool) throws {
            for index in 0..<600 {
                let expected: [UInt8]?
                if index == 202 && after {
                    expected = bytes("after")
                } else if index >= 200 && index < 500 && index % 2 == 0 {
                    expected = bytes("new-\(index)-" + String(repeating: "i", count: 50))
                } else if index >= 300 && index < 400 {
                    expected = nil
                } else if index == 450 {
                    expected = bytes("memtable")
                } else {
                    expected = bytes("old-\(index)")
                }
                XCTAssertEqual(try db.get(key(index)), expected, "key \(index)")
            }
        }
        try check(db, after: true)
        XCTAssertEqual(try db.get(key(250), snapshot: before), bytes("old-250"), "a snapshot from before sees no ingested value")
        XCTAssertNil(try db.get(key(350), snapshot: before))
        // Without flushOnClose the log holds the put after the ingest: the reopen replays
        // it after the ingested tables' sequence.
        try db.close()
        let reopened = try Database(path: dir.path, options: options())
        try check(reopened, after: true)
        try reopened.compactRange()
        try check(reopened, after: true)
        try reopened.close()
    }

    /// Into an empty database the tables go to the bottom level; over overlapping level-0
    /// tables they go to level 0, newest first.
    func testIngestLevels() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options { $0.level0CompactionTrigger = 100; $0.level0SlowdownTrigger = 100; $0.level0StopTrigger = 100 })
        try db.ingest(sorted: entries(0..<100, "first"))
        var levels = db.stats.levels.filter { $0.tables > 0 }.map(\.level)
        XCTAssertEqual(levels, [Version.levelCount - 1])
        for index in 0..<50 { try db.put(key(index), bytes("put")) }
        try db.rotate(from: db.currentView.log!)
        try db.waitForFlushes()
        let second = try db.ingest(sorted: entries(0..<10, "second") + entries(300..<600, "second"))
        XCTAssertGreaterThan(second.tables, 1, "cut into several tables, then")
        levels = db.stats.levels.filter { $0.tables > 0 }.map(\.level)
        XCTAssertEqual(levels, [0, Version.levelCount - 1])
        XCTAssertEqual(db.stats.levels[0].tables, 2, "what goes to level 0 goes as one table, beside the flushed one")
        XCTAssertEqual(try db.get(key(5)), entries(5..<6, "second")[0].value)
        XCTAssertEqual(try db.get(key(450)), entries(450..<451, "second")[0].value)
        XCTAssertEqual(try db.get(key(20)), bytes("put"))
        XCTAssertEqual(try db.get(key(70)), entries(70..<71, "first")[0].value)
        try db.close()
    }

    /// Each ingest over the last goes one level up: the first to the bottom level, one
    /// that overlaps it just above, and so on; the newest value wins at every key.
    func testIngestsOverEachOtherStackUpTheLevels() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options())
        let bottom = Version.levelCount - 1
        try db.ingest(sorted: entries(0..<30, "a"))
        try db.ingest(sorted: entries(20..<50, "b"))
        try db.ingest(sorted: entries(60..<70, "c"))  // overlaps nothing: the bottom too
        try db.ingest(sorted: entries(25..<26, "d"))
        XCTAssertEqual(db.stats.levels.filter { $0.tables > 0 }.map(\.level), [bottom - 2, bottom - 1, bottom])
        func expected(_ index: Int) -> [UInt8] {
            let tag = index == 25 ? "d" : index >= 60 ? "c" : index >= 20 ? "b" : "a"
            return entries(index..<(index + 1), tag)[0].value
        }
        for index in Array(0..<50) + Array(60..<70) { XCTAssertEqual(try db.get(key(index)), expected(index), "key \(index)") }
        XCTAssertEqual(try db.scan().collect().map(\.value), (Array(0..<50) + Array(60..<70)).map(expected))
        try db.close()
    }

    /// Keys out of order (found only after several tables were written), an empty key or
    /// an oversized value: the ingest is refused, nothing of it is visible or left on disk,
    /// and writes go on.
    func testRefusedIngestAddsNothing() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options())
        try db.put(key(1), bytes("kept"))
        let tablesBefore = tableFiles(dir.path)
        var unsorted = entries(0..<400, "bad")
        unsorted.append((key: key(5), value: bytes("late")))
        let cases: [(name: String, entries: [(key: [UInt8], value: [UInt8])], message: String)] = [
            ("out of order", unsorted, "strictly ascending"),
            ("empty key", [(key: [], value: [1])], "empty key"),
            ("oversized value", [(key: key(1), value: [UInt8](repeating: 1, count: Limits.maxValueBytes + 1))], "exceeds the limit"),
        ]
        for (name, entries, message) in cases {
            XCTAssertThrowsError(try db.ingest(sorted: entries), name) { error in
                XCTAssertEqual((error as! KVError).code, .invalidArgument, name)
                XCTAssertTrue((error as! KVError).message.contains(message), "\(name): \(error)")
            }
            XCTAssertEqual(try db.get(key(1)), bytes("kept"), name)
            XCTAssertNil(try db.get(key(0)), name)
        }
        // A source that fails part way (after enough entries for several tables): its own
        // error comes back and nothing is added.
        struct SourceFailed: Error {}
        let many = entries(0..<20_000, "streamed")
        var position = 0
        XCTAssertThrowsError(try db.ingest(sortedFrom: { () throws -> (key: [UInt8], value: [UInt8])? in
            guard position < many.count else { throw SourceFailed() }
            position += 1
            return many[position - 1]
        })) { error in
            XCTAssertTrue(error is SourceFailed, "the source's error, not a wrapper: \(error)")
        }
        XCTAssertEqual(position, many.count)
        XCTAssertEqual(try db.get(key(1)), bytes("kept"))
        XCTAssertNil(try db.get(key(0)))
        XCTAssertNil(try db.get(key(19_999)))
        XCTAssertTrue(tableFiles(dir.path).subtracting(tablesBefore).count <= 1, "only the flush of the memtable's one put may add a table")
        try db.put(key(2), bytes("after"))
        try db.close()
        let reopened = try Database(path: dir.path, options: options())
        XCTAssertEqual(try reopened.get(key(1)), bytes("kept"))
        XCTAssertEqual(try reopened.get(key(2)), bytes("after"))
        XCTAssertNil(try reopened.get(key(0)))
        XCTAssertEqual(try reopened.ingest(sorted: []).entries, 0)
        try reopened.close()
    }
    /// `count()` is exact in every state; `countFromProperties()` answers (with the same
    /// number) only where the tables' properties give it: after an ingest into an empty
    /// database and after a whole compaction with no snapshot open, not while a memtable,
    /// a tombstone or a second version of a key is in the way, nor for tables of table
    /// format 2, which do not count their keys.
    func testCountFromPropertiesOnlyWhereExact() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options())
        XCTAssertEqual(try db.count(), 0)
        XCTAssertEqual(try db.countFromProperties(), 0, "nothing at all")
        try db.ingest(sorted: entries(0..<3000, "loaded"))
        XCTAssertEqual(try db.countFromProperties(), 3000, "an ingest into an empty database")
        XCTAssertEqual(try db.count(), 3000)
        try db.put(key(5000), bytes("new"))
        XCTAssertNil(try db.countFromProperties(), "a key in the memtable")
        XCTAssertEqual(try db.count(), 3001)
        try db.delete(key(7))
        try db.put(key(8), bytes("again"))
        XCTAssertNil(try db.countFromProperties(), "a tombstone and a second version in the memtable")
        XCTAssertEqual(try db.count(), 3000)
        let before = try db.snapshot()
        try db.put(key(9), bytes("after the snapshot"))
        try db.compactRange()
        XCTAssertNil(try db.countFromProperties(), "versions a snapshot keeps")
        XCTAssertEqual(try db.count(snapshot: before), 3000)
        XCTAssertEqual(try db.count(), 3000)
        before.release()
        // (A whole compaction rewrites a bottom-level table only where something above
        // overlaps it: here the key written again.)
        try db.put(key(9), bytes("third"))
        try db.compactRange()
        XCTAssertEqual(try db.countFromProperties(), 3000, "compacted whole with no snapshot open")
        try db.close()

        let old = TestPath()
        let format2 = try Database(path: old.path, options: options { $0.tableFormatVersion = 2 })
        try format2.ingest(sorted: entries(0..<500, "format 2"))
        XCTAssertNil(try format2.countFromProperties(), "table format 2 does not count its keys")
        XCTAssertEqual(try format2.count(), 500)
        try format2.close()
    }
    /// A table whose index and filter together pass the largest read made whole (1 MiB) is
    /// opened through ordinary memory, so a read-only open's small arena reads it too.
    func testReadOnlyOpenReadsATableWhoseMetadataIsLargerThanABlock() throws {
        let dir = TestPath()
        let rows = 1_100_000
        let db = try Database(path: dir.path, options: options { $0.tableTargetBytes = 1 << 30 })
        let report = try db.ingest(sorted: (0..<rows).lazy.map { (key: Array(String(format: "k%08d", $0).utf8), value: [UInt8(truncatingIfNeeded: $0)]) })
        XCTAssertEqual(report.tables, 1)
        try db.close()
        var readOnly = testOptions()
        readOnly.readOnly = true
        let reader = try Database(path: dir.path, options: readOnly)
        defer { try? reader.close() }
        XCTAssertEqual(try reader.get(bytes("k00777777")), [UInt8(truncatingIfNeeded: 777_777)])
        XCTAssertNil(try reader.get(bytes("k99999999")))
        XCTAssertEqual(try reader.count(), rows)
    }
}
