import Foundation
import Synchronization
import XCTest

@testable import KVEngine

/// An actor that read-modify-writes a counter: the racy pattern of the issue that asked
/// for transactions, done with one (the actor is re-entered at every `await`).
private actor Counter {
    let db: Database
    let key: String
    init(db: Database, key: String) {
        self.db = db
        self.key = key
    }

    func increment() async throws {
        try await db.transaction { tx in
            let current = try await tx.get(key, decoding: Int.self) ?? 0
            try tx.put(key, encoding: current + 1)
        }
    }
}

final class TransactionTests: XCTestCase {
    /// Eight tasks each incrementing one counter 50 times through an actor whose method
    /// awaits between its read and its write: exactly 400 (without a transaction the
    /// same pattern ended at 58).
    func testEightTasksIncrementACounterToExactly400() async throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions { $0.defaultDurability = .buffered })
        let counter = Counter(db: db, key: "count")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask { for _ in 0..<50 { try await counter.increment() } }
            }
            try await group.waitForAll()
        }
        let final = try await db.get("count", decoding: Int.self)
        XCTAssertEqual(final, 400)
        try await db.close()
    }

    /// The same from threads with the synchronous form: 8 threads x 50 increments.
    func testThreadsIncrementACounterToExactly400() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions { $0.defaultDurability = .buffered })
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<50 {
                try! db.transaction { tx in
                    let current = try tx.get("count", decoding: Int.self) ?? 0
                    try tx.put("count", encoding: current + 1)
                }
            }
        }
        XCTAssertEqual(try db.get("count", decoding: Int.self), 400)
        XCTAssertGreaterThan(db.counters.transactionRetries.total, 0, "8 threads on one key should have collided")
        try db.close()
    }

    /// A write to a key the transaction read, made between its read and its commit,
    /// rolls it back; the body runs again and sees the new value.
    func testAConflictingTransactionIsRetriedOnAFreshSnapshot() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        try db.put("balance", "10")
        var runs: [String] = []
        try db.transaction { tx in
            let seen = try tx.get("balance") ?? "none"
            runs.append(seen)
            if runs.count == 1 { try db.put("balance", "20") }  // someone else, mid-transaction
            try tx.put("balance", String(Int(seen)! + 1))
        }
        XCTAssertEqual(runs, ["10", "20"])
        XCTAssertEqual(try db.get("balance"), "21")
        XCTAssertEqual(db.counters.transactionRetries.total, 1)
    }

    /// With the attempts used up, the call throws `.conflict` (catchable by code) and
    /// nothing of the transaction is applied.
    func testConflictAfterTheLastAttemptAppliesNothing() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        try db.put("k", "0")
        var attempts = 0
        do {
            try db.transaction(TransactionOptions(maxAttempts: 3)) { tx in
                attempts += 1
                _ = try tx.get("k")
                try tx.put("other", "written by the transaction")
                try db.put("k", "\(attempts)")
            }
            XCTFail("expected a conflict")
        } catch KVError.conflict {
            // the code matches in a catch
        }
        XCTAssertEqual(attempts, 3)
        XCTAssertNil(try db.get("other"), "a refused transaction left a write behind")
        XCTAssertEqual(try db.get("k"), "3")
    }

    /// A blind write conflicts with a write of the same key after the snapshot (first
    /// committer wins); disjoint keys do not conflict.
    func testWriteWriteConflictsAndDisjointKeysDoNot() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        var runs = 0
        try db.transaction { tx in
            runs += 1
            try tx.put("a", "from tx \(runs)")
            if runs == 1 { try db.put("a", "outside") }
        }
        XCTAssertEqual(runs, 2)
        XCTAssertEqual(try db.get("a"), "from tx 2")
        runs = 0
        try db.transaction { tx in
            runs += 1
            _ = try tx.get("x")
            try tx.put("y", "1")
            if runs == 1 { try db.put("z", "unrelated") }
        }
        XCTAssertEqual(runs, 1, "a write to a key the transaction never touched is no conflict")
    }

    /// Write skew on a range: two transactions each count the on-call doctors by a scan
    /// and take one off if at least two remain. Serially only one can; the scan's range
    /// is checked at commit, so the second sees the first's write and stops.
    func testScannedRangesAreCheckedSoWriteSkewIsRefused() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        try db.put("oncall:alice", "yes")
        try db.put("oncall:bob", "yes")
        var interleaved = false
        func goOffCall(_ name: String, while other: (() throws -> Void)?) throws {
            try db.transaction { tx in
                let onCall = try tx.scan(ScanOptions(prefix: "oncall:"))
                if onCall.count >= 2 {
                    if let other, !interleaved {
                        interleaved = true
                        try other()  // the other doctor commits between this scan and this commit
                    }
                    try tx.delete("oncall:\(name)")
                }
            }
        }
        try goOffCall("alice", while: { try goOffCall("bob", while: nil) })
        let left = try db.scan(ScanOptions(prefix: "oncall:")).collect()
        XCTAssertEqual(left.count, 1, "both went off call: write skew")
        // A key inserted into a scanned range is a conflict too (a phantom).
        var runs = 0
        try db.transaction { tx in
            runs += 1
            _ = try tx.scan(ScanOptions(start: "m", end: "n"))
            if runs == 1 { try db.put("mango", "inserted") }
            try tx.put("summary", "scanned")
        }
        XCTAssertEqual(runs, 2)
    }

    /// A scan stopped by its limit covers only up to its last entry: a write past it is
    /// no conflict.
    func testALimitedScanCoversOnlyWhatItReturned() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        for key in ["a", "b", "c", "d"] { try db.put(key, "v") }
        var runs = 0
        try db.transaction { tx in
            runs += 1
            let page = try tx.scan(ScanOptions(limit: 2))
            XCTAssertEqual(page.map(\.key), [bytes("a"), bytes("b")])
            if runs == 1 { try db.put("d", "changed") }
            try tx.put("cursor", "b")
        }
        XCTAssertEqual(runs, 1)
    }

    /// Reads see the snapshot plus the transaction's own writes, in gets and scans
    /// (forward and reverse, deletes hiding stored keys); others see nothing until commit.
    func testReadsSeeOwnWritesAndOthersSeeNothingBeforeCommit() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        try db.put("k1", "stored1")
        try db.put("k2", "stored2")
        try db.put("k4", "stored4")
        try db.transaction { tx in
            try tx.put("k3", "own3")
            try tx.put("k1", "own1")
            try tx.delete("k2")
            XCTAssertEqual(try tx.get("k1"), "own1")
            XCTAssertNil(try tx.get("k2") as String?)
            XCTAssertEqual(try tx.scan().map { String(decoding: $0.value, as: UTF8.self) }, ["own1", "own3", "stored4"])
            XCTAssertEqual(try tx.scan(ScanOptions(reverse: true)).map(\.key), [bytes("k4"), bytes("k3"), bytes("k1")])
            XCTAssertEqual(try tx.scan(ScanOptions(after: "k1", limit: 1)).map(\.key), [bytes("k3")])
            XCTAssertEqual(try db.get("k1"), "stored1", "visible before commit")
            XCTAssertNil(try db.get("k3"))
        }
        XCTAssertEqual(try db.scan().collect().map(\.key), [bytes("k1"), bytes("k3"), bytes("k4")])
        XCTAssertEqual(try db.get("k1"), "own1")
    }

    /// What the body throws ends the transaction with nothing applied; a transaction kept
    /// past its body refuses calls.
    func testAThrowingBodyAppliesNothing() throws {
        struct Stop: Error {}
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        var kept: Transaction?
        XCTAssertThrowsError(try db.transaction { tx in
            kept = tx
            try tx.put("k", "v")
            throw Stop()
        }) { XCTAssertTrue($0 is Stop) }
        XCTAssertNil(try db.get("k"))
        XCTAssertThrowsError(try kept!.put("k", "late")) { XCTAssertEqual(($0 as? KVError)?.code, .invalidArgument) }
    }

    /// A transaction's commit is one batch: after a reopen all its writes are there.
    func testTheCommitIsDurableAndAtomic() throws {
        let dir = TestPath()
        do {
            let db = try Database(path: dir.path, options: testOptions { $0.flushOnClose = false })
            try db.transaction { tx in
                for index in 0..<100 { try tx.put("key\(index)", "value\(index)") }
            }
            XCTAssertEqual(db.stats.lastSequence, 100)
            XCTAssertEqual(db.stats.liveSnapshots, 0, "the transaction's snapshot went with its attempt")
            try db.close()
        }
        let db = try Database(path: dir.path, options: testOptions())
        XCTAssertEqual(try db.scan().collect().count, 100)
        XCTAssertEqual(try db.get("key42"), "value42")
    }

    /// Conflicts are seen across a memtable rotation and a flush between a read and the
    /// commit (the write that conflicts then lies in a table, not in the log's memtable).
    func testConflictsAreSeenAcrossAFlush() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions { $0.memtableBytes = 1 << 16 })
        try db.put("k", "0")
        var runs = 0
        try db.transaction { tx in
            runs += 1
            _ = try tx.get("k")
            if runs == 1 {
                try db.put("k", "changed")
                for index in 0..<2_000 { try db.put("filler\(index)", String(repeating: "x", count: 100), durability: .buffered) }
                try db.compactRange()
            }
            try tx.put("k", "tx")
        }
        XCTAssertEqual(runs, 2)
        XCTAssertEqual(try db.get("k"), "tx")
    }

    /// Found by the metamorphic test: the commit's check walked one scanned range to the
    /// end of a level (its last table) and then started the next range from the first
    /// key; a level of one table kept that table as the one it walks with no walk open,
    /// and the second seek trapped on the missing walk.
    func testCommitCheckReseeksALevelWalkedPastItsEnd() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        for index in 0..<10 { try db.put("k\(index)", "v") }
        try db.compactRange()  // one table, in one level
        try db.transaction { tx in
            XCTAssertEqual(try tx.scan().count, 10)
            XCTAssertEqual(try tx.scan(ScanOptions(reverse: true)).count, 10)
            try tx.put("k0", "changed")
        }
        XCTAssertEqual(try db.get("k0"), "changed")
    }

    /// A write between the check over the whole database and the check under the log's
    /// lock is seen by the second: here the first check passes, and only the second can
    /// find it.
    func testAWriteBetweenTheTwoChecksIsAConflict() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        try db.put("k", "0")
        let fired = Mutex(false)
        db.betweenConflictChecks.withLock {
            $0 = { if !fired.withLock({ let was = $0; $0 = true; return was }) { try! db.put("k", "between") } }
        }
        var runs = 0
        try db.transaction { tx in
            runs += 1
            let seen = try tx.get("k") ?? ""
            try tx.put("k", seen + "+tx")
        }
        XCTAssertEqual(runs, 2)
        XCTAssertEqual(try db.get("k"), "between+tx")
    }

    /// The same when the write went to another memtable and on into a table (a rotation
    /// and a flush between the checks): the append meets a sealed log and the checks run
    /// again over the new view.
    func testAWriteFlushedBetweenTheTwoChecksIsAConflict() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        try db.put("k", "0")
        let fired = Mutex(false)
        db.betweenConflictChecks.withLock {
            $0 = {
                guard !fired.withLock({ let was = $0; $0 = true; return was }) else { return }
                try! db.put("k", "between")
                try! db.compactRange()
            }
        }
        var runs = 0
        try db.transaction { tx in
            runs += 1
            _ = try tx.get("k")
            try tx.put("other", "x")
        }
        XCTAssertEqual(runs, 2)
    }

    /// A transaction's snapshot goes when its attempt ends, even if the transaction is kept.
    func testTheSnapshotIsReleasedWhenTheAttemptEnds() async throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        var kept: [Transaction] = []
        try await db.transaction { tx in kept.append(tx); try tx.put("a", "1") }
        try await db.transaction { tx in kept.append(tx); _ = try await tx.get("a") }
        XCTAssertEqual(kept.count, 2)
        XCTAssertEqual(db.stats.liveSnapshots, 0)
        // In async code a body without await still runs the async form (it does not block
        // a cooperative thread through the commit).
        try await db.transaction { tx in kept.append(tx); try tx.put("b", "2") }
        XCTAssertEqual(db.stats.liveSnapshots, 0)
    }
}
