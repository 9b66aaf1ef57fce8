/// A transaction of a metamorphic run: reads, a scan, writes, and a write "meanwhile" by
/// someone else between the first attempt's reads and its commit. Text form (segments
/// split by `;`):
///
///     txn sync read x61,x62 ; scan start=- end=- prefix=x6b forward limit=3 ; put x61 v3/10 ; del x62 ; meanwhile put x63 v4/5
///
/// The runner checks every read against the model, and that the transaction took two
/// attempts exactly when the meanwhile write hit what it read, wrote or scanned (and it
/// wrote something: a transaction that only reads commits without a check), one otherwise.
struct MetaTransaction: Equatable, CustomStringConvertible {
    var sync: Bool
    var reads: [[UInt8]]
    var scan: MetaScan?
    var writes: [MetaBatchEntry]
    var meanwhile: MetaBatchEntry?

    var description: String {
        var segments = ["read " + (reads.isEmpty ? "-" : reads.map(MetaText.key).joined(separator: ","))]
        if let scan { segments.append("scan \(scan)") }
        segments += writes.map(\.description)
        if let meanwhile { segments.append("meanwhile \(meanwhile)") }
        return "txn \(MetaText.durability(sync)) " + segments.joined(separator: " ; ")
    }

    /// Parses the words after `txn`.
    init(parsing words: [String], _ line: String) throws {
        func fail(_ reason: String) -> MetaText.ParseError { MetaText.ParseError(line: line, reason: reason) }
        guard let first = words.first else { throw fail("txn sync|buffered read KEYS ; ...") }
        sync = try MetaText.parseDurability(first, line)
        reads = []
        writes = []
        for segment in words.dropFirst().split(separator: ";").map(Array.init) {
            switch segment.first {
            case "read":
                guard segment.count == 2 else { throw fail("read KEY,KEY,... or read -") }
                reads = segment[1] == "-" ? [] : try segment[1].split(separator: ",").map { try MetaText.parseKey(String($0), line) }
            case "scan": scan = try MetaScan(parsing: Array(segment.dropFirst()), line)
            case "meanwhile": meanwhile = try MetaBatchEntry(parsing: Array(segment.dropFirst()), line)
            default: writes.append(try MetaBatchEntry(parsing: segment, line))
            }
        }
    }

    init(sync: Bool, reads: [[UInt8]], scan: MetaScan?, writes: [MetaBatchEntry], meanwhile: MetaBatchEntry?) {
        self.sync = sync
        self.reads = reads
        self.scan = scan
        self.writes = writes
        self.meanwhile = meanwhile
    }

    /// Whether the meanwhile write conflicts with the first attempt, which saw `scanned`
    /// (the model's answer to the scan at its snapshot).
    func meanwhileConflicts(scanned: [(key: [UInt8], value: [UInt8])]) -> Bool {
        guard let key = meanwhile?.key, !writes.isEmpty else { return false }
        if reads.contains(key) || writes.contains(where: { $0.touches(key) }) { return true }
        guard let scan, scan.admits(key) else { return false }
        // A scan stopped by its limit covers only up to its last entry.
        guard let limit = scan.limit, scanned.count >= limit, let last = scanned.last?.key else { return true }
        return scan.reverse ? !key.lexicographicallyPrecedes(last) : !last.lexicographicallyPrecedes(key)
    }
}

/// Hands a value to a task when the caller knows only one thread uses it at a time (the
/// runner waits for the task it starts).
final class UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
