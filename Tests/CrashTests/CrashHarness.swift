import Foundation
import Logging
import PageStore
import TestSupport

@testable import KVEngine

/// One seeded crash run: a workload on a simulated disk under a fault plan, a power cut,
/// recovery (perhaps crashed and recovered again), and the checks of DESIGN.md's
/// crash-recovery invariants against an oracle of every issued commit.
struct CrashRun {
    /// The kinds of run a seed can draw.
    enum Scenario: String, CaseIterable {
        /// Power cut at a random I/O event.
        case powerCut
        /// The N-th write fails (EIO or ENOSPC, once or from then on), then a power cut.
        case failedWrite
        /// The N-th fsync fails, then a power cut.
        case failedSync
        /// Bits flipped in durable files between runs.
        case bitFlips
        /// A durable page copied over another between runs.
        case misdirectedWrite
        /// Random bytes written over part of a durable file between runs (a stray `dd`).
        case garbage
        /// Reads of a sector fail with EIO after the restart.
        case badSector
    }

    /// A commit the workload issued, and what became of it.
    struct Commit {
        var entries: [(key: [UInt8], value: [UInt8]?)]
        var sync: Bool
        /// It got sequence numbers (it is in the log's order, acknowledged or not).
        var appended = false
        var acknowledged = false
        var lastSequence: UInt64 = 0
    }

    let seed: UInt64
    private(set) var scenario = Scenario.powerCut
    private(set) var failures: [String] = []
    private(set) var crashes = 0
    private(set) var faults = 0
    /// Flushes, compactions (moves included) and manifests written by the workload.
    private(set) var flushes = 0
    private(set) var compactions = 0
    private(set) var manifests = 0
    /// Acknowledged commits lost after media corruption without an error (a failure too).
    private(set) var tailLossAfterCorruption = false
    private var commits: [Commit] = []
    /// What the run did, to show that a seed replays exactly: scenario, I/O events,
    /// commits issued and acknowledged, and the prefix each recovery found.
    private(set) var fingerprint: [String] = []
    /// Commits 0..<durablePoint must survive: the last acknowledged sync write or
    /// successful `sync()` covers them.
    private var durablePoint = 0
    private var random: SplitMix

    static let directory = "/sim"
    static let path = "/sim/db"

    init(seed: UInt64) {
        self.seed = seed
        random = SplitMix(seed: seed)
        CrashRun.quietLogs
    }

    /// Engine logs (torn tails, corruption) would drown the test output.
    /// Files whose damage the engine must detect.
    static func isEngineFile(_ path: String) -> Bool {
        path.hasSuffix(".log") || path.hasSuffix(".sst") || path.hasSuffix("KVENGINE") || path.hasSuffix("CURRENT")
            || path.contains("MANIFEST-")
    }

    static let quietLogs: Void = {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = ProcessInfo.processInfo.environment["CRASH_VERBOSE"] != nil ? .debug : .critical
            return handler
        }
    }()

    /// Half the seeds use tiny memtables, tables and levels, so a run flushes, rolls
    /// manifests and compacts many times (all on the writing thread: deterministic).
    private var tinyLSM = false

    private func options() -> Options {
        var options = Options()
        options.bufferedFlushIntervalMs = 60_000  // no timer: every event comes from the workload
        options.logPreallocateBytes = 64 << 10
        options.memtableBytes = 8 << 20
        // Buffered chains start at every full page, so they are in flight (and held back
        // by the disk) while sync writers lead their own chains.
        options.bufferedChainPages = 1
        options.logChainsInFlight = 4
        options.inlineBackgroundWork = true
        if tinyLSM {
            options.allowTinySizes = true
            options.memtableBytes = 12 << 10
            options.tableTargetBytes = 8 << 10
            options.levelBaseBytes = 24 << 10
            options.levelMultiplier = 3
            options.level0CompactionTrigger = 2
            options.level0SlowdownTrigger = 100
            options.level0StopTrigger = 200
        }
        return options
    }

    mutating func run() {
        // Power cuts weigh most: they are what every acknowledged write must survive.
        let weights: [(Scenario, Int)] = [
            (.powerCut, 40), (.failedWrite, 15), (.failedSync, 15), (.bitFlips, 8), (.misdirectedWrite, 8), (.garbage, 8), (.badSector, 6),
        ]
        var draw = random.below(100)
        scenario = weights.first { entry in
            defer { draw -= entry.1 }
            return draw < entry.1
        }!.0
        tinyLSM = random.chance(0.5)
        var plan = SimulatedDisk.FaultPlan()
        plan.tornMode = random.chance(0.3) ? .dropOnly : .torn
        plan.persistProbability = [0.1, 0.5, 0.9][random.below(3)]
        plan.pessimisticSizes = random.chance(0.3)
        plan.deferProbability = [0, 0.3, 0.7][random.below(3)]
        switch scenario {
        case .powerCut:
            plan.cutAtEvent = 3 + random.below(tinyLSM ? 400 : 150)
        case .failedWrite:
            plan.failWrite = (1 + random.below(40), random.chance(0.5) ? EIO : ENOSPC, random.chance(0.5))
        case .failedSync:
            plan.failSync = (1 + random.below(30), EIO, random.chance(0.5))
        case .bitFlips, .misdirectedWrite, .garbage, .badSector:
            break
        }
        let disk: SimulatedDisk
        do {
            disk = try SimulatedDisk(seed: random.next(), plan: plan, directories: [CrashRun.directory])
        } catch {
            failures.append("cannot set up the simulated disk: \(error)")
            return
        }
        workload(disk)
        fingerprint.append("\(scenario.rawValue) events=\(disk.events) deferred=\(disk.deferredTotal) lsm=\(tinyLSM ? "tiny" : "default") commits=\(commits.count) acked=\(commits.filter(\.acknowledged).count) durable=\(durablePoint)")
        disk.cutPower()
        crashes += 1
        faults += disk.faultsInjected
        if !disk.violations.isEmpty { failures.append("O_DIRECT alignment violated: \(disk.violations[0])") }
        recover(after: disk)
    }

    // MARK: workload

    private mutating func workload(_ disk: SimulatedDisk) {
        let db: Database
        do {
            db = try Database(path: CrashRun.path, options: options(), storage: disk)
        } catch {
            return  // the power went before the database existed
        }
        let count = 20 + random.below(120)
        for index in 0..<count {
            var commit = Commit(entries: [], sync: random.chance(0.5))
            var batch = WriteBatch()
            for _ in 0..<(1 + random.below(4)) {
                let key = Array("k\(random.below(24))".utf8)
                if random.chance(0.2) {
                    batch.delete(key)
                    commit.entries.append((key, nil))
                } else {
                    // Values of 1 byte to ~6 KiB, so records span pages.
                    let size = random.chance(0.1) ? 4000 + random.below(2500) : 1 + random.below(60)
                    let stamp = Array("c\(index)-".utf8)
                    let value = stamp + (0..<size).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                    batch.put(key, value)
                    commit.entries.append((key, value))
                }
            }
            let before = db.stats.lastSequence
            do {
                try db.write(batch, durability: commit.sync ? .sync : .buffered)
                commit.acknowledged = true
            } catch {
                commit.acknowledged = false
            }
            let after = db.stats.lastSequence
            commit.appended = after > before
            commit.lastSequence = after
            commits.append(commit)
            if commit.acknowledged && commit.sync { durablePoint = commits.count }
            if !commit.acknowledged {
                if disk.faultsInjected > 0 && !disk.crashed { checkReadableAfterFailure(db) }
                break
            }
            if random.chance(0.08) {
                do {
                    try db.sync()
                    durablePoint = commits.count
                } catch {
                    break
                }
            }
            if disk.crashed { break }
        }
        let stats = db.stats
        flushes += stats.flushes
        compactions += stats.compactions + stats.trivialMoves
        manifests += Int(stats.manifestNumber > 0 ? 1 : 0) + db.versions.manifestSwitches - 1
        // Some sessions end with a clean close (its flush of the memtable, then the power
        // cut): once it returns, every acknowledged write must survive.
        if !disk.crashed && random.chance(0.2) {
            do {
                try db.close()
                durablePoint = commits.lastIndex(where: \.acknowledged).map { $0 + 1 } ?? 0
                fingerprint.append("closed")
            } catch {
                fingerprint.append("close failed")
            }
        }
    }

    /// Disk full or a failed write: the database still answers reads, with acknowledged data.
    private mutating func checkReadableAfterFailure(_ db: Database) {
        let visible = expectedState(upTo: commits.lastIndex(where: { $0.acknowledged }).map { $0 + 1 } ?? 0)
        for (key, value) in visible {
            guard let got = try? db.get(key) else {
                failures.append("after a failed write, get(\(String(decoding: key, as: UTF8.self))) failed or lost an acknowledged value")
                return
            }
            if got != value {
                failures.append("after a failed write, get(\(String(decoding: key, as: UTF8.self))) returned a different value")
                return
            }
        }
    }

    // MARK: recovery

    private mutating func recover(after disk: SimulatedDisk) {
        var restartPlan = SimulatedDisk.FaultPlan()
        restartPlan.tornMode = random.chance(0.3) ? .dropOnly : .torn
        var corruptionNote: String? = nil
        let crashDuringRecovery = random.chance(0.3)
        if crashDuringRecovery { restartPlan.cutAtEvent = 1 + random.below(25) }
        var restarted = disk.restarted(plan: restartPlan, seed: random.next())
        switch scenario {
        case .bitFlips:
            corruptionNote = restarted.flipBits(1 + random.below(3)) { CrashRun.isEngineFile($0) }.joined(separator: ", ")
        case .misdirectedWrite:
            corruptionNote = restarted.misdirectPage { CrashRun.isEngineFile($0) && !$0.hasSuffix("CURRENT") }
        case .garbage:
            corruptionNote = restarted.overwriteWithGarbage { CrashRun.isEngineFile($0) }
        case .badSector:
            corruptionNote = restarted.addBadSector { CrashRun.isEngineFile($0) }
        default:
            break
        }
        if crashDuringRecovery {
            // Recovery itself is cut short; then the machine comes back again.
            _ = try? Database(path: CrashRun.path, options: options(), storage: restarted)
            restarted.cutPower()
            crashes += 1
            restarted = restarted.restarted(plan: SimulatedDisk.FaultPlan(), seed: random.next())
        }
        verify(on: restarted, corruption: corruptionNote)
        // Idempotent: another clean restart finds the same state.
        if failures.isEmpty && corruptionNote == nil {
            let again = restarted.restarted(plan: SimulatedDisk.FaultPlan(), seed: random.next())
            verify(on: again, corruption: nil)
        }
    }

    private mutating func verify(on disk: SimulatedDisk, corruption: String?) {
        let db: Database
        do {
            db = try Database(path: CrashRun.path, options: options(), storage: disk)
        } catch {
            if corruption != nil, [.corruption, .io, .notADatabase].contains(error.code) { return }  // detected
            failures.append("recovery failed: \(error)")
            return
        }
        defer { try? db.close() }
        if !disk.violations.isEmpty { failures.append("O_DIRECT alignment violated during recovery: \(disk.violations[0])") }
        let recovered = db.stats.lastSequence
        // The state must be exactly that after some prefix of the appended commits.
        let appended = commits.filter(\.appended)
        guard let prefix = recovered == 0 ? 0 : appended.firstIndex(where: { $0.lastSequence == recovered }).map({ $0 + 1 }) else {
            failures.append("recovered through sequence \(recovered), which ends no commit (a partial batch?)\(corruption.map { " [\($0)]" } ?? "")")
            return
        }
        let required = commits[0..<durablePoint].filter(\.appended).count
        if prefix < required {
            if let corruption {
                // Damage must be reported, never taken for a torn tail.
                tailLossAfterCorruption = true
                failures.append("\(required - prefix) acknowledged commits lost without an error after media corruption [\(corruption)]: recovered \(prefix) commits, \(required) were durable")
                return
            } else {
                failures.append("acknowledged commit #\(prefix) lost: recovered \(prefix) commits, \(required) were durable")
                return
            }
        }
        fingerprint.append("recovered=\(prefix)")
        let expected = expectedState(appendedPrefix: prefix)
        var actual: [[UInt8]: [UInt8]] = [:]
        let cursor = db.scan()
        do { while let (key, value) = try cursor.next() { actual[key] = value } } catch {}
        if let error = cursor.error {
            // Damage in a table shows when the block is read: detected, never a value.
            if corruption != nil, [.corruption, .io].contains(error.code) { return }
            failures.append("reading back failed: \(error)")
            return
        }
        if actual != expected {
            let wrong = Set(expected.keys).union(actual.keys).first { expected[$0] != actual[$0] }!
            failures.append("state after recovery is not the state after commit \(prefix): key \(String(decoding: wrong, as: UTF8.self)) differs\(corruption.map { " [\($0)]" } ?? "")")
        }
    }

    /// The state after the first `count` commits of the workload (appended or not).
    private func expectedState(upTo count: Int) -> [[UInt8]: [UInt8]] {
        var state: [[UInt8]: [UInt8]] = [:]
        for commit in commits[0..<count] where commit.appended {
            for (key, value) in commit.entries { state[key] = value }
        }
        return state
    }

    /// The state after the first `count` appended commits.
    private func expectedState(appendedPrefix count: Int) -> [[UInt8]: [UInt8]] {
        var state: [[UInt8]: [UInt8]] = [:]
        for commit in commits.filter(\.appended).prefix(count) {
            for (key, value) in commit.entries { state[key] = value }
        }
        return state
    }
}
