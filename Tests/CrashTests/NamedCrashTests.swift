import Foundation
import PageStore
import XCTest
import TestSupport

@testable import KVEngine

/// The classic crash bugs of this field, each as a scenario built on purpose.
final class NamedCrashTests: XCTestCase {
    private let path = "/sim/db"

    override func setUp() { CrashRun.quietLogs }

    private func options() -> Options {
        var options = Options()
        options.bufferedFlushIntervalMs = 60_000
        options.logPreallocateBytes = 64 << 10
        return options
    }

    private func disk(_ plan: SimulatedDisk.FaultPlan = SimulatedDisk.FaultPlan()) throws -> SimulatedDisk {
        try SimulatedDisk(seed: 1, plan: plan, directories: ["/sim"])
    }

    private func open(_ disk: SimulatedDisk) throws -> Database {
        try Database(path: path, options: options(), storage: disk)
    }

    /// Power cut, then the disk as it comes back under `plan`.
    private func restart(_ disk: SimulatedDisk, _ plan: SimulatedDisk.FaultPlan) -> SimulatedDisk {
        disk.cutPower()
        return disk.restarted(plan: plan, seed: 2)
    }

    private func keepFirst(_ sectors: Int) -> SimulatedDisk.FaultPlan {
        var plan = SimulatedDisk.FaultPlan()
        plan.keepOnlyFirstSectors = sectors
        return plan
    }

    /// A write whose fdatasync fails stays pending on the simulated disk, so the power cut
    /// decides what of it survives: here, its first `sectors` sectors.
    private func tornSyncWrite(
        _ batch: WriteBatch, keeping sectors: Int, afterSyncWrites setupWrites: Int = 0, _ setup: (Database) throws -> Void
    ) throws -> SimulatedDisk {
        var plan = SimulatedDisk.FaultPlan()
        // fdatasyncs: 1 identity file, 2 new log, 3 manifest, 4 CURRENT, then one per sync
        // write of the setup.
        plan.failSync = (n: 5 + setupWrites, errno: EIO, persistent: false)
        let disk = try disk(plan)
        let db = try open(disk)
        try setup(db)
        XCTAssertThrowsError(try db.write(batch, durability: .sync)) { error in
            XCTAssertEqual((error as! KVError).code, .io, "a write whose fdatasync failed is not acknowledged")
        }
        return restart(disk, keepFirst(sectors))
    }

    func testTornLastLogRecordIsNeverReturnedAsAValue() throws {
        var batch = WriteBatch()
        batch.put(Array("torn".utf8), [UInt8](repeating: 0x77, count: 3000))
        // Only the first 2 KiB of the record's page reach the platter.
        let restarted = try tornSyncWrite(batch, keeping: 4) { _ in }
        let db = try open(restarted)
        XCTAssertNil(try db.get("torn"))
        XCTAssertEqual(db.stats.lastSequence, 0)
    }

    func testTornLogTailDoesNotStopTheDatabaseFromOpening() throws {
        var batch = WriteBatch()
        batch.put(Array("tail".utf8), [UInt8](repeating: 1, count: 100))
        // The tail page is torn after its first 1 KiB: a fragment that fails its checksum
        // at the end of the log. Open must cut it off, not refuse.
        let restarted = try tornSyncWrite(batch, keeping: 2, afterSyncWrites: 1) { db in
            try db.put("before", "durable")
        }
        let db = try open(restarted)
        XCTAssertEqual(try db.get("before"), "durable")
        XCTAssertNil(try db.get("tail"))
    }

    func testMultiEntryBatchPartiallyPersistedIsDroppedWhole() throws {
        var batch = WriteBatch()
        for index in 0..<6 { batch.put(Array("part\(index)".utf8), [UInt8](repeating: UInt8(index), count: 2000)) }
        // The batch spans 3 log pages; the first page (and a half) survive.
        let restarted = try tornSyncWrite(batch, keeping: 12, afterSyncWrites: 1) { db in
            try db.put("before", "durable")
        }
        let db = try open(restarted)
        XCTAssertEqual(try db.get("before"), "durable")
        for index in 0..<6 { XCTAssertNil(try db.get("part\(index)"), "entry \(index) of a partial batch") }
        XCTAssertEqual(db.stats.lastSequence, 1)
    }

    func testFdatasyncFailureIsNeitherAcknowledgedNorRetriedAndLaterDataIsAPrefix() throws {
        var plan = SimulatedDisk.FaultPlan()
        plan.failSync = (n: 6, errno: EIO, persistent: false)
        let disk = try disk(plan)
        let db = try open(disk)
        try db.put("a", "1")  // fsync 5 (1-4: identity, log, manifest, CURRENT)
        XCTAssertThrowsError(try db.put("b", "2"))  // fsync 6 fails
        // The next fdatasync would succeed, but the engine must not retry and claim "b".
        XCTAssertThrowsError(try db.put("c", "3")) { error in
            XCTAssertTrue("\(error)".contains("fdatasync"), "later writes fail with the original cause: \(error)")
        }
        XCTAssertNil(try db.get("b"), "a failed write is never visible")
        XCTAssertEqual(try db.get("a"), "1", "the database stays readable")
        // The data of the failed write reached the platter anyway: it may come back, as
        // a prefix of the issued writes, never as something acknowledged that was not.
        var all = SimulatedDisk.FaultPlan()
        all.persistProbability = 1
        all.tornMode = .dropOnly
        let reopened = try open(restart(disk, all))
        XCTAssertEqual(try reopened.get("a"), "1")
        XCTAssertNil(try reopened.get("c"), "nothing after the failure was written")
    }

    func testMissingDirectoryFsyncWouldLoseTheLog() throws {
        // Every unsynced change is lost at the cut, directory entries included: the log
        // (created this session) survives only because its directory entry was fsynced.
        let disk = try disk()
        let db = try open(disk)
        try db.put("acknowledged", "yes")
        var dropAll = SimulatedDisk.FaultPlan()
        dropAll.persistProbability = 0
        let restarted = restart(disk, dropAll)
        XCTAssertTrue(try restarted.contentsOfDirectory(atPath: path).contains("000001.log"))
        XCTAssertEqual(try open(restarted).get("acknowledged"), "yes")
    }

    func testHoleInTheDurableLogIsCorruptionNotSkipped() throws {
        let disk = try disk()
        let db = try open(disk)
        for index in 0..<6 { try db.put("k\(index)", "v\(index)") }
        let restarted = restart(disk, SimulatedDisk.FaultPlan())
        // A later write survives while an earlier one is lost: page 3 zeroed, pages after
        // it intact. Skipping the hole would return k3's successors without k2.
        _ = restarted.zeroPage(3) { $0.hasSuffix("000001.log") }
        XCTAssertThrowsError(try open(restarted)) { error in
            let error = error as! KVError
            XCTAssertEqual(error.code, .corruption)
            XCTAssertEqual(error.offsetBytes, 3 * 4096)
        }
    }

    /// Tiny memtables and tables, flushes and compactions on the writing thread.
    private func lsmOptions() -> Options {
        var options = options()
        options.allowTinySizes = true
        options.inlineBackgroundWork = true
        options.memtableBytes = 8 << 10
        options.tableTargetBytes = 8 << 10
        options.levelBaseBytes = 16 << 10
        options.level0CompactionTrigger = 2
        return options
    }

    private func fillWithFlushes(_ db: Database, keys: Int = 300) throws {
        for index in 0..<keys {
            try db.put(Array("key\(index)".utf8), Array(repeating: UInt8(index % 251), count: 90))
        }
        XCTAssertGreaterThan(db.stats.flushes, 2)
        XCTAssertGreaterThan(db.stats.compactions + db.stats.trivialMoves, 0)
    }

    private func checkFilled(_ db: Database, keys: Int = 300) throws {
        for index in 0..<keys {
            XCTAssertEqual(try db.get(Array("key\(index)".utf8)), Array(repeating: UInt8(index % 251), count: 90), "key \(index)")
        }
    }

    func testIncompleteManifestRecordIsDroppedAndTheStateStands() throws {
        let disk = try disk()
        let db = try Database(path: path, options: lsmOptions(), storage: disk)
        try fillWithFlushes(db)
        // The start of an edit that never finished: a first fragment with a valid checksum,
        // written (not synced) after the last record of the live manifest.
        let manifest = try XCTUnwrap(db.versions.manifestNumber)
        let name = path + "/" + FileNames.manifest(manifest)
        let file = try disk.openFile(atPath: name, mode: .existing)
        let end = try disk.fileSize(file)
        let page = try disk.allocator.allocate()
        page.bytes.initializeMemory(as: UInt8.self, repeating: 0)
        var edit = VersionEdit()
        edit.logNumber = 999_999
        edit.deleted = (1...200).map { .init(level: 1, number: UInt64($0)) }
        let payload = edit.encode()
        XCTAssertGreaterThan(payload.count, 100)
        payload.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: page.bytes[24..<(24 + 100)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<100])) }
        LogFormat.sealFragment(page.bytes, at: 0, type: .first, length: 100, durableBytes: end,
                               seed: LogFormat.seed(logNumber: manifest, offset: end))
        try disk.write(file, offsetBytes: end, from: page)
        disk.allocator.free(page)
        try disk.closeFile(file)
        var keepAll = SimulatedDisk.FaultPlan()
        keepAll.persistProbability = 1
        let restarted = restart(disk, keepAll)
        let reopened = try Database(path: path, options: lsmOptions(), storage: restarted)
        try checkFilled(reopened)
        XCTAssertGreaterThan(reopened.stats.tableBytes, 0)
    }

    func testMissingDirectoryFsyncWouldLoseTablesAndTheManifest() throws {
        // Every unsynced change is lost at the cut, directory entries included: tables,
        // the manifest and CURRENT survive only through their directory fsyncs.
        let disk = try disk()
        let db = try Database(path: path, options: lsmOptions(), storage: disk)
        try fillWithFlushes(db)
        var dropAll = SimulatedDisk.FaultPlan()
        dropAll.persistProbability = 0
        dropAll.pessimisticSizes = true
        let restarted = restart(disk, dropAll)
        let names = try restarted.contentsOfDirectory(atPath: path)
        XCTAssertTrue(names.contains("CURRENT"), "\(names)")
        XCTAssertTrue(names.contains { $0.hasSuffix(".sst") }, "\(names)")
        XCTAssertTrue(names.contains { $0.hasPrefix("MANIFEST-") }, "\(names)")
        let reopened = try Database(path: path, options: lsmOptions(), storage: restarted)
        try checkFilled(reopened)
    }

    // MARK: long records and long replays

    /// A record longer than `LogWriter.streamThresholdBytes` goes to disk in several chains
    /// before its last fragment is cut. A failed chain ends it unacknowledged; after the
    /// power cut, what reached the disk is a record with no last fragment: a torn tail,
    /// dropped, never corruption, and the writes acknowledged before it stay.
    func testStreamedRecordCutShortIsATornTailNotCorruption() throws {
        for seed: UInt64 in 1...4 {
            var plan = SimulatedDisk.FaultPlan()
            // fdatasyncs: 1 identity file, 2 new log, 3 manifest, 4 CURRENT, 5 "before",
            // 6 the streamed record's first chain.
            plan.failSync = (n: 6, errno: EIO, persistent: false)
            let disk = try SimulatedDisk(seed: seed, plan: plan, directories: ["/sim"])
            var options = options()
            options.memtableBytes = 64 << 20
            let db = try Database(path: path, options: options, storage: disk)
            try db.put("before", "durable")
            var batch = WriteBatch()
            batch.put(Array("streamed".utf8), [UInt8](repeating: 0x5A, count: LogWriter.streamThresholdBytes * 2))
            XCTAssertThrowsError(try db.write(batch, durability: .sync), "seed \(seed)") { error in
                XCTAssertEqual((error as! KVError).code, .io, "seed \(seed): \(error)")
            }
            XCTAssertNil(try db.get("streamed"), "seed \(seed): a failed write is never visible")
            var keepAll = SimulatedDisk.FaultPlan()
            keepAll.persistProbability = seed % 2 == 0 ? 1 : 0.5
            let restarted = restart(disk, keepAll)
            let reopened = try Database(path: path, options: options, storage: restarted)
            XCTAssertEqual(try reopened.get("before"), "durable", "seed \(seed)")
            XCTAssertNil(try reopened.get("streamed"), "seed \(seed)")
            XCTAssertEqual(reopened.stats.lastSequence, 1, "seed \(seed)")
            try reopened.put("next", "write")
            try reopened.close()
            let again = try Database(path: path, options: options, storage: restarted)
            XCTAssertEqual(try again.get("next"), "write", "seed \(seed)")
            try again.close()
        }
    }

    /// Writes `count` keys into one log (a memtable large enough to hold them all, no
    /// flush at close), as a session that ended without flushing leaves them.
    private func fillOneLog(_ disk: SimulatedDisk, count: Int) throws {
        var options = options()
        options.memtableBytes = 64 << 20
        options.flushOnClose = false
        let db = try Database(path: path, options: options, storage: disk)
        for index in 0..<count {
            var batch = WriteBatch()
            batch.put(Array("key\(index)".utf8), [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: 1000))
            try db.write(batch, durability: .buffered)
        }
        try db.close()
    }

    private func smallMemtables(_ compression: Compression = .lz4) -> Options {
        var options = options()
        options.memtableBytes = 256 << 10
        options.compression = compression
        return options
    }

    /// A replay fills memtables of at most `memtableBytes`, each flushed at open into a
    /// table of its own, not one memtable of everything the logs held.
    func testRecoveryFillsMemtablesOfAtMostMemtableBytes() throws {
        let disk = try disk()
        try fillOneLog(disk, count: 2000)
        let db = try Database(path: path, options: smallMemtables(), storage: disk)
        let level0 = db.stats.levels.first { $0.level == 0 }
        XCTAssertGreaterThanOrEqual(level0?.tables ?? 0, 6, "about 2 MB replayed into 256 KiB memtables: \(db.stats.levels)")
        XCTAssertEqual(db.stats.frozenMemtables, 0, "all flushed before the open returns")
        for index in stride(from: 0, to: 2000, by: 97) {
            XCTAssertEqual(try db.get(Array("key\(index)".utf8))?.count, 1000, "key \(index)")
        }
        XCTAssertEqual(db.stats.lastSequence, 2000)
        try db.close()
    }

    /// The open that replays into several memtables fails after flushing some of them and
    /// the power goes: the manifest then names a log part of which is in tables. The next
    /// open skips those records (they are in tables) and replays the rest; nothing is lost,
    /// nothing is read twice.
    func testRecoveryInterruptedBetweenItsFlushesResumes() throws {
        for seed: UInt64 in 1...3 {
            let disk = try SimulatedDisk(seed: seed, plan: SimulatedDisk.FaultPlan(), directories: ["/sim"])
            try fillOneLog(disk, count: 2000)
            // The second table the open writes fails its fdatasync: one memtable is in a
            // table, recorded with the log it came from still live.
            disk.failNext("fdatasync", pathContaining: ".sst", after: ("fdatasync", ".sst"))
            do {
                // Uncompressed: a compressed table is far smaller than its reservation, and
                // giving the rest back is a second sync of the table, which the armed fault
                // would hit instead of the second table's.
                let db = try Database(path: path, options: smallMemtables(.none), storage: disk)
                XCTAssertEqual(db.stats.levels.first { $0.level == 0 }?.tables, 1, "seed \(seed): \(db.stats.levels)")
                XCTAssertEqual(disk.armedFaults, 0, "seed \(seed): the faults never fired")
                XCTAssertThrowsError(try db.put("refused", "x"), "seed \(seed): writes stop after the failed flush")
            }
            let restarted = restart(disk, SimulatedDisk.FaultPlan())
            let db = try Database(path: path, options: smallMemtables(), storage: restarted)
            XCTAssertEqual(db.stats.lastSequence, 2000, "seed \(seed)")
            XCTAssertEqual(db.stats.frozenMemtables, 0, "seed \(seed)")
            let all = try db.scan().collect()
            XCTAssertEqual(all.count, 2000, "seed \(seed)")
            XCTAssertTrue(all.allSatisfy { $0.value.count == 1000 }, "seed \(seed)")
            XCTAssertNil(try db.get("refused"), "seed \(seed)")
            try db.put("after", "resumed")
            try db.close()
            let again = try Database(path: path, options: smallMemtables(), storage: restarted)
            XCTAssertEqual(try again.scan().collect().count, 2001, "seed \(seed)")
            XCTAssertEqual(again.stats.lastSequence, 2001, "seed \(seed)")
            try again.close()
        }
    }
}
