import Foundation
import XCTest

@testable import KVEngine

/// A fresh directory path for one test (not created), removed afterwards.
final class TestPath {
    let root: String
    let path: String

    init(_ name: String = #function) {
        quietEngineLogs
        let safe = name.filter { $0.isLetter || $0.isNumber }
        root = FileManager.default.temporaryDirectory.path + "/kvengine-\(safe)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try! FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        path = root + "/db"
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }
}

/// The engine logs what the tests do to it on purpose (damage, torn tails) as warnings
/// and errors; they stay out of the test output unless `KVENGINE_TEST_LOGS` is set.
let quietEngineLogs: Void = {
    if ProcessInfo.processInfo.environment["KVENGINE_TEST_LOGS"] == nil {
        engineLogLevel.withLock { $0 = .critical }
    }
}()

/// Options sized for tests: the smallest page arena, a short buffered interval.
func testOptions(_ change: (inout Options) -> Void = { _ in }) -> Options {
    var options = Options()
    options.pageStore.arenaBytes = Options.minimumArenaBytes
    options.logPreallocateBytes = 1 << 20
    options.bufferedFlushIntervalMs = 5
    change(&options)
    return options
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }


/// The log files of a database directory, oldest first.
func logFiles(_ path: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [])
        .filter { $0.hasSuffix(".log") }.sorted().map { path + "/" + $0 }
}

/// Overwrites `count` bytes at `offset` of a file with `byte` (bypassing the engine).
func scribble(_ file: String, at offset: Int64, count: Int, byte: UInt8 = 0xA5) {
    let handle = FileHandle(forUpdatingAtPath: file)!
    handle.seek(toFileOffset: UInt64(offset))
    handle.write(Data(repeating: byte, count: count))
    try! handle.synchronize()
    try! handle.close()
}

func fileSize(_ file: String) -> Int64 {
    ((try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? NSNumber)?.int64Value ?? -1
}
