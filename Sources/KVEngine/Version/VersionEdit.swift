/// One change to the set of live files, as recorded in the manifest (docs/FORMAT.md,
/// "Manifest"). A manifest's first record is a whole version written as an edit.
struct VersionEdit: Equatable {
    /// Logs numbered below this are in tables and no longer needed.
    var logNumber: UInt64?
    /// The next file number to hand out (logs, tables and manifests share the counter).
    var nextFileNumber: UInt64?
    /// Last sequence number in tables.
    var lastSequence: UInt64?
    var deleted: [DeletedFile] = []
    var added: [AddedFile] = []
    /// Logs created, whole and durable, before any write in them was acknowledged. A log
    /// recorded here is live until the log number passes it: recovery then requires it to
    /// be there and readable (format version 3).
    var createdLogs: [UInt64] = []
    /// Range deletes that joined the version (a flush of a memtable holding them), and
    /// those it dropped (a compaction after which no table holds what they cover).
    /// Format version 6.
    var addedRangeDeletes: [RangeTombstone] = []
    var droppedRangeDeletes: [RangeTombstone] = []

    struct DeletedFile: Equatable {
        var level: Int
        var number: UInt64
    }

    struct AddedFile: Equatable {
        var level: Int
        var meta: TableMeta
    }

    private enum Field: UInt64 {
        case logNumber = 1
        case nextFileNumber = 2
        case lastSequence = 3
        case deletedFile = 4
        case addedFile = 5
        case createdLog = 6
        case addedRangeDelete = 7
        case droppedRangeDelete = 8
    }

    func encode() -> [UInt8] {
        var bytes: [UInt8] = []
        func field(_ field: Field) { Coding.putVarint(field.rawValue, into: &bytes) }
        if let logNumber {
            field(.logNumber)
            Coding.putVarint(logNumber, into: &bytes)
        }
        if let nextFileNumber {
            field(.nextFileNumber)
            Coding.putVarint(nextFileNumber, into: &bytes)
        }
        if let lastSequence {
            field(.lastSequence)
            Coding.putVarint(lastSequence, into: &bytes)
        }
        for file in deleted {
            field(.deletedFile)
            Coding.putVarint(UInt64(file.level), into: &bytes)
            Coding.putVarint(file.number, into: &bytes)
        }
        for file in added {
            field(.addedFile)
            Coding.putVarint(UInt64(file.level), into: &bytes)
            Coding.putVarint(file.meta.number, into: &bytes)
            Coding.putVarint(UInt64(file.meta.fileBytes), into: &bytes)
            let properties = file.meta.properties.encode()
            Coding.putVarint(UInt64(properties.count), into: &bytes)
            bytes += properties
        }
        for number in createdLogs {
            field(.createdLog)
            Coding.putVarint(number, into: &bytes)
        }
        for (kind, tombstones) in [(Field.addedRangeDelete, addedRangeDeletes), (.droppedRangeDelete, droppedRangeDeletes)] {
            for tombstone in tombstones {
                field(kind)
                Coding.putVarint(UInt64(tombstone.start.count), into: &bytes)
                bytes += tombstone.start
                Coding.putVarint(UInt64(tombstone.end.count), into: &bytes)
                bytes += tombstone.end
                Coding.putVarint(tombstone.sequence, into: &bytes)
            }
        }
        return bytes
    }

    /// Parses an edit; nil when malformed.
    static func decode(_ bytes: UnsafeRawBufferPointer) -> VersionEdit? {
        var edit = VersionEdit()
        var position = 0
        while position < bytes.count {
            guard let raw = Coding.varint(bytes, &position), let field = Field(rawValue: raw) else { return nil }
            switch field {
            case .logNumber:
                guard let value = Coding.varint(bytes, &position) else { return nil }
                edit.logNumber = value
            case .nextFileNumber:
                guard let value = Coding.varint(bytes, &position) else { return nil }
                edit.nextFileNumber = value
            case .lastSequence:
                guard let value = Coding.varint(bytes, &position) else { return nil }
                edit.lastSequence = value
            case .deletedFile:
                guard let level = Coding.varint(bytes, &position), level < UInt64(Version.levelCount),
                    let number = Coding.varint(bytes, &position)
                else { return nil }
                edit.deleted.append(DeletedFile(level: Int(level), number: number))
            case .addedFile:
                guard let level = Coding.varint(bytes, &position), level < UInt64(Version.levelCount),
                    let number = Coding.varint(bytes, &position), let fileBytes = Coding.varint(bytes, &position),
                    fileBytes < 1 << 62, let length = Coding.varint(bytes, &position),
                    length <= UInt64(bytes.count - position),
                    let properties = TableProperties.decode(UnsafeRawBufferPointer(rebasing: bytes[position..<(position + Int(length))]))
                else { return nil }
                position += Int(length)
                edit.added.append(AddedFile(level: Int(level), meta: TableMeta(number: number, fileBytes: Int64(fileBytes), properties: properties)))
            case .createdLog:
                guard let value = Coding.varint(bytes, &position) else { return nil }
                edit.createdLogs.append(value)
            case .addedRangeDelete, .droppedRangeDelete:
                func string() -> [UInt8]? {
                    guard let length = Coding.varint(bytes, &position), length <= UInt64(bytes.count - position) else { return nil }
                    defer { position += Int(length) }
                    return Array(bytes[position..<(position + Int(length))])
                }
                guard let start = string(), let end = string(), let sequence = Coding.varint(bytes, &position),
                    start.lexicographicallyPrecedes(end)
                else { return nil }
                let tombstone = RangeTombstone(start: start, end: end, sequence: sequence)
                if field == .addedRangeDelete { edit.addedRangeDeletes.append(tombstone) } else { edit.droppedRangeDeletes.append(tombstone) }
            }
        }
        return edit
    }

    /// One line for `kvctl dump`.
    var summary: String {
        var parts: [String] = []
        if let logNumber { parts.append("log number \(logNumber)") }
        if let nextFileNumber { parts.append("next file \(nextFileNumber)") }
        if let lastSequence { parts.append("last sequence \(lastSequence)") }
        for number in createdLogs { parts.append("log \(number) created") }
        for tombstone in addedRangeDeletes { parts.append("+range delete #\(tombstone.sequence) [\(KeyText.describe(tombstone.start)), \(KeyText.describe(tombstone.end)))") }
        for tombstone in droppedRangeDeletes { parts.append("-range delete #\(tombstone.sequence) [\(KeyText.describe(tombstone.start)), \(KeyText.describe(tombstone.end)))") }
        for file in deleted { parts.append("-L\(file.level) #\(file.number)") }
        for file in added {
            parts.append("+L\(file.level) #\(file.meta.number) (\(file.meta.fileBytes) bytes, \(file.meta.properties.entries) entries, sequences \(file.meta.properties.smallestSequence)...\(file.meta.properties.largestSequence))")
        }
        return parts.joined(separator: ", ")
    }
}
