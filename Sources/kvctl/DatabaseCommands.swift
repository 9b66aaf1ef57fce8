import ArgumentParser
import Foundation
import KVEngine

/// Where the database is and how to open it, shared by the one-shot commands.
struct DatabaseOptions: ParsableArguments {
    @Option(name: .customLong("db"), help: "Database directory (`kvctl DBPATH COMMAND ...` sets it).")
    var path: String

    @Flag(name: .customLong("buffered"), help: "Acknowledge writes once in memory (default: when durable).")
    var buffered = false

    /// Opens the database; `create` for write commands (a read never creates anything).
    func open(create: Bool) throws -> Database {
        var options = Options()
        options.createIfMissing = create
        options.defaultDurability = buffered ? .buffered : .sync
        return try Database(path: path, options: options)
    }
}

/// Bytes shown as text: printable ASCII as is, everything else as \xNN.
func displayBytes(_ bytes: [UInt8]) -> String {
    var text = ""
    for byte in bytes {
        switch byte {
        case 0x5C: text += "\\\\"
        case 0x20..<0x7F: text.append(Character(UnicodeScalar(byte)))
        default: text += String(format: "\\x%02x", byte)
        }
    }
    return text
}

struct Get: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the value of KEY (exit 1 when absent).")
    @OptionGroup var database: DatabaseOptions
    @Argument(help: "The key (UTF-8).") var key: String

    func run() throws {
        let db = try database.open(create: false)
        defer { try? db.close() }
        guard let value = try db.get(Array(key.utf8)) else {
            FileHandle.standardError.write(Data("not found: \(key)\n".utf8))
            throw ExitCode(1)
        }
        print(displayBytes(value))
    }
}

struct Put: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Store VALUE under KEY.")
    @OptionGroup var database: DatabaseOptions
    @Argument(help: "The key (UTF-8).") var key: String
    @Argument(help: "The value (UTF-8).") var value: String

    func run() throws {
        let db = try database.open(create: true)
        try db.put(key, value)
        try db.close()
        print("OK")
    }
}

struct Del: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Remove KEY.")
    @OptionGroup var database: DatabaseOptions
    @Argument(help: "The key (UTF-8).") var key: String

    func run() throws {
        let db = try database.open(create: true)
        try db.delete(key)
        try db.close()
        print("OK")
    }
}

struct Scan: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print keys and values in order: KEY<TAB>VALUE per line.")
    @OptionGroup var database: DatabaseOptions
    @Argument(help: "First key (inclusive).") var start: String?
    @Argument(help: "End key (exclusive).") var end: String?
    @Option(help: "Only keys with this prefix.") var prefix: String?
    @Flag(help: "Last key first.") var reverse = false
    @Option(help: "At most this many entries.") var limit: Int?
    @Flag(name: .customLong("keys-only"), help: "Print keys only.") var keysOnly = false

    func run() throws {
        let db = try database.open(create: false)
        defer { try? db.close() }
        let options = ScanOptions(
            start: start.map { Array($0.utf8) }, end: end.map { Array($0.utf8) },
            prefix: prefix.map { Array($0.utf8) }, reverse: reverse, limit: limit)
        for (key, value) in db.scan(options) {
            print(keysOnly ? displayBytes(key) : displayBytes(key) + "\t" + displayBytes(value))
        }
    }
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the engine's and the page store's counters.")
    @OptionGroup var database: DatabaseOptions

    func run() throws {
        let db = try database.open(create: false)
        defer { try? db.close() }
        let stats = db.stats
        print("last sequence: \(stats.lastSequence)")
        print("memtable: \(stats.memtableEntries) entries, \(stats.memtableBytes) bytes")
        print("log chains this session: \(stats.logChains)")
        if let store = stats.pageStore { print(store) }
    }
}
