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
        discussion: "The whole input is parsed first: a malformed line is reported (with its number) before anything is written. Entries are then written in batches of up to 1000.")
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
            entries.append((try encoding.decode(key, "line \(number) key"), try encoding.decode(value, "line \(number) value")))
        }
        let db = try database.open(create: true)
        var written = 0
        var progress = Progress("imported")
        while written < entries.count {
            var batch = WriteBatch()
            for (key, value) in entries[written..<min(entries.count, written + 1000)] { batch.put(key, value) }
            try db.write(batch)
            written += batch.count
            progress.update(written)
        }
        progress.finish(written)
        try db.close()
        print("imported \(written) entries")
    }
}
