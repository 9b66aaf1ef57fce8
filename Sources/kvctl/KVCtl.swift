import ArgumentParser
import Foundation
import KVEngine
import Logging

/// `kvctl`: the command-line tool of the KVEngine project.
@main
struct KVCtl: ParsableCommand {
    /// Log lines (fallbacks, recovery) go to stderr, so stdout carries only results.
    static func main() {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.isEmpty {
            FileHandle.standardError.write(Data((helpMessage() + "\n").utf8))
            Foundation.exit(64)
        }
        if let first = arguments.first, databaseCommands.contains(first), !arguments.contains("--db"),
            !arguments.prefix(while: { $0 != "--" }).contains(where: { $0 == "--help" || $0 == "-h" })
        {
            fail("missing DBPATH: the database comes first, as in kvctl DBPATH \(first) ...", code: 64)
        }
        if let help = commandHelp(rewrite(arguments)) {
            print(help)
            return
        }
        if arguments.count >= 2, !arguments[0].hasPrefix("-"), !toolNames.contains(arguments[0]),
            !databaseCommands.contains(arguments[0]), !arguments[1].hasPrefix("-"), !databaseCommands.contains(arguments[1])
        {
            fail("unknown command '\(arguments[1])' (commands: \(databaseCommands.sorted().joined(separator: ", ")))", code: 64)
        }
        do {
            var command = try parseAsRoot(rewrite(arguments))
            try command.run()
        } catch let error as NotFound {
            fail("not found: \(error.key)", code: 1)
        } catch let error as CommandFailure {
            fail(error.description, code: error.code)
        } catch let error as KVError {
            fail(String(describing: error), code: exitCode(for: error.code))
        } catch {
            let code = exitCode(for: error)
            // Help and clean exits print as ArgumentParser does; errors are one line.
            if code == .success || error is ExitCode { exit(withError: error) }
            let message = message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
            fail(message.hasPrefix("Error: ") ? String(message.dropFirst(7)) : message, code: code.rawValue)
        }
    }

    /// Exit codes (sysexits-style), as documented in `kvctl --help`.
    static let exitCodesHelp = """
        exit codes: 0 ok; 1 not found (get) or damage found (check); 64 usage (unknown command, \
        bad flag, malformed hex or base64); 65 bad data (empty or oversized key or value); \
        66 no database at the path; 69 a required feature is unavailable; 73 database already \
        exists; 74 I/O error; 75 locked by another process (or a transaction conflict); 76 corruption; 77 read-only or full
        """

    static func exitCode(for code: KVError.Code) -> Int32 {
        switch code {
        case .invalidArgument, .decoding, .notRetained: return 65
        case .notADatabase: return 66
        case .alreadyExists: return 73
        case .io: return 74
        case .locked, .conflict: return 75
        case .corruption, .newerFormat: return 76
        case .readOnly, .full, .closed: return 77
        }
    }

    /// One line on stderr, then exit.
    static func fail(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("kvctl: \(message)\n".utf8))
        Foundation.exit(code)
    }

    static let configuration = CommandConfiguration(
        commandName: "kvctl",
        abstract: "Shell and operator tools for a KVEngine database.",
        usage: "kvctl DBPATH [get|put|del|delrange|scan|count|batch|import|export|check|dump|stats|compact|checkpoint|backup|changes|salvage|shell] ...\n       kvctl (bench|stress|pagestore) ...",
        discussion: "kvctl DBPATH alone opens a shell on the database.\n\n" + exitCodesHelp,
        subcommands: [
            Get.self, Put.self, Del.self, DelRange.self, Scan.self, Count.self, Batch.self, Import.self, Export.self, Check.self,
            Dump.self, Stats.self, Compact.self, CheckpointCommand.self, BackupCommand.self, Changes.self, Salvage.self, Shell.self,
            Bench.self, Stress.self, PageStoreCommand.self,
        ])

    /// The help of a database command, when `arguments` (rewritten) ask for it, with the
    /// usage as users type it: `kvctl DBPATH COMMAND ...`, not the `--db` form the
    /// commands are parsed in.
    static func commandHelp(_ arguments: [String]) -> String? {
        guard let name = arguments.first, databaseCommands.contains(name),
            arguments.prefix(while: { $0 != "--" }).contains(where: { $0 == "--help" || $0 == "-h" }),
            let command = configuration.subcommands.first(where: { $0._commandName == name })
        else { return nil }
        // (--db is hidden from help: users give the path first.)
        return helpMessage(for: command).replacingOccurrences(of: "USAGE: kvctl \(name)", with: "USAGE: kvctl DBPATH \(name)")
    }

    /// Subcommands that do not take a database path first.
    static let toolNames: Set<String> = ["bench", "stress", "pagestore", "help"]
    static let databaseCommands: Set<String> = [
        "get", "put", "del", "delrange", "scan", "count", "batch", "import", "export", "check", "dump", "stats", "compact", "checkpoint", "backup",
        "changes", "salvage", "shell",
    ]

    /// `kvctl DBPATH COMMAND ARGS...` becomes `kvctl COMMAND --db DBPATH ARGS...`, and
    /// `kvctl DBPATH [--flags]` alone `kvctl shell --db DBPATH [--flags]`.
    static func rewrite(_ arguments: [String]) -> [String] {
        guard let first = arguments.first, !first.hasPrefix("-"),
            !toolNames.contains(first), !databaseCommands.contains(first)
        else { return arguments }
        if arguments.count == 1 || arguments[1].hasPrefix("-") {
            return ["shell", "--db", first] + arguments.dropFirst()
        }
        guard databaseCommands.contains(arguments[1]) else { return arguments }
        return [arguments[1], "--db", first] + arguments.dropFirst(2)
    }
}

/// `kvctl pagestore ...`: tools that exercise the page store directly.
struct PageStoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pagestore",
        abstract: "Exercise and measure the io_uring page store under the engine.",
        subcommands: [PageStoreDemo.self, PageStoreBench.self])
}
