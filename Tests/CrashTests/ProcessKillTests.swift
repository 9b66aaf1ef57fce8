import Foundation
import Synchronization
import XCTest
import TestSupport

@testable import KVEngine

/// The real-process loop: `kvctl stress` on the real file system (io_uring, O_DIRECT),
/// killed with SIGKILL at random moments, restarted, and checked against every commit it
/// reported as acknowledged.
final class ProcessKillTests: XCTestCase {
    private func kvctl() throws -> String { try kvctlBinary(orSkip: "the SIGKILL loop") }

    /// Runs `kvctl stress` for `milliseconds`, SIGKILLs it, and returns its stdout lines.
    private func runAndKill(_ arguments: [String], afterMilliseconds milliseconds: Int) throws -> [String] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try kvctl())
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        let output = Mutex(Data())
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let chunk = handle.availableData
            output.withLock { $0.append(chunk) }
        }
        try process.run()
        usleep(UInt32(milliseconds * 1000))
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        pipe.fileHandleForReading.readabilityHandler = nil
        let rest = pipe.fileHandleForReading.readDataToEndOfFile()
        let all = output.withLock { $0 } + rest
        return String(decoding: all, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    private func killLoop(buffered: Bool, holdWrites: Bool = false) throws {
        let seed = ProcessInfo.processInfo.environment["KILL_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...1_000_000)
        print("kill loop (\(buffered ? "buffered" : "sync")): seed \(seed) (replay with KILL_SEED=\(seed))")
        var random = SplitMix(seed: seed)
        let root = FileManager.default.temporaryDirectory.path + "/kvengine-kill-\(getpid())-\(seed)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let path = root + "/db"
        let keys = 64
        var acknowledged = 0  // commits 0..<acknowledged were reported durable
        var kills = 0
        for round in 0..<8 {
            var arguments = ["stress", "--db", path, "--seed", "\(seed)", "--keys", "\(keys)"]
            if buffered { arguments.append("--buffered") }
            if holdWrites { arguments.append("--hold-writes") }
            // The last round runs long enough to acknowledge something even on a loaded
            // machine, where starting the process can take most of a short round.
            let delay = round == 7 ? 1500 : 50 + random.below(400)
            let lines = try runAndKill(arguments, afterMilliseconds: delay)
            kills += 1
            guard let start = lines.first(where: { $0.hasPrefix("start ") }).flatMap({ Int($0.dropFirst(6)) }) else {
                continue  // killed before it had recovered: the next round recovers
            }
            XCTAssertGreaterThanOrEqual(
                start, acknowledged, "round \(round): recovered \(start) commits but \(acknowledged) were acknowledged (seed \(seed))")
            let acks = lines.compactMap { $0.hasPrefix("ack ") ? Int($0.dropFirst(4)) : nil }
            if let last = acks.last {
                XCTAssertEqual(acks, Array(acks.first!...last), "acknowledgements in order (seed \(seed))")
                acknowledged = max(acknowledged, last + 1)
            }
        }
        // The final state: exactly the state after the recovered prefix of commits.
        let db = try Database(path: path)
        let recovered = Int(db.stats.lastSequence)
        XCTAssertGreaterThanOrEqual(recovered, acknowledged, "seed \(seed)")
        for key in 0..<keys {
            let last = stride(from: recovered - 1, through: 0, by: -1).first { $0 % keys == key }
            let value = try db.get(Array("stress\(key)".utf8))
            if let last {
                let stamp = value.map { String(decoding: $0.prefix { $0 != UInt8(ascii: ":") }, as: UTF8.self) }
                XCTAssertEqual(stamp, "\(last)", "key stress\(key) holds the value of commit \(last) (seed \(seed))")
            } else {
                XCTAssertNil(value)
            }
        }
        try db.close()
        print("kill loop: \(kills) SIGKILLs, \(acknowledged) acknowledged commits, \(recovered) recovered")
        XCTAssertGreaterThan(acknowledged, 0, "the loop made progress")
    }

    func testSigkillLoopWithSyncWrites() throws {
        try killLoop(buffered: false)
    }

    func testSigkillLoopWithBufferedWritesAndSyncPoints() throws {
        try killLoop(buffered: true)
    }

    /// Unsynced writes held in the process until their fdatasync: a kill is a power cut.
    func testSigkillLoopWithWritesHeldUntilFdatasync() throws {
        try killLoop(buffered: true, holdWrites: true)
    }
}
