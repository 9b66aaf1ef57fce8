import Foundation
import XCTest

@testable import KVEngine

/// Read-triggered compaction (`Options.readCompactionBytesPerLookup`, LevelDB's seek
/// compaction) and the data-block restart interval (`Options.blockRestartInterval`).
final class ReadCompactionTests: XCTestCase {
    private func key(_ index: Int) -> [UInt8] { Array(String(format: "key%06d", index).utf8) }

    /// Options where level 0 is never compacted for its size: only reads can ask for it.
    private func options(bytesPerLookup: Int, minimum: Int = 4, _ change: (inout Options) -> Void = { _ in }) -> Options {
        lsmOptions {
            $0.level0CompactionTrigger = 1000
            $0.level0SlowdownTrigger = 1000
            $0.level0StopTrigger = 1000
            $0.readCompactionBytesPerLookup = bytesPerLookup
            $0.readCompactionMinimumLookups = minimum
            change(&$0)
        }
    }

    /// Every key written once, then every even key again: level 0 ends with tables that
    /// overlap, the newer ones holding only even keys, so a lookup of an odd key consults
    /// a newer table in vain before the older one answers. Returns what each key holds.
    private func fillOverlapping(_ db: Database) throws -> [[UInt8]: [UInt8]] {
        var expected: [[UInt8]: [UInt8]] = [:]
        for index in 0..<1500 {
            let value = Array("first-\(index)-".utf8) + [UInt8](repeating: UInt8(index % 251), count: 120)
            try db.put(key(index), value)
            expected[key(index)] = value
        }
        try flush(db)
        for index in stride(from: 0, to: 1500, by: 2) {
            let value = Array("second-\(index)".utf8)
            try db.put(key(index), value)
            expected[key(index)] = value
        }
        try flush(db)
        return expected
    }

    /// Freezes the memtable and waits for its flush to level 0.
    private func flush(_ db: Database) throws {
        try db.rotate(from: XCTUnwrap(db.currentView.log))
        for _ in 0..<2500 where !db.currentView.immutables.isEmpty { usleep(2000) }
        XCTAssertTrue(db.currentView.immutables.isEmpty, "the flush did not finish")
    }

    private func waitForLevel0(_ db: Database, atMost tables: Int) -> Bool {
        for _ in 0..<2500 {
            if db.stats.levels[0].tables <= tables && db.currentView.immutables.isEmpty { return true }
            usleep(2000)
        }
        return false
    }

    func testPointLookupsCompactOverlappingLevel0() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options(bytesPerLookup: 1 << 20))
        let expected = try fillOverlapping(db)
        let before = db.stats
        XCTAssertGreaterThanOrEqual(before.levels[0].tables, 2, "\(before.levels)")
        XCTAssertEqual(before.readCompactions, 0)
        // Odd keys pass through the newer tables first: a few of them use up the
        // allowance (4 lookups) of the table they meet first.
        for index in stride(from: 1, to: 200, by: 2) { XCTAssertEqual(try db.get(key(index)), expected[key(index)]) }
        XCTAssertTrue(waitForLevel0(db, atMost: 0), "reads asked for level 0's compaction: \(db.stats.levels)")
        XCTAssertGreaterThan(db.stats.readCompactions, 0)
        for (key, value) in expected { XCTAssertEqual(try db.get(key), value) }
        XCTAssertEqual(try db.scan().collect().count, expected.count)
        try db.close()
    }

    func testSeeksCompactOverlappingLevel0() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options(bytesPerLookup: 1 << 20))
        let expected = try fillOverlapping(db)
        XCTAssertGreaterThanOrEqual(db.stats.levels[0].tables, 2)
        // One seek in four samples where it lands (by the hash of its start key).
        var seen = 0
        for index in stride(from: 1, to: 1500, by: 2) {
            try db.forEach(ScanOptions(start: key(index), limit: 1)) { found, value in
                XCTAssertEqual(Array(found), self.key(index))
                XCTAssertEqual(Array(value), expected[self.key(index)])
                seen += 1
                return true
            }
        }
        XCTAssertEqual(seen, 750)
        XCTAssertTrue(waitForLevel0(db, atMost: 0), "seeks asked for level 0's compaction: \(db.stats.levels)")
        XCTAssertGreaterThan(db.stats.readCompactions, 0)
        XCTAssertEqual(try db.scan().collect().map { $0.value }, expected.sorted { $0.key.lexicographicallyPrecedes($1.key) }.map(\.value))
        try db.close()
    }

    func testLongScanSamplesWhatItReads() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options(bytesPerLookup: 1 << 20, minimum: 1))
        let expected = try fillOverlapping(db)
        // Whole scans from the first key: each samples once per 4,096 entries, somewhere
        // in its first 8,192, so a few scans of 1,500 keys sample at least once.
        for _ in 0..<12 {
            XCTAssertEqual(try db.scan(ScanOptions(start: key(0))).collect().count, expected.count)
            if db.stats.readCompactions > 0 { break }
            usleep(150_000)
        }
        XCTAssertTrue(waitForLevel0(db, atMost: 0), "scans asked for level 0's compaction: \(db.stats.levels)")
        for (key, value) in expected { XCTAssertEqual(try db.get(key), value) }
        try db.close()
    }

    func testNothingCompactsWhenReadsMayNotAskForIt() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options(bytesPerLookup: 0))
        let expected = try fillOverlapping(db)
        let tables = db.stats.levels[0].tables
        XCTAssertGreaterThanOrEqual(tables, 2)
        for _ in 0..<3 {
            for index in stride(from: 1, to: 1500, by: 2) { XCTAssertEqual(try db.get(key(index)), expected[key(index)]) }
            try db.forEach(ScanOptions(start: key(1))) { _, _ in true }
        }
        // The compaction thread wakes every 100 ms: three wake-ups find nothing to do.
        usleep(350_000)
        XCTAssertEqual(db.stats.levels[0].tables, tables)
        XCTAssertEqual(db.stats.readCompactions, 0)
        try db.close()
    }

    /// Tables written with restart points at every entry and every 128th read back the
    /// same (point lookups, seeks both ways, whole scans), before and after a reopen
    /// under another interval (a table records nothing of it).
    func testRestartIntervalsReadBackTheSame() throws {
        for (first, second) in [(1, 128), (128, 3), (7, 1)] {
            let dir = TestPath()
            var db = try Database(path: dir.path, options: lsmOptions { $0.blockRestartInterval = first })
            var expected: [[UInt8]: [UInt8]] = [:]
            var random = SplitMix(seed: UInt64(first * 1000 + second))
            for _ in 0..<3000 {
                let index = random.below(2000)
                if random.below(5) == 0 {
                    try db.delete(key(index))
                    expected[key(index)] = nil
                } else {
                    let value = (0..<(1 + random.below(60))).map { _ in UInt8(random.below(256)) }
                    try db.put(key(index), value)
                    expected[key(index)] = value
                }
            }
            try db.compactRange()
            let sorted = expected.sorted { $0.key.lexicographicallyPrecedes($1.key) }
            for round in 0..<2 {
                let label = "intervals \(first)/\(second), round \(round), seed \(first * 1000 + second)"
                for index in 0..<2000 { XCTAssertEqual(try db.get(key(index)), expected[key(index)], "\(label): key \(index)") }
                XCTAssertEqual(try db.scan().collect().map(\.key), sorted.map(\.key), label)
                XCTAssertEqual(try db.scan(ScanOptions(reverse: true)).collect().map(\.key), sorted.reversed().map(\.key), label)
                for index in stride(from: 0, to: 2000, by: 37) {
                    let after = sorted.first { !$0.key.lexicographicallyPrecedes(key(index)) }?.key
                    XCTAssertEqual(try db.scan(ScanOptions(start: key(index), limit: 1)).collect().first?.key, after, "\(label): seek \(index)")
                    let before = sorted.last { $0.key.lexicographicallyPrecedes(key(index)) }?.key
                    XCTAssertEqual(try db.scan(ScanOptions(end: key(index), reverse: true, limit: 1)).collect().first?.key, before, "\(label): reverse seek \(index)")
                }
                try db.close()
                db = try Database(path: dir.path, options: lsmOptions { $0.blockRestartInterval = second })
            }
            try db.close()
        }
    }

    func testOptionsOutOfRangeAreRefused() throws {
        for change in [{ (o: inout Options) in o.blockRestartInterval = 0 }, { $0.blockRestartInterval = 129 }, { $0.readCompactionBytesPerLookup = -1 }] {
            let dir = TestPath()
            XCTAssertThrowsError(try Database(path: dir.path, options: testOptions(change))) { error in
                XCTAssertEqual((error as? KVError)?.code, .invalidArgument, "\(error)")
            }
        }
    }
}

/// The memtable's bloom filter: never hides a key it holds, and turns most absent keys
/// away without a walk of the skip list.
final class MemtableFilterTests: XCTestCase {
    func testFilterNeverHidesAKeyAndRejectsMostAbsentOnes() {
        let memtable = Memtable(filterBytes: MemtableFilter.bytes(forMemtable: 4 << 20))
        let filter = MemtableFilter(bytes: MemtableFilter.bytes(forMemtable: 4 << 20))
        var random = SplitMix(seed: 42)
        var keys: [[UInt8]] = []
        for index in 0..<30_000 {
            let key = Array(String(format: "key%012d", random.below(1 << 40)).utf8)
            keys.append(key)
            key.withUnsafeBytes { key in
                memtable.add(sequence: UInt64(index + 1), type: .put, key: key, value: key)
                filter.add(key)
            }
        }
        for key in keys {
            key.withUnsafeBytes { key in
                XCTAssertTrue(filter.mayContain(key))
                guard case .value(let value) = memtable.find(key, snapshot: .max) else { return XCTFail("key lost: \(Array(key))") }
                XCTAssertEqual(Array(value), Array(key))
            }
        }
        var admitted = 0
        for index in 0..<10_000 {
            let key = Array("absent-\(index)".utf8)
            key.withUnsafeBytes { key in
                if filter.mayContain(key) { admitted += 1 }
                XCTAssertEqual(memtable.find(key, snapshot: .max).copied, .missing)
            }
        }
        // About 10 bits per key, four in one word: a few percent pass.
        XCTAssertLessThan(admitted, 1_000, "false positives: \(admitted) of 10000 (seed 42)")
    }
}
