import Foundation
import PageStore
import XCTest
import Synchronization
import TestSupport

@testable import KVEngine

/// Options that make flushes and compactions happen after a few hundred writes.
func lsmOptions(_ change: (inout Options) -> Void = { _ in }) -> Options {
    testOptions {
        $0.memtableBytes = 1 << 16
        $0.tableTargetBytes = 1 << 14
        $0.levelBaseBytes = 1 << 16
        $0.levelMultiplier = 4
        $0.level0CompactionTrigger = 2
        $0.level0SlowdownTrigger = 6
        $0.level0StopTrigger = 10
        $0.cacheBytes = 1 << 16
        $0.batchReadDepth = 3
        change(&$0)
    }
}

/// Flushes, the manifest, leveled compaction, the block cache and reads across every
/// source, against an oracle.
final class LSMTests: XCTestCase {
    private func sortedOracle(_ oracle: [[UInt8]: [UInt8]]) -> [([UInt8], [UInt8])] {
        oracle.sorted { $0.key.lexicographicallyPrecedes($1.key) }.map { ($0.key, $0.value) }
    }

    private func key(_ index: Int) -> [UInt8] { Array(String(format: "key%06d", index).utf8) }

    private func value(_ index: Int, _ round: Int, _ random: inout SplitMix) -> [UInt8] {
        Array("v\(index)-\(round)-".utf8) + (0..<(20 + random.below(200))).map { _ in UInt8(random.below(256)) }
    }

    /// Waits until no flush is pending and no compaction is due.
    private func settle(_ db: Database) {
        for _ in 0..<2000 {
            let view = db.currentView
            if view.immutables.isEmpty && db.picker.score(view.version).score < 1 { return }
            usleep(2000)
        }
        XCTFail("background work did not settle")
    }

    /// Waits until no frozen memtable waits for its flush.
    private func settleFlushes(_ db: Database) {
        for _ in 0..<2000 where !db.currentView.immutables.isEmpty { usleep(2000) }
        XCTAssertTrue(db.currentView.immutables.isEmpty, "flushes did not settle")
    }

    private func check(_ db: Database, _ oracle: [[UInt8]: [UInt8]], keys: Int, _ random: inout SplitMix, seed: UInt64, _ phase: String) throws {
        for index in 0..<keys {
            XCTAssertEqual(try db.get(key(index)), oracle[key(index)], "\(phase): key \(index), seed \(seed)")
        }
        // Batched lookups: duplicates, absent keys, keys sharing blocks; with a small cache
        // and a read depth of 3 most batches wait on a full queue.
        for _ in 0..<8 {
            let batch = (0..<(1 + random.below(150))).map { _ in key(random.below(keys + keys / 10)) }
            XCTAssertEqual(try db.get(keys: batch), batch.map { oracle[$0] }, "\(phase): batched get, seed \(seed)")
        }
        let all = sortedOracle(oracle)
        XCTAssertEqual(try db.scan().collect().map { $0.key }, all.map(\.0), "\(phase): forward scan, seed \(seed)")
        XCTAssertEqual(try db.scan(ScanOptions(reverse: true)).collect().map { $0.key }, all.reversed().map(\.0), "\(phase): reverse scan, seed \(seed)")
        for _ in 0..<10 {
            var options = ScanOptions()
            if random.below(2) == 0 { options.start = key(random.below(keys)) }
            if random.below(2) == 0 { options.end = key(random.below(keys)) }
            if random.below(4) == 0 { options.prefix = Array("key00\(random.below(10))".utf8) }
            options.reverse = random.below(2) == 0
            if random.below(3) == 0 { options.limit = random.below(50) }
            var want = all.filter { entry in
                if let start = options.start, entry.0.lexicographicallyPrecedes(start) { return false }
                if let end = options.end, !entry.0.lexicographicallyPrecedes(end) { return false }
                if let prefix = options.prefix, !entry.0.starts(with: prefix) { return false }
                return true
            }
            if options.reverse { want.reverse() }
            if let limit = options.limit { want = Array(want.prefix(limit)) }
            let cursor = db.scan(options)
            let got = ((try? cursor.collect()) ?? []).map { ($0.key, $0.value) }
            XCTAssertNil(cursor.error)
            XCTAssertEqual(got.map(\.0), want.map(\.0), "\(phase): scan \(options), seed \(seed)")
            XCTAssertEqual(got.map(\.1), want.map(\.1), "\(phase): scan values \(options), seed \(seed)")
        }
    }

    func testRandomOperationsAcrossFlushesAndCompactions() throws {
        let seed = testSeed()
        var random = SplitMix(seed: seed)
        let dir = TestPath()
        var db = try Database(path: dir.path, options: lsmOptions())
        var oracle: [[UInt8]: [UInt8]] = [:]
        let keys = 3000
        for phase in 0..<4 {
            for round in 0..<3000 {
                let index = random.below(keys)
                switch random.below(10) {
                case 0, 1:
                    try db.delete(key(index), durability: .buffered)
                    oracle[key(index)] = nil
                case 2:
                    var batch = WriteBatch()
                    for offset in 0..<5 {
                        let other = (index + offset * 7) % keys
                        let v = value(other, round, &random)
                        batch.put(key(other), v)
                        oracle[key(other)] = v
                    }
                    try db.write(batch, durability: .buffered)
                default:
                    let v = value(index, round, &random)
                    try db.put(key(index), v, durability: .buffered)
                    oracle[key(index)] = v
                }
            }
            try check(db, oracle, keys: keys, &random, seed: seed, "phase \(phase) while busy")
            settle(db)
            try check(db, oracle, keys: keys, &random, seed: seed, "phase \(phase) settled")
            if phase % 2 == 1 {
                try db.close()
                db = try Database(path: dir.path, options: lsmOptions())
                try check(db, oracle, keys: keys, &random, seed: seed, "phase \(phase) reopened")
            }
        }
        let stats = db.stats
        XCTAssertGreaterThan(stats.levels.dropFirst().reduce(0) { $0 + $1.tables }, 0, "tables below level 0: \(stats.levels)")
        try db.compactRange()
        try check(db, oracle, keys: keys, &random, seed: seed, "after compactRange")
        let after = db.stats
        XCTAssertEqual(after.levels[0].tables, 0)
        XCTAssertEqual(after.levels.reduce(0) { $0 + $1.entries }, oracle.count, "a full compaction keeps exactly the live keys")
        try db.close()
    }

    func testFullMemtableIsFlushedAndOldLogsGo() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: lsmOptions { $0.level0CompactionTrigger = 100; $0.level0SlowdownTrigger = 100; $0.level0StopTrigger = 100 })
        var random = SplitMix(seed: 7)
        for index in 0..<2000 { try db.put(key(index), value(index, 0, &random)) }
        settle(db)
        let stats = db.stats
        XCTAssertGreaterThan(stats.flushes, 2)
        XCTAssertEqual(stats.levels[0].tables, stats.flushes)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        XCTAssertEqual(names.filter { $0.hasSuffix(".log") }.count, 1, "\(names)")
        XCTAssertEqual(names.filter { $0.hasSuffix(".sst") }.count, stats.levels[0].tables, "\(names)")
        XCTAssertEqual(names.filter { $0.hasPrefix("MANIFEST-") }.count, 1, "\(names)")
        for index in 0..<2000 { XCTAssertNotNil(try db.get(key(index)), "key \(index)") }
        XCTAssertGreaterThan(db.stats.cacheMisses, 0)
        try db.close()
    }

    /// One-shot sessions (open, one put, close), as `kvctl D put k v` runs: a clean close
    /// turns the session's log into a table and removes it; a session that ends without
    /// its close (a crash) leaves its log, and the next open turns that into a table. The
    /// directory never holds more than one log, and every write reads back.
    func testShortSessionsLeaveNoLogBehind() throws {
        let dir = TestPath()
        for index in 0..<40 {
            let crashes = index % 4 == 3
            let db = try Database(path: dir.path, options: testOptions { $0.flushOnClose = !crashes })
            try db.put(key(index), Array("v\(index)".utf8))
            try db.close()
            let logs = logFiles(dir.path)
            XCTAssertEqual(logs.count, crashes ? 1 : 0, "after session \(index + 1): \(logs)")
        }
        let db = try Database(path: dir.path, options: testOptions())
        for index in 0..<40 { XCTAssertEqual(try db.get(key(index)), Array("v\(index)".utf8), "key \(index)") }
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        XCTAssertEqual(names.filter { $0.hasPrefix("MANIFEST-") }.count, 1, "\(names)")
        try db.close()
        XCTAssertEqual(logFiles(dir.path), [])
    }

    func testSnapshotsSurviveCompaction() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: lsmOptions())
        for index in 0..<500 { try db.put(key(index), Array("old\(index)".utf8), durability: .buffered) }
        try readThroughSnapshot(db)
        // Released: a full compaction drops the old versions and the tombstones.
        try db.compactRange()
        XCTAssertEqual(db.stats.liveSnapshots, 0)
        XCTAssertEqual(db.stats.levels.reduce(0) { $0 + $1.entries }, 250)
        try db.close()
    }

    private func readThroughSnapshot(_ db: Database) throws {
        let snapshot = try db.snapshot()
        for index in 0..<500 {
            if index % 2 == 0 {
                try db.delete(key(index), durability: .buffered)
            } else {
                try db.put(key(index), Array("new\(index)".utf8), durability: .buffered)
            }
        }
        try db.compactRange()
        XCTAssertEqual(db.stats.liveSnapshots, 1)
        for index in 0..<500 {
            XCTAssertEqual(try db.get(key(index), snapshot: snapshot), Array("old\(index)".utf8), "key \(index) at the snapshot")
            XCTAssertEqual(try db.get(key(index)), index % 2 == 0 ? nil : Array("new\(index)".utf8), "key \(index) now")
        }
        let all = (0..<500).map(key)
        XCTAssertEqual(try db.get(keys: all, snapshot: snapshot), (0..<500).map { Array("old\($0)".utf8) }, "batched at the snapshot")
        XCTAssertEqual(try db.get(keys: all), (0..<500).map { $0 % 2 == 0 ? nil : Array("new\($0)".utf8) }, "batched now")
        XCTAssertEqual(try db.scan(snapshot: snapshot).collect().map { $0.key }.count, 500)
        XCTAssertEqual(try db.scan().collect().map { $0.key }.count, 250)
    }

    /// A scan's blocks enter the cache (and a second scan reads none of them again) unless
    /// the scan says `fillCache: false`; a seek over several tables reads their blocks
    /// together and finds the same entries.
    func testScansFillTheCacheUnlessAskedNotTo() throws {
        let dir = TestPath()
        var db = try Database(path: dir.path, options: lsmOptions { $0.cacheBytes = 8 << 20 })
        for index in 0..<2000 { try db.put(key(index), Array(repeating: UInt8(index % 251), count: 100), durability: .buffered) }
        try db.compactRange()
        try db.close()
        db = try Database(path: dir.path, options: lsmOptions { $0.cacheBytes = 8 << 20 })
        XCTAssertGreaterThan(db.stats.levels.reduce(0) { $0 + $1.tables }, 3)
        XCTAssertEqual(try db.scan(ScanOptions(fillCache: false)).collect().map { $0.key }.count, 2000)
        XCTAssertEqual(db.stats.cacheBytes, 0, "a scan with fillCache false left blocks in the cache")
        XCTAssertEqual(try db.scan().collect().map { $0.key }.count, 2000)
        let filled = db.stats
        XCTAssertGreaterThan(filled.cacheBytes, 200_000)
        XCTAssertEqual(try db.scan().collect().map { $0.key }.count, 2000)
        let again = db.stats
        XCTAssertEqual(again.cacheMisses, filled.cacheMisses, "the second scan read blocks again")
        XCTAssertGreaterThan(again.cacheHits, filled.cacheHits)
        try db.close()

        // Overlapping level-0 tables: a seek positions every one of them.
        db = try Database(path: dir.path, options: lsmOptions { $0.level0CompactionTrigger = 8; $0.level0SlowdownTrigger = 8; $0.level0StopTrigger = 10 })
        for round in 0..<3 {
            for index in stride(from: round, to: 2000, by: 3) {
                try db.put(key(index), Array("r\(round)".utf8) + [UInt8](repeating: 7, count: 150), durability: .buffered)
            }
        }
        XCTAssertGreaterThan(db.stats.levels[0].tables, 2, "\(db.stats.levels)")
        for target in [0, 1, 2, 777, 1998, 1999] {
            let got = try db.scan(ScanOptions(start: key(target), limit: 3)).collect().map { $0.key }
            XCTAssertEqual(got, (target..<min(2000, target + 3)).map(key), "seek to \(target)")
        }
        try db.close()
    }

    func testCorruptTableBlockIsAnErrorNeverAValue() throws {
        let dir = TestPath()
        var db = try Database(path: dir.path, options: lsmOptions())
        for index in 0..<400 { try db.put(key(index), Array(repeating: UInt8(index % 251), count: 100), durability: .buffered) }
        try db.compactRange()
        try db.close()
        let tables = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".sst") }.sorted()
        let victim = dir.path + "/" + tables[0]
        // The second data block of the first table.
        scribble(victim, at: 4096 + 100, count: 4, byte: 0x5A)
        db = try Database(path: dir.path, options: lsmOptions())
        var errors = 0
        for index in 0..<400 {
            do {
                let value = try db.get(key(index))
                XCTAssertEqual(value, Array(repeating: UInt8(index % 251), count: 100), "key \(index) returned a wrong value")
            } catch {
                XCTAssertEqual(error.code, .corruption)
                XCTAssertTrue(error.message.contains(victim) && error.message.contains("offset 4096"), error.message)
                errors += 1
            }
        }
        XCTAssertGreaterThan(errors, 0)
        // A batched lookup that needs the block fails the same way (the reads it still had
        // in flight land before it returns).
        XCTAssertThrowsError(try db.get(keys: (0..<400).map(key))) { error in
            let error = error as! KVError
            XCTAssertEqual(error.code, .corruption)
            XCTAssertTrue(error.message.contains(victim) && error.message.contains("offset 4096"), error.message)
        }
        let cursor = db.scan()
        var seen = 0
        do { while try cursor.next() != nil { seen += 1 } } catch {}
        XCTAssertEqual(cursor.error?.code, .corruption)
        XCTAssertLessThan(seen, 400)
        XCTAssertThrowsError(try db.forEach { _, _ in true })
        let report = try Database.check(path: dir.path)
        XCTAssertTrue(report.isDamaged, report.description)
        XCTAssertTrue(report.description.contains(tables[0]), report.description)
        try db.close()
    }

    /// Level 0 due for compaction while a flush is under way (here: at open, level 0 at its
    /// trigger and the logs' data being flushed) waits for the flush and takes its table
    /// along, instead of leaving it alone in level 0 for every read to meet.
    func testLevel0CompactionTakesTheTableOfAFlushUnderWay() throws {
        let dir = TestPath()
        var db = try Database(path: dir.path, options: lsmOptions {
            $0.level0CompactionTrigger = 4
            $0.flushOnClose = false
        })
        db.compactionPaused.store(true, ordering: .releasing)
        var index = 0
        func put() throws {
            try db.put(key(index), [UInt8](repeating: UInt8(index & 0xFF), count: 120), durability: .buffered)
            index += 1
        }
        while db.stats.levels[0].tables < 4 { try put() }
        // Let a flush under way finish; then one more write, which reaches the next open
        // through the log.
        settleFlushes(db)
        try put()
        try db.sync()
        XCTAssertGreaterThanOrEqual(db.stats.levels[0].tables, 4, "\(db.stats.levels)")
        try db.close()
        db = try Database(path: dir.path, options: lsmOptions { $0.level0CompactionTrigger = 4 })
        settle(db)
        XCTAssertEqual(db.stats.levels[0].tables, 0, "a flushed table was left alone in level 0: \(db.stats.levels)")
        XCTAssertGreaterThanOrEqual(db.stats.flushes, 1)
        for probe in [0, index / 2, index - 1] { XCTAssertNotNil(try db.get(key(probe)), "key \(probe)") }
        try db.close()
    }

    func testWritersStallAndResume() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: lsmOptions { $0.level0SlowdownTrigger = 3; $0.level0StopTrigger = 3 })
        db.compactionPaused.store(true, ordering: .releasing)
        let finished = ManagedAtomicFlag()
        let writer = Thread {
            for index in 0..<4000 {
                try! db.put(Array(String(format: "key%06d", index).utf8), [UInt8](repeating: UInt8(index & 0xFF), count: 120), durability: .buffered)
            }
            finished.set()
        }
        writer.start()
        var stalled = false
        for _ in 0..<5000 where !stalled {
            usleep(2000)
            stalled = db.stats.stalls > 0 && db.stats.levels[0].tables >= 3
        }
        XCTAssertTrue(stalled, "writes never stalled: \(db.stats.levels)")
        // A write that passed its check just before level 0 reached the trigger lands;
        // the next one waits.
        usleep(20_000)
        let before = db.stats.lastSequence
        usleep(50_000)
        XCTAssertEqual(db.stats.lastSequence, before, "writes went on during a stall")
        XCTAssertFalse(finished.isSet)
        db.compactionPaused.store(false, ordering: .releasing)
        db.backgroundThreads?.wakeCompaction()
        for _ in 0..<5000 where !finished.isSet { usleep(2000) }
        XCTAssertTrue(finished.isSet, "writes did not resume")
        XCTAssertGreaterThan(db.stats.stallMicroseconds, 0)
        XCTAssertEqual(db.stats.lastSequence, 4000)
        try db.close()
    }
}

/// A flag set by one thread and read by another.
final class ManagedAtomicFlag: @unchecked Sendable {
    // @unchecked: every access goes through the lock.
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}


/// Patterned bytes, fast to make even in a debug build: a SplitMix stream from `seed`.
func patternedBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        let raw = UnsafeMutableRawBufferPointer(buffer)
        var state = seed
        var offset = 0
        while offset < count {
            state &+= 0x9E37_79B9_7F4A_7C15
            let word = (state ^ (state >> 31)) &* 0xBF58_476D_1CE4_E5B9
            if count - offset >= 8 {
                raw.storeBytes(of: word, toByteOffset: offset, as: UInt64.self)
                offset += 8
            } else {
                raw[offset] = UInt8(truncatingIfNeeded: word >> (8 * UInt64(offset % 8)))
                offset += 1
            }
        }
        initialized = count
    }
}

/// Whether two byte arrays are equal, by `memcmp` (the generic `==` walks a 256 MiB
/// array element by element in a debug build).
func sameBytes(_ a: [UInt8]?, _ b: [UInt8]) -> Bool {
    guard let a, a.count == b.count else { return false }
    return a.withUnsafeBytes { x in b.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 } }
}

/// Big batches from many threads at once, and values far larger than the page arena:
/// a long record streams through the log a few blocks at a time, so none waits forever
/// for arena pages another holds (docs/ENGINE.md, "Big values").
final class BigBatchTests: XCTestCase {
    func testEightThreadsOfSixteenMebibyteBatchesFinish() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions { $0.memtableBytes = 64 << 20 })
        let entryBytes = (8 << 20) - 64
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { thread in
            for round in 0..<2 {
                var batch = WriteBatch()
                for entry in 0..<2 {
                    let value = [UInt8](repeating: UInt8(thread * 16 + round * 2 + entry), count: entryBytes)
                    batch.put(Array("t\(thread)-r\(round)-e\(entry)".utf8), value)
                }
                do { try db.write(batch) } catch { failures.withLock { $0.append("thread \(thread): \(error)") } }
            }
        }
        XCTAssertEqual(failures.withLock { $0 }, [])
        for thread in 0..<8 {
            for round in 0..<2 {
                for entry in 0..<2 {
                    let got = try db.get(Array("t\(thread)-r\(round)-e\(entry)".utf8))
                    XCTAssertEqual(got?.count, entryBytes)
                    XCTAssertEqual(got?.first, UInt8(thread * 16 + round * 2 + entry))
                    XCTAssertEqual(got?.last, UInt8(thread * 16 + round * 2 + entry))
                }
            }
        }
        try db.close()
        let reopened = try Database(path: dir.path, options: testOptions())
        XCTAssertEqual(try reopened.get(Array("t7-r1-e1".utf8))?.count, entryBytes)
        try reopened.close()
    }

    /// A value at the limit (256 MiB, four times the page arena) round-trips: from the
    /// memtable, from a table after a compaction, after a reopen, through a cursor; one
    /// byte more is refused whole with an error that names the limit, and nothing of its
    /// batch is visible.
    func testValueAtTheLimitRoundTripsAndOneByteMoreIsRefused() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        XCTAssertLessThan(PageStoreOptions().arenaBytes, Limits.maxValueBytes, "the value must not fit the arena")
        var big: [UInt8]? = patternedBytes(Limits.maxValueBytes, seed: 1)
        try db.put(Array("big".utf8), big!)
        try db.put("after", "small")
        var batch = WriteBatch()
        batch.put(Array("small".utf8), Array("v".utf8))
        batch.put(Array("huge".utf8), [UInt8](repeating: 1, count: Limits.maxValueBytes + 1))
        XCTAssertThrowsError(try db.write(batch)) { error in
            XCTAssertEqual((error as! KVError).code, .invalidArgument)
            XCTAssertTrue("\(error)".contains("exceeds the limit of \(Limits.maxValueBytes)"), "\(error)")
        }
        batch.removeAll()
        XCTAssertNil(try db.get(Array("small".utf8)), "nothing of a refused batch")
        XCTAssertTrue(sameBytes(try db.get(Array("big".utf8)), big!), "from the memtable")
        try db.compactRange()
        XCTAssertTrue(sameBytes(try db.get(Array("big".utf8)), big!), "from a table")
        try db.close()
        let reopened = try Database(path: dir.path, options: testOptions())
        XCTAssertTrue(sameBytes(try reopened.get(Array("big".utf8)), big!), "after a reopen")
        let entries = try reopened.scan().collect()
        XCTAssertEqual(entries.map(\.key), [Array("after".utf8), Array("big".utf8)])
        XCTAssertTrue(sameBytes(entries.last?.value, big!), "through a cursor")
        big = nil
        try reopened.close()
        XCTAssertEqual(try Database.check(path: dir.path).findings.count, 0)
    }

    /// Readers never see a streaming record's sequence numbers before the record is in
    /// the memtable: a snapshot taken while its chains complete answers the same before
    /// and after it lands (regression: completions published the log's last sequence).
    func testSnapshotTakenWhileARecordStreamsIsStable() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions { $0.memtableBytes = 256 << 20 })
        try db.put("streamed", "old")
        let value = patternedBytes(64 << 20, seed: 3)
        let done = ManagedAtomicFlag()
        let writer = Thread {
            var batch = WriteBatch()
            batch.put(Array("streamed".utf8), value)
            _ = try? db.write(batch, durability: .buffered)
            done.set()
        }
        writer.start()
        var taken: [(Snapshot, [UInt8]?)] = []
        while !done.isSet {
            let snapshot = try db.snapshot()
            taken.append((snapshot, try db.get(Array("streamed".utf8), snapshot: snapshot)))
            if taken.count > 5000 { taken.removeFirst(4000) }
        }
        XCTAssertTrue(sameBytes(try db.get(Array("streamed".utf8)), value))
        for (snapshot, first) in taken {
            let again = try db.get(Array("streamed".utf8), snapshot: snapshot)
            XCTAssertTrue(again == first || sameBytes(again, first ?? []), "snapshot at \(snapshot.sequence) changed its answer")
            if again != first && !sameBytes(again, first ?? []) { break }
        }
        try db.close()
    }

    /// A streamed record through the async API, beside small async writes, then a
    /// recovery from the log (no flush at close).
    func testStreamedRecordThroughTheAsyncAPIAndTheLog() async throws {
        let dir = TestPath()
        var options = testOptions { $0.memtableBytes = 64 << 20 }
        options.flushOnClose = false
        let db = try Database(path: dir.path, options: options)
        let value = patternedBytes(LogWriter.streamThresholdBytes * 3 + 12345, seed: 2)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                var batch = WriteBatch()
                batch.put(Array("streamed".utf8), value)
                try await db.write(batch)
            }
            for index in 0..<16 {
                group.addTask {
                    var batch = WriteBatch()
                    batch.put(Array("small\(index)".utf8), Array("v\(index)".utf8))
                    try await db.write(batch)
                }
            }
            try await group.waitForAll()
        }
        try await db.close()
        let reopened = try Database(path: dir.path, options: testOptions())
        let streamed: [UInt8]? = try await reopened.get(Array("streamed".utf8))
        XCTAssertTrue(sameBytes(streamed, value), "recovered from the log")
        for index in 0..<16 {
            let small: String? = try await reopened.get("small\(index)")
            XCTAssertEqual(small, "v\(index)")
        }
        XCTAssertEqual(reopened.stats.lastSequence, 17)
        try await reopened.close()
    }
}
