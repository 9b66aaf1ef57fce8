import Foundation
import XCTest

@testable import KVEngine

/// The metamorphic sweep: random operation sequences, each checked against a model under
/// three option sets whose answers must agree (Tests/CrashTests/Metamorphic/).
///
/// `make test` runs `METAMORPHIC_SEEDS` seeds (default 60); a long sweep is
/// `METAMORPHIC_SEEDS=20000 swift test -c release --filter MetamorphicTests/testSweep`, and
/// one seed replays with `METAMORPHIC_SEED=N` (add `METAMORPHIC_PRINT=1` to print its
/// operations). A failure prints its seed and the reduced operation list, and writes the
/// list to a file that a regression case (MetamorphicRegressionTests) can take whole.
final class MetamorphicTests: XCTestCase {
    func testSweep() {
        let environment = ProcessInfo.processInfo.environment
        let seeds: [UInt64]
        if let one = environment["METAMORPHIC_SEED"].flatMap(UInt64.init) {
            seeds = [one]
        } else {
            let count = environment["METAMORPHIC_SEEDS"].flatMap(Int.init) ?? 60
            let base = environment["METAMORPHIC_BASE_SEED"].flatMap(UInt64.init) ?? 1
            seeds = (0..<UInt64(count)).map { base + $0 }
        }
        let reduce = environment["METAMORPHIC_REDUCE"] != "0"
        var operations = 0
        var failed: [UInt64] = []
        let started = Date()
        for seed in seeds {
            let check = MetaCheck(operations: MetaCheck.operations(seed: seed), optionSets: MetaCheck.optionSets(seed: seed), seed: seed)
            operations += check.operations.count
            if seeds.count == 1 && environment["METAMORPHIC_PRINT"] != nil {
                print("seed \(seed) under \(check.optionSets.map(\.name)):\n" + check.operations.map(\.description).joined(separator: "\n"))
            }
            guard let finding = check.run() else { continue }
            failed.append(seed)
            // Reduce only the first few failures: a broken build fails every seed.
            let minimal = reduce && failed.count <= 3 ? check.reduced() : check.operations
            let shown = MetaCheck(operations: minimal, optionSets: check.optionSets, seed: seed).run() ?? finding
            let text = minimal.map(\.description).joined(separator: "\n")
            let file = FileManager.default.temporaryDirectory.path + "/kvengine-metamorphic-\(seed).txt"
            try? (text + "\n").write(toFile: file, atomically: true, encoding: .utf8)
            XCTFail("""
                seed \(seed): \(finding)
                reduced to \(minimal.count) of \(check.operations.count) operations (\(shown)), written to \(file):
                \(text)
                replay: METAMORPHIC_SEED=\(seed) swift test --filter MetamorphicTests/testSweep
                """)
        }
        let seconds = Date().timeIntervalSince(started)
        print("seeds=\(seeds.count) ops=\(operations) failures=\(failed.count)\(failed.isEmpty ? "" : " (seeds \(failed.prefix(20).map(String.init).joined(separator: ", ")))") in \(String(format: "%.1f", seconds)) s")
    }

    /// A database in memory (`Options.storage` = `MemoryStorage`) answers as one on the
    /// simulated disk: seeds 1-20 (the seed printed on failure) under both, compared
    /// line by line up to the first crash at which the disk kept less; among the
    /// operations compared are full disks (a plain put in memory) and crashes (a clean
    /// reopen in memory).
    func testMemoryStorageAnswersAsTheDisk() throws {
        let memory = try XCTUnwrap(MetaOptionSet.named("memory"))
        var comparedCrashes = 0
        var comparedFullDisks = 0
        for seed in UInt64(1)...20 {
            let operations = MetaCheck.operations(seed: seed)
            let onDisk = MetaRunner(operations: operations, optionSet: MetaOptionSet.all[0], seed: seed)
            let inMemory = MetaRunner(operations: operations, optionSet: memory, seed: seed)
            onDisk.run()
            inMemory.run()
            XCTAssertNil(onDisk.failure, "seed \(seed) on the disk")
            XCTAssertNil(inMemory.failure, "seed \(seed) in memory")
            for position in 0..<min(onDisk.outputs.count, inMemory.outputs.count) {
                let operation = position < operations.count ? operations[position] : nil
                if onDisk.outputs[position] != inMemory.outputs[position] {
                    // Only a crash may part them: the disk kept fewer buffered writes.
                    XCTAssertEqual(operation, .crash, "seed \(seed), operation \(position + 1): '\(onDisk.outputs[position])' vs '\(inMemory.outputs[position])'")
                    break
                }
                if operation == .crash { comparedCrashes += 1 }
                if case .noRoom = operation { comparedFullDisks += 1 }
            }
        }
        XCTAssertGreaterThan(comparedCrashes, 0, "crashes among the operations compared")
        XCTAssertGreaterThan(comparedFullDisks, 0, "full disks among the operations compared")
    }

    /// A seed's run is the same every time: its operations, and every output under a
    /// deterministic option set.
    func testSeedReplaysDeterministically() {
        for seed: UInt64 in [3, 77, 1234] {
            let operations = MetaCheck.operations(seed: seed)
            XCTAssertEqual(operations, MetaCheck.operations(seed: seed), "seed \(seed)")
            for set in MetaCheck.optionSets(seed: seed) where set.isDeterministic {
                let first = MetaRunner(operations: operations, optionSet: set, seed: seed)
                first.run()
                let second = MetaRunner(operations: operations, optionSet: set, seed: seed)
                second.run()
                XCTAssertNil(first.failure, "seed \(seed) under \(set.name)")
                // A reopen with real background threads makes the rest of a run timing-dependent.
                guard first.isDeterministic else { continue }
                XCTAssertEqual(first.outputs, second.outputs, "seed \(seed) under \(set.name)")
                XCTAssertEqual(first.outputs.count, operations.count + 1, "seed \(seed) under \(set.name)")
            }
        }
    }

    /// The text form of every generated operation parses back to the same operation.
    func testTextFormRoundTrips() throws {
        for seed: UInt64 in 1...40 {
            let operations = MetaCheck.operations(seed: seed)
            let text = operations.map(\.description).joined(separator: "\n")
            XCTAssertEqual(try MetaOp.parse(text), operations, "seed \(seed)")
        }
        XCTAssertThrowsError(try MetaOp.parse("put x6 v1/2 sync"))  // odd hex digits
        XCTAssertThrowsError(try MetaOp.parse("frobnicate"))
    }

    /// The model's own rules: snapshots keep their state, and a crash may keep any
    /// acknowledged prefix from the durable point on, nothing less and nothing between.
    func testTheModelJudgesCrashesAndSnapshots() throws {
        var model = MetaModel()
        model.commit([.put([1], MetaValue(stamp: 1, length: 3))], sync: true, sequence: 1)
        model.commit([.put([1], MetaValue(stamp: 2, length: 3))], sync: false, sequence: 2)
        model.takeSnapshot(1)
        model.commit([.delete([1])], sync: false, sequence: 3)
        XCTAssertNil(model.value([1], snapshot: nil))
        XCTAssertEqual(model.value([1], snapshot: 1), MetaValue(stamp: 2, length: 3).bytes)
        // A crash may keep any acknowledged prefix from the durable point on, nothing less.
        var lost = model
        XCTAssertNotNil(lost.recover(sequence: 0), "losing a synced write must fail")
        var partial = model
        XCTAssertNil(partial.recover(sequence: 2))
        XCTAssertEqual(partial.value([1], snapshot: nil), MetaValue(stamp: 2, length: 3).bytes)
        var beyond = model
        XCTAssertNotNil(beyond.recover(sequence: 4), "a sequence no commit ends must fail")
    }

    /// `reopen ro` carries out a read-only open that reads everything back, refuses a
    /// write and changes no file, under every option set (logs left by a close without
    /// its flush included), and the runs agree.
    func testReadOnlyReopenReadsEverythingAndChangesNothing() throws {
        let operations = try MetaOp.parse("""
            put x61 v1/10 sync
            flush
            put x62 v2/5000 buffered
            del x61 sync
            reopen ro
            get x61
            put x63 v3/1 sync
            reopen ro
            scan start=- end=- prefix=- forward limit=-
            """)
        XCTAssertTrue(operations.contains(.reopenReadOnly))
        for set in MetaOptionSet.all {
            let runner = MetaRunner(operations: operations, optionSet: set, seed: 1)
            runner.run()
            XCTAssertNil(runner.failure, "under \(set.name)")
        }
        XCTAssertNil(MetaCheck(operations: operations, optionSets: MetaOptionSet.all, seed: 1).run())
    }

    /// `salvage` of an undamaged database keeps every key and drops nothing, under every
    /// option set (tables in several levels, logs left by a close without its flush,
    /// deletions and overwrites), and writes go on after it with sequence numbers that
    /// follow the old ones.
    func testSalvageOfAnUndamagedDatabaseKeepsEverything() throws {
        let operations = try MetaOp.parse("""
            put x61 v1/10 sync
            put x62 v2/3000 sync
            flush
            del x61 sync
            put x63 v3/5 buffered
            compact - -
            put x62 v4/7 sync
            batch sync put x64 v5/1 ; del x64 ; put x65 v6/2
            salvage
            get x61
            get x64
            put x66 v7/1 sync
            del x65 sync
            salvage
            scan start=- end=- prefix=- forward limit=-
            """)
        for set in MetaOptionSet.all {
            let runner = MetaRunner(operations: operations, optionSet: set, seed: 1)
            runner.run()
            XCTAssertNil(runner.failure, "under \(set.name)")
        }
        XCTAssertNil(MetaCheck(operations: operations, optionSets: MetaOptionSet.all, seed: 1).run())
    }
}
