import ArgumentParser
import CLibedit
import Foundation
import KVEngine

/// `kvctl DBPATH` with no command: a shell over an open database.
///
/// On a terminal it shows a prompt, with line editing and history (libedit; the history
/// is kept in `~/.kvctl_history`); reading from a pipe it shows none. Every command's
/// result is written (unbuffered) only once the command is done at its durability: a
/// `put` prints `OK` after its write is durable (or, with `--buffered`, in memory), so a
/// program driving the shell through a pipe can take each output line as an
/// acknowledgement. An error prints one line on stderr (`error: ...`) and the session
/// goes on.
struct Shell: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shell",
        abstract: "Open an interactive session (also: kvctl DBPATH with no command).")

    @OptionGroup var database: DatabaseOptions
    @OptionGroup var write: WriteOptions

    static let help = """
        commands:
          get KEY                      print the value (or "(not found)")
          put KEY VALUE                store VALUE under KEY; prints OK once durable
          del KEY                      remove KEY; prints OK once durable
          scan [START [END]] [--prefix P] [--reverse] [--limit N] [--keys-only]
          count                        number of keys
          sync                         make every buffered write durable
          stats                        engine and page store counters
          compact [START [END]]        compact tables meeting the range into the deepest level
          help                         this text
          quit | exit                  end the session
        Keys and values are UTF-8 words or "quoted strings"; \\xNN, \\n, \\t, \\" and \\\\ escape bytes.
        """

    func run() throws {
        let db = try database.open(create: true, buffered: write.buffered)
        defer { try? db.close() }
        let interactive = isatty(STDIN_FILENO) == 1
        let history = ProcessInfo.processInfo.environment["HOME"].map { $0 + "/.kvctl_history" }
        if interactive {
            emit("kvengine shell on \(database.path); type help for commands")
            if let history { _ = read_history(history) }
        }
        defer {
            if interactive, let history { _ = write_history(history) }
        }
        while true {
            guard let line = interactive ? readInteractive() : readLine(strippingNewline: true) else { break }
            do {
                if try !execute(line, db) { break }
            } catch {
                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            }
        }
    }

    /// A line from the terminal with editing and history (libedit).
    private func readInteractive() -> String? {
        guard let raw = readline("kvengine> ") else { return nil }
        defer { free(raw) }
        let line = String(cString: raw)
        if !line.trimmingCharacters(in: .whitespaces).isEmpty { _ = add_history(line) }
        return line
    }

    /// Runs one command line; false ends the session.
    private func execute(_ line: String, _ db: Database) throws -> Bool {
        let words = try ShellWords.split(line)
        guard let command = words.first else { return true }
        let arguments = Array(words.dropFirst())
        func want(_ count: Int, _ usage: String) throws {
            guard arguments.count == count else { throw ShellError("usage: \(usage)") }
        }
        switch String(decoding: command, as: UTF8.self) {
        case "get":
            try want(1, "get KEY")
            emit(try db.get(arguments[0]).map(TextCodec.text) ?? "(not found)")
        case "put":
            try want(2, "put KEY VALUE")
            try db.put(arguments[0], arguments[1])
            emit("OK")
        case "del", "delete":
            try want(1, "del KEY")
            try db.delete(arguments[0])
            emit("OK")
        case "scan":
            var options = ScanOptions()
            var keysOnly = false
            var positional: [[UInt8]] = []
            var index = 0
            while index < arguments.count {
                switch String(decoding: arguments[index], as: UTF8.self) {
                case "--prefix":
                    index += 1
                    guard index < arguments.count else { throw ShellError("--prefix needs a value") }
                    options.prefix = arguments[index]
                case "--limit":
                    index += 1
                    guard index < arguments.count, let limit = Int(String(decoding: arguments[index], as: UTF8.self)), limit >= 0 else {
                        throw ShellError("--limit needs a non-negative number")
                    }
                    options.limit = limit
                case "--reverse": options.reverse = true
                case "--keys-only": keysOnly = true
                default: positional.append(arguments[index])
                }
                index += 1
            }
            guard positional.count <= 2 else { throw ShellError("usage: scan [START [END]] [--prefix P] [--reverse] [--limit N] [--keys-only]") }
            options.start = positional.first
            options.end = positional.count == 2 ? positional[1] : nil
            var lines: [String] = []
            try db.forEach(options) { key, value in
                lines.append(keysOnly ? TextCodec.text(key) : TextCodec.text(key) + "\t" + TextCodec.text(value))
                return true
            }
            if !lines.isEmpty { emit(lines.joined(separator: "\n")) }
        case "count":
            try want(0, "count")
            var count = 0
            try db.forEach(ScanOptions(fillCache: false)) { _, _ in
                count += 1
                return true
            }
            emit(String(count))
        case "sync":
            try db.sync()
            emit("OK")
        case "stats":
            emit(describe(db.stats))
        case "compact":
            guard arguments.count <= 2 else { throw ShellError("usage: compact [START [END]]") }
            try db.compactRange(start: arguments.first, end: arguments.count == 2 ? arguments[1] : nil)
            emit("OK: \(levelSummary(db.stats))")
        case "help":
            emit(Shell.help)
        case "quit", "exit":
            return false
        default:
            throw ShellError("unknown command '\(String(decoding: command, as: UTF8.self))' (type help)")
        }
        return true
    }
}

/// A shell usage error: one line, the session goes on.
struct ShellError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Splits a shell line into byte words: whitespace separates, "double quotes" group, and
/// \xNN, \n, \t, \", \\ escape bytes (inside quotes and out).
enum ShellWords {
    static func split(_ line: String) throws -> [[UInt8]] {
        var words: [[UInt8]] = []
        var current: [UInt8] = []
        var inWord = false
        var quoted = false
        var bytes = Array(line.utf8)[...]
        while let byte = bytes.popFirst() {
            switch byte {
            case UInt8(ascii: "\""):
                quoted.toggle()
                inWord = true
            case UInt8(ascii: " "), UInt8(ascii: "\t"):
                if quoted {
                    current.append(byte)
                } else if inWord {
                    words.append(current)
                    current = []
                    inWord = false
                }
            case UInt8(ascii: "\\"):
                guard let next = bytes.popFirst() else { throw ShellError("a line cannot end in a backslash") }
                inWord = true
                switch next {
                case UInt8(ascii: "n"): current.append(0x0A)
                case UInt8(ascii: "t"): current.append(0x09)
                case UInt8(ascii: "r"): current.append(0x0D)
                case UInt8(ascii: "x"):
                    guard let value = TextCodec.hexByte(&bytes) else {
                        throw ShellError("\\x must be followed by two hex digits")
                    }
                    current.append(value)
                default: current.append(next)
                }
            default:
                current.append(byte)
                inWord = true
            }
        }
        if quoted { throw ShellError("unterminated quote") }
        if inWord { words.append(current) }
        return words
    }
}

/// "N tables, B bytes (L0 a, L1 b, ...)".
func levelSummary(_ stats: DatabaseStats) -> String {
    let used = stats.levels.filter { $0.tables > 0 }.map { "L\($0.level) \($0.tables)" }
    return "\(stats.levels.reduce(0) { $0 + $1.tables }) tables, \(stats.tableBytes) bytes" + (used.isEmpty ? "" : " (\(used.joined(separator: ", ")))")
}

/// Writes a line to stdout at once (no buffering): the caller's acknowledgement.
func emit(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}

/// The stats as `kvctl stats` prints them.
func describe(_ stats: DatabaseStats) -> String {
    var lines = [
        "last sequence: \(stats.lastSequence)",
        "memtable: \(stats.memtableEntries) entries, \(stats.memtableBytes) bytes; \(stats.frozenMemtables) frozen waiting for flush",
        "log chains this session: \(stats.logChains)",
        "levels: \(levelSummary(stats))",
    ]
    for level in stats.levels where level.tables > 0 {
        lines.append("  L\(level.level): \(level.tables) tables, \(level.bytes) bytes, \(level.entries) entries")
    }
    lines.append(
        "flushes: \(stats.flushes) (\(stats.bytesFlushed) bytes); compactions: \(stats.compactions) + \(stats.trivialMoves) moves (read \(stats.bytesCompactedRead), wrote \(stats.bytesCompactedWritten) bytes); write amplification \(String(format: "%.2f", stats.writeAmplification))")
    lines.append(
        "block cache: \(stats.cacheBytes) bytes, \(stats.cacheHits) hits, \(stats.cacheMisses) misses (hit rate \(String(format: "%.3f", stats.cacheHitRate)))")
    lines.append("table cache: \(stats.openTables) tables open, \(stats.tableOpens) opens; their indexes and filters \(stats.indexAndFilterBytes) bytes")
    lines.append("stalls: \(stats.stalls) stops, \(stats.slowdowns) slowdowns, \(stats.stallMicroseconds / 1000) ms; live snapshots \(stats.liveSnapshots); manifest \(stats.manifestNumber)")
    if let store = stats.pageStore { lines.append(store.description) }
    return lines.joined(separator: "\n")
}
