import ArgumentParser
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
        do {
            var command = try parseAsRoot(rewrite(Array(CommandLine.arguments.dropFirst())))
            try command.run()
        } catch {
            exit(withError: error)
        }
    }

    static let configuration = CommandConfiguration(
        commandName: "kvctl",
        abstract: "Shell and operator tools for a KVEngine database.",
        usage: "kvctl DBPATH [get|put|del|scan|count|batch|check|stats|shell] ...\n       kvctl (bench|stress|pagestore) ...",
        discussion: "kvctl DBPATH alone opens a shell on the database.",
        subcommands: [
            Get.self, Put.self, Del.self, Scan.self, Count.self, Batch.self, Check.self, Stats.self, Shell.self,
            Bench.self, Stress.self, PageStoreCommand.self,
        ])

    /// Subcommands that do not take a database path first.
    static let toolNames: Set<String> = ["bench", "stress", "pagestore", "help"]
    static let databaseCommands: Set<String> = ["get", "put", "del", "scan", "count", "batch", "check", "stats", "shell"]

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
