import Foundation
import PageStore
import XCTest
import TestSupport

@testable import KVEngine

/// Power cuts in the middle of a checkpoint or a backup: the database keeps every
/// acknowledged write, a backup opens as its previous state or its new one, a checkpoint
/// either is not a database yet or opens whole, and the next copy succeeds.
final class CopyCrashTests: XCTestCase {
    override func setUp() { CrashRun.quietLogs }

    private static let path = "/sim/db"
    private static let backup = "/sim/backup"
    private static let checkpoint = "/sim/checkpoint"

    private func options() -> Options {
        var options = Options()
        options.bufferedFlushIntervalMs = 60_000
        options.logPreallocateBytes = 64 << 10
        options.inlineBackgroundWork = true
        options.allowTinySizes = true
        options.memtableBytes = 8 << 10
        options.tableTargetBytes = 4 << 10
        options.levelBaseBytes = 16 << 10
        return options
    }

    private typealias Entries = [(key: [UInt8], value: [UInt8])]

    private func contents(_ db: Database) throws -> Entries { try db.scan().collect() }

    private func same(_ left: Entries, _ right: Entries) -> Bool {
        left.map(\.key) == right.map(\.key) && left.map(\.value) == right.map(\.value)
    }

    /// What one run did: the events around the copy, and the states to expect.
    private struct Run {
        var before = 0
        var after = 0
        var source: Entries = []
        var previousBackup: Entries = []
        var disk: SimulatedDisk
    }

    /// Writes, backs up, writes more, then makes the copy (`backup` or a checkpoint) with
    /// the power cut at event `cut` (nil: no cut, to count the events).
    private func run(seed: UInt64, backup: Bool, cut: Int?) throws -> Run {
        var random = SplitMix(seed: seed)
        var plan = SimulatedDisk.FaultPlan()
        plan.cutAtEvent = cut
        let disk = try SimulatedDisk(seed: seed, plan: plan, directories: ["/sim"])
        var result = Run(disk: disk)
        let db = try Database(path: CopyCrashTests.path, options: options(), storage: disk)
        func write(_ count: Int) throws {
            for index in 0..<count {
                let key = Array("k\(random.below(300))".utf8)
                if random.chance(0.15) {
                    try db.delete(key)
                } else {
                    try db.put(key, Array("v\(seed)-\(index)-".utf8) + [UInt8](repeating: 0x61, count: random.below(300)))
                }
            }
        }
        try write(200 + random.below(200))
        if backup {
            try db.backup(to: CopyCrashTests.backup)
            result.previousBackup = try contents(db)
        }
        try write(100 + random.below(300))
        if random.chance(0.5) { try db.compactRange() }
        try write(random.below(50))
        result.source = try contents(db)
        result.before = disk.events
        do {
            if backup { try db.backup(to: CopyCrashTests.backup) } else { try db.checkpoint(to: CopyCrashTests.checkpoint) }
        } catch {
            guard cut != nil else { throw error }
        }
        result.after = disk.events
        try? db.close()
        return result
    }

    func testPowerCutDuringACopy() throws {
        let seeds = UInt64(ProcessInfo.processInfo.environment["COPY_CRASH_SEEDS"].flatMap(Int.init) ?? 40)
        let base = testSeed()
        var cuts = 0
        for offset in 0..<seeds {
            let seed = base &+ offset
            let backup = offset % 2 == 0
            let measured = try run(seed: seed, backup: backup, cut: nil)
            XCTAssertGreaterThan(measured.after, measured.before)
            var random = SplitMix(seed: seed ^ 0xC0FFEE)
            let cut = measured.before + 1 + random.below(measured.after - measured.before)
            let cutRun = try run(seed: seed, backup: backup, cut: cut)
            cuts += 1
            let disk = cutRun.disk.restarted(plan: SimulatedDisk.FaultPlan(), seed: seed &+ 1)
            let what = "seed \(seed), \(backup ? "backup" : "checkpoint") cut at event \(cut) of \(measured.before)...\(measured.after)"
            // The source: every write was acknowledged durable.
            let db = try Database(path: CopyCrashTests.path, options: options(), storage: disk)
            XCTAssertTrue(same(try contents(db), cutRun.source), "\(what): the source lost acknowledged writes")
            var readOnly = options()
            readOnly.readOnly = true
            if backup {
                let copy = try Database(path: CopyCrashTests.backup, options: readOnly, storage: disk)
                let held = try contents(copy)
                try copy.close()
                XCTAssertTrue(same(held, cutRun.previousBackup) || same(held, cutRun.source), "\(what): the backup holds neither state (\(held.count) keys)")
                let report = try db.backup(to: CopyCrashTests.backup)
                let again = try Database(path: CopyCrashTests.backup, options: readOnly, storage: disk)
                XCTAssertTrue(same(try contents(again), cutRun.source), "\(what): the next backup (\(report))")
                try again.close()
            } else {
                do {
                    let copy = try Database(path: CopyCrashTests.checkpoint, options: readOnly, storage: disk)
                    XCTAssertTrue(same(try contents(copy), cutRun.source), "\(what): a checkpoint that opens must be whole")
                    try copy.close()
                } catch {
                    // Cut before its identity file: not a database, and nothing claims it is.
                    XCTAssertEqual(error.code, .notADatabase, "\(what): \(error)")
                }
                try db.checkpoint(to: CopyCrashTests.checkpoint + "2")
                let again = try Database(path: CopyCrashTests.checkpoint + "2", options: readOnly, storage: disk)
                XCTAssertTrue(same(try contents(again), cutRun.source), "\(what): the next checkpoint")
                try again.close()
            }
            try db.close()
            XCTAssertTrue(disk.violations.isEmpty, "\(what): \(disk.violations)")
        }
        print("copy crash: seeds=\(seeds) base=\(base) cuts=\(cuts)")
    }
}

/// Range deletes through a full disk: writes stopped by it resume with the memtable rebuilt
/// from what was acknowledged, range deletes included (found in review: the rebuild walked
/// the skip list alone, and the deleted keys came back).
final class RangeDeleteFullDiskTests: XCTestCase {
    override func setUp() { CrashRun.quietLogs }

    func testRangeDeleteSurvivesAResumeAfterAFullDisk() throws {
        let disk = try SimulatedDisk(seed: 7, plan: SimulatedDisk.FaultPlan(), directories: ["/sim"])
        var options = Options()
        options.bufferedFlushIntervalMs = 60_000
        options.logPreallocateBytes = 64 << 10
        options.inlineBackgroundWork = true
        let db = try Database(path: "/sim/db", options: options, storage: disk)
        try db.put(Array("a".utf8), Array("1".utf8))
        if let log = db.currentView.log { try db.rotate(from: log) }
        try db.waitForFlushes()
        try db.put(Array("b".utf8), Array("2".utf8))
        try db.deleteRange(Array("a".utf8), Array("c".utf8), durability: .buffered)
        disk.failNext("write", pathContaining: ".log", errno: ENOSPC)
        XCTAssertThrowsError(try db.put(Array("d".utf8), Array("3".utf8))) { XCTAssertEqual(($0 as? KVError)?.code, .full, "\($0)") }
        XCTAssertTrue(try db.resumeWrites())
        XCTAssertNil(try db.get(Array("a".utf8)), "the range delete outlives the resume")
        XCTAssertNil(try db.get(Array("b".utf8)))
        try db.waitForFlushes()
        XCTAssertNil(try db.get(Array("a".utf8)), "and its flush")
        try db.close()
        let reopened = try Database(path: "/sim/db", options: options, storage: disk)
        XCTAssertEqual(try reopened.scan().collect().count, 0, "and a reopen")
        try reopened.close()
    }
}
