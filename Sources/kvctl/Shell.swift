import ArgumentParser
import CLibedit
import Foundation
import KVEngine
import Synchronization

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

    /// The commands the shell runs through their one-shot definitions (the same flags).
    static let commands: [String: any DatabaseCommand.Type] = [
        "get": Get.self, "put": Put.self, "del": Del.self, "delrange": DelRange.self, "scan": Scan.self, "count": Count.self,
        "stats": Stats.self, "compact": Compact.self, "export": Export.self, "checkpoint": CheckpointCommand.self,
        "backup": BackupCommand.self, "changes": Changes.self,
    ]
    /// Commands that take the key and value flags (`mode` adds its flag to them).
    static let encodedCommands: Set<String> = ["get", "put", "del", "delrange", "scan", "compact", "export", "changes"]

    static var help: String {
        var lines = ["commands (case does not matter; `help COMMAND` for its flags):"]
        for name in commands.keys.sorted() {
            lines.append("  " + name.padding(toLength: 10, withPad: " ", startingAt: 0) + commands[name]!.configuration.abstract)
        }
        lines += [
            "  delete    Remove KEY (as del).",
            "  sync      Make every buffered write durable.",
            "  mode      mode text|hex|base64|json: how keys and values are given and printed from now on.",
            "  timing    timing on|off: print each command's time on stderr.",
            "  pager     pager on|off: output longer than the screen goes through $PAGER (less) (on).",
            "  help      This text; help COMMAND: that command's usage and flags.",
            "  quit      End the session (also exit, or Ctrl-D). Ctrl-C stops a running scan, count or export.",
            "Tab completes a command name, or a key of the database that begins with what is typed.",
            "Keys and values are words or \"quoted strings\" (on a terminal a quote left open goes on",
            "to the next line); \\\\ \\t \\n \\r and \\xNN escape bytes, \\\" a quote. A word that begins",
            "with - is taken as a flag: put such keys and values after --, as in: put -- -5 minus-five",
        ]
        return lines.joined(separator: "\n")
    }

    func run() throws {
        let db = try database.open(create: true, buffered: write.buffered)
        defer { try? db.close() }
        let interactive = isatty(STDIN_FILENO) == 1
        let history = ProcessInfo.processInfo.environment["HOME"].map { $0 + "/.kvctl_history" }
        if interactive {
            emit("kvengine shell on \(database.path); type help for commands")
            if let history { _ = read_history(history) }
            Interrupt.install()
            Completion.install(db)
        }
        var session = Session(path: database.path, interactive: interactive)
        while true {
            guard var line = read(interactive, prompt: "kvengine> ") else { break }
            // A quote left open on a terminal: the line goes on (from a pipe it is an error,
            // so that one bad line cannot swallow the rest of a script).
            while interactive, ShellWords.endsInsideQuotes(line), let more = read(interactive, prompt: "     ...> ") {
                line += "\n" + more
            }
            if interactive, !line.trimmingCharacters(in: .whitespaces).isEmpty {
                _ = add_history(line)
                if let history { _ = write_history(history) }  // kept as it grows
            }
            Interrupt.reset()
            do {
                if try !session.execute(line, db) { break }
            } catch {
                FileHandle.standardError.write(Data("error: \(Shell.describe(error))\n".utf8))
            }
        }
    }

    /// A line from the terminal with editing and history (libedit), or from the pipe.
    private func read(_ interactive: Bool, prompt: String) -> String? {
        guard interactive else { return readLine(strippingNewline: true) }
        while true {
            guard let raw = readline(prompt) else {
                // Ctrl-C at the prompt interrupts the read: a fresh prompt, not the end.
                if Interrupt.requested {
                    Interrupt.reset()
                    FileHandle.standardOutput.write(Data("\n".utf8))
                    continue
                }
                return nil
            }
            defer { free(raw) }
            return String(cString: raw)
        }
    }

    /// One line for an error: ArgumentParser's first line, a KVError's message.
    static func describe(_ error: any Error) -> String {
        if let error = error as? KVError { return error.message }
        if error is ShellError || error is ValidationError { return "\(error)" }
        let message = KVCtl.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
        return message.hasPrefix("Error: ") ? String(message.dropFirst(7)) : message
    }

    /// What a session remembers between commands.
    struct Session {
        let path: String
        /// On a terminal (long output may then go through the pager).
        var interactive = false
        var mode = "text"
        var timing = false
        var pager = true

        /// Runs one command line; false ends the session.
        mutating func execute(_ line: String, _ db: Database) throws -> Bool {
            let words = try ShellWords.split(line)
            guard let first = words.first else { return true }
            let name = first.lowercased()
            let arguments = Array(words.dropFirst())
            let started = DispatchTime.now().uptimeNanoseconds
            defer {
                if timing {
                    let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
                    FileHandle.standardError.write(Data(String(format: "time: %.6f s\n", seconds).utf8))
                }
            }
            switch name {
            case "quit", "exit":
                return false
            case "help":
                if let topic = arguments.first?.lowercased(), let command = Shell.commands[topic == "delete" ? "del" : topic] {
                    emit(KVCtl.helpMessage(for: command).replacingOccurrences(of: "USAGE: kvctl ", with: "USAGE: ")
                        .trimmingCharacters(in: .newlines))
                } else if let topic = arguments.first {
                    throw ShellError("no command '\(topic)' (type help)")
                } else {
                    emit(Shell.help)
                }
            case "sync":
                guard arguments.isEmpty else { throw ShellError("usage: sync") }
                try db.sync()
                emit("OK")
            case "mode":
                guard arguments.count == 1, ["text", "hex", "base64", "json"].contains(arguments[0]) else {
                    throw ShellError("usage: mode text|hex|base64|json (now \(mode))")
                }
                mode = arguments[0]
                emit("OK")
            case "timing":
                guard arguments.count == 1, ["on", "off"].contains(arguments[0]) else { throw ShellError("usage: timing on|off") }
                timing = arguments[0] == "on"
                emit("OK")
            case "pager":
                guard arguments.count == 1, ["on", "off"].contains(arguments[0]) else {
                    throw ShellError("usage: pager on|off (now \(pager ? "on" : "off"))")
                }
                pager = arguments[0] == "on"
                emit("OK")
            default:
                let command = name == "delete" ? "del" : name
                guard Shell.commands[command] != nil else {
                    throw ShellError("unknown command '\(first)' (type help)")
                }
                let flags = Shell.encodedCommands.contains(command) && mode != "text" ? ["--\(mode)"] : []
                let options = arguments.prefix { $0 != "--" }
                if options.contains("--buffered") {
                    throw ShellError("--buffered is set for the whole session: kvctl DBPATH --buffered")
                }
                if zip(options, options.dropFirst()).contains(where: { $0 == "--value-file" && $1 == "-" }) || options.contains("--value-file=-") {
                    throw ShellError("--value-file - would read the shell's own input; give a file")
                }
                let parsed = try KVCtl.parseAsRoot([command, "--db", path] + flags + arguments)
                guard let runnable = parsed as? any DatabaseCommand else { throw ShellError("'\(first)' does not run in the shell") }
                var out = OutputBuffer(paged: interactive && pager)
                defer { out.finish() }  // what a failing command printed before its error, too
                do {
                    try runnable.run(on: db, &out)
                } catch is NotFound {
                    out.line("(not found)")
                }
                out.finish()  // the pager, if one ran, is gone before anything else prints
                if Interrupt.requested { FileHandle.standardError.write(Data("interrupted\n".utf8)) }
            }
            return true
        }
    }
}

/// A shell usage error: one line, the session goes on.
struct ShellError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Splits a shell line into words: whitespace separates, "double quotes" group (a
/// newline inside them is part of the word), `\"` is a quote; every other escape is left
/// in the word for the text form to read (`\\` `\t` `\n` `\r` `\xNN`), so the shell, `batch`
/// and the one-shot commands take the same escapes.
enum ShellWords {
    static func split(_ line: String) throws -> [String] {
        var words: [String] = []
        var current: [UInt8] = []
        var inWord = false
        var quoted = false
        var bytes = Array(line.utf8)[...]
        while let byte = bytes.popFirst() {
            switch byte {
            case UInt8(ascii: "\""):
                quoted.toggle()
                inWord = true
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"):
                if quoted {
                    current.append(byte)
                } else if inWord {
                    words.append(String(decoding: current, as: UTF8.self))
                    current = []
                    inWord = false
                }
            case UInt8(ascii: "\\"):
                guard let next = bytes.popFirst() else { throw ShellError("a line cannot end in a backslash") }
                inWord = true
                if next == UInt8(ascii: "\"") {
                    current.append(next)
                } else {
                    current += [byte, next]
                }
            default:
                current.append(byte)
                inWord = true
            }
        }
        if quoted { throw ShellError("unterminated quote") }
        if inWord { words.append(String(decoding: current, as: UTF8.self)) }
        return words
    }

    /// Whether `line` leaves a quote open (the shell reads on).
    static func endsInsideQuotes(_ line: String) -> Bool {
        var quoted = false
        var escaped = false
        for byte in line.utf8 {
            if escaped {
                escaped = false
            } else if byte == UInt8(ascii: "\\") {
                escaped = true
            } else if byte == UInt8(ascii: "\"") {
                quoted.toggle()
            }
        }
        return quoted
    }
}

/// Tab completion at the prompt (libedit): the first word completes to a command name,
/// later words to keys of the open database that begin with what is typed (a prefix scan
/// of at most 200 keys, in the text form; as redis-cli does).
enum Completion {
    // Touched only on the shell's thread, inside readline.
    nonisolated(unsafe) private static var database: Database?
    nonisolated(unsafe) private static var candidates: [String] = []

    static let words = (Array(Shell.commands.keys) + ["delete", "sync", "mode", "timing", "pager", "help", "quit", "exit"]).sorted()

    static func install(_ db: Database) {
        database = db
        kvctl_set_completion { text, start, _ in
            let typed = text.map { String(cString: $0) } ?? ""
            Completion.candidates = start == 0 ? Completion.words.filter { $0.hasPrefix(typed.lowercased()) } : Completion.keys(typed)
            kvctl_completion_over()  // no file names when nothing matches
            guard let text else { return nil }
            return rl_completion_matches(text, { _, state in
                guard state >= 0, Int(state) < Completion.candidates.count else { return nil }
                return strdup(Completion.candidates[Int(state)])
            })
        }
    }

    /// Keys beginning with `typed` (in the text form), or none when it does not parse.
    private static func keys(_ typed: String) -> [String] {
        guard let database, !typed.hasPrefix("-"), let prefix = try? TextCodec.parseText(Array(typed.utf8), "the word") else { return [] }
        var found: [String] = []
        try? database.forEach(ScanOptions(prefix: prefix, limit: 200, fillCache: false)) { key, _ in
            // Keys with spaces or quotes would need quoting to be typed: offered only as
            // far as the text form goes without them.
            let text = TextCodec.text(key)
            if !text.contains(" ") && !text.contains("\"") { found.append(text) }
            return true
        }
        return found
    }
}

/// Ctrl-C in the shell: a flag the running command's walk checks (it stops, and the shell
/// goes back to its prompt) instead of the end of the process.
enum Interrupt {
    /// Lock-free, so the handler may store to it from any thread the signal lands on.
    private static let flag = Atomic<Int32>(0)

    static func install() {
        reset()  // the static is made here, not first in the handler
        catchSignal()
    }

    /// Ctrl-C sets the flag from now on (a request already made stays).
    static func catchSignal() {
        _ = requested
        signal(SIGINT) { _ in Interrupt.flag.store(1, ordering: .relaxed) }
    }

    static func reset() { flag.store(0, ordering: .relaxed) }

    static var requested: Bool { flag.load(ordering: .relaxed) != 0 }

    /// Throws when Ctrl-C was pressed (exit 130, as a shell reports SIGINT).
    static func check() throws {
        if requested { throw CommandFailure(description: "interrupted", code: 130) }
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
        "flushes: \(stats.flushes) (\(stats.bytesFlushed) bytes); compactions: \(stats.compactions) + \(stats.trivialMoves) moves, \(stats.readCompactions) of them asked for by reads (read \(stats.bytesCompactedRead), wrote \(stats.bytesCompactedWritten) bytes); write amplification \(String(format: "%.2f", stats.writeAmplification))")
    lines.append(
        "block cache: \(stats.cacheBytes) bytes, \(stats.cacheHits) hits, \(stats.cacheMisses) misses (hit rate \(String(format: "%.3f", stats.cacheHitRate)))")
    lines.append("table cache: \(stats.openTables) tables open, \(stats.tableOpens) opens; their indexes and filters \(stats.indexAndFilterBytes) bytes")
    lines.append("stalls: \(stats.stalls) stops, \(stats.slowdowns) slowdowns, \(stats.stallMicroseconds / 1000) ms; live snapshots \(stats.liveSnapshots); manifest \(stats.manifestNumber)")
    if let store = stats.pageStore { lines.append(store.description) }
    return lines.joined(separator: "\n")
}
