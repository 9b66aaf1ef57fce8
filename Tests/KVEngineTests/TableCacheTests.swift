import Foundation
import XCTest

@testable import KVEngine

/// The table cache: a database of many more tables than file slots writes, reads,
/// compacts and reopens with at most `maxOpenTables` of them open.
final class TableCacheTests: XCTestCase {
    private func options(_ change: (inout Options) -> Void = { _ in }) -> Options {
        testOptions {
            $0.allowTinySizes = true
            $0.memtableBytes = 16 << 10
            $0.tableTargetBytes = 4 << 10
            $0.levelBaseBytes = 1 << 30
            $0.pageStore.maxOpenFiles = 128
            $0.maxOpenTables = 16
            change(&$0)
        }
    }

    private func key(_ index: Int) -> [UInt8] { bytes(String(format: "key%06d", index)) }
    private func value(_ index: Int, _ round: Int) -> [UInt8] { bytes("value\(index)-\(round)-" + String(repeating: "v", count: 40)) }

    private func tableFiles(_ path: String) -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(".sst") }.count
    }

    /// Far more tables than the 128 registered file slots: every key reads back (point
    /// reads, a batched read, a scan) through a cache of 16 open tables, before and after a
    /// compaction and a reopen.
    func testManyMoreTablesThanFileSlots() throws {
        let dir = TestPath()
        let count = 20_000
        do {
            let db = try Database(path: dir.path, options: options())
            var batch = WriteBatch()
            for index in 0..<count {
                batch.put(key(index), value(index, 0))
                if batch.count == 100 {
                    try db.write(batch)
                    batch = WriteBatch()
                }
            }
            if batch.count > 0 { try db.write(batch) }
            // Overwrite every third key, so that reads must pick the newer table.
            for index in stride(from: 0, to: count, by: 3) { try db.put(key(index), value(index, 1)) }
            try verify(db, count: count)
            try db.compactRange()
            let tables = db.stats.levels.reduce(0) { $0 + $1.tables }
            XCTAssertGreaterThan(tables, 200, "the workload should make many more tables than file slots")
            try verify(db, count: count)
            try db.close()
        }
        XCTAssertGreaterThan(tableFiles(dir.path), 128)
        let db = try Database(path: dir.path, options: options())
        XCTAssertEqual(db.stats.openTables, 0, "an open opens no table")
        try verify(db, count: count)
        let stats = db.stats
        XCTAssertLessThanOrEqual(stats.openTables, 16)
        XCTAssertGreaterThan(stats.tableOpens, 16, "reads reached more tables than the cache holds")
        try db.close()
    }

    private func verify(_ db: Database, count: Int) throws {
        for index in 0..<count {
            XCTAssertEqual(try db.get(key(index)), value(index, index % 3 == 0 ? 1 : 0), "key \(index)")
        }
        let keys = stride(from: 0, to: count, by: 7).map(key)
        let found = try db.get(keys: keys)
        for (position, index) in stride(from: 0, to: count, by: 7).enumerated() {
            XCTAssertEqual(found[position], value(index, index % 3 == 0 ? 1 : 0), "batched key \(index)")
        }
        var seen = 0
        let cursor = db.scan()
        while let (key, value) = try cursor.next() {
            XCTAssertEqual(key, self.key(seen))
            XCTAssertEqual(value, self.value(seen, seen % 3 == 0 ? 1 : 0))
            seen += 1
        }
        XCTAssertNil(cursor.error)
        XCTAssertEqual(seen, count)
    }

    /// Cursors that each hold a table the cache has let go of: past the ceiling (the
    /// capacity and half the reserved slots) a read that needs one more table fails with
    /// a clear error, writes and their flushes go on (their file slots stay free), and
    /// once the cursors go, reads work again.
    func testTablesHeldByCursorsCannotTakeTheWritersSlots() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options())
        for index in 0..<12_000 { try db.put(key(index), value(index, 0)) }
        try db.compactRange()
        let tables = db.stats.levels.reduce(0) { $0 + $1.tables }
        let ceiling = 16 + Options.reservedFileSlots / 2
        XCTAssertGreaterThan(tables, ceiling + 10)
        // One cursor per table, spread over the keys: each holds its table open.
        var cursors: [Cursor] = []
        var refused: KVError? = nil
        for index in stride(from: 0, to: 12_000, by: 12_000 / (ceiling + 10)) {
            let cursor = db.scan(ScanOptions(start: key(index)))
            if (try? cursor.next()) == nil {
                refused = cursor.error
                break
            }
            cursors.append(cursor)
        }
        let error = try XCTUnwrap(refused, "a cursor past the ceiling should fail")
        XCTAssertTrue(error.message.contains("too many tables are open at once"), error.message)
        XCTAssertLessThanOrEqual(db.stats.openTables, ceiling)
        // Writes, a rotation and a flush still find file slots.
        for index in 0..<2_000 { try db.put(key(index), value(index, 1)) }
        cursors.removeAll()
        XCTAssertEqual(try db.get(key(11_999)), value(11_999, 0))
        XCTAssertEqual(try db.get(key(1_999)), value(1_999, 1))
        try db.compactRange()
        XCTAssertEqual(try db.scan().collect().count, 12_000)
        try db.close()
    }

    /// A cursor's iterator stack goes back to its view when the cursor goes, for the next
    /// cursor, holding no table: after eight cursors (the most a view keeps) each held a
    /// table and went, reads of other tables evict theirs, and no more than the cache's
    /// 16 stay open. The next cursors, on the parked stacks, read what they should.
    func testParkedCursorStacksHoldNoTable() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options())
        for index in 0..<12_000 { try db.put(key(index), value(index, 0)) }
        try db.compactRange()
        XCTAssertGreaterThan(db.stats.levels.reduce(0) { $0 + $1.tables }, 60)
        let starts = (0..<View.parkedIteratorLimit).map { $0 * 1_500 + 7 }
        do {
            let cursors = starts.map { db.scan(ScanOptions(start: key($0))) }
            for (cursor, start) in zip(cursors, starts) {
                XCTAssertEqual(try cursor.next()?.key, key(start))
            }
        }
        // Other tables, through point reads: the cache lets go of the cursors' tables.
        for index in stride(from: 500, to: 12_000, by: 250) { XCTAssertEqual(try db.get(key(index)), value(index, 0)) }
        XCTAssertLessThanOrEqual(db.stats.openTables, 16, "parked iterator stacks hold no table open")
        // The parked stacks walk again, from anywhere, both ways.
        for start in starts.reversed() {
            let forward = try db.scan(ScanOptions(start: key(start + 3), limit: 3)).collect()
            XCTAssertEqual(forward.map(\.key), (start + 3..<start + 6).map(key))
            XCTAssertEqual(forward.map(\.value), (start + 3..<start + 6).map { value($0, 0) })
            let backward = try db.scan(ScanOptions(end: key(start), reverse: true, limit: 2)).collect()
            XCTAssertEqual(backward.map(\.key), (start - 2..<start).reversed().map(key))
        }
        XCTAssertEqual(try db.scan().collect().count, 12_000)
        try db.close()
    }

    /// A `maxOpenTables` the file slots or the descriptor limit cannot hold is refused at
    /// open, naming the limit.
    func testMaxOpenTablesBeyondTheLimitsIsRefused() throws {
        let dir = TestPath()
        XCTAssertThrowsError(try Database(path: dir.path, options: options { $0.maxOpenTables = 100 })) { error in
            let error = error as! KVError
            XCTAssertEqual(error.code, .invalidArgument)
            XCTAssertTrue(error.message.contains("pageStore.maxOpenFiles 128"), error.message)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.path), "a refused open creates nothing")
        XCTAssertThrowsError(try Database(path: dir.path, options: options { $0.maxOpenTables = 0 })) { error in
            XCTAssertEqual((error as! KVError).code, .invalidArgument)
        }
        XCTAssertThrowsError(try options { $0.pageStore.maxOpenFiles = 65535; $0.maxOpenTables = 60000 }.tableCacheCapacity(openFileLimit: 1024)) { error in
            XCTAssertTrue((error as! KVError).message.contains("RLIMIT_NOFILE 1024"), "\(error)")
        }
        XCTAssertEqual(try Options().tableCacheCapacity(openFileLimit: 1 << 20), 960, "the default within 1024 slots")
        XCTAssertEqual(try Options().tableCacheCapacity(openFileLimit: 256), 192, "the default within RLIMIT_NOFILE")
        XCTAssertEqual(try options().tableCacheCapacity(openFileLimit: 1024), 16)
    }

    /// An open reads no table, so damage to one is found by the first read that reaches
    /// it: that read fails with `.corruption` naming the file, and other keys still read.
    func testDamagedTableIsReportedByTheReadThatReachesIt() throws {
        let dir = TestPath()
        do {
            let db = try Database(path: dir.path, options: options { $0.levelBaseBytes = 1 << 20 })
            for index in 0..<2_000 { try db.put(key(index), value(index, 0)) }
            try db.compactRange()
            try db.close()
        }
        let tables = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".sst") }.sorted()
        XCTAssertGreaterThan(tables.count, 2)
        let damaged = dir.path + "/" + tables[0]
        scribble(damaged, at: fileSize(damaged) - 4096, count: 64)  // its footer
        let db = try Database(path: dir.path, options: options())
        XCTAssertThrowsError(try db.get(key(0))) { error in
            let error = error as! KVError
            XCTAssertEqual(error.code, .corruption)
            XCTAssertEqual(error.path, damaged)
        }
        XCTAssertEqual(try db.get(key(1_999)), value(1_999, 0))
        try db.close()
    }
}
