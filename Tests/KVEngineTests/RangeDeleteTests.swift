import Foundation
import XCTest

@testable import KVEngine

/// `Database.deleteRange`: one write that deletes a range, for every read, across flushes,
/// compactions, reopens and transactions, until compaction drops it.
final class RangeDeleteTests: XCTestCase {
    private func options(_ change: (inout Options) -> Void = { _ in }) -> Options {
        testOptions {
            $0.allowTinySizes = true
            $0.memtableBytes = 32 << 10
            $0.tableTargetBytes = 16 << 10
            $0.levelBaseBytes = 64 << 10
            change(&$0)
        }
    }

    private func key(_ index: Int) -> [UInt8] { bytes(String(format: "k%06d", index)) }

    private func flush(_ db: Database) throws {
        if let log = db.currentView.log { try db.rotate(from: log) }
        try db.waitForFlushes()
    }

    /// Every read answers as if each key of the range were deleted: get, withValue, batched
    /// gets, scans both ways with bounds, count; a snapshot from before still sees them;
    /// keys written after it in the range are there; and so after a flush, a reopen and a
    /// compaction, which drops the keys and the range delete.
    func testRangeDeleteHidesTheRangeFromEveryRead() throws {
        let dir = TestPath()
        var db = try Database(path: dir.path, options: options())
        for index in 0..<3000 { try db.put(key(index), bytes("v\(index)"), durability: .buffered) }
        try db.compactRange()
        for index in 0..<3000 where index % 10 == 0 { try db.put(key(index), bytes("memtable \(index)"), durability: .buffered) }
        let before = try db.snapshot()
        let sequence = try db.deleteRange(key(1000), key(2000))
        XCTAssertEqual(try db.snapshot().sequence, sequence)
        try db.put(key(1500), bytes("after"))
        func check(_ db: Database, _ what: String) throws {
            XCTAssertEqual(try db.get(key(999)), bytes("v999"), what)
            XCTAssertNil(try db.get(key(1000)), what)
            XCTAssertNil(try db.get(key(1010)), "\(what): a newer write before the range delete is deleted too")
            XCTAssertNil(try db.get(key(1999)), what)
            XCTAssertEqual(try db.get(key(1500)), bytes("after"), what)
            XCTAssertEqual(try db.get(key(2000)), bytes("memtable 2000"), what)
            XCTAssertNil(try db.withValue(forKey: key(1234)) { $0.map(Array.init) }, what)
            XCTAssertEqual(try db.get(keys: [key(999), key(1000), key(1500), key(2001)]).map { $0 != nil }, [true, false, true, true], what)
            let forward = try db.scan(ScanOptions(start: key(990), end: key(2010))).collect().map(\.key)
            XCTAssertEqual(forward, (990..<1000).map(key) + [key(1500)] + (2000..<2010).map(key), what)
            let reverse = try db.scan(ScanOptions(start: key(990), end: key(2010), reverse: true)).collect().map(\.key)
            XCTAssertEqual(reverse, forward.reversed(), what)
            XCTAssertEqual(try db.count(), 3000 - 1000 + 1, what)
        }
        try check(db, "in the memtable")
        XCTAssertEqual(try db.get(key(1500), snapshot: before), bytes("memtable 1500"), "a snapshot from before sees the range")
        XCTAssertEqual(try db.scan(ScanOptions(start: key(1000), end: key(2000)), snapshot: before).collect().count, 1000)
        try flush(db)
        XCTAssertFalse(db.currentView.version.rangeDeletes.isEmpty, "flushed into the version")
        try check(db, "flushed")
        XCTAssertEqual(try db.get(key(1500), snapshot: before), bytes("memtable 1500"))
        try db.close()
        db = try Database(path: dir.path, options: options())
        try check(db, "reopened")
        let tableBytes = db.stats.tableBytes
        try db.compactRange()
        try check(db, "compacted")
        XCTAssertTrue(db.currentView.version.rangeDeletes.isEmpty, "no table holds what it covers: dropped")
        XCTAssertLessThan(db.stats.tableBytes, tableBytes * 3 / 4, "space reclaimed")
        try db.close()
    }

    /// A snapshot older than the range delete keeps what it covers through a compaction,
    /// and the range delete with it; released, the next compaction drops both.
    func testSnapshotKeepsWhatARangeDeleteCoversThroughCompaction() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options())
        for index in 0..<2000 { try db.put(key(index), bytes("v\(index)"), durability: .buffered) }
        var snapshot: Snapshot? = try db.snapshot()
        try db.deleteRange(key(0), key(2000))
        try db.compactRange()
        XCTAssertEqual(try db.scan(snapshot: snapshot).collect().count, 2000)
        XCTAssertEqual(try db.scan().collect().count, 0)
        XCTAssertFalse(db.currentView.version.rangeDeletes.isEmpty)
        snapshot = nil
        try db.compactRange()
        XCTAssertTrue(db.currentView.version.rangeDeletes.isEmpty)
        XCTAssertEqual(db.currentView.version.tableCount, 0, "everything it covered is gone")
        try db.close()
    }

    /// A scan across a deleted range reads no more blocks than one of an empty range: the
    /// sources older than the range delete jump past it.
    func testAScanAcrossADeletedRangeSkipsIt() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options { $0.cacheBytes = 0 })
        for index in 0..<20_000 { try db.put(key(index), [UInt8](repeating: 0x61, count: 100), durability: .buffered) }
        try db.compactRange()
        // Newer tables in the same levels, outside the range: the jump looks at the tables
        // it passes over, not at the whole level.
        for index in 30_000..<32_000 { try db.put(key(index), [UInt8](repeating: 0x62, count: 100), durability: .buffered) }
        try db.compactRange()
        try db.deleteRange(key(0), key(20_000))
        func misses(_ body: () throws -> Void) rethrows -> Int {
            let before = db.stats.cacheMisses
            try body()
            return db.stats.cacheMisses - before
        }
        let deleted = try misses { XCTAssertEqual(try db.scan(ScanOptions(start: key(0), end: key(20_000))).collect().count, 0) }
        let reverse = try misses { XCTAssertEqual(try db.scan(ScanOptions(start: key(0), end: key(20_000), reverse: true)).collect().count, 0) }
        let all = try misses { XCTAssertEqual(try db.scan(ScanOptions(end: key(29_999), fillCache: false)).collect().count, 0) }
        XCTAssertLessThanOrEqual(deleted, 4, "blocks read across the deleted range")
        XCTAssertLessThanOrEqual(reverse, 4, "blocks read across it backwards")
        XCTAssertLessThanOrEqual(all, 4)
        try db.close()
    }

    /// A range delete in a transaction hides the stored keys it covers from the
    /// transaction's reads, its own later writes win, and a concurrent write in the range
    /// is a conflict; another transaction's reads conflict with a range delete after them.
    func testRangeDeletesInTransactions() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options())
        for index in 0..<10 { try db.put(key(index), bytes("v\(index)")) }
        try db.transaction { tx in
            try tx.put(key(3), bytes("own"))
            try tx.deleteRange(key(2), key(6))
            try tx.put(key(4), bytes("after"))
            XCTAssertNil(try tx.get(key(3)), "its own earlier write is deleted too")
            XCTAssertNil(try tx.get(key(2)))
            XCTAssertEqual(try tx.get(key(4)), bytes("after"))
            XCTAssertEqual(try tx.scan(ScanOptions(start: key(1), end: key(7))).map(\.key), [key(1), key(4), key(6)])
        }
        XCTAssertEqual(try db.scan().collect().map(\.key), [0, 1, 4, 6, 7, 8, 9].map(key))
        var attempts = 0
        try db.transaction(TransactionOptions(maxAttempts: 2)) { tx in
            attempts += 1
            _ = try tx.get(key(7))
            if attempts == 1 { try db.deleteRange(key(7), key(9)) }  // meanwhile
            try tx.put(key(20), bytes("x"))
        }
        XCTAssertEqual(attempts, 2, "a range delete after the snapshot over a key read is a conflict")
        XCTAssertNil(try db.get(key(7)))
        try db.close()
    }

    /// Refused: an empty or reversed range, an empty start; nothing is written.
    func testBadRangesAreRefused() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options())
        try db.put(key(1), bytes("v"))
        for (start, end) in [(key(1), key(1)), (key(2), key(1)), ([], key(1))] {
            XCTAssertThrowsError(try db.deleteRange(start, end)) { XCTAssertEqual(($0 as? KVError)?.code, .invalidArgument, "\($0)") }
        }
        XCTAssertEqual(try db.get(key(1)), bytes("v"))
        try db.close()
    }
}
