import Foundation
import Metrics
import MetricsTestKit
import XCTest

@testable import KVEngine

/// The engine's swift-metrics counters and timers move as the work is done.
final class MetricsTests: XCTestCase {
    /// One metrics backend for the whole test process (bootstrap can happen only once).
    static let backend: TestMetrics = {
        let metrics = TestMetrics()
        MetricsSystem.bootstrap(metrics)
        return metrics
    }()

    func testCountersAndCommitTimer() throws {
        let metrics = MetricsTests.backend
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        try db.put("a", "1")
        try db.put("b", "2", durability: .buffered)
        var batch = WriteBatch()
        batch.put("c", "3")
        batch.delete("a")
        try db.write(batch)
        XCTAssertThrowsError(try db.put([], [1]))
        _ = try db.get("b")
        _ = try db.get("missing")
        _ = try db.scan().collect()
        try db.sync()
        XCTAssertEqual(try metrics.expectCounter(db.counters.syncWrites.counter).totalValue, 2)
        XCTAssertEqual(try metrics.expectCounter(db.counters.bufferedWrites.counter).totalValue, 1)
        XCTAssertEqual(try metrics.expectCounter(db.counters.writeEntries.counter).totalValue, 4)
        XCTAssertEqual(try metrics.expectCounter(db.counters.writeErrors.counter).totalValue, 1)
        XCTAssertEqual(try metrics.expectCounter(db.counters.gets.counter).totalValue, 2)
        XCTAssertEqual(try metrics.expectCounter(db.counters.scans.counter).totalValue, 1)
        XCTAssertEqual(try metrics.expectTimer(db.counters.commitDuration).values.count, 2)
        let chains = try metrics.expectCounter(db.counters.logChains.counter).totalValue
        XCTAssertEqual(chains, Int64(db.stats.logChains))
        XCTAssertGreaterThanOrEqual(chains, 2, "two sync writes; the second chain also carried the buffered write")
        XCTAssertGreaterThanOrEqual(try metrics.expectCounter(db.counters.logBytes.counter).totalValue, chains * 4096)
        let chainMicros = try metrics.expectCounter(db.counters.logChainMicros.counter).totalValue
        XCTAssertEqual(chainMicros, db.stats.logChainMicroseconds)
        XCTAssertGreaterThan(chainMicros, 0, "a write and an fdatasync take time")
        // Background work is counted once, for stats and metrics alike.
        try db.compactRange()
        let stats = db.stats
        XCTAssertGreaterThanOrEqual(stats.flushes, 1, "compactRange flushes the memtable first")
        XCTAssertEqual(try metrics.expectCounter(db.counters.flushes.counter).totalValue, Int64(stats.flushes))
        XCTAssertEqual(try metrics.expectCounter(db.counters.flushBytes.counter).totalValue, stats.bytesFlushed)
        XCTAssertEqual(try metrics.expectCounter(db.counters.userBytes.counter).totalValue, stats.userBytes)
        try db.close()
    }
}
