import ArgumentParser
import Foundation
import KVEngine
import PageStore

/// `kvctl stress`: the crash harness's real process. Writes deterministic commits to a
/// database and reports each one on stdout (`ack N`, flushed) once it is acknowledged, so
/// a parent can SIGKILL it at any moment and check the database against what it was told.
struct Stress: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write deterministic commits, printing 'ack N' as each is acknowledged (for crash tests).",
        discussion: """
            Commit N puts key stress<N mod keys> = value(seed, N) (see StressCommit). The run resumes
            after the database's last recovered commit, so repeated kills make one history.
            """)

    @Option(name: .customLong("db"), help: "Database directory (created when missing).")
    var path: String

    @Option(help: "Seed of the commit contents.")
    var seed: UInt64 = 1

    @Option(help: "Stop after this many commits in total.")
    var commits = 1_000_000

    @Option(help: "Distinct keys.")
    var keys = 64

    @Flag(help: "Use .buffered writes, with a sync() every 16 commits (acks are printed after the sync).")
    var buffered = false

    @Flag(help: "Hold plain writes in memory until the fdatasync that covers them, so a SIGKILL loses unsynced data as a power cut would (a test mode).")
    var holdWrites = false

    func run() throws {
        var options = Options()
        let store = holdWrites ? try PageStore(options: options.pageStore) : nil
        defer { store?.shutdown() }
        if let store { options.storage = HoldBackStorage(store) }
        let db = try Database(path: path, options: options)
        var next = Int(db.stats.lastSequence)
        emit("start \(next)")
        var unreported: [Int] = []
        while next < commits {
            let commit = StressCommit(seed: seed, index: next, keys: keys)
            try db.put(commit.key, commit.value, durability: buffered ? .buffered : .sync)
            unreported.append(next)
            if !buffered || next % 16 == 15 {
                if buffered { try db.sync() }
                emit(unreported.map { "ack \($0)" }.joined(separator: "\n"))
                unreported.removeAll()
            }
            next += 1
        }
        try db.close()
    }

    /// Writes a line straight to stdout (unbuffered): a parent reading the pipe sees it
    /// as soon as the commit it reports is acknowledged.
    private func emit(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}

/// Commit `index` of a stress run: its key and value depend only on (seed, index).
struct StressCommit {
    let key: [UInt8]
    let value: [UInt8]

    init(seed: UInt64, index: Int, keys: Int) {
        key = Array("stress\(index % keys)".utf8)
        var random = SplitMix(seed: seed &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(index))
        var bytes = [UInt8](repeating: 0, count: 8 + Int(random.next() % 3000))
        random.fill(&bytes)
        value = Array("\(index):".utf8) + bytes
    }
}
