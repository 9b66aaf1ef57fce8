import Foundation

@testable import KVEngine

/// One metamorphic check: the same operations under several option sets, each checked
/// against the model, and their outputs compared with each other (as Pebble's metamorphic
/// test does). Outputs may part only where a crash legitimately kept a different amount of
/// the buffered writes; the comparison ends there.
struct MetaCheck {
    let operations: [MetaOp]
    let optionSets: [MetaOptionSet]
    let seed: UInt64

    /// What went wrong: under which option set(s), and where.
    struct Finding: CustomStringConvertible {
        let optionSets: [String]
        let failure: MetaFailure
        var description: String { "[\(optionSets.joined(separator: " vs "))] \(failure)" }
    }

    /// Runs the operations under every option set; nil when all agree with the model and
    /// with each other.
    func run() -> Finding? {
        var runs: [MetaRunner] = []
        for set in optionSets {
            let runner = MetaRunner(operations: operations, optionSet: set, seed: seed)
            runner.run()
            if let failure = runner.failure { return Finding(optionSets: [set.name], failure: failure) }
            runs.append(runner)
        }
        guard let first = runs.first else { return nil }
        for other in runs.dropFirst() {
            for position in 0..<min(first.outputs.count, other.outputs.count) where first.outputs[position] != other.outputs[position] {
                if position < operations.count, operations[position] == .crash { break }
                let what = position < operations.count ? "\(operations[position])" : "final check"
                return Finding(
                    optionSets: [first.optionSet.name, other.optionSet.name],
                    failure: MetaFailure(index: position, message: "\(what): the option sets disagree: '\(first.outputs[position])' vs '\(other.outputs[position])'"))
            }
        }
        return nil
    }

    /// The operations with as many left out as can be while the check still fails (the
    /// same option sets, any failure): chunks of halving size are dropped in turn, for at
    /// most `budgetSeconds`.
    func reduced(budgetSeconds: Double = 60) -> [MetaOp] {
        let deadline = Date().addingTimeInterval(budgetSeconds)
        var kept = operations
        var chunk = max(1, kept.count / 2)
        while chunk >= 1 && Date() < deadline {
            var start = 0
            var removedAny = false
            while start < kept.count && Date() < deadline {
                var candidate = kept
                candidate.removeSubrange(start..<min(kept.count, start + chunk))
                if MetaCheck(operations: candidate, optionSets: optionSets, seed: seed).run() != nil {
                    kept = candidate
                    removedAny = true
                } else {
                    start += chunk
                }
            }
            if chunk == 1 && !removedAny { break }
            chunk = chunk == 1 ? 1 : chunk / 2
        }
        return kept
    }

    /// The option sets a seed runs under: the defaults, and two others drawn from it.
    static func optionSets(seed: UInt64) -> [MetaOptionSet] {
        var random = SplitMix(seed: seed ^ 0x6F70_7473)
        var others = Array(MetaOptionSet.all.dropFirst())
        var sets = [MetaOptionSet.all[0]]
        for _ in 0..<2 { sets.append(others.remove(at: random.below(others.count))) }
        return sets
    }

    /// The operations a seed generates: 40 to 400.
    static func operations(seed: UInt64) -> [MetaOp] {
        var generator = MetaGenerator(seed: seed)
        var random = SplitMix(seed: seed ^ 0x636F_756E)
        return generator.generate(count: 40 + random.below(360))
    }
}
