import Foundation
import PageStore
import XCTest
import TestSupport

@testable import KVEngine

/// The manifest is fail-stop: after a failed manifest write, fdatasync, CURRENT switch or
/// directory fsync, the database refuses writes (reads go on) until it is reopened, no file
/// an edit might name is deleted, and the reopen (clean, or after a power cut that keeps or
/// drops what was not synced) recovers every acknowledged write.
final class ManifestFailureTests: XCTestCase {
    private let path = "/sim/db"

    override func setUp() { CrashRun.quietLogs }

    private func options(rollEveryEdit: Bool) -> Options {
        var options = Options()
        options.bufferedFlushIntervalMs = 60_000
        options.logPreallocateBytes = 64 << 10
        options.inlineBackgroundWork = true
        // Every edit starts a new manifest: each one switches CURRENT.
        if rollEveryEdit { options.manifestRollBytes = 1 }
        return options
    }

    private func key(_ index: Int) -> [UInt8] { Array("key\(index)".utf8) }
    private func value(_ index: Int) -> [UInt8] { Array("value \(index) ".utf8) + [UInt8](repeating: UInt8(index), count: 300) }

    /// Writes keys 0..<20, arms `fault`, runs a `compactRange` (a flush edit, then a
    /// compaction edit) that must fail, checks the database refuses writes and still reads,
    /// then reopens it (after a clean close, or a power cut keeping `persist` of what was
    /// not synced) and checks every write is there and writes work again.
    private func check(
        rollEveryEdit: Bool = false, crash: Bool, persist: Double = 0.5,
        file: StaticString = #filePath, line: UInt = #line, _ fault: (SimulatedDisk) -> Void
    ) throws {
        for seed: UInt64 in 1...4 {
            var plan = SimulatedDisk.FaultPlan()
            plan.tornMode = .dropOnly
            plan.persistProbability = persist
            let disk = try SimulatedDisk(seed: seed, plan: plan, directories: ["/sim"])
            let options = options(rollEveryEdit: rollEveryEdit)
            var db: Database? = try Database(path: path, options: options, storage: disk)
            for index in 0..<20 { try db!.put(key(index), value(index)) }
            fault(disk)
            XCTAssertThrowsError(try db!.compactRange(), "the compaction must fail", file: file, line: line)
            XCTAssertEqual(disk.armedFaults, 0, "the fault never fired", file: file, line: line)
            XCTAssertThrowsError(try db!.put(key(99), value(99)), file: file, line: line) { error in
                XCTAssertTrue("\(error)".contains("reopen"), "not a clear refusal: \(error)", file: file, line: line)
            }
            XCTAssertThrowsError(try db!.compactRange(), "a stopped database takes no more compactions", file: file, line: line)
            // The version set itself refuses (a compaction already under way would reach it).
            XCTAssertNotNil(db!.versions.failure, file: file, line: line)
            XCTAssertThrowsError(try db!.versions.apply(VersionEdit()) { _ in }, file: file, line: line) { error in
                XCTAssertTrue("\(error)".contains("stopped"), "\(error)", file: file, line: line)
            }
            for index in 0..<20 { XCTAssertEqual(try db!.get(key(index)), value(index), "reads go on", file: file, line: line) }
            var next = disk
            if crash {
                disk.cutPower()
                db = nil
                next = disk.restarted(plan: SimulatedDisk.FaultPlan(), seed: seed)
            } else {
                try? db!.close()
                db = nil
            }
            let reopened = try Database(path: path, options: options, storage: next)
            for index in 0..<20 {
                XCTAssertEqual(try reopened.get(key(index)), value(index), "seed \(seed): acknowledged write \(index) lost", file: file, line: line)
            }
            XCTAssertNil(try reopened.get(key(99)), "seed \(seed): a refused write appeared", file: file, line: line)
            try reopened.put(key(99), value(99))
            try reopened.compactRange()
            try reopened.close()
            let again = try Database(path: path, options: options, storage: next)
            XCTAssertEqual(try again.get(key(99)), value(99), file: file, line: line)
            XCTAssertEqual(try again.scan().collect().count, 21, file: file, line: line)
            try again.close()
        }
    }

    func testFailedManifestWriteOfAFlush() throws {
        try check(crash: false) { $0.failNext("write", pathContaining: "MANIFEST-") }
        try check(crash: true) { $0.failNext("write", pathContaining: "MANIFEST-") }
    }

    func testFailedManifestSyncOfAFlush() throws {
        for persist in [0.0, 1.0] {
            try check(crash: true, persist: persist) { $0.failNext("fdatasync", pathContaining: "MANIFEST-") }
        }
        try check(crash: false) { $0.failNext("fdatasync", pathContaining: "MANIFEST-") }
    }

    /// The compaction's edit (after the flush's) fails: its output tables must stay, since
    /// the edit may be durable (here: a power cut that keeps every unsynced write).
    func testFailedManifestSyncOfACompactionKeepsItsOutputs() throws {
        for persist in [0.0, 1.0] {
            try check(crash: true, persist: persist) {
                $0.failNext("fdatasync", pathContaining: "MANIFEST-", after: ("fdatasync", "MANIFEST-"))
            }
        }
        try check(crash: false) { $0.failNext("write", pathContaining: "MANIFEST-", after: ("fdatasync", "MANIFEST-")) }
        // No power cut: the edit whose fdatasync failed is still in the file as the next
        // open reads it (as a page cache would hold it), naming the outputs.
        try check(crash: false) { $0.failNext("fdatasync", pathContaining: "MANIFEST-", after: ("fdatasync", "MANIFEST-")) }
    }

    /// The flush a clean close makes fails at its edit's fdatasync: `close` reports it, the
    /// log stays, and the next open has every write.
    func testFailedEditOfTheFlushAtCloseKeepsTheLog() throws {
        let disk = try SimulatedDisk(seed: 2, plan: SimulatedDisk.FaultPlan(), directories: ["/sim"])
        let options = options(rollEveryEdit: false)
        do {
            let db = try Database(path: path, options: options, storage: disk)
            for index in 0..<20 { try db.put(key(index), value(index)) }
            disk.failNext("fdatasync", pathContaining: "MANIFEST-")
            XCTAssertThrowsError(try db.close(), "the failed flush at close is reported")
            XCTAssertEqual(disk.armedFaults, 0, "the fault never fired")
        }
        let db = try Database(path: path, options: options, storage: disk)
        for index in 0..<20 { XCTAssertEqual(try db.get(key(index)), value(index), "write \(index)") }
        try db.close()
        XCTAssertEqual(try disk.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".log") }, [], "a clean close leaves no log")
    }

    /// The open's own flush (of what the logs held) fails at its edit's fdatasync, with the
    /// edit in the file as the next open reads it: the open must not remove the flushed
    /// table as one that no version names, since that edit names it.
    func testFailedEditOfTheFlushAtOpenKeepsItsTable() throws {
        let disk = try SimulatedDisk(seed: 1, plan: SimulatedDisk.FaultPlan(), directories: ["/sim"])
        let options = options(rollEveryEdit: false)
        do {
            // Closed as a crash leaves it: the writes in its log, for the next open to flush.
            var keepLog = options
            keepLog.flushOnClose = false
            let db = try Database(path: path, options: keepLog, storage: disk)
            for index in 0..<20 { try db.put(key(index), value(index)) }
            try db.close()
        }
        // The open writes its new manifest (one fdatasync), then the flush's edit.
        disk.failNext("fdatasync", pathContaining: "MANIFEST-", after: ("fdatasync", "MANIFEST-"))
        do {
            let db = try Database(path: path, options: options, storage: disk)
            XCTAssertEqual(disk.armedFaults, 0, "the fault never fired")
            XCTAssertThrowsError(try db.put(key(99), value(99)), "writes are refused after the failed edit")
            for index in 0..<20 { XCTAssertEqual(try db.get(key(index)), value(index)) }
            try? db.close()
        }
        let db = try Database(path: path, options: options, storage: disk)
        for index in 0..<20 { XCTAssertEqual(try db.get(key(index)), value(index), "write \(index)") }
        try db.put(key(99), value(99))
        try db.close()
    }

    func testFailedCurrentRenameOnManifestRoll() throws {
        try check(rollEveryEdit: true, crash: false) { $0.failNext("rename", pathContaining: "CURRENT") }
        try check(rollEveryEdit: true, crash: true) { $0.failNext("rename", pathContaining: "CURRENT") }
    }

    func testFailedCurrentSyncOnManifestRoll() throws {
        try check(rollEveryEdit: true, crash: true) { $0.failNext("fsync", pathContaining: "CURRENT") }
    }

    /// The rename went through but its directory fsync failed: CURRENT may name either
    /// manifest after a power cut, and both must still be there.
    func testFailedDirectorySyncAfterCurrentRename() throws {
        for persist in [0.0, 1.0] {
            try check(rollEveryEdit: true, crash: true, persist: persist) {
                $0.failNext("fsync directory", pathContaining: "/sim/db", after: ("rename", "CURRENT"))
            }
        }
        try check(rollEveryEdit: true, crash: false) {
            $0.failNext("fsync directory", pathContaining: "/sim/db", after: ("rename", "CURRENT"))
        }
    }

    /// The roll of the compaction's edit fails after the flush's roll went through.
    func testFailedRollOfACompaction() throws {
        for persist in [0.0, 1.0] {
            try check(rollEveryEdit: true, crash: true, persist: persist) {
                $0.failNext("rename", pathContaining: "CURRENT", after: ("rename", "CURRENT"))
            }
        }
    }
}
