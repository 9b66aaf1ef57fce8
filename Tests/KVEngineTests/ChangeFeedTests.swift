import Foundation
import TestSupport
import XCTest

@testable import KVEngine

/// The change feed (`Database.changes(since:)`), log retention, and a follower that
/// applies the feed (`Database.apply`).
final class ChangeFeedTests: XCTestCase {
    private func options(retain: Bool = true, _ change: (inout Options) -> Void = { _ in }) -> Options {
        testOptions {
            $0.allowTinySizes = true
            $0.memtableBytes = 16 << 10
            $0.tableTargetBytes = 8 << 10
            if retain { $0.logRetention = LogRetention() }
            change(&$0)
        }
    }

    private func contents(_ db: Database) throws -> [(key: [UInt8], value: [UInt8])] { try db.scan().collect() }

    private func assertEqual(_ follower: Database, _ leader: Database, _ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(try follower.snapshot().sequence, try leader.snapshot().sequence, "\(what): sequence", file: file, line: line)
        let got = try contents(follower)
        let expected = try contents(leader)
        XCTAssertEqual(got.count, expected.count, "\(what): keys", file: file, line: line)
        XCTAssertTrue(got.map(\.key) == expected.map(\.key) && got.map(\.value) == expected.map(\.value), "\(what): contents", file: file, line: line)
    }

    /// Applies what the feed holds now; returns how many batches.
    @discardableResult
    private func catchUp(_ follower: Database, from leader: Database) throws -> Int {
        let feed = try leader.changes(since: try follower.snapshot().sequence, follow: false)
        var applied = 0
        while let change = try feed.next() {
            try follower.apply(change, durability: .buffered)
            applied += 1
        }
        return applied
    }

    private func write(_ db: Database, round: Int, _ random: inout SplitMix) throws {
        for index in 0..<300 {
            let key = bytes("k\(random.below(400))")
            switch random.below(10) {
            case 0: try db.delete(key, durability: .buffered)
            case 1:
                var batch = WriteBatch()
                for _ in 0..<(1 + random.below(5)) { batch.put(bytes("b\(random.below(100))"), bytes("batch-\(round)-\(index)")) }
                batch.delete(bytes("k\(random.below(400))"))
                try db.write(batch, durability: random.chance(0.5) ? .sync : .buffered)
            default: try db.put(key, bytes("value-\(round)-\(index)-" + String(repeating: "x", count: random.below(200))), durability: .buffered)
            }
        }
    }

    /// A follower fed from sequence 0 equals the leader after each round of writes (with
    /// flushes and compactions between), across a leader restart, and while following live.
    func testFollowerEqualsLeaderAcrossARestart() throws {
        let seed = testSeed()
        var random = SplitMix(seed: seed)
        let dir = TestPath()
        var leader = try Database(path: dir.path, options: options())
        let follower = try Database(path: dir.root + "/follower", options: options(retain: false))
        for round in 0..<3 {
            try write(leader, round: round, &random)
            try leader.sync()
            XCTAssertGreaterThan(try catchUp(follower, from: leader), 0)
            try assertEqual(follower, leader, "round \(round) (seed \(seed))")
            try leader.compactRange()
        }
        // The follower falls behind, and the leader restarts: the kept logs of the
        // earlier session and those of the new one serve it.
        try write(leader, round: 8, &random)
        try leader.close()
        leader = try Database(path: dir.path, options: options())
        try write(leader, round: 9, &random)
        try leader.sync()
        XCTAssertGreaterThan(try catchUp(follower, from: leader), 300)
        try assertEqual(follower, leader, "after the leader's restart (seed \(seed))")
        // Live: a follower thread applies as the leader writes.
        let feed = try leader.changes(since: try follower.snapshot().sequence)
        let done = DispatchSemaphore(value: 0)
        let failure = UncheckedSendableBox<Error?>(nil)
        Thread {
            do {
                while let change = try feed.next() { try follower.apply(change) }
            } catch {
                failure.value = error
            }
            done.signal()
        }.start()
        for round in 10..<13 { try write(leader, round: round, &random) }
        let last = try leader.put(bytes("last"), bytes("one"))
        let deadline = Date(timeIntervalSinceNow: 20)
        while try follower.snapshot().sequence < last && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        feed.cancel()
        done.wait()
        XCTAssertNil(failure.value)
        try assertEqual(follower, leader, "following live (seed \(seed))")
        try follower.close()
        try leader.close()
    }

    /// Every write returns its sequence number; the feed gives each batch back with it.
    func testWritesReturnTheirSequenceNumbers() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options())
        let first = try db.put(bytes("a"), bytes("1"))
        var batch = WriteBatch()
        batch.put(bytes("b"), bytes("2"))
        batch.delete(bytes("a"))
        let second = try db.write(batch)
        XCTAssertEqual(second, first + 2)
        XCTAssertEqual(try db.snapshot().sequence, second)
        let feed = try db.changes(since: first - 1, follow: false)
        let one = try XCTUnwrap(try feed.next())
        XCTAssertEqual(one.firstSequence, first)
        XCTAssertEqual(one.sequence, first)
        XCTAssertEqual(one.batch.entries, [.put(key: bytes("a"), value: bytes("1"))])
        let two = try XCTUnwrap(try feed.next())
        XCTAssertEqual(two.firstSequence, first + 1)
        XCTAssertEqual(two.sequence, second)
        XCTAssertEqual(two.batch.entries, [.put(key: bytes("b"), value: bytes("2")), .delete(key: bytes("a"))])
        XCTAssertNil(try feed.next())
        XCTAssertNil(try db.changes(since: second, follow: false).next(), "nothing after the last write")
        try db.close()
    }

    /// Without retention the logs go with their flush: asking for what they held names
    /// the oldest change kept. An ingest's entries are in no log: a feed across it says so.
    func testChangesNoLongerRetainedAreAClearError() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options(retain: false))
        for index in 0..<500 { try db.put(bytes("k\(index)"), bytes("v\(index)"), durability: .buffered) }
        try db.compactRange()
        let after = try db.put(bytes("after"), bytes("flush"))
        XCTAssertThrowsError(try db.changes(since: 0, follow: false).next()) { error in
            XCTAssertEqual((error as? KVError)?.code, .notRetained, "\(error)")
            XCTAssertTrue("\(error)".contains("the oldest retained change is sequence"), "\(error)")
        }
        XCTAssertEqual(try db.changes(since: after - 1, follow: false).next()?.sequence, after)
        try db.close()

        let ingesting = TestPath()
        let leader = try Database(path: ingesting.path, options: options())
        let before = try leader.put(bytes("a"), bytes("1"))
        try leader.ingest(sorted: [(key: bytes("i"), value: bytes("ingested"))])
        try leader.put(bytes("z"), bytes("2"))
        let feed = try leader.changes(since: 0, follow: false)
        XCTAssertEqual(try feed.next()?.sequence, before)
        XCTAssertThrowsError(try feed.next()) { error in
            XCTAssertEqual((error as? KVError)?.code, .notRetained, "\(error)")
            XCTAssertTrue("\(error)".contains("ingest"), "\(error)")
        }
        try leader.close()
    }

    /// A follower refuses a batch that does not follow its last sequence, and writes nothing.
    func testApplyRefusesABatchOutOfOrder() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options())
        var batch = WriteBatch()
        batch.put(bytes("a"), bytes("1"))
        XCTAssertThrowsError(try db.apply(batch, sequence: 5)) { XCTAssertEqual(($0 as? KVError)?.code, .invalidArgument, "\($0)") }
        XCTAssertNil(try db.get(bytes("a")))
        XCTAssertEqual(try db.apply(batch, sequence: 1), 1)
        XCTAssertThrowsError(try db.apply(batch, sequence: 1)) { XCTAssertEqual(($0 as? KVError)?.code, .invalidArgument, "\($0)") }
        XCTAssertEqual(try db.snapshot().sequence, 1)
        try db.close()
    }

    /// Retention by bytes keeps the newest logs within the bound, and removes older ones.
    func testRetentionKeepsTheNewestLogsWithinItsBound() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options { $0.logRetention = LogRetention(maxBytes: 64 << 10) })
        for index in 0..<3000 { try db.put(bytes("k\(index)"), bytes(String(repeating: "v", count: 50)), durability: .buffered) }
        try db.compactRange()
        let kept = logFiles(dir.path).map { fileSize($0) }.reduce(0, +)
        XCTAssertGreaterThan(logFiles(dir.path).count, 1)
        XCTAssertLessThanOrEqual(kept, 64 << 10 + 64 << 10, "the live log beside at most 64 KiB of kept ones")
        XCTAssertThrowsError(try db.changes(since: 0, follow: false).next()) { XCTAssertEqual(($0 as? KVError)?.code, .notRetained) }
        try db.close()
    }

    /// Two threads taking from one feed get every batch once between them; a cancel
    /// during a wait ends it and lets the logs go; the batches before an ingest's gap are
    /// delivered before the feed reports the gap.
    func testSharedFeedsCancelsAndGaps() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options())
        let start = try db.put(bytes("s"), bytes("0"))
        let feed = try db.changes(since: start)
        let taken = UncheckedSendableBox<[UInt64]>([])
        let lock = NSLock()
        let group = DispatchGroup()
        for _ in 0..<2 {
            DispatchQueue.global().async(group: group) {
                while let change = try? feed.next() { lock.withLock { taken.value.append(change.sequence) } }
            }
        }
        var last: UInt64 = 0
        for index in 0..<400 { last = try db.put(bytes("k\(index % 50)"), bytes("\(index)"), durability: index % 3 == 0 ? .sync : .buffered) }
        try db.sync()
        let deadline = Date(timeIntervalSinceNow: 20)
        while lock.withLock({ taken.value.count }) < 400 && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        feed.cancel()
        XCTAssertEqual(group.wait(timeout: .now() + 5), .success, "a cancel ends the waits")
        XCTAssertEqual(lock.withLock { taken.value.sorted() }, Array((start + 1)...last), "each batch once")
        XCTAssertNil(try feed.next(), "a cancelled feed stays ended")
        XCTAssertTrue(db.logPins.withLock { $0.isEmpty }, "a cancelled feed keeps no log")

        let before = try db.put(bytes("a"), bytes("before the ingest"))
        try db.ingest(sorted: [(key: bytes("i"), value: bytes("ingested"))])
        let gapped = try db.changes(since: before - 1, follow: false)
        XCTAssertEqual(try gapped.next()?.sequence, before, "the batch before the gap first")
        XCTAssertThrowsError(try gapped.next()) { XCTAssertEqual(($0 as? KVError)?.code, .notRetained) }
        try db.close()
    }

    /// The async form follows live commits, and ends when cancelled.
    func testAsyncFeedFollows() async throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: options())
        let start = try await db.put(bytes("a"), bytes("0"))
        let feed = try db.changes(since: start)
        let writer = Task {
            for index in 1...20 { try await db.put(bytes("a"), bytes("\(index)"), durability: .buffered) }
        }
        var seen: [UInt64] = []
        for try await change in feed {
            seen.append(change.sequence)
            if seen.count == 20 { break }
        }
        try await writer.value
        XCTAssertEqual(seen, Array((start + 1)...(start + 20)))
        feed.cancel()
        try await db.close()
    }
}

/// A box for a value one thread sets and another reads after a join.
final class UncheckedSendableBox<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}
