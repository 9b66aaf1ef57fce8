import Foundation
import XCTest
import TestSupport

@testable import KVEngine

/// A full disk on the simulated disk (`SimulatedDisk.setCapacity`): the write that meets
/// it fails with `.full` and leaves no trace, every acknowledged write reads back in the
/// same process and after a reopen while the disk is still full, and writes go on once
/// there is room, in the same handle and after a reopen. The room runs out at a different point of each run, so the
/// failing write is a log chain, a log's zero-fill or reservation, a flush's table, a
/// manifest edit, a new manifest or CURRENT's switch.
final class DiskFullTests: XCTestCase {
    private let path = "/sim/db"

    private func options(tiny: Bool) -> Options {
        var options = Options()
        options.allowTinySizes = true
        options.inlineBackgroundWork = true
        options.bufferedFlushIntervalMs = 60_000
        options.logPreallocateBytes = 64 << 10
        options.memtableBytes = tiny ? 8 << 10 : 1 << 20
        options.tableTargetBytes = 8 << 10
        options.levelBaseBytes = 16 << 10
        options.level0CompactionTrigger = 2
        options.level0SlowdownTrigger = 1000
        options.level0StopTrigger = 1000
        options.manifestRollBytes = 16 << 10
        return options
    }

    private func key(_ index: Int) -> [UInt8] { Array("key\(index)".utf8) }
    private func value(_ index: Int) -> [UInt8] { Array("value\(index)-".utf8) + [UInt8](repeating: UInt8(index & 0xFF), count: 700) }

    func testFullDiskAtEveryWritePath() throws {
        var paths: [String: Int] = [:]
        for tiny in [false, true] {
            for room in stride(from: 0, to: 240 << 10, by: 11 << 10) {
                let failure = try run(tiny: tiny, roomBytes: room)
                paths[failure, default: 0] += 1
            }
        }
        print("disk full: the failing write by file: \(paths.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        XCTAssertNotNil(paths["log"], "some runs fill the disk in a log write")
        XCTAssertNotNil(paths["table"], "some runs fill the disk in a flush or compaction")
        XCTAssertNotNil(paths["manifest"], "some runs fill the disk in a manifest edit or a new manifest")
    }

    /// The one write that finds no room is a manifest's or CURRENT's (ENOSPC once, armed
    /// after a different number of puts in each run): the writes that need it fail with
    /// `.full`, nothing acknowledged is lost, and a reopen takes writes.
    func testNoRoomForAManifestOrCurrent() throws {
        for target in ["MANIFEST-", "CURRENT.tmp"] {
            for skip in 0..<6 {
                let disk = try SimulatedDisk(seed: UInt64(skip), plan: SimulatedDisk.FaultPlan(), directories: ["/sim"])
                let options = options(tiny: true)
                let what = "\(target) after \(skip * 25) puts"
                var acknowledged: [Int] = []
                var failure: KVError?
                do {
                    let db = try Database(path: path, options: options, storage: disk)
                    (acknowledged, failure) = putUntilFailure(db, 0..<400) { index in
                        if index == skip * 25 { disk.failNext("write", pathContaining: target, errno: ENOSPC) }
                    }
                    XCTAssertEqual(disk.armedFaults, 0, "\(what): the fault never fired")
                    let error = try XCTUnwrap(failure, "\(what): no write failed")
                    XCTAssertEqual(error.code, .full, "\(what): \(error)")
                    for index in acknowledged { XCTAssertEqual(try db.get(key(index)), value(index), "\(what): key \(index)") }
                    try? db.close()
                }
                let db = try Database(path: path, options: options, storage: disk)
                for index in acknowledged { XCTAssertEqual(try db.get(key(index)), value(index), "\(what): reopened: key \(index)") }
                try db.put(key(9999), value(9999))
                try db.close()
            }
        }
    }

    /// Writes that resumed in the same handle after a full disk (whichever write met it:
    /// a log's, a table's, a manifest's) survive a power cut right after: the resume leaves
    /// nothing of the failed writes for recovery to replay, and its new log follows the
    /// tables' last sequence.
    func testWritesResumedAfterAFullDiskSurviveAPowerCut() throws {
        for tiny in [false, true] {
            for room in stride(from: 0, to: 200 << 10, by: 17 << 10) {
                let what = "tiny=\(tiny) room=\(room)"
                let disk = try SimulatedDisk(seed: UInt64(room) ^ 77, plan: SimulatedDisk.FaultPlan(), directories: ["/sim"])
                let options = options(tiny: tiny)
                let db = try Database(path: path, options: options, storage: disk)
                var (acknowledged, failure) = putUntilFailure(db, 0..<40)
                XCTAssertNil(failure, what)
                disk.setCapacity(disk.usedBytes + room)
                let (more, stopped) = putUntilFailure(db, 40..<4000)
                acknowledged += more
                XCTAssertEqual(try XCTUnwrap(stopped, "\(what): the disk never filled").code, .full, what)
                disk.setCapacity(nil)
                db.resumeAttempt.withLock { $0 = 1 }  // the last try was long ago
                let (after, failed) = putUntilFailure(db, 5000..<5030)
                XCTAssertNil(failed, "\(what): \(failed.map { "\($0)" } ?? "")")
                acknowledged += after
                disk.cutPower()
                try? db.close()
                let restarted = disk.restarted(plan: SimulatedDisk.FaultPlan(), seed: UInt64(room))
                let reopened = try Database(path: path, options: options, storage: restarted)
                for index in acknowledged { XCTAssertEqual(try reopened.get(key(index)), value(index), "\(what): key \(index)") }
                XCTAssertEqual(try reopened.scan().collect().count, acknowledged.count, what)
                try reopened.close()
            }
        }
    }

    /// Buffered writes acknowledged before the log chain that was to carry them found no
    /// room: they stay visible, the sync that met the full disk fails, and after the
    /// resume they are durable: a power cut keeps every one of them (and nothing of a
    /// write that failed). An ingest after a flush that found no room resumes writes first.
    func testBufferedWritesAcknowledgedBeforeTheFullDiskSurviveTheResume() throws {
        let disk = try SimulatedDisk(seed: 5, plan: SimulatedDisk.FaultPlan(), directories: ["/sim"])
        let options = options(tiny: false)
        let db = try Database(path: path, options: options, storage: disk)
        for index in 0..<20 { try db.put(key(index), value(index)) }
        for index in 20..<40 { try db.put(key(index), value(index), durability: .buffered) }
        disk.failNext("write", pathContaining: ".log", errno: ENOSPC)
        XCTAssertThrowsError(try db.sync()) { XCTAssertEqual(($0 as! KVError).code, .full, "\($0)") }
        XCTAssertThrowsError(try db.put(key(40), value(40))) { XCTAssertEqual(($0 as! KVError).code, .full, "\($0)") }
        for index in 0..<40 { XCTAssertEqual(try db.get(key(index)), value(index), "key \(index)") }
        XCTAssertNil(try db.get(key(40)))
        XCTAssertTrue(try db.resumeWrites())
        XCTAssertNil(try db.get(key(40)), "the failed put stays out after the resume")
        try db.put(key(41), value(41))
        // A flush that finds no room, then an ingest: it resumes writes before it starts.
        disk.failNext("write", pathContaining: ".sst", errno: ENOSPC)
        try? db.compactRange()
        db.resumeAttempt.withLock { $0 = 1 }  // the last try was long ago
        XCTAssertEqual(try db.ingest(sorted: [(key: key(50), value: value(50))]).entries, 1)
        disk.cutPower()
        try? db.close()
        let restarted = disk.restarted(plan: SimulatedDisk.FaultPlan(), seed: 6)
        let reopened = try Database(path: path, options: options, storage: restarted)
        for index in Array(0..<40) + [41, 50] { XCTAssertEqual(try reopened.get(key(index)), value(index), "after the power cut: key \(index)") }
        XCTAssertEqual(try reopened.scan().collect().count, 42)
        try reopened.close()
    }

    /// An ingest that fills the disk after some of its tables are written fails with
    /// `.full` and adds nothing: none of its keys reads back (nor after a reopen), its
    /// tables are gone, what was there before is intact, and writes go on in the same
    /// handle. With room again, the same ingest goes in whole.
    func testIngestThatFillsTheDiskAddsNothing() throws {
        for room in stride(from: 8 << 10, to: 200 << 10, by: 24 << 10) {
            let disk = try SimulatedDisk(seed: UInt64(room), plan: SimulatedDisk.FaultPlan(), directories: ["/sim"])
            let options = options(tiny: false)
            let what = "room=\(room)"
            let db = try Database(path: path, options: options, storage: disk)
            for index in 0..<40 { try db.put(key(index), value(index)) }
            try db.compactRange()
            let tablesBefore = Set(try disk.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".sst") })
            // 1000 entries of about 700 bytes: far more than the room.
            let ingested = (1000..<2000).map { (key: key($0), value: value($0)) }.sorted { $0.key.lexicographicallyPrecedes($1.key) }
            disk.setCapacity(disk.usedBytes + room)
            XCTAssertThrowsError(try db.ingest(sorted: ingested), what) { error in
                XCTAssertEqual((error as! KVError).code, .full, "\(what): \(error)")
            }
            let tablesAfter = Set(try disk.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".sst") })
            XCTAssertEqual(tablesAfter, tablesBefore, "\(what): the ingest's tables are removed")
            for index in [1000, 1500, 1999] { XCTAssertNil(try db.get(key(index)), "\(what): key \(index)") }
            for index in 0..<40 { XCTAssertEqual(try db.get(key(index)), value(index), "\(what): key \(index)") }
            disk.setCapacity(nil)
            try db.put(key(41), value(41))
            try db.close()
            let reopened = try Database(path: path, options: options, storage: disk)
            XCTAssertNil(try reopened.get(key(1000)), what)
            XCTAssertEqual(try reopened.scan().collect().count, 41, what)
            XCTAssertEqual(try reopened.ingest(sorted: ingested).entries, 1000, what)
            XCTAssertEqual(try reopened.get(key(1500)), value(1500), what)
            XCTAssertEqual(try reopened.scan().collect().count, 1041, what)
            try reopened.close()
        }
    }

    /// Puts key `i` for each `i` of `indices` (after `before(i)`) until one fails: the
    /// indices acknowledged, and the failure.
    private func putUntilFailure(_ db: Database, _ indices: Range<Int>, before: (Int) -> Void = { _ in }) -> ([Int], KVError?) {
        var acknowledged: [Int] = []
        for index in indices {
            before(index)
            do {
                try db.put(key(index), value(index))
                acknowledged.append(index)
            } catch {
                return (acknowledged, error)
            }
        }
        return (acknowledged, nil)
    }

    /// One run: 40 writes with room, then `roomBytes` more room, then writes until one
    /// fails. Returns the kind of file whose write failed.
    private func run(tiny: Bool, roomBytes: Int) throws -> String {
        let disk = try SimulatedDisk(seed: UInt64(roomBytes), plan: SimulatedDisk.FaultPlan(), directories: ["/sim"])
        let options = options(tiny: tiny)
        let what = "tiny=\(tiny) room=\(roomBytes)"
        var acknowledged: [Int] = []
        var failure: KVError?
        do {
            let db = try Database(path: path, options: options, storage: disk)
            for index in 0..<40 {
                try db.put(key(index), value(index))
                acknowledged.append(index)
            }
            disk.setCapacity(disk.usedBytes + roomBytes)
            let (more, stopped) = putUntilFailure(db, 40..<4000)
            acknowledged += more
            failure = stopped
            let error = try XCTUnwrap(failure, "\(what): the disk never filled")
            XCTAssertEqual(error.code, .full, "\(what): \(error)")
            // Readable in the process that hit it, with no trace of the failed write.
            for index in acknowledged { XCTAssertEqual(try db.get(key(index)), value(index), "\(what): key \(index)") }
            XCTAssertNil(try db.get(key(acknowledged.count)), "\(what): the failed write is not visible")
            XCTAssertThrowsError(try db.put(key(9999), value(9999)), "\(what): writes stay refused") { error in
                XCTAssertEqual((error as! KVError).code, .full, "\(what): \(error)")
            }
            // Room again: writes go on in the same handle (once the pause between tries is
            // over), and every acknowledged write is still there.
            disk.setCapacity(nil)
            db.resumeAttempt.withLock { $0 = 1 }  // the last try was long ago
            try db.put(key(9999), value(9999))
            acknowledged.append(9999)
            for index in acknowledged { XCTAssertEqual(try db.get(key(index)), value(index), "\(what): resumed: key \(index)") }
            XCTAssertEqual(try db.scan().collect().count, acknowledged.count, "\(what): resumed")
            disk.setCapacity(disk.usedBytes)  // and full again
            try? db.close()  // its flush may fail on the full disk too: the log stays
        }
        // Reopened while the disk is still full: it opens, and every acknowledged write reads back.
        do {
            let db = try Database(path: path, options: options, storage: disk)
            for index in acknowledged { XCTAssertEqual(try db.get(key(index)), value(index), "\(what): reopened full: key \(index)") }
            XCTAssertEqual(try db.scan().collect().count, acknowledged.count, "\(what)")
            try? db.close()
        }
        // Room again: a reopen takes writes, and the next one finds them all.
        disk.setCapacity(nil)
        do {
            let db = try Database(path: path, options: options, storage: disk)
            try db.put(key(9998), value(9998))
            try db.close()
        }
        let db = try Database(path: path, options: options, storage: disk)
        for index in acknowledged + [9998] { XCTAssertEqual(try db.get(key(index)), value(index), "\(what): after room: key \(index)") }
        XCTAssertEqual(try db.scan().collect().count, acknowledged.count + 1, "\(what)")
        try db.close()
        let path = failure?.path ?? ""
        if path.hasSuffix(".log") { return "log" }
        if path.hasSuffix(".sst") { return "table" }
        if path.contains("MANIFEST") { return "manifest" }
        if path.contains("CURRENT") { return "current" }
        return "other(\(failure?.message ?? "-"))"
    }
}
