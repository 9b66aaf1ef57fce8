import Foundation
import XCTest

@testable import PageStore
import TestSupport

/// A fresh directory for one test, removed when the value goes away.
final class TestDirectory {
    let path: String

    init(_ name: String = #function, under base: String? = nil) {
        let root = base ?? FileManager.default.temporaryDirectory.path
        let safe = name.filter { $0.isLetter || $0.isNumber }
        path = "\(root)/pagestore-\(safe)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { "\(path)/\(name)" }
}

/// Fills `buffer` with a pattern derived from `seed`, so corruption or misplacement shows.
func fillPattern(_ buffer: PageBuffer, seed: UInt64) {
    var state = seed | 1
    for word in 0..<(buffer.count / 8) {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        buffer.bytes.storeBytes(of: state, toByteOffset: word * 8, as: UInt64.self)
    }
}

/// Whether `buffer` holds the pattern of `seed` (first `count` bytes).
func matchesPattern(_ buffer: PageBuffer, seed: UInt64, count: Int? = nil) -> Bool {
    var state = seed | 1
    for word in 0..<((count ?? buffer.count) / 8) {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        if buffer.bytes.load(fromByteOffset: word * 8, as: UInt64.self) != state { return false }
    }
    return true
}

/// Open file descriptors of this process.
func openDescriptorCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
}

/// Options with a small arena, so tests do not pin much memory.
func smallOptions(_ change: (inout PageStoreOptions) -> Void = { _ in }) -> PageStoreOptions {
    var options = PageStoreOptions()
    options.arenaBytes = 4 << 20
    change(&options)
    return options
}

/// A seed for a randomized test, printed so a failure can be replayed with PAGESTORE_SEED.
func testSeed(_ name: String = #function) -> UInt64 { TestSupport.testSeed(name, variable: "PAGESTORE_SEED") }
