import Foundation
import XCTest

/// The seed sweep: `make test` runs `CRASH_SEEDS` (default 1500) seeds; a long sweep is
/// `CRASH_SEEDS=20000 swift test --filter CrashSweepTests`, and one seed replays with
/// `CRASH_SEED=N swift test --filter CrashSweepTests`.
final class CrashSweepTests: XCTestCase {
    func testSeedSweep() {
        let environment = ProcessInfo.processInfo.environment
        let seeds: [UInt64]
        if let one = environment["CRASH_SEED"].flatMap(UInt64.init) {
            seeds = [one]
        } else {
            let count = environment["CRASH_SEEDS"].flatMap(Int.init) ?? 1500
            let base = environment["CRASH_BASE_SEED"].flatMap(UInt64.init) ?? 1
            seeds = (0..<UInt64(count)).map { base + $0 }
        }
        var crashes = 0
        var faults = 0
        var flushes = 0
        var compactions = 0
        var manifests = 0
        var failed = 0
        var tailLosses = 0
        var byScenario: [String: Int] = [:]
        for seed in seeds {
            var run = CrashRun(seed: seed)
            run.run()
            crashes += run.crashes
            faults += run.faults
            flushes += run.flushes
            compactions += run.compactions
            manifests += run.manifests
            byScenario[run.scenario.rawValue, default: 0] += 1
            if run.tailLossAfterCorruption {
                tailLosses += 1
                print("seed \(seed): silent loss: \(run.fingerprint.joined(separator: "; "))")
            }
            if seeds.count == 1 { print("seed \(seed): \(run.fingerprint.joined(separator: "; "))") }
            if !run.failures.isEmpty {
                failed += 1
                XCTFail("seed \(seed) (\(run.scenario.rawValue)): \(run.failures.joined(separator: "; ")) -- replay: CRASH_SEED=\(seed) swift test --filter CrashSweepTests")
            }
        }
        let scenarios = byScenario.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        print("seeds=\(seeds.count) crashes=\(crashes) faults=\(faults) failures=\(failed) (\(scenarios); silent losses after media corruption: \(tailLosses); workloads made \(flushes) flushes, \(compactions) compactions, \(manifests) manifest switches)")
    }

    func testSeedReplaysDeterministically() {
        for seed: UInt64 in [7, 294, 915, 4242] {
            var first = CrashRun(seed: seed)
            first.run()
            var second = CrashRun(seed: seed)
            second.run()
            XCTAssertEqual(first.fingerprint, second.fingerprint, "seed \(seed)")
            XCTAssertFalse(first.fingerprint.isEmpty)
        }
    }
}
