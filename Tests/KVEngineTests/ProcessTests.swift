import Foundation
import XCTest

@testable import KVEngine

/// Behaviour across processes, through the real `kvctl` binary.
final class ProcessTests: XCTestCase {
    /// `kvctl`, built beside the test bundle by `swift build --build-tests`.
    private func kvctl() throws -> String {
        let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
        for candidate in [directory + "/kvctl", directory + "/../kvctl"] where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        throw XCTSkip("kvctl binary not found beside \(CommandLine.arguments[0]): cross-process checks not run")
    }

    private func run(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try kvctl())
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, stdout, stderr)
    }

    func testOpenFromAnotherProcessIsLockedAndSaysWho() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        try db.put("k", "v")
        let result = try run([dir.path, "get", "k"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(
            result.stderr.contains("database at \(dir.path) is locked by another process (pid \(getpid()))"),
            "stderr: \(result.stderr)")
        XCTAssertEqual(result.stdout, "")
        try db.close()
        let after = try run([dir.path, "get", "k"])
        XCTAssertEqual(after.status, 0, after.stderr)
        XCTAssertEqual(after.stdout, "v\n")
    }

    func testWritesOfAnotherProcessAreDurableWhenItExits() throws {
        let dir = TestPath()
        for index in 0..<5 {
            let result = try run([dir.path, "put", "key\(index)", "value\(index)"])
            XCTAssertEqual(result.status, 0, result.stderr)
        }
        let db = try Database(path: dir.path, options: testOptions())
        XCTAssertEqual(db.scan().map { String(decoding: $0.value, as: UTF8.self) }, (0..<5).map { "value\($0)" })
    }

    func testReadOfMissingDatabaseCreatesNothing() throws {
        let dir = TestPath()
        let result = try run([dir.path, "scan"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("no database at \(dir.path)"), result.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.path))
    }
}
