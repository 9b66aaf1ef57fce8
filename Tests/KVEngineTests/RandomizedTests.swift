import Foundation
import XCTest
import TestSupport

@testable import KVEngine

/// Random operation sequences against a sorted-dictionary oracle, with reopens, scans in
/// both directions with random bounds and prefixes, and snapshots.
final class RandomizedTests: XCTestCase {
    private func randomKey(_ random: inout SplitMix) -> [UInt8] {
        // A small alphabet so prefixes and overwrites are common.
        let length = 1 + random.below(4)
        return (0..<length).map { _ in [0x00, 0x41, 0x42, 0x61, 0xFF][random.below(5)] }
    }

    private func expectedScan(_ oracle: [[UInt8]: [UInt8]], _ options: ScanOptions) -> [([UInt8], [UInt8])] {
        var keys = oracle.keys.sorted { $0.lexicographicallyPrecedes($1) }
        keys = keys.filter { key in
            if let start = options.start, key.lexicographicallyPrecedes(start) { return false }
            if let end = options.end, !key.lexicographicallyPrecedes(end) { return false }
            if let prefix = options.prefix, !key.starts(with: prefix) { return false }
            return true
        }
        if options.reverse { keys.reverse() }
        if let limit = options.limit { keys = Array(keys.prefix(limit)) }
        return keys.map { ($0, oracle[$0]!) }
    }

    private func checkScans(_ db: Database, _ oracle: [[UInt8]: [UInt8]], _ random: inout SplitMix, seed: UInt64, snapshot: Snapshot? = nil) throws {
        for _ in 0..<20 {
            var options = ScanOptions()
            if random.below(2) == 0 { options.start = randomKey(&random) }
            if random.below(2) == 0 { options.end = randomKey(&random) }
            if random.below(3) == 0 { options.prefix = Array(randomKey(&random).prefix(1 + random.below(2))) }
            options.reverse = random.below(2) == 0
            if random.below(3) == 0 { options.limit = random.below(10) }
            let got = try db.scan(options, snapshot: snapshot).collect().map { ($0.key, $0.value) }
            let want = expectedScan(oracle, options)
            XCTAssertEqual(got.map(\.0), want.map(\.0), "scan \(options) seed \(seed)")
            XCTAssertEqual(got.map(\.1), want.map(\.1), "scan values \(options) seed \(seed)")
            var visited: [([UInt8], [UInt8])] = []
            XCTAssertNoThrow(try db.forEach(options, snapshot: snapshot) { key, value in
                visited.append((Array(key), Array(value)))
                return true
            })
            XCTAssertEqual(visited.map(\.0), want.map(\.0), "forEach \(options) seed \(seed)")
            XCTAssertEqual(visited.map(\.1), want.map(\.1), "forEach values \(options) seed \(seed)")
        }
    }

    func testRandomOperationsAgainstOracle() throws {
        let seed = testSeed()
        var random = SplitMix(seed: seed)
        let dir = TestPath()
        var oracle: [[UInt8]: [UInt8]] = [:]
        var handle: Database? = try Database(path: dir.path, options: testOptions())
        for round in 0..<6 {
            do {
                let db = handle!
                var snapshots: [(Snapshot, [[UInt8]: [UInt8]])] = []
                for step in 0..<400 {
                    let durability: Durability = random.below(4) == 0 ? .sync : .buffered
                    switch random.below(10) {
                    case 0..<5:
                        let key = randomKey(&random)
                        let value = (0..<random.below(40)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                        try db.put(key, value, durability: durability)
                        oracle[key] = value
                    case 5..<7:
                        let key = randomKey(&random)
                        try db.delete(key, durability: durability)
                        oracle[key] = nil
                    case 7..<9:
                        var batch = WriteBatch()
                        var staged = oracle
                        for _ in 0..<(1 + random.below(5)) {
                            let key = randomKey(&random)
                            if random.below(3) == 0 {
                                batch.delete(key)
                                staged[key] = nil
                            } else {
                                let value = [UInt8(truncatingIfNeeded: random.next())]
                                batch.put(key, value)
                                staged[key] = value
                            }
                        }
                        try db.write(batch, durability: durability)
                        oracle = staged
                    default:
                        let key = randomKey(&random)
                        XCTAssertEqual(try db.get(key), oracle[key], "get \(key) round \(round) step \(step) seed \(seed)")
                    }
                    if step % 100 == 0 { snapshots.append((try db.snapshot(), oracle)) }
                }
                try checkScans(db, oracle, &random, seed: seed)
                for (snapshot, state) in snapshots {
                    try checkScans(db, state, &random, seed: seed, snapshot: snapshot)
                }
                // Reopen: by close, or by dropping the handle.
                if round % 2 == 0 { try db.close() }
            }
            handle = nil
            let reopened = try Database(path: dir.path, options: testOptions())
            for (key, value) in oracle { XCTAssertEqual(try reopened.get(key), value, "after reopen, seed \(seed)") }
            XCTAssertEqual(try reopened.scan().collect().map(\.key).count, oracle.count, "seed \(seed)")
            handle = reopened
        }
    }

    func testConcurrentWritersEveryAcknowledgedWritePresentAfterReopen() throws {
        let seed = testSeed()
        let dir = TestPath()
        let threads = 8
        let perThread = 150
        do {
            let db = try Database(path: dir.path, options: testOptions())
            DispatchQueue.concurrentPerform(iterations: threads) { thread in
                var random = SplitMix(seed: seed &+ UInt64(thread))
                for index in 0..<perThread {
                    let durability: Durability = random.below(2) == 0 ? .sync : .buffered
                    do {
                        try db.put(bytes("t\(thread)-\(index)"), bytes("v\(index)"), durability: durability)
                    } catch {
                        XCTFail("put failed: \(error), seed \(seed)")
                    }
                    // Read-your-writes.
                    XCTAssertEqual(try? db.get(bytes("t\(thread)-\(index)")), bytes("v\(index)"))
                }
            }
            XCTAssertLessThan(db.stats.logChains, threads * perThread, "writers shared chains (group commit)")
            try db.close()
        }
        let db = try Database(path: dir.path, options: testOptions())
        XCTAssertEqual(db.stats.lastSequence, UInt64(threads * perThread))
        for thread in 0..<threads {
            for index in 0..<perThread {
                XCTAssertEqual(try db.get(bytes("t\(thread)-\(index)")), bytes("v\(index)"))
            }
        }
    }
}

final class CloseRaceTests: XCTestCase {
    /// close() while writers are in full flight: every write either is acknowledged (and
    /// then present after reopen) or fails with `.closed`; nothing hangs or crashes.
    /// (The window where a writer appends during close is narrow; this guards the outcome
    /// rather than reproducing that interleaving every time.)
    func testCloseUnderConcurrentWriters() throws {
        let dir = TestPath()
        for round in 0..<5 {
            let db = try Database(path: dir.path, options: testOptions())
            let acknowledged = Failures()
            let unexpected = Failures()
            let group = DispatchGroup()
            for thread in 0..<6 {
                group.enter()
                Thread {
                    for index in 0..<100_000 {
                        let key = "r\(round)-t\(thread)-\(index)"
                        do {
                            try db.put(Array(key.utf8), Array("v".utf8), durability: index % 2 == 0 ? .sync : .buffered)
                            acknowledged.add(key)
                        } catch let error as KVError where error.code == .closed {
                            break
                        } catch {
                            unexpected.add("\(error)")
                            break
                        }
                    }
                    group.leave()
                }.start()
            }
            usleep(20_000)
            try db.close()
            XCTAssertEqual(group.wait(timeout: .now() + 30), .success, "writers finished after close")
            XCTAssertEqual(unexpected.all, [])
            let reopened = try Database(path: dir.path, options: testOptions())
            for key in acknowledged.all {
                XCTAssertEqual(try reopened.get(Array(key.utf8)), Array("v".utf8), "acknowledged \(key) present")
            }
            XCTAssertGreaterThan(acknowledged.all.count, 0)
            try reopened.close()
        }
    }
}

/// Messages gathered from several threads.
final class Failures: @unchecked Sendable {
    // @unchecked: every access goes through `lock`.
    private let lock = NSLock()
    private var messages: [String] = []
    func add(_ message: String) { lock.withLock { messages.append(message) } }
    var all: [String] { lock.withLock { messages } }
}
