import Foundation

/// One step of a metamorphic run, and its text form.
///
/// A run is a list of these; `MetaRunner` carries each out on a database and checks what
/// came back against `MetaModel`. The text form (one operation a line, keys in hex) is what
/// a failure prints and what a regression case keeps:
///
///     put x6b01 v12/300 sync          put of value #12 (300 bytes) under key 6b 01
///     del x6b01 buffered
///     delrange x61 x6b sync           every key in [61, 6b)
///     batch sync put x61 v3/0 ; del x61 ; put x62 v4/9
///     get x6b01 @s2                   at snapshot s2 (no @: the latest state)
///     getmany x61,x,xff00 @s2         x alone is the empty key
///     snap s2 | release s2
///     open c1 start=x61 end=- prefix=- reverse limit=5 @s2
///     next c1 3 | close c1
///     scan start=- end=xff prefix=x00 forward limit=- @-
///     flush | compact x61 - | sync | reopen | reopen opts=tiny | reopen ro | salvage | crash
///     checkpoint | backup | follow
///     txn sync read x61 ; scan start=- end=- prefix=- forward limit=2 ; put x61 v5/3 ; meanwhile del x61
enum MetaOp: Equatable, CustomStringConvertible {
    case put(key: [UInt8], value: MetaValue, sync: Bool)
    case delete(key: [UInt8], sync: Bool)
    /// `Database.deleteRange` of [start, end) (refused unless start < end and start is a key).
    case deleteRange(start: [UInt8], end: [UInt8], sync: Bool)
    case batch([MetaBatchEntry], sync: Bool)
    case get(key: [UInt8], snapshot: Int?)
    case getMany(keys: [[UInt8]], snapshot: Int?)
    case takeSnapshot(Int)
    case releaseSnapshot(Int)
    case openCursor(id: Int, scan: MetaScan, snapshot: Int?)
    case next(cursor: Int, count: Int)
    case closeCursor(Int)
    /// A whole scan at once, through `Database.forEach`.
    case scan(MetaScan, snapshot: Int?)
    /// `Database.count(snapshot:)` (and `countFromProperties`, when it answers).
    case count(snapshot: Int?)
    /// Freezes the memtable (empty or not) and writes it to a level-0 table.
    case flush
    /// `compactRange(start:end:)`; both nil: the whole database.
    case compact(start: [UInt8]?, end: [UInt8]?)
    case sync
    /// Close and open again, with the named option set (nil: the same options).
    case reopen(options: String?)
    /// Close, open read-only (`Options.readOnly`): the whole state reads back, a write is
    /// refused and no file changes; then close and open as before.
    case reopenReadOnly
    /// Close, `Database.salvage` (of an undamaged database: it must keep every key and
    /// drop nothing), and open again.
    case salvage
    /// A power cut on the simulated disk, then an open of what survived.
    case crash
    /// `Database.ingest(sorted:)` of the puts: all added at once with one new sequence
    /// number, or, when their keys are not strictly ascending, refused with nothing added.
    case ingest([MetaBatchEntry])
    /// A put during which the disk refuses one write (ENOSPC, once: a log's, a table's or
    /// a manifest's, whichever comes first): when the put fails with `.full` it is tried
    /// again after `resumeWrites()`, and writes must go on as if the disk had never filled.
    case noRoom(key: [UInt8], value: MetaValue, sync: Bool)
    /// `Database.transaction` (see `MetaTransaction`).
    case transaction(MetaTransaction)
    /// `Database.checkpoint(to:)` into a new directory, which then opens equal to the
    /// model (and again, read-only, at the end of the run, after any crash between).
    case checkpoint
    /// `Database.backup(to:)` into the run's one backup directory (incremental after the
    /// first), which then opens read-only equal to the model (and again at the end).
    case backup
    /// `sync`, then a follower (a checkpoint of the database, opened, kept across the
    /// operations that follow) applies the change feed since its last sequence: it must
    /// then equal the model. A follower the feed cannot serve (`.notRetained`: its logs
    /// are gone, or an ingest is in between) starts again from a new checkpoint; after a
    /// crash it reopens and catches up from what it recovered.
    case follow

    var description: String {
        switch self {
        case .put(let key, let value, let sync): return "put \(MetaText.key(key)) \(value) \(MetaText.durability(sync))"
        case .delete(let key, let sync): return "del \(MetaText.key(key)) \(MetaText.durability(sync))"
        case .deleteRange(let start, let end, let sync): return "delrange \(MetaText.key(start)) \(MetaText.key(end)) \(MetaText.durability(sync))"
        case .batch(let entries, let sync):
            return "batch \(MetaText.durability(sync)) " + entries.map(\.description).joined(separator: " ; ")
        case .get(let key, let snapshot): return "get \(MetaText.key(key))\(MetaText.at(snapshot))"
        case .getMany(let keys, let snapshot): return "getmany \(keys.map(MetaText.key).joined(separator: ","))\(MetaText.at(snapshot))"
        case .takeSnapshot(let id): return "snap s\(id)"
        case .releaseSnapshot(let id): return "release s\(id)"
        case .openCursor(let id, let scan, let snapshot): return "open c\(id) \(scan)\(MetaText.at(snapshot))"
        case .next(let cursor, let count): return "next c\(cursor) \(count)"
        case .closeCursor(let id): return "close c\(id)"
        case .scan(let scan, let snapshot): return "scan \(scan)\(MetaText.at(snapshot))"
        case .count(let snapshot): return "count\(MetaText.at(snapshot))"
        case .flush: return "flush"
        case .compact(let start, let end): return "compact \(MetaText.bound(start)) \(MetaText.bound(end))"
        case .sync: return "sync"
        case .reopen(let options): return options.map { "reopen opts=\($0)" } ?? "reopen"
        case .reopenReadOnly: return "reopen ro"
        case .salvage: return "salvage"
        case .crash: return "crash"
        case .ingest(let entries): return "ingest " + entries.map(\.description).joined(separator: " ; ")
        case .noRoom(let key, let value, let sync): return "noroom \(MetaText.key(key)) \(value) \(MetaText.durability(sync))"
        case .transaction(let transaction): return transaction.description
        case .checkpoint: return "checkpoint"
        case .backup: return "backup"
        case .follow: return "follow"
        }
    }

    /// Parses one line of the text form (see the type's comment).
    init(parsing line: String) throws {
        var words = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard !words.isEmpty else { throw MetaText.ParseError(line: line, reason: "empty line") }
        let verb = words.removeFirst()
        func fail(_ reason: String) -> MetaText.ParseError { MetaText.ParseError(line: line, reason: reason) }
        func snapshotSuffix() throws -> Int? {
            guard let last = words.last, last.hasPrefix("@") else { return nil }
            words.removeLast()
            if last == "@-" { return nil }
            guard last.hasPrefix("@s"), let id = Int(last.dropFirst(2)) else { throw fail("bad snapshot \(last)") }
            return id
        }
        func id(_ word: String?, _ prefix: Character) throws -> Int {
            guard let word, word.first == prefix, let value = Int(word.dropFirst()) else { throw fail("expected \(prefix)N") }
            return value
        }
        switch verb {
        case "put":
            guard words.count == 3 else { throw fail("put KEY VALUE sync|buffered") }
            self = .put(key: try MetaText.parseKey(words[0], line), value: try MetaValue(parsing: words[1], line),
                        sync: try MetaText.parseDurability(words[2], line))
        case "del":
            guard words.count == 2 else { throw fail("del KEY sync|buffered") }
            self = .delete(key: try MetaText.parseKey(words[0], line), sync: try MetaText.parseDurability(words[1], line))
        case "delrange":
            guard words.count == 3 else { throw fail("delrange START END sync|buffered") }
            self = .deleteRange(start: try MetaText.parseKey(words[0], line), end: try MetaText.parseKey(words[1], line),
                                sync: try MetaText.parseDurability(words[2], line))
        case "batch":
            guard !words.isEmpty else { throw fail("batch sync|buffered ENTRY ; ENTRY ...") }
            let sync = try MetaText.parseDurability(words.removeFirst(), line)
            let entries = try words.split(separator: ";").map { try MetaBatchEntry(parsing: Array($0), line) }
            self = .batch(entries, sync: sync)
        case "get":
            let snapshot = try snapshotSuffix()
            guard words.count == 1 else { throw fail("get KEY [@sN]") }
            self = .get(key: try MetaText.parseKey(words[0], line), snapshot: snapshot)
        case "getmany":
            let snapshot = try snapshotSuffix()
            guard words.count == 1 else { throw fail("getmany KEY,KEY,... [@sN]") }
            let keys = try words[0].split(separator: ",", omittingEmptySubsequences: false).map { try MetaText.parseKey(String($0), line) }
            self = .getMany(keys: keys, snapshot: snapshot)
        case "snap": self = .takeSnapshot(try id(words.first, "s"))
        case "release": self = .releaseSnapshot(try id(words.first, "s"))
        case "open":
            let snapshot = try snapshotSuffix()
            guard !words.isEmpty else { throw fail("open cN SCAN") }
            let cursor = try id(words.removeFirst(), "c")
            self = .openCursor(id: cursor, scan: try MetaScan(parsing: words, line), snapshot: snapshot)
        case "next":
            guard words.count == 2, let count = Int(words[1]) else { throw fail("next cN COUNT") }
            self = .next(cursor: try id(words[0], "c"), count: count)
        case "close": self = .closeCursor(try id(words.first, "c"))
        case "scan":
            let snapshot = try snapshotSuffix()
            self = .scan(try MetaScan(parsing: words, line), snapshot: snapshot)
        case "count":
            let snapshot = try snapshotSuffix()
            guard words.isEmpty else { throw fail("count [@sN]") }
            self = .count(snapshot: snapshot)
        case "flush": self = .flush
        case "compact":
            guard words.count == 2 else { throw fail("compact START|- END|-") }
            self = .compact(start: try MetaText.parseBound(words[0], line), end: try MetaText.parseBound(words[1], line))
        case "sync": self = .sync
        case "reopen":
            if words.first == "ro" {
                self = .reopenReadOnly
            } else if let word = words.first {
                guard word.hasPrefix("opts=") else { throw fail("reopen [opts=NAME|ro]") }
                self = .reopen(options: String(word.dropFirst(5)))
            } else {
                self = .reopen(options: nil)
            }
        case "salvage": self = .salvage
        case "crash": self = .crash
        case "noroom":
            guard words.count == 3 else { throw fail("noroom KEY VALUE sync|buffered") }
            self = .noRoom(key: try MetaText.parseKey(words[0], line), value: try MetaValue(parsing: words[1], line),
                           sync: try MetaText.parseDurability(words[2], line))
        case "ingest":
            let entries = try words.split(separator: ";").map { try MetaBatchEntry(parsing: Array($0), line) }
            guard entries.allSatisfy({ if case .put = $0 { return true } else { return false } }) else {
                throw fail("ingest put KEY VALUE ; put KEY VALUE ...")
            }
            self = .ingest(entries)
        case "txn": self = .transaction(try MetaTransaction(parsing: words, line))
        case "checkpoint": self = .checkpoint
        case "backup": self = .backup
        case "follow": self = .follow
        default: throw fail("unknown operation \(verb)")
        }
    }

    /// Parses a whole sequence: one operation a line; blank lines and `#` comments skipped.
    static func parse(_ text: String) throws -> [MetaOp] {
        try text.split(separator: "\n").compactMap { raw in
            let line = raw.trimmingCharacters(in: .whitespaces)
            return line.isEmpty || line.hasPrefix("#") ? nil : try MetaOp(parsing: line)
        }
    }

    /// The keys the operation names (the runner's final check reads them all).
    var keys: [[UInt8]] {
        switch self {
        case .put(let key, _, _), .delete(let key, _), .get(let key, _): return [key]
        case .deleteRange(let start, let end, _): return [start, end]
        case .batch(let entries, _): return entries.map(\.key)
        case .getMany(let keys, _): return keys
        case .transaction(let transaction):
            return transaction.reads + transaction.writes.map(\.key) + (transaction.meanwhile.map { [$0.key] } ?? [])
        default: return []
        }
    }
}

/// A put or delete inside a batch.
enum MetaBatchEntry: Equatable, CustomStringConvertible {
    case put([UInt8], MetaValue)
    case delete([UInt8])
    /// Every key in [start, end).
    case deleteRange([UInt8], [UInt8])

    /// The key written (a range delete's start).
    var key: [UInt8] {
        switch self {
        case .put(let key, _), .delete(let key), .deleteRange(let key, _): return key
        }
    }

    /// Whether the entry writes `key`.
    func touches(_ key: [UInt8]) -> Bool {
        switch self {
        case .put(let written, _), .delete(let written): return written == key
        case .deleteRange(let start, let end): return !key.lexicographicallyPrecedes(start) && key.lexicographicallyPrecedes(end)
        }
    }

    /// Whether the engine takes it (no empty key; a range delete's start below its end).
    var isValid: Bool {
        switch self {
        case .put(let key, _), .delete(let key): return !key.isEmpty
        case .deleteRange(let start, let end): return !start.isEmpty && start.lexicographicallyPrecedes(end)
        }
    }

    var description: String {
        switch self {
        case .put(let key, let value): return "put \(MetaText.key(key)) \(value)"
        case .delete(let key): return "del \(MetaText.key(key))"
        case .deleteRange(let start, let end): return "delrange \(MetaText.key(start)) \(MetaText.key(end))"
        }
    }

    init(parsing words: [String], _ line: String) throws {
        switch (words.first, words.count) {
        case ("put", 3): self = .put(try MetaText.parseKey(words[1], line), try MetaValue(parsing: words[2], line))
        case ("del", 2): self = .delete(try MetaText.parseKey(words[1], line))
        case ("delrange", 3): self = .deleteRange(try MetaText.parseKey(words[1], line), try MetaText.parseKey(words[2], line))
        default: throw MetaText.ParseError(line: line, reason: "batch entry: put KEY VALUE, del KEY or delrange START END")
        }
    }
}

/// A value named by a stamp and a length: `bytes` derives its content from both, so values
/// of different puts differ and a failure can name the put a value came from.
struct MetaValue: Equatable, CustomStringConvertible {
    var stamp: Int
    var length: Int

    var description: String { "v\(stamp)/\(length)" }

    var bytes: [UInt8] {
        let head = Array("v\(stamp)/".utf8).prefix(length)
        return [UInt8](unsafeUninitializedCapacity: length) { buffer, initialized in
            for (offset, byte) in head.enumerated() { buffer[offset] = byte }
            var state = UInt64(truncatingIfNeeded: stamp) &* 0x9E37_79B9_7F4A_7C15 | 1
            for offset in head.count..<length {
                state ^= state << 13
                state ^= state >> 7
                state ^= state << 17
                buffer[offset] = UInt8(truncatingIfNeeded: state)
            }
            initialized = length
        }
    }

    init(stamp: Int, length: Int) {
        self.stamp = stamp
        self.length = length
    }

    init(parsing word: String, _ line: String) throws {
        let parts = word.dropFirst().split(separator: "/")
        guard word.first == "v", parts.count == 2, let stamp = Int(parts[0]), let length = Int(parts[1]), length >= 0 else {
            throw MetaText.ParseError(line: line, reason: "value: vSTAMP/LENGTH, not \(word)")
        }
        self.init(stamp: stamp, length: length)
    }
}

/// A scan's range, prefix, direction and limit.
struct MetaScan: Equatable, CustomStringConvertible {
    var start: [UInt8]?
    var end: [UInt8]?
    var prefix: [UInt8]?
    var reverse = false
    var limit: Int?

    var description: String {
        "start=\(MetaText.bound(start)) end=\(MetaText.bound(end)) prefix=\(MetaText.bound(prefix)) \(reverse ? "reverse" : "forward") limit=\(limit.map(String.init) ?? "-")"
    }

    init(start: [UInt8]? = nil, end: [UInt8]? = nil, prefix: [UInt8]? = nil, reverse: Bool = false, limit: Int? = nil) {
        self.start = start
        self.end = end
        self.prefix = prefix
        self.reverse = reverse
        self.limit = limit
    }

    init(parsing words: [String], _ line: String) throws {
        for word in words {
            if word == "reverse" { reverse = true; continue }
            if word == "forward" { reverse = false; continue }
            let parts = word.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw MetaText.ParseError(line: line, reason: "scan field \(word)") }
            switch parts[0] {
            case "start": start = try MetaText.parseBound(parts[1], line)
            case "end": end = try MetaText.parseBound(parts[1], line)
            case "prefix": prefix = try MetaText.parseBound(parts[1], line)
            case "limit":
                if parts[1] != "-" {
                    guard let value = Int(parts[1]) else { throw MetaText.ParseError(line: line, reason: "limit \(parts[1])") }
                    limit = value
                }
            default: throw MetaText.ParseError(line: line, reason: "scan field \(parts[0])")
            }
        }
    }

    /// Whether `key` lies in the scan's range and prefix.
    func admits(_ key: [UInt8]) -> Bool {
        if let start, key.lexicographicallyPrecedes(start) { return false }
        if let end, !key.lexicographicallyPrecedes(end) { return false }
        if let prefix, !key.starts(with: prefix) { return false }
        return true
    }
}

/// The pieces of the text form.
enum MetaText {
    struct ParseError: Error, CustomStringConvertible {
        let line: String
        let reason: String
        var description: String { "cannot parse '\(line)': \(reason)" }
    }

    private static let digits = Array("0123456789abcdef")

    /// `x` and the key's bytes in hex (`x` alone: the empty key).
    static func key(_ bytes: [UInt8]) -> String {
        var text = "x"
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0xF)])
        }
        return text
    }

    static func bound(_ bytes: [UInt8]?) -> String { bytes.map(key) ?? "-" }
    static func at(_ snapshot: Int?) -> String { snapshot.map { " @s\($0)" } ?? "" }
    static func durability(_ sync: Bool) -> String { sync ? "sync" : "buffered" }

    static func parseKey(_ word: String, _ line: String) throws -> [UInt8] {
        let hex = Array(word.utf8.dropFirst())
        guard word.first == "x", hex.count % 2 == 0 else { throw ParseError(line: line, reason: "key: x and hex digits, not \(word)") }
        var bytes: [UInt8] = []
        for index in stride(from: 0, to: hex.count, by: 2) {
            guard let high = hexValue(hex[index]), let low = hexValue(hex[index + 1]) else {
                throw ParseError(line: line, reason: "key: x and hex digits, not \(word)")
            }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    static func parseBound(_ word: String, _ line: String) throws -> [UInt8]? {
        word == "-" ? nil : try parseKey(word, line)
    }

    static func parseDurability(_ word: String, _ line: String) throws -> Bool {
        switch word {
        case "sync": return true
        case "buffered": return false
        default: throw ParseError(line: line, reason: "durability: sync or buffered, not \(word)")
        }
    }

    private static func hexValue(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return character - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return character - UInt8(ascii: "a") + 10
        default: return nil
        }
    }
}
