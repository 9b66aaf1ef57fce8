import Atomics
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
        var expected = try fillFirst(db)
        for index in stride(from: 0, to: 1500, by: 2) {
            let value = Array("second-\(index)".utf8)
            try db.put(key(index), value)
            expected[key(index)] = value
        }
        try flush(db)
        return expected
    }

    /// Keys 0..<1500 with values of about 130 bytes, flushed to level 0; what each holds.
    private func fillFirst(_ db: Database) throws -> [[UInt8]: [UInt8]] {
        var expected: [[UInt8]: [UInt8]] = [:]
        for index in 0..<1500 {
            let value = Array("first-\(index)-".utf8) + [UInt8](repeating: UInt8(index % 251), count: 120)
            try db.put(key(index), value)
            expected[key(index)] = value
        }
        try flush(db)
        return expected
    }

    /// Freezes the memtable and waits for its flush to level 0.
    private func flush(_ db: Database) throws {
        try db.rotate(from: XCTUnwrap(db.currentView.log))
        for _ in 0..<15_000 where !db.currentView.immutables.isEmpty { usleep(2000) }
        XCTAssertTrue(db.currentView.immutables.isEmpty, "the flush did not finish")
    }

    /// Waits (up to 30 s: a loaded machine) for level 0 to shrink to `tables`.
    private func waitForLevel0(_ db: Database, atMost tables: Int) -> Bool {
        for _ in 0..<15_000 {
            if db.stats.levels[0].tables <= tables && db.currentView.immutables.isEmpty { return true }
            usleep(2000)
        }
        return false
    }

    /// A lookup at a snapshot older than a newer table's versions reads that table's
    /// block in vain (its filter lets the key through; the version there is too new) and
    /// goes on to the older table: the newer table is charged.
    func testPointLookupsCompactOverlappingLevel0() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options(bytesPerLookup: 1 << 20))
        let expected = try fillFirst(db)
        let snapshot = try db.snapshot()
        for index in 0..<1500 { try db.put(key(index), Array("second-\(index)".utf8)) }
        try flush(db)
        let before = db.stats
        XCTAssertGreaterThanOrEqual(before.levels[0].tables, 2, "\(before.levels)")
        XCTAssertEqual(before.readCompactions, 0)
        // Lookups at the snapshot read the newer table's block first: a few of them use
        // up its allowance (4 lookups).
        for index in stride(from: 1, to: 200, by: 2) { XCTAssertEqual(try db.get(key(index), snapshot: snapshot), expected[key(index)]) }
        XCTAssertTrue(waitForLevel0(db, atMost: 0), "reads asked for level 0's compaction: \(db.stats.levels)")
        XCTAssertGreaterThan(db.stats.readCompactions, 0)
        // The snapshot still sees what it saw, and the present what was written last.
        for (key, value) in expected { XCTAssertEqual(try db.get(key, snapshot: snapshot), value) }
        for index in 0..<1500 { XCTAssertEqual(try db.get(key(index)), Array("second-\(index)".utf8)) }
        XCTAssertEqual(try db.scan().collect().count, expected.count)
        snapshot.release()
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
        // Whole scans from the first key: each samples at its start (one in four) or
        // somewhere in its first 8,192 entries (by the clock), so about two scans in five
        // of these 1,500 keys sample where two tables hold the key; 100 scans all
        // missing is a chance of 1 in 10^20.
        for _ in 0..<100 {
            XCTAssertEqual(try db.scan(ScanOptions(start: key(0))).collect().count, expected.count)
            if db.stats.readCompactions > 0 { break }
            usleep(20_000)
        }
        XCTAssertTrue(waitForLevel0(db, atMost: 0), "scans asked for level 0's compaction: \(db.stats.levels)")
        for (key, value) in expected { XCTAssertEqual(try db.get(key), value) }
        try db.close()
    }

    /// A scan's samples after its first, one per 4,096 entries: the newer table covers
    /// only keys past the first 8,192 of the walk (where its first sample falls, in a
    /// range one table holds), so only a later sample can find two tables under a key.
    func testLongScanSamplesEveryPeriod() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options(bytesPerLookup: 1 << 30, minimum: 1) { $0.memtableBytes = 8 << 20; $0.tableTargetBytes = 8 << 20 })
        for first in stride(from: 0, to: 30_000, by: 1000) {
            var batch = WriteBatch()
            for index in first..<first + 1000 { batch.put(key(index), Array("v\(index)".utf8)) }
            try db.write(batch)
        }
        try flush(db)
        var batch = WriteBatch()
        for index in stride(from: 20_000, to: 30_000, by: 2) { batch.put(key(index), Array("w\(index)".utf8)) }
        try db.write(batch)
        try flush(db)
        XCTAssertEqual(db.stats.levels[0].tables, 2, "\(db.stats.levels)")
        // Seeks from key 0 land where one table holds the key: they sample nothing.
        for _ in 0..<8 { XCTAssertEqual(try db.scan(ScanOptions(start: key(0), limit: 1)).collect().count, 1) }
        usleep(250_000)
        XCTAssertEqual(db.stats.readCompactions, 0, "a sample in the range one table holds charged it")
        XCTAssertEqual(try db.scan(ScanOptions(start: key(0))).collect().count, 30_000)
        XCTAssertTrue(waitForLevel0(db, atMost: 0), "a long scan's later samples asked for nothing: \(db.stats.levels)")
        XCTAssertGreaterThanOrEqual(db.stats.readCompactions, 1)
        for index in stride(from: 0, to: 30_000, by: 7) {
            XCTAssertEqual(try db.get(key(index)), Array((index >= 20_000 && index % 2 == 0 ? "w\(index)" : "v\(index)").utf8))
        }
        try db.close()
    }

    func testReverseScansSampleWhatTheyRead() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options(bytesPerLookup: 1 << 30, minimum: 1))
        let expected = try fillOverlapping(db)
        let sorted = expected.sorted { $0.key.lexicographicallyPrecedes($1.key) }
        // A reverse scan with no bound samples its first entry (the last key, which only
        // the older table holds) one time in four, else somewhere in its first 8,192
        // entries: about one scan in seven samples within these 1,500 keys, so 150 scans
        // all missing is a chance of 1 in 10^9.
        for _ in 0..<150 {
            XCTAssertEqual(try db.scan(ScanOptions(reverse: true)).collect().map(\.key), sorted.reversed().map(\.key))
            if db.stats.readCompactions > 0 { break }
            usleep(20_000)
        }
        XCTAssertTrue(waitForLevel0(db, atMost: 0), "reverse scans asked for level 0's compaction: \(db.stats.levels)")
        XCTAssertEqual(try db.scan(ScanOptions(reverse: true)).collect().map(\.value), sorted.reversed().map(\.value))
        try db.close()
    }

    /// A lookup that its filters turn away from the newer tables reads one block: no table
    /// is charged, and no compaction follows.
    func testFilteredLookupsChargeNothing() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options(bytesPerLookup: 1 << 30, minimum: 20))
        // Two tables with no key in common but overlapping ranges: a lookup of an odd key
        // finds the even table's range in its way, and its filter says no.
        for index in stride(from: 0, to: 3000, by: 2) { try db.put(key(index), Array("even\(index)".utf8)) }
        try flush(db)
        for index in stride(from: 1, to: 3000, by: 2) { try db.put(key(index), Array("odd\(index)".utf8)) }
        try flush(db)
        let tables = db.stats.levels[0].tables
        XCTAssertGreaterThanOrEqual(tables, 2)
        // Even keys pass the odd table's range first (newest first): its filter turns them
        // away (a false positive, about 1 in 100, would charge it once), so 40 lookups do
        // not use up its allowance of 20, as they would if every pass were charged.
        for index in stride(from: 2, to: 82, by: 2) { XCTAssertEqual(try db.get(key(index)), Array("even\(index)".utf8)) }
        usleep(350_000)
        XCTAssertEqual(db.stats.readCompactions, 0)
        XCTAssertEqual(db.stats.levels[0].tables, tables)
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
                filter.add(hash: BloomFilter.hash(key))
            }
        }
        for key in keys {
            key.withUnsafeBytes { key in
                XCTAssertTrue(filter.mayContain(hash: BloomFilter.hash(key)))
                guard case .value(let value) = memtable.find(key, snapshot: .max) else { return XCTFail("key lost: \(Array(key))") }
                XCTAssertEqual(Array(value), Array(key))
            }
        }
        var admitted = 0
        for index in 0..<10_000 {
            let key = Array("absent-\(index)".utf8)
            key.withUnsafeBytes { key in
                if filter.mayContain(hash: BloomFilter.hash(key)) { admitted += 1 }
                XCTAssertEqual(memtable.find(key, snapshot: .max).copied, .missing)
            }
        }
        // About 10 bits per key, four in one word: a few percent pass.
        XCTAssertLessThan(admitted, 1_000, "false positives: \(admitted) of 10000 (seed 42)")
    }

    /// Readers racing one writer: every entry a reader can know was added (through the
    /// count the writer publishes after each add, as the visible sequence is published
    /// after a batch) is found, its filter bits seen with it.
    func testReadersRacingTheWriterFindEveryPublishedKey() {
        let memtable = Memtable(filterBytes: MemtableFilter.bytes(forMemtable: 1 << 20))
        let total = 40_000
        let published = ManagedAtomic<Int>(0)
        let failures = ManagedAtomic<Int>(0)
        @Sendable func key(_ index: Int) -> [UInt8] { Array(String(format: "k%09d", (index &* 2_654_435_761) % 1_000_000_007).utf8) }
        DispatchQueue.concurrentPerform(iterations: 3) { worker in
            if worker == 0 {
                for index in 0..<total {
                    key(index).withUnsafeBytes { memtable.add(sequence: UInt64(index + 1), type: .put, key: $0, value: $0) }
                    published.store(index + 1, ordering: .releasing)
                }
                return
            }
            var random = SplitMix(seed: UInt64(worker))
            while true {
                let count = published.load(ordering: .acquiring)
                if count == 0 { continue }
                let index = count - 1 - random.below(min(count, 64))
                let wanted = key(index)
                let found = wanted.withUnsafeBytes { memtable.find($0, snapshot: .max).copied }
                if found != .value(wanted) { failures.wrappingIncrement(ordering: .relaxed) }
                if count == total { break }
            }
        }
        XCTAssertEqual(failures.load(ordering: .relaxed), 0, "entries published but not found (readers seeded 1 and 2)")
    }
}
