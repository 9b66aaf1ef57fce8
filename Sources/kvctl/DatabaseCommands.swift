import ArgumentParser
import Foundation
import KVEngine
import Synchronization

/// Where the database is and how to open it, shared by the one-shot commands.
struct DatabaseOptions: ParsableArguments {
    @Option(name: .customLong("db"), help: ArgumentHelp("Database directory (`kvctl DBPATH COMMAND ...` sets it).", visibility: .hidden))
    var path: String

    /// Opens the database for a write command (`create`: made when missing; `buffered`:
    /// writes acknowledged once in memory).
    func open(create: Bool, buffered: Bool = false, compression: Compression? = nil) throws -> Database {
        var options = Options(createIfMissing: create, defaultDurability: buffered ? .buffered : .sync)
        if let compression { options.compression = compression }
        return try Database(path: path, options: options)
    }

    /// Opens the database for a read command: read-only, so it creates and changes
    /// nothing, and several run at once (`Options.readOnly`).
    func openReadOnly() throws -> Database {
        var options = Options()
        options.readOnly = true
        return try Database(path: path, options: options)
    }
}

/// Standard output through one buffer: written out at 256 KiB, and at every line on a
/// terminal (so long output shows as it is produced). With a `Pager`, output to a
/// terminal is held until it fills the screen, and then goes through the pager instead.
struct OutputBuffer {
    var bytes: [UInt8] = []
    private let lineByLine: Bool
    private let streaming: Bool
    private let pager: Pager?

    /// `streaming`: written out as it grows (else held until `flush`); `paged`: through
    /// `$PAGER` once it exceeds the screen (only when stdout is a terminal and a pager is
    /// set or `less` is there; the shell's).
    init(streaming: Bool = true, paged: Bool = false) {
        self.streaming = streaming
        let terminal = isatty(STDOUT_FILENO) == 1
        lineByLine = streaming && terminal
        pager = streaming && paged && terminal ? Pager.make() : nil
        bytes.reserveCapacity(256 << 10 + 4096)
    }

    mutating func endLine() {
        bytes.append(0x0A)
        if let pager {
            if pager.add(&bytes) { return }  // held for the screen, or sent to the pager
        }
        if lineByLine || (streaming && bytes.count >= 256 << 10) { flush() }
    }

    /// `text` and a newline.
    mutating func line(_ text: String) {
        bytes += text.utf8
        endLine()
    }

    /// Whether Ctrl-C asked the running command to stop, or the pager was quit (long
    /// walks check it).
    var interrupted: Bool { Interrupt.requested || pager?.quit == true }

    /// Writes out what is held (to the pager, once it runs).
    mutating func flush() {
        guard !bytes.isEmpty else { return }
        if let pager, pager.send(&bytes) { return }
        bytes.withUnsafeBytes { FileHandle.standardOutput.write(Data($0)) }
        bytes.removeAll(keepingCapacity: true)
    }

    /// Writes out the rest; with a pager running, waits until the user quits it.
    mutating func finish() {
        flush()
        pager?.close()
    }
}

/// Long output on a terminal through `$PAGER` (`less` when unset; none when set empty
/// or to a command that is not there), as psql does: what fits on the screen prints as it
/// is, and the pager starts once the output passes the screen's last row. Output that
/// comes slowly is not held: when the screen has not filled within a quarter second, what
/// is held prints and the command goes on unpaged. `LESS` defaults to `FRX` (quit when it
/// fits, keep colours and the screen).
final class Pager {
    private let command: String
    private let rows: Int
    private let columns: Int
    private var rowsHeld = 0
    private var lineStart = 0
    private var firstHeld: UInt64? = nil
    /// The output stopped being held (it came slowly): no pager for this command.
    private var unpaged = false
    private var pipe: UnsafeMutablePointer<FILE>? = nil
    /// The pager ended (the user quit it) before the output did.
    private(set) var quit = false

    private init(command: String, rows: Int, columns: Int) {
        self.command = command
        self.rows = rows
        self.columns = columns
    }

    /// A pager for standard output, or nil when there is none to use.
    static func make() -> Pager? {
        let environment = ProcessInfo.processInfo.environment
        let command = (environment["PAGER"] ?? "less").trimmingCharacters(in: .whitespaces)
        guard command != "cat", let program = command.split(separator: " ").first else { return nil }
        // A pager that is not there would swallow the output: then there is none.
        let found = program.contains("/")
            ? access(String(program), X_OK) == 0
            : (environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").contains { access("\($0)/\(program)", X_OK) == 0 }
        guard found else { return nil }
        var size = winsize()
        guard ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_row > 1 else { return nil }
        return Pager(command: command, rows: Int(size.ws_row), columns: max(1, Int(size.ws_col)))
    }

    /// Takes the line that `bytes` now ends with: true when the buffer is held (it still
    /// fits on the screen) or was sent to the running pager.
    func add(_ bytes: inout [UInt8]) -> Bool {
        if pipe != nil || quit { return send(&bytes) }
        if unpaged { return false }
        let now = DispatchTime.now().uptimeNanoseconds
        if firstHeld == nil { firstHeld = now }
        if now - firstHeld! > 250_000_000 {
            unpaged = true
            return false
        }
        let length = bytes.count - 1 - lineStart
        rowsHeld += max(1, (length + columns - 1) / columns)
        lineStart = bytes.count
        // The last row is the prompt's.
        guard rowsHeld >= rows else { return true }
        start()
        return send(&bytes)
    }

    /// Writes `bytes` to the pager when it runs (true), else leaves them (false).
    func send(_ bytes: inout [UInt8]) -> Bool {
        if quit {
            bytes.removeAll(keepingCapacity: true)
            return true
        }
        guard let pipe else { return false }
        let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, pipe) }
        if written < bytes.count || fflush(pipe) != 0 { quit = true }
        bytes.removeAll(keepingCapacity: true)
        return true
    }

    private func start() {
        // A pager quit early makes writes fail with EPIPE instead of killing kvctl.
        signal(SIGPIPE, SIG_IGN)
        setenv("LESS", "FRX", 0)
        // Ctrl-C in the pager goes to kvctl too: it stops the walk (the pager stays).
        Interrupt.catchSignal()
        pipe = popen(command, "w")
        if pipe == nil { quit = true }
    }

    /// Waits for the pager to end.
    func close() {
        guard let pipe else { return }
        pclose(pipe)
        self.pipe = nil
    }
}

/// How a write command acknowledges (only the commands that write take it).
struct WriteOptions: ParsableArguments {
    @Flag(name: .customLong("buffered"), help: "Acknowledge writes once in memory (default: when durable).")
    var buffered = false
}

/// The bytes of the file at `path` ("-": standard input), or a one-line error naming it.
func readRaw(_ path: String) throws -> [UInt8] {
    if path == "-" { return Array(FileHandle.standardInput.readDataToEndOfFile()) }
    guard let data = FileManager.default.contents(atPath: path) else {
        throw ValidationError("cannot read \(path): it is missing or unreadable")
    }
    return Array(data)
}

/// Writes `bytes` as they are to the file at `path` ("-": standard output).
func writeRaw(_ bytes: [UInt8], to path: String) throws {
    if path == "-" {
        FileHandle.standardOutput.write(Data(bytes))
        return
    }
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
        throw ValidationError("cannot write \(path): its directory is missing or not writable")
    }
}

struct Get: DatabaseCommand {
    static let configuration = CommandConfiguration(abstract: "Print the value of KEY (exit 1 when absent).")
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var encoding: ByteEncoding
    @Argument(help: "The key.") var key: String
    @Option(name: .customLong("output"), help: "Write the value's raw bytes to this file ('-': standard output) instead of printing it encoded.")
    var output: String?

    var access: DatabaseAccess { .read }

    func run(on db: Database, _ out: inout OutputBuffer) throws {
        let keyBytes = try encoding.decode(key, "KEY")
        guard let value = try db.get(keyBytes) else { throw NotFound(key: key) }
        if let output {
            try writeRaw(value, to: output)
            return
        }
        if encoding.json {
            encoding.appendLine(key: keyBytes, value: value, to: &out.bytes)
        } else {
            encoding.append(value, to: &out.bytes)
        }
        out.endLine()
    }
}

struct Put: DatabaseCommand {
    static let configuration = CommandConfiguration(abstract: "Store VALUE under KEY.")
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var write: WriteOptions
    @OptionGroup var encoding: ByteEncoding
    @Argument(help: "The key.") var key: String
    @Argument(help: "The value (or --value-file).") var value: String?
    @Option(name: .customLong("value-file"), help: "Take the value's raw bytes from this file ('-': standard input); for values too long for a command line.")
    var valueFile: String?

    func validate() throws {
        if (value == nil) == (valueFile == nil) { throw ValidationError("give either VALUE or --value-file, not both or neither") }
    }

    var access: DatabaseAccess { .write(create: true, buffered: write.buffered) }

    func run(on db: Database, _ out: inout OutputBuffer) throws {
        let keyBytes = try encoding.decode(key, "KEY")
        let valueBytes = try valueFile.map(readRaw) ?? encoding.decode(value!, "VALUE")
        if valueBytes.count > Limits.maxValueBytes {
            throw ValidationError("value of \(valueBytes.count) bytes exceeds the limit of \(Limits.maxValueBytes)")
        }
        try db.put(keyBytes, valueBytes)
        out.line("OK")
    }
}

struct Del: DatabaseCommand {
    static let configuration = CommandConfiguration(abstract: "Remove KEY.")
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var write: WriteOptions
    @OptionGroup var encoding: ByteEncoding
    @Argument(help: "The key.") var key: String

    var access: DatabaseAccess { .write(create: true, buffered: write.buffered) }

    func run(on db: Database, _ out: inout OutputBuffer) throws {
        try db.delete(try encoding.decode(key, "KEY"))
        out.line("OK")
    }
}

struct DelRange: DatabaseCommand {
    static let configuration = CommandConfiguration(
        commandName: "delrange", abstract: "Remove every key in [START, END) with one write.")
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var encoding: ByteEncoding
    @OptionGroup var write: WriteOptions
    @Argument(help: "First key of the range (included).") var start: String
    @Argument(help: "End of the range (excluded).") var end: String

    var access: DatabaseAccess { .write(create: true, buffered: write.buffered) }

    func run(on db: Database, _ out: inout OutputBuffer) throws {
        try db.deleteRange(try encoding.decode(start, "START"), try encoding.decode(end, "END"))
        out.line("OK")
    }
}

struct Scan: DatabaseCommand {
    static let configuration = CommandConfiguration(abstract: "Print keys and values in order: KEY<TAB>VALUE per line.")
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var encoding: ByteEncoding
    @Argument(help: "First key (inclusive).") var start: String?
    @Argument(help: "End key (exclusive).") var end: String?
    @Option(help: "Only keys with this prefix.") var prefix: String?
    @Flag(help: "Last key first.") var reverse = false
    @Option(parsing: .unconditional, help: "At most this many entries (0 or more).") var limit: Int?

    func validate() throws {
        if let limit, limit < 0 { throw ValidationError("--limit must be 0 or more, not \(limit)") }
    }
    @Flag(name: .customLong("keys-only"), help: "Print keys only.") var keysOnly = false

    var access: DatabaseAccess { .read }

    func run(on db: Database, _ out: inout OutputBuffer) throws {
        let options = ScanOptions(
            start: try start.map { try encoding.decode($0, "START") }, end: try end.map { try encoding.decode($0, "END") },
            prefix: try prefix.map { try encoding.decode($0, "--prefix") }, reverse: reverse, limit: limit)
        var scan = options
        scan.fillCache = false  // a one-off walk: its blocks stay out of the cache
        try db.forEach(scan) { key, value in
            encoding.appendLine(key: key, value: keysOnly ? nil : value, to: &out.bytes)
            out.endLine()
            return !out.interrupted
        }
    }
}

struct Compact: DatabaseCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compact every table meeting [START, END] down into the deepest level.",
        discussion: "Drops overwritten versions and deletions that no snapshot needs. Shows progress on a terminal.")
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var encoding: ByteEncoding
    @Argument(help: "First key of the range (default: the first key).") var start: String?
    @Argument(help: "Last key of the range, included (default: the last key).") var end: String?

    var access: DatabaseAccess { .write(create: false, buffered: false) }

    func run(on db: Database, _ out: inout OutputBuffer) throws {
        let start = try start.map { try encoding.decode($0, "START") }
        let end = try end.map { try encoding.decode($0, "END") }
        let before = db.stats
        let ticker = Ticker("compacted (bytes written)") { Int(db.stats.bytesCompactedWritten) }
        try db.compactRange(start: start, end: end)
        ticker.stop()
        let after = db.stats
        out.line("OK: \(before.tableBytes) -> \(after.tableBytes) table bytes; \(levelSummary(after))")
    }
}

/// Shows a count while long work runs (on a terminal only), every 200 ms from a thread
/// of its own: for work that cannot report as it goes.
final class Ticker: @unchecked Sendable {
    // @unchecked: `stopped` is touched under the lock only.
    private let lock = NSLock()
    private var stopped = false
    private let done = DispatchSemaphore(value: 0)

    init(_ label: String, _ count: @escaping @Sendable () -> Int) {
        guard isatty(STDERR_FILENO) == 1 else {
            stopped = true
            return
        }
        Thread { [self] in
            var progress = Progress(label)
            while !lock.withLock({ stopped }) {
                progress.update(count())
                usleep(200_000)
            }
            progress.finish(count())
            done.signal()
        }.start()
    }

    func stop() {
        let running = lock.withLock { () -> Bool in
            defer { stopped = true }
            return !stopped
        }
        if running { done.wait() }
    }
}

struct CheckpointCommand: DatabaseCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Make a consistent copy of the database in DIR (hard links to its tables), which opens as a database.",
        discussion: "DIR must not exist, or be empty. Runs while the database is in use by this shell, or, one-shot, beside readers. Restore: open DIR.")
    @OptionGroup var database: DatabaseOptions
    @Argument(help: "The new directory.") var directory: String
    var access: DatabaseAccess { .read }

    func run(on db: Database, _ out: inout OutputBuffer) throws {
        out.line("OK: checkpoint in \(directory): \(try db.checkpoint(to: directory))")
    }
}

struct Changes: DatabaseCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the committed writes after sequence N, one entry a line: SEQ<TAB>put<TAB>KEY<TAB>VALUE or SEQ<TAB>del<TAB>KEY.",
        discussion: "Reads the logs the database keeps (Options.logRetention keeps them after their writes are in tables). --follow then waits for new commits until Ctrl-C: in the shell, or with a database no other process holds (a writer in another process holds it exclusively).")
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var encoding: ByteEncoding
    @Option(help: "Print the writes after this sequence number (0: from the first kept).") var since: UInt64 = 0
    @Flag(help: "Wait for new commits after the kept ones, until Ctrl-C.") var follow = false
    var access: DatabaseAccess { .read }

    func run(on db: Database, _ out: inout OutputBuffer) throws {
        let feed = try db.changes(since: since, follow: follow)
        defer { feed.cancel() }
        if follow {
            // Ctrl-C ends a wait for the next commit.
            Thread {
                while !feed.isCancelled {
                    if Interrupt.requested { feed.cancel() }
                    usleep(50_000)
                }
            }.start()
        }
        while !out.interrupted, let change = try feed.next() {
            for (index, entry) in change.batch.entries.enumerated() {
                let sequence = change.firstSequence + UInt64(index)
                switch entry {
                case .put(let key, let value): line(sequence, "put", key, value, &out)
                case .delete(let key): line(sequence, "del", key, nil, &out)
                case .deleteRange(let start, let end): line(sequence, "delrange", start, end, &out)
                }
            }
            if follow { out.flush() }  // each batch as it comes, also into a pipe
        }
    }

    private func line(_ sequence: UInt64, _ op: String, _ key: [UInt8], _ value: [UInt8]?, _ out: inout OutputBuffer) {
        if encoding.json {
            var object: [UInt8] = []
            encoding.appendLine(key: key, value: value, to: &object)
            out.bytes += Array("{\"sequence\": \(sequence), \"op\": \"\(op)\", ".utf8) + object.dropFirst()
        } else {
            out.bytes += Array("\(sequence)\t\(op)\t".utf8)
            encoding.appendLine(key: key, value: value, to: &out.bytes)
        }
        out.endLine()
    }
}

struct BackupCommand: DatabaseCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Bring the backup in DIR up to date: copies the tables it lacks (all, the first time) and drops what it no longer needs.",
        discussion: "DIR is new, empty, or a backup of this database. Restore: open DIR (which then stops being a backup).")
    @OptionGroup var database: DatabaseOptions
    @Argument(help: "The backup's directory.") var directory: String
    var access: DatabaseAccess { .read }

    func run(on db: Database, _ out: inout OutputBuffer) throws {
        out.line("OK: backup in \(directory): \(try db.backup(to: directory))")
    }
}

struct Stats: DatabaseCommand {
    static let configuration = CommandConfiguration(abstract: "Print the engine's and the page store's counters.")
    @OptionGroup var database: DatabaseOptions
    var access: DatabaseAccess { .read }

    func run(on db: Database, _ out: inout OutputBuffer) throws {
        out.line(describe(db.stats))
    }
}

struct Count: DatabaseCommand {
    static let configuration = CommandConfiguration(abstract: "Print the number of keys.")
    @OptionGroup var database: DatabaseOptions
    var access: DatabaseAccess { .read }

    func run(on db: Database, _ out: inout OutputBuffer) throws {
        // Loaded or compacted whole, the tables' properties give the count outright.
        if let counted = try db.countFromProperties() {
            out.line(String(counted))
            return
        }
        var count = 0
        // A one-off walk of everything: its blocks stay out of the cache.
        try db.forEach(ScanOptions(fillCache: false)) { _, _ in
            count += 1
            return count % 4096 != 0 || !out.interrupted
        }
        out.line(String(count))
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Verify every checksum of every file without changing anything; exit 1 on damage.",
        discussion: "Prints one line per finding, naming the file and offset. A torn tail (an interrupted last write, cut off at the next open) is reported but is not damage.")
    @OptionGroup var database: DatabaseOptions

    func run() throws {
        let checked = Mutex(0)
        let ticker = Ticker("checked (tables and logs)") { checked.withLock { $0 } }
        let report = try Database.check(path: database.path, visit: nil) { done in checked.withLock { $0 = done } }
        ticker.stop()
        print(report)
        if report.isDamaged { throw ExitCode(1) }
    }
}

struct Salvage: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rebuild a damaged database from every table block and log record that verifies.",
        discussion: "Files that do not verify are moved into DBPATH/lost/, never deleted. Prints what was kept, what was dropped (file, offset, why) and what was set aside; the database then opens. Run `check` first to see the damage.")
    @OptionGroup var database: DatabaseOptions

    func run() throws {
        let report = try Database.salvage(path: database.path)
        print(report)
    }
}

struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the manifest's edits, every table's entries and every log record (for debugging), then what check finds.",
        discussion: "Manifest: FILE@OFFSET edit: SUMMARY. Tables and logs, one line per entry: FILE[@OFFSET] [Ln] #SEQUENCE put KEY VALUE | del KEY. Changes nothing.")
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var encoding: ByteEncoding

    func run() throws {
        let report = try Database.check(path: database.path, visit: { record in
            var place = "\(record.file)@\(record.offsetBytes)"
            switch record.source {
            case .manifest(let summary):
                print("\(place) edit: \(summary)")
                return
            case .table(let level):
                place = "\(record.file) L\(level)"
            case .log:
                break
            }
            for entry in record.entries {
                let operation = entry.isRangeDelete
                    ? "delrange \(encoding.encode(entry.key)) \(encoding.encode(entry.value))"
                    : entry.isPut ? "put \(encoding.encode(entry.key)) \(encoding.encode(entry.value))" : "del \(encoding.encode(entry.key))"
                print("\(place) #\(entry.sequence) \(operation)")
            }
        })
        print(report)
        if report.isDamaged { throw ExitCode(1) }
    }
}

struct Batch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply 'put KEY VALUE', 'del KEY' and 'delrange START END' lines from stdin as one atomic batch.",
        discussion: "Words as in the shell (quotes, \\xNN escapes). A bad line applies nothing and names the line.")
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var write: WriteOptions

    func run() throws {
        var batch = WriteBatch()
        var number = 0
        while let line = readLine(strippingNewline: true) {
            number += 1
            let words = try ShellWords.split(line)
            guard let command = words.first?.lowercased() else { continue }
            func bytes(_ word: String) throws -> [UInt8] { try TextCodec.parseText(Array(word.utf8), "line \(number)") }
            switch (command, words.count) {
            case ("put", 3): batch.put(try bytes(words[1]), try bytes(words[2]))
            case ("del", 2), ("delete", 2): batch.delete(try bytes(words[1]))
            case ("delrange", 3): batch.deleteRange(try bytes(words[1]), try bytes(words[2]))
            default: throw ValidationError("line \(number): expected 'put KEY VALUE', 'del KEY' or 'delrange START END': \(line)")
            }
        }
        let db = try database.open(create: true, buffered: write.buffered)
        try db.write(batch)
        try db.close()
        print("OK (\(batch.count) entries)")
    }
}
