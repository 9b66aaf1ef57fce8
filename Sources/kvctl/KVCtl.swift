import ArgumentParser

/// `kvctl`: the command-line tool of the KVEngine project.
@main
struct KVCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvctl",
        abstract: "Shell and operator tools for a KVEngine database.",
        subcommands: [PageStoreCommand.self])
}

/// `kvctl pagestore ...`: tools that exercise the page store directly.
struct PageStoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pagestore",
        abstract: "Exercise and measure the io_uring page store under the engine.",
        subcommands: [PageStoreDemo.self, PageStoreBench.self])
}
