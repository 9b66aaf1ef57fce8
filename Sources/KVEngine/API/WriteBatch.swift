import Foundation

/// Puts and deletes applied together: after a crash either all of them are present or
/// none is, and readers never see some without the others.
///
/// The batch is kept encoded in its log record form (docs/FORMAT.md, "Write batch"):
///
///     0   8  sequence number of the first entry (filled in at commit)
///     8   4  entry count
///     12  -  entries: type (1 put, 0 delete, 2 range delete), varint key length,
///            key, and for a put or a range delete, varint value length, value (a range
///            delete's key is the range's start, its value the end)
public struct WriteBatch: Sendable {
    /// The encoded batch, header included.
    private(set) var encoded: [UInt8] = Array(repeating: 0, count: WriteBatch.headerBytes)
    /// Entries in the batch.
    public private(set) var count = 0

    static let headerBytes = 12

    /// An empty batch.
    public init() {}

    /// An empty batch with room for one entry of a `keyBytes` key and a `valueBytes`
    /// value (a single-entry write allocates once).
    init(reservingFor keyBytes: Int, _ valueBytes: Int) {
        encoded.reserveCapacity(WriteBatch.headerBytes + 1 + 2 * 10 + keyBytes + valueBytes)
    }

    /// Adds a put of `value` under `key` (each any ``KVBytes``: `[UInt8]`, `Data`,
    /// `String`...); a later entry for the same key wins.
    public mutating func put(_ key: some KVBytes, _ value: some KVBytes) {
        key.withKVBytes { key in value.withKVBytes { value in append(put: key, value) } }
    }

    /// Adds a put of `value` encoded by `encoder` (JSON by default) under `key`; throws
    /// ``KVError/Code/decoding`` when the value cannot be encoded (the batch is unchanged).
    public mutating func put<T: Encodable>(_ key: some KVBytes, encoding value: T, using encoder: some KVValueEncoder = JSONEncoder()) throws(KVError) {
        put(key, try ValueCoding.encode(value, using: encoder))
    }

    /// Adds a delete of `key`.
    public mutating func delete(_ key: some KVBytes) {
        key.withKVBytes { key in
            count += 1
            guard checkSizes(keyBytes: key.count, valueBytes: 0, adding: key.count + 6) else { return }
            encoded.append(EntryType.delete.rawValue)
            Coding.putVarint(UInt64(key.count), into: &encoded)
            encoded.append(contentsOf: key)
        }
    }

    /// Adds a delete of every key in [start, end) (RocksDB's `DeleteRange`): one entry,
    /// whatever the range holds. Later entries of the batch for keys in the range win. A
    /// range whose start is not below its end is refused when the batch is written.
    public mutating func deleteRange(_ start: some KVBytes, _ end: some KVBytes) {
        start.withKVBytes { start in
            end.withKVBytes { end in
                count += 1
                guard checkSizes(keyBytes: start.count, valueBytes: 0, adding: start.count + end.count + 9) else { return }
                guard end.count <= Limits.maxKeyBytes, SkipList.compareKeys(start, end) < 0 else {
                    oversize = "entry \(count - 1): a range delete's start must be below its end (and the end at most \(Limits.maxKeyBytes) bytes)"
                    return
                }
                encoded.append(EntryType.rangeDelete.rawValue)
                Coding.putVarint(UInt64(start.count), into: &encoded)
                encoded.append(contentsOf: start)
                Coding.putVarint(UInt64(end.count), into: &encoded)
                encoded.append(contentsOf: end)
            }
        }
    }

    private mutating func append(put key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) {
        count += 1
        // A batch over a limit is refused when written: its bytes need not be copied.
        guard checkSizes(keyBytes: key.count, valueBytes: value.count, adding: key.count + value.count + 9) else { return }
        encoded.append(EntryType.put.rawValue)
        Coding.putVarint(UInt64(key.count), into: &encoded)
        encoded.append(contentsOf: key)
        Coding.putVarint(UInt64(value.count), into: &encoded)
        encoded.append(contentsOf: value)
    }

    /// One entry of a batch, as ``entries`` lists them.
    public enum Entry: Sendable, Equatable {
        case put(key: [UInt8], value: [UInt8])
        case delete(key: [UInt8])
        /// Every key in [start, end).
        case deleteRange(start: [UInt8], end: [UInt8])
    }

    /// The entries, in order (a change feed's batch is read this way).
    public var entries: [Entry] {
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        _ = encoded.withUnsafeBytes { record in
            WriteBatch.forEachEntry(in: record) { _, type, key, value in
                switch type {
                case .put: entries.append(.put(key: Array(key), value: Array(value)))
                case .delete: entries.append(.delete(key: Array(key)))
                case .rangeDelete: entries.append(.deleteRange(start: Array(key), end: Array(value)))
                }
            }
        }
        return entries
    }

    /// The batch of a log record (one `forEachEntry` accepts).
    init(record: UnsafeRawBufferPointer) {
        encoded = Array(record)
        count = Int(Coding.fixed32(record, at: 8))
    }

    /// Removes every entry.
    public mutating func removeAll() {
        encoded.removeSubrange(WriteBatch.headerBytes...)
        count = 0
        oversize = nil
    }

    /// Bytes of the encoded batch: what it adds to the log.
    public var encodedBytes: Int { encoded.count }

    /// The first entry that broke a size limit, reported when the batch is written.
    private(set) var oversize: String?

    /// Records the first limit the entry being added (the `count`th, of about `bytes`
    /// encoded) breaks; false once the batch breaks one (it is refused whole when written).
    private mutating func checkSizes(keyBytes: Int, valueBytes: Int, adding bytes: Int) -> Bool {
        guard oversize == nil else { return false }
        if keyBytes == 0 {
            oversize = "entry \(count - 1): empty key"
        } else if keyBytes > Limits.maxKeyBytes {
            oversize = "entry \(count - 1): key of \(keyBytes) bytes exceeds the limit of \(Limits.maxKeyBytes)"
        } else if valueBytes > Limits.maxValueBytes {
            oversize = "entry \(count - 1): value of \(valueBytes) bytes exceeds the limit of \(Limits.maxValueBytes)"
        } else if encoded.count + bytes > Limits.maxBatchBytes {
            oversize = "batch of at least \(encoded.count + bytes) bytes exceeds the limit of \(Limits.maxBatchBytes)"
        }
        return oversize == nil
    }

    /// Makes the encoded bytes this batch's own (copying them if another batch shares them).
    mutating func makeUnique() {
        encoded.withUnsafeMutableBytes { _ in }
    }

    /// Sets the sequence number and count in the header.
    mutating func seal(firstSequence: UInt64) {
        encoded.withUnsafeMutableBytes {
            Coding.storeFixed64(firstSequence, $0, at: 0)
            Coding.storeFixed32(UInt32(count), $0, at: 8)
        }
    }

    /// Calls `body` for each entry of an encoded batch, with its sequence number; returns
    /// false when the encoding is damaged (lengths past the end, unknown types, wrong count).
    static func forEachEntry(
        in record: UnsafeRawBufferPointer,
        _ body: (UInt64, EntryType, UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void
    ) -> Bool {
        guard record.count >= headerBytes else { return false }
        let first = Coding.fixed64(record, at: 0)
        let count = Int(Coding.fixed32(record, at: 8))
        var offset = headerBytes
        var seen = 0
        while offset < record.count {
            guard let type = EntryType(rawValue: record[offset]) else { return false }
            offset += 1
            guard let keyLength = Coding.varint(record, &offset), keyLength <= record.count - offset else { return false }
            let key = UnsafeRawBufferPointer(rebasing: record[offset..<(offset + Int(keyLength))])
            offset += Int(keyLength)
            var value = UnsafeRawBufferPointer(start: nil, count: 0)
            if type != .delete {
                guard let valueLength = Coding.varint(record, &offset), valueLength <= record.count - offset else { return false }
                value = UnsafeRawBufferPointer(rebasing: record[offset..<(offset + Int(valueLength))])
                offset += Int(valueLength)
                // A range delete's range is never empty.
                if type == .rangeDelete && SkipList.compareKeys(key, value) >= 0 { return false }
            }
            body(first &+ UInt64(seen), type, key, value)
            seen += 1
        }
        return seen == count
    }
}

/// Size limits on what may be written (docs/FORMAT.md, "Limits").
public enum Limits {
    /// Longest key: 64 KiB - 1.
    public static let maxKeyBytes = 65535
    /// Longest value: 256 MiB. A value streams through the log a few blocks at a time, but
    /// the batch, the memtable and a flush each hold a copy in memory.
    public static let maxValueBytes = 256 << 20
    /// Largest encoded batch: 512 MiB.
    public static let maxBatchBytes = 512 << 20
}
