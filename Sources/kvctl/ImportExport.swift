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
            directory (inside the database directory, or beside it when it is new) and merged
            as it is ingested, as sort(1) does.
            """)
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var encoding: ByteEncoding
    @Option(help: "jsonl or tsv.") var format: LineFormat = .jsonl
    @Option(name: .customLong("sort-buffer"), help: "MiB of entries sorted in memory before a run is written to disk.")
    var sortBufferMiB: Int = 64

    func validate() throws {
        guard sortBufferMiB >= 1 else { throw ValidationError("--sort-buffer must be at least 1 (MiB), not \(sortBufferMiB)") }
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
        let db = try database.open(create: true)
        let report: IngestReport
        if var spilled = runs {
            if !chunk.isEmpty { try spilled.write(Self.sortedUnique(chunk)) }
            chunk = []
            var merge = try spilled.merge()
            report = try db.ingest(sortedFrom: { try merge.next() })
        } else {
            report = try db.ingest(sorted: Self.sortedUnique(chunk))
        }
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

    /// A temporary directory inside `databasePath` when it exists, else beside it (where
    /// the database will be made).
    init(beside databasePath: String) throws {
        var isDirectory: ObjCBool = false
        let parent = FileManager.default.fileExists(atPath: databasePath, isDirectory: &isDirectory) && isDirectory.boolValue
            ? databasePath : (databasePath as NSString).deletingLastPathComponent
        directory = (parent.isEmpty ? "." : parent) + "/.kvctl-import-\(getpid())"
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        } catch {
            throw ValidationError("cannot make the temporary directory \(directory) for the import's sorted runs: \(error.localizedDescription)")
        }
    }

    /// Writes one run (sorted, keys unique).
    mutating func write(_ entries: [(key: [UInt8], value: [UInt8])]) throws {
        let path = directory + "/run-\(files.count)"
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw ValidationError("cannot create \(path) for the import's sorted runs")
        }
        defer { try? handle.close() }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(1 << 20 + 4096)
        func flush() throws {
            do { try handle.write(contentsOf: buffer) } catch {
                throw ValidationError("cannot write \(path) (offset \((try? handle.offset()) ?? 0)) for the import's sorted runs: \(error.localizedDescription)")
            }
            buffer.removeAll(keepingCapacity: true)
        }
        func length(_ count: Int) {
            var rest = UInt64(count)
            while rest >= 0x80 {
                buffer.append(UInt8(truncatingIfNeeded: rest) | 0x80)
                rest >>= 7
            }
            buffer.append(UInt8(rest))
        }
        for (key, value) in entries {
            length(key.count)
            buffer += key
            length(value.count)
            buffer += value
            if buffer.count >= 1 << 20 { try flush() }
        }
        try flush()
        files.append(path)
    }

    /// The runs merged in key order; of equal keys, the one from the latest run (the
    /// later input) is kept.
    func merge() throws -> Merge { try Merge(files) }

    /// Removes the directory and its runs.
    func remove() { try? FileManager.default.removeItem(atPath: directory) }

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

    /// One run read in 1 MiB chunks.
    struct RunReader {
        private let path: String
        private let handle: FileHandle
        private var buffer: [UInt8] = []
        private var position = 0
        private var consumed: UInt64 = 0
        private var atEnd = false
        private(set) var current: (key: [UInt8], value: [UInt8])? = nil

        init(_ path: String) throws {
            guard let handle = FileHandle(forReadingAtPath: path) else { throw ValidationError("cannot open \(path), a sorted run of the import") }
            self.path = path
            self.handle = handle
            try advance()
        }

        mutating func advance() throws {
            guard let keyLength = try length(), let key = try bytes(keyLength) else {
                current = nil
                return
            }
            guard let valueLength = try length(), let value = try bytes(valueLength) else {
                throw ValidationError("\(path) ends inside an entry (offset \(consumed + UInt64(position))): the run was changed while the import ran")
            }
            current = (key, value)
        }

        private mutating func length() throws -> Int? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard try fill(1) else { return nil }
                let byte = buffer[position]
                position += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { return Int(value) }
                shift += 7
                guard shift < 64 else { throw ValidationError("\(path): bad length at offset \(consumed + UInt64(position))") }
            }
        }

        private mutating func bytes(_ count: Int) throws -> [UInt8]? {
            guard try fill(count) else { return nil }
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
                do { chunk = try handle.read(upToCount: max(1 << 20, count)) ?? Data() } catch {
                    throw ValidationError("cannot read \(path), a sorted run of the import: \(error.localizedDescription)")
                }
                if chunk.isEmpty { atEnd = true } else { buffer += chunk }
            }
            return true
        }
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
