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
        _ = Array(db.scan())
        try db.sync()
        XCTAssertEqual(try metrics.expectCounter(db.metrics.syncWrites).totalValue, 2)
        XCTAssertEqual(try metrics.expectCounter(db.metrics.bufferedWrites).totalValue, 1)
        XCTAssertEqual(try metrics.expectCounter(db.metrics.writeEntries).totalValue, 4)
        XCTAssertEqual(try metrics.expectCounter(db.metrics.writeErrors).totalValue, 1)
        XCTAssertEqual(try metrics.expectCounter(db.metrics.gets).totalValue, 2)
        XCTAssertEqual(try metrics.expectCounter(db.metrics.scans).totalValue, 1)
        XCTAssertEqual(try metrics.expectTimer(db.metrics.commitDuration).values.count, 2)
        let chains = try metrics.expectCounter(db.metrics.logChains).totalValue
        XCTAssertEqual(chains, Int64(db.stats.logChains))
        XCTAssertGreaterThanOrEqual(chains, 2, "two sync writes; the second chain also carried the buffered write")
        XCTAssertGreaterThanOrEqual(try metrics.expectCounter(db.metrics.logBytes).totalValue, chains * 4096)
        try db.close()
    }
}
