#if canImport(Glibc)
import Glibc
#endif

/// The kind of an entry, in batches, memtables and tables.
enum EntryType: UInt8 {
    case delete = 0
    case put = 1
    /// A range delete, in write batches and logs only (key: the range's start, value: its
    /// end); memtables and versions keep range deletes apart from entries.
    case rangeDelete = 2
}

/// An entry's sequence number and kind in one word, `sequence << 8 | kind`: the order of
/// versions of one key (a larger tag is newer) and, in an internal key, the eight bytes
/// after the user key (docs/FORMAT.md). Every packing and unpacking goes through here.
enum Tag {
    static func make(_ sequence: UInt64, _ type: EntryType) -> UInt64 { sequence << 8 | UInt64(type.rawValue) }

    static func sequence(_ tag: UInt64) -> UInt64 { tag >> 8 }

    /// The entry's kind; nil for a kind this version does not know.
    static func type(_ tag: UInt64) -> EntryType? { EntryType(rawValue: UInt8(truncatingIfNeeded: tag)) }

    static func isPut(_ tag: UInt64) -> Bool { UInt8(truncatingIfNeeded: tag) == EntryType.put.rawValue }

    static func isDelete(_ tag: UInt64) -> Bool { UInt8(truncatingIfNeeded: tag) == EntryType.delete.rawValue }

    /// The tag a lookup at `snapshot` seeks to: it sorts before every version of the key
    /// at or below `snapshot` and after every newer one.
    static func seeking(_ snapshot: UInt64) -> UInt64 { snapshot << 8 | 0xFF }
}

/// Internal keys, as tables store them: the user key followed by its tag (fixed64). They
/// sort by user key ascending, then tag descending (newest first).
enum InternalKey {
    static let tagBytes = 8

    static func append(_ userKey: UnsafeRawBufferPointer, tag: UInt64, to buffer: inout [UInt8]) {
        buffer.append(contentsOf: userKey)
        Coding.putFixed64(tag, into: &buffer)
    }

    static func encode(_ userKey: UnsafeRawBufferPointer, tag: UInt64) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(userKey.count + tagBytes)
        append(userKey, tag: tag, to: &bytes)
        return bytes
    }

    static func userKey(_ key: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: key[0..<(key.count - tagBytes)])
    }

    static func tag(_ key: UnsafeRawBufferPointer) -> UInt64 {
        Coding.fixed64(key, at: key.count - tagBytes)
    }

    /// Order of internal key `a` against (userKey, tag).
    static func compare(_ a: UnsafeRawBufferPointer, _ userKey: UnsafeRawBufferPointer, _ tag: UInt64) -> Int {
        let byKey = SkipList.compareKeys(self.userKey(a), userKey)
        if byKey != 0 { return byKey }
        let aTag = self.tag(a)
        return aTag > tag ? -1 : (aTag < tag ? 1 : 0)
    }

    static func compare(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Int {
        compare(a, userKey(b), tag(b))
    }
}
