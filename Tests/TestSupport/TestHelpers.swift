import Foundation
import XCTest

/// A seed for a randomized test, printed so a failure can be replayed: `variable` in the
/// environment, when set, replays that seed.
package func testSeed(_ name: String = #function, variable: String = "KVENGINE_SEED") -> UInt64 {
    let seed = ProcessInfo.processInfo.environment[variable].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64.max)
    print("\(name): seed \(seed) (replay with \(variable)=\(seed))")
    return seed
}

/// The `kvctl` binary, built beside the test bundle by `swift build --build-tests`; a skip,
/// saying what did not run, when it is not there.
package func kvctlBinary(orSkip what: String) throws -> String {
    let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
    for candidate in [directory + "/kvctl", directory + "/../kvctl"] where FileManager.default.isExecutableFile(atPath: candidate) {
        return candidate
    }
    throw XCTSkip("kvctl binary not found beside \(CommandLine.arguments[0]): \(what) not run")
}
