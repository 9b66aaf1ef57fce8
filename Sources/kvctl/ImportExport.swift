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
            its number) before anything is written. The entries are then sorted (a key given
            twice keeps its last value) and ingested: written as new tables that one manifest
            edit adds, so either every entry is visible or, after any failure (a full disk:
            exit 77), none is. Each imported value replaces what its key held.
            """)
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var encoding: ByteEncoding
    @Option(help: "jsonl or tsv.") var format: LineFormat = .jsonl

    func run() throws {
        var entries: [([UInt8], [UInt8])] = []
        var number = 0
        var lines = LineReader(FileHandle.standardInput)
        while let line = try lines.next() {
            number += 1
            if line.isEmpty { continue }
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
            entries.append(entry)
        }
        // Sorted by key, the last of equal keys kept (the sort is stable).
        let sorted = entries.enumerated().sorted { a, b in
            a.element.0 == b.element.0 ? a.offset < b.offset : a.element.0.lexicographicallyPrecedes(b.element.0)
        }.map(\.element)
        var unique: [(key: [UInt8], value: [UInt8])] = []
        unique.reserveCapacity(sorted.count)
        for (key, value) in sorted {
            if let last = unique.last, last.key == key {
                unique[unique.count - 1].value = value
            } else {
                unique.append((key, value))
            }
        }
        let db = try database.open(create: true)
        let report = try db.ingest(sorted: unique)
        try db.close()
        print("imported \(report.entries) entries (\(report.tables) tables, \(report.bytes) bytes)")
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
