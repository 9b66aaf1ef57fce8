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
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
    }

    static let configuration = CommandConfiguration(
        commandName: "kvctl",
        abstract: "Shell and operator tools for a KVEngine database.",
        subcommands: [Bench.self, PageStoreCommand.self])
}

/// `kvctl pagestore ...`: tools that exercise the page store directly.
struct PageStoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pagestore",
        abstract: "Exercise and measure the io_uring page store under the engine.",
        subcommands: [PageStoreDemo.self, PageStoreBench.self])
}
