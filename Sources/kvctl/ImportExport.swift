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

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write every key and value to stdout, in key order, as JSON lines or TSV.",
        discussion: "Keys and values in the chosen encoding (text with \\\\xNN escapes, --hex or --base64); `import` with the same flags reads it back exactly.")
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var encoding: ByteEncoding
    @Option(help: "jsonl or tsv.") var format: LineFormat = .jsonl

    func run() throws {
        var lineEncoding = encoding
        lineEncoding.json = format == .jsonl
        let db = try database.openReadOnly()
        defer { try? db.close() }
        var out = Data()
        var progress = Progress("exported")
        var count = 0
        try db.forEach { key, value in
            out.append(contentsOf: (lineEncoding.line(key: Array(key), value: Array(value)) + "\n").utf8)
            count += 1
            if out.count >= 1 << 20 {
                FileHandle.standardOutput.write(out)
                out.removeAll(keepingCapacity: true)
                progress.update(count)
            }
            return true
        }
        FileHandle.standardOutput.write(out)
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
        while let line = readLine(strippingNewline: true) {
            number += 1
            if line.isEmpty { continue }
            let (key, value): (String, String)
            switch format {
            case .tsv:
                let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
                guard fields.count == 2 else { throw ValidationError("line \(number): expected KEY<TAB>VALUE") }
                (key, value) = (String(fields[0]), String(fields[1]))
            case .jsonl:
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                    let k = object["key"] as? String, let v = object["value"] as? String
                else { throw ValidationError("line \(number): expected {\"key\": \"...\", \"value\": \"...\"}") }
                (key, value) = (k, v)
            }
            let entry = (try encoding.decode(key, "line \(number) key"), try encoding.decode(value, "line \(number) value"))
            if entry.0.isEmpty { throw ValidationError("line \(number): empty key") }
            if entry.0.count > Limits.maxKeyBytes {
                throw ValidationError("line \(number): key of \(entry.0.count) bytes exceeds the limit of \(Limits.maxKeyBytes)")
            }
            if entry.1.count > Limits.maxValueBytes {
                throw ValidationError("line \(number): value of \(entry.1.count) bytes exceeds the limit of \(Limits.maxValueBytes)")
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
