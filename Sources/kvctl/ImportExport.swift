import ArgumentParser
import Foundation
import KVEngine

/// The line formats of `import` and `export`.
enum LineFormat: String, ExpressibleByArgument, CaseIterable {
    /// `{"key": "...", "value": "..."}` per line.
    case jsonl
    /// `KEY<TAB>VALUE` per line.
    case tsv
}

struct Export: DatabaseCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write every key and value to stdout, in key order, as JSON lines or TSV.",
        discussion: "JSON lines: UTF-8 keys and values as JSON strings, other bytes as key_base64/value_base64 fields; TSV: keys and values in the text form (UTF-8 as itself, \\\\ \\t \\n \\r and \\xNN escapes); with --hex or --base64 both formats hold that encoding. `import` with the same flags reads it back exactly.")
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var encoding: ByteEncoding
    @Option(help: "jsonl or tsv.") var format: LineFormat = .jsonl

    var access: DatabaseAccess { .read }

    func run(on db: Database, _ out: inout OutputBuffer) throws {
        var lineEncoding = encoding
        lineEncoding.json = format == .jsonl
        var progress = Progress("exported")
        var count = 0
        try db.forEach(ScanOptions(fillCache: false)) { key, value in
            lineEncoding.appendLine(key: key, value: value, to: &out.bytes)
            out.endLine()
            count += 1
            if count % 65536 == 0 { progress.update(count) }
            return !out.interrupted
        }
        progress.finish(count)
    }
}

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read JSON lines or TSV from stdin and store every key and value.",
        discussion: """
            All or nothing. The whole input is parsed first: a malformed line is reported (with
            its number) before anything is written. The entries are sorted (a key given twice
            keeps its last value) and ingested: written as new tables that one manifest edit
            adds, so either every entry is visible or, after any failure (a full disk: exit
            77), none is. Each imported value replaces what its key held. Memory stays
            bounded: input beyond --sort-buffer is sorted in runs written to a temporary
            directory (.kvctl-import-PID, inside the database directory when it holds a
            database, else beside it) and merged, 64 runs at a time, as it is ingested, as
            sort(1) does. The directory goes when the import ends, also on Ctrl-C once the
            input is read (exit 130); one left by a killed import is removed by the next.
            """)
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var encoding: ByteEncoding
    @Option(help: "jsonl or tsv.") var format: LineFormat = .jsonl
    @Option(name: .customLong("sort-buffer"), help: "MiB of entries sorted in memory before a run is written to disk.")
    var sortBufferMiB: Int = 64
    @Option(help: "How the new tables' data blocks are compressed: none, lz4, zstd (level 3).")
    var compression: CompressionName = .lz4
    @Option(name: .customLong("merge-width"), help: ArgumentHelp("Sorted runs merged at once (the tests lower it to merge in several passes).", visibility: .hidden))
    var mergeWidth: Int = SortedRuns.fanIn

    func validate() throws {
        guard sortBufferMiB >= 1 else { throw ValidationError("--sort-buffer must be at least 1 (MiB), not \(sortBufferMiB)") }
        guard mergeWidth >= 2 else { throw ValidationError("--merge-width must be at least 2, not \(mergeWidth)") }
    }

    func run() throws {
        var chunk: [(key: [UInt8], value: [UInt8])] = []
        var chunkBytes = 0
        var runs: SortedRuns? = nil
        defer { runs?.remove() }
        var number = 0
        var lines = LineReader(FileHandle.standardInput)
        while let line = try lines.next() {
            number += 1
            if line.isEmpty { continue }
            let entry = try parse(line, number: number)
            // What an entry costs in memory: its bytes, two array headers and the tuple.
            chunkBytes += entry.key.count + entry.value.count + 96
            chunk.append(entry)
            if chunkBytes >= sortBufferMiB << 20 {
                if runs == nil { runs = try SortedRuns(beside: database.path) }
                try runs!.write(Self.sortedUnique(chunk))
                chunk.removeAll(keepingCapacity: true)
                chunkBytes = 0
            }
        }
        // From here on Ctrl-C stops the import cleanly (exit 130, its runs and tables
        // removed); while the input is read it ends kvctl at once, as it would `sort`
        // (a read of the terminal is not interrupted by a caught signal), and the next
        // import removes the runs left behind.
        Interrupt.install()
        if runs != nil {
            if !chunk.isEmpty { try runs!.write(Self.sortedUnique(chunk)) }
            chunk = []
            try runs!.reduce(to: mergeWidth)
        }
        let db = try database.open(create: true, compression: compression.compression)
        defer { try? db.close() }
        var next: () throws -> (key: [UInt8], value: [UInt8])?
        if let spilled = runs {
            var merge = try spilled.merge()
            next = { try merge.next() }
        } else {
            var entries = Self.sortedUnique(chunk).makeIterator()
            chunk = []
            next = { entries.next() }
        }
        var ingested = 0
        let report = try db.ingest(sortedFrom: {
            ingested += 1
            if ingested % 65536 == 0 { try Interrupt.check() }
            return try next()
        })
        try db.close()
        print("imported \(report.entries) entries (\(report.tables) tables, \(report.bytes) bytes)")
    }

    private func parse(_ line: ArraySlice<UInt8>, number: Int) throws -> (key: [UInt8], value: [UInt8]) {
        let entry: (key: [UInt8], value: [UInt8])
        switch format {
        case .tsv:
            guard let tab = line.firstIndex(of: 0x09), !line[(tab + 1)...].contains(0x09) else {
                throw ValidationError("line \(number): expected KEY<TAB>VALUE, one tab (a tab inside a key or value is written \\t)")
            }
            entry = (try encoding.decode(bytes: Array(line[..<tab]), "line \(number) key"),
                     try encoding.decode(bytes: Array(line[(tab + 1)...]), "line \(number) value"))
        case .jsonl:
            entry = try encoding.parseJSONLine(Array(line), number: number)
        }
        if entry.key.isEmpty { throw ValidationError("line \(number): empty key") }
        if entry.key.count > Limits.maxKeyBytes {
            throw ValidationError("line \(number): key of \(entry.key.count) bytes exceeds the limit of \(Limits.maxKeyBytes)")
        }
        if entry.value.count > Limits.maxValueBytes {
            throw ValidationError("line \(number): value of \(entry.value.count) bytes exceeds the limit of \(Limits.maxValueBytes)")
        }
        return entry
    }

    /// Sorted by key, the last of equal keys kept (the sort is stable).
    static func sortedUnique(_ entries: [(key: [UInt8], value: [UInt8])]) -> [(key: [UInt8], value: [UInt8])] {
        let sorted = entries.enumerated().sorted { a, b in
            a.element.key == b.element.key ? a.offset < b.offset : a.element.key.lexicographicallyPrecedes(b.element.key)
        }
        var unique: [(key: [UInt8], value: [UInt8])] = []
        unique.reserveCapacity(sorted.count)
        for (_, entry) in sorted {
            if let last = unique.last, last.key == entry.key {
                unique[unique.count - 1].value = entry.value
            } else {
                unique.append(entry)
            }
        }
        return unique
    }
}

/// Sorted runs of an import too large to sort in memory, each a file of entries
/// (`varint key length, key, varint value length, value`) in a temporary directory, and
/// their merge.
struct SortedRuns {
    let directory: String
    private(set) var files: [String] = []
    private var nextNumber = 0

    /// Runs merged at once: each holds a file descriptor and a 256 KiB buffer.
    static let fanIn = 64
    static let prefix = ".kvctl-import-"

    /// A temporary directory inside `databasePath` when it holds a database, else beside
    /// it (an empty directory must stay empty for the database to be made in it).
    /// Directories left by imports that were killed (their process gone) are removed.
    init(beside databasePath: String) throws {
        let isDatabase = FileManager.default.fileExists(atPath: databasePath + "/KVENGINE")
        var parent = databasePath
        if !isDatabase {
            var trimmed = databasePath
            while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
            if let slash = trimmed.lastIndex(of: "/") {
                parent = slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
            } else {
                parent = "."
            }
        }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [] where name.hasPrefix(Self.prefix) {
            if let pid = Int32(name.dropFirst(Self.prefix.count)), pid != getpid(), kill(pid, 0) != 0, errno == ESRCH {
                try? FileManager.default.removeItem(atPath: parent + "/" + name)
            }
        }
        directory = parent + "/" + Self.prefix + "\(getpid())"
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        } catch {
            throw CommandFailure.io("cannot make the temporary directory \(directory) for the import's sorted runs: \(error.localizedDescription)")
        }
    }

    /// Writes one run (sorted, keys unique).
    mutating func write(_ entries: [(key: [UInt8], value: [UInt8])]) throws {
        var writer = try RunWriter(directory + "/run-\(nextNumber)")
        nextNumber += 1
        for (key, value) in entries { try writer.append(key, value) }
        try writer.finish()
        files.append(writer.path)
    }

    /// Merges the oldest runs into one until at most `limit` are left (a later run still
    /// wins over an earlier one: the merged run takes the place of its inputs).
    mutating func reduce(to limit: Int) throws {
        while files.count > limit {
            let group = Array(files.prefix(limit))
            var merge = try Merge(group)
            var writer = try RunWriter(directory + "/run-\(nextNumber)")
            nextNumber += 1
            while let (key, value) = try merge.next() { try writer.append(key, value) }
            try writer.finish()
            for file in group { try? FileManager.default.removeItem(atPath: file) }
            files = [writer.path] + files.dropFirst(limit)
        }
    }

    /// The runs merged in key order; of equal keys, the one from the latest run (the
    /// later input) is kept.
    func merge() throws -> Merge { try Merge(files) }

    /// Removes the directory and its runs.
    func remove() { try? FileManager.default.removeItem(atPath: directory) }

    /// One run being written, through a 1 MiB buffer.
    struct RunWriter {
        let path: String
        private let handle: FileHandle
        private var buffer: [UInt8] = []
        private var written: UInt64 = 0

        init(_ path: String) throws {
            guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
                throw CommandFailure.io("cannot create \(path) for the import's sorted runs")
            }
            self.path = path
            self.handle = handle
            buffer.reserveCapacity(1 << 20 + 4096)
        }

        mutating func append(_ key: [UInt8], _ value: [UInt8]) throws {
            length(key.count)
            buffer += key
            length(value.count)
            buffer += value
            if buffer.count >= 1 << 20 { try flush() }
        }

        private mutating func length(_ count: Int) {
            var rest = UInt64(count)
            while rest >= 0x80 {
                buffer.append(UInt8(truncatingIfNeeded: rest) | 0x80)
                rest >>= 7
            }
            buffer.append(UInt8(rest))
        }

        private mutating func flush() throws {
            do { try handle.write(contentsOf: buffer) } catch {
                throw CommandFailure.io("cannot write \(path) at offset \(written) (a sorted run of the import): \(error.localizedDescription)", error)
            }
            written += UInt64(buffer.count)
            buffer.removeAll(keepingCapacity: true)
        }

        mutating func finish() throws {
            try flush()
            do { try handle.close() } catch {
                throw CommandFailure.io("cannot close \(path) (a sorted run of the import): \(error.localizedDescription)", error)
            }
        }
    }

    struct Merge {
        private var readers: [RunReader]
        /// Indices of readers with an entry, as a binary min-heap on (key, newer run first).
        private var heap: [Int] = []

        init(_ files: [String]) throws {
            readers = try files.map { try RunReader($0) }
            for index in readers.indices where readers[index].current != nil { push(index) }
        }

        mutating func next() throws -> (key: [UInt8], value: [UInt8])? {
            guard let top = heap.first else { return nil }
            let entry = readers[top].current!
            // Older runs' entries for the same key are dropped.
            while let first = heap.first, readers[first].current!.key == entry.key {
                pop()
                try readers[first].advance()
                if readers[first].current != nil { push(first) }
            }
            return entry
        }

        private func less(_ a: Int, _ b: Int) -> Bool {
            let x = readers[a].current!.key, y = readers[b].current!.key
            return x == y ? a > b : x.lexicographicallyPrecedes(y)
        }

        private mutating func push(_ index: Int) {
            heap.append(index)
            var child = heap.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard less(heap[child], heap[parent]) else { break }
                heap.swapAt(child, parent)
                child = parent
            }
        }

        private mutating func pop() {
            heap.swapAt(0, heap.count - 1)
            heap.removeLast()
            var parent = 0
            while true {
                let left = 2 * parent + 1, right = left + 1
                var smallest = parent
                if left < heap.count && less(heap[left], heap[smallest]) { smallest = left }
                if right < heap.count && less(heap[right], heap[smallest]) { smallest = right }
                if smallest == parent { break }
                heap.swapAt(parent, smallest)
                parent = smallest
            }
        }
    }

    /// One run read in 256 KiB chunks.
    struct RunReader {
        private let path: String
        private let handle: FileHandle
        private var buffer: [UInt8] = []
        private var position = 0
        private var consumed: UInt64 = 0
        private var atEnd = false
        private(set) var current: (key: [UInt8], value: [UInt8])? = nil

        init(_ path: String) throws {
            guard let handle = FileHandle(forReadingAtPath: path) else { throw CommandFailure.io("cannot open \(path), a sorted run of the import") }
            self.path = path
            self.handle = handle
            try advance()
        }

        /// The next entry into `current` (nil at the end of the run).
        mutating func advance() throws {
            guard let keyLength = try length(atStart: true) else {
                current = nil
                try? handle.close()
                return
            }
            let key = try bytes(keyLength)
            let value = try bytes(try length(atStart: false)!)
            current = (key, value)
        }

        private var offset: UInt64 { consumed + UInt64(position) }

        private func truncated() -> CommandFailure {
            CommandFailure.io("\(path) ends inside an entry (offset \(offset)): the sorted run was cut short or changed while the import ran")
        }

        /// A varint length; nil only at the clean end of the run (`atStart`).
        private mutating func length(atStart: Bool) throws -> Int? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            var first = true
            while true {
                guard try fill(1) else {
                    if first && atStart { return nil }
                    throw truncated()
                }
                first = false
                let byte = buffer[position]
                position += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { return Int(value) }
                shift += 7
                guard shift < 64 else { throw CommandFailure.io("\(path): a malformed length at offset \(offset)") }
            }
        }

        private mutating func bytes(_ count: Int) throws -> [UInt8] {
            guard try fill(count) else { throw truncated() }
            defer { position += count }
            return Array(buffer[position..<(position + count)])
        }

        /// Whether `count` bytes are buffered after `position` (reading more as needed).
        private mutating func fill(_ count: Int) throws -> Bool {
            while buffer.count - position < count {
                if atEnd { return false }
                consumed += UInt64(position)
                buffer.removeSubrange(0..<position)
                position = 0
                let chunk: Data
                do { chunk = try handle.read(upToCount: max(256 << 10, count)) ?? Data() } catch {
                    throw CommandFailure.io("cannot read \(path) at offset \(offset), a sorted run of the import: \(error.localizedDescription)", error)
                }
                if chunk.isEmpty { atEnd = true } else { buffer += chunk }
            }
            return true
        }
    }
}

/// A failure with its own message and exit code (kvctl's exit codes, `kvctl --help`).
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    let code: Int32

    /// An I/O failure: exit 77 when the disk or quota is full, else 74.
    static func io(_ message: String, _ underlying: (any Error)? = nil) -> CommandFailure {
        let posix = (underlying as NSError?).flatMap { error -> Int? in
            if error.domain == NSPOSIXErrorDomain { return error.code }
            return (error.userInfo[NSUnderlyingErrorKey] as? NSError).flatMap { $0.domain == NSPOSIXErrorDomain ? $0.code : nil }
        }
        let full = posix == Int(ENOSPC) || posix == Int(EDQUOT) || message.contains("No space left")
        return CommandFailure(description: message, code: full ? 77 : 74)
    }
}

/// Lines of a file read in 1 MiB chunks (a line's bytes without its newline; a carriage
/// return before the newline is kept, as it is data).
struct LineReader {
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var start = 0
    private var atEnd = false

    init(_ handle: FileHandle) { self.handle = handle }

    mutating func next() throws -> ArraySlice<UInt8>? {
        while true {
            if let newline = buffer[start...].firstIndex(of: 0x0A) {
                let line = buffer[start..<newline]
                start = newline + 1
                return line
            }
            if atEnd {
                guard start < buffer.count else { return nil }
                let line = buffer[start...]
                start = buffer.count
                return line
            }
            buffer.removeSubrange(0..<start)
            start = 0
            let chunk = try handle.read(upToCount: 1 << 20) ?? Data()
            if chunk.isEmpty { atEnd = true } else { buffer += chunk }
        }
    }
}
