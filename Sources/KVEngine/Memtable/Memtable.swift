import Atomics

/// The in-memory, ordered write buffer: every write lands here after it is in the log.
///
/// One writer at a time (the log writer's lock serializes them); any number of readers,
/// lock-free. Every entry carries its sequence number; a delete is a tombstone entry.
final class Memtable: Sendable {
    private let list = SkipList()
    private let bytes = ManagedAtomic<Int>(0)
    private let entryCount = ManagedAtomic<Int>(0)

    /// What a lookup found.
    enum Lookup: Equatable {
        case value([UInt8])
        case deleted
        case missing
    }

    /// Adds one entry. The caller serializes writers.
    func add(sequence: UInt64, type: EntryType, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        list.insert(tag: sequence << 8 | UInt64(type.rawValue), key: key, value: value)
        bytes.wrappingIncrement(by: key.count + value.count + 48, ordering: .relaxed)
        entryCount.wrappingIncrement(ordering: .relaxed)
    }

    /// Applies every entry of an encoded write batch. The caller serializes writers.
    @discardableResult
    func apply(batch record: UnsafeRawBufferPointer) -> Bool {
        WriteBatch.forEachEntry(in: record) { sequence, type, key, value in
            add(sequence: sequence, type: type, key: key, value: value)
        }
    }

    /// The newest version of `key` with a sequence number at most `snapshot`.
    func get(_ key: UnsafeRawBufferPointer, snapshot: UInt64) -> Lookup {
        guard let node = list.seek(key, tag: snapshot << 8 | 0xFF),
            SkipList.compareKeys(SkipList.key(node), key) == 0
        else { return .missing }
        if SkipList.tag(node) & 0xFF == UInt64(EntryType.delete.rawValue) { return .deleted }
        return .value(Array(SkipList.value(node)))
    }

    /// Approximate memory held: entry bytes plus per-node overhead.
    var approximateBytes: Int { bytes.load(ordering: .relaxed) }

    /// Entries added (versions, tombstones included).
    var count: Int { entryCount.load(ordering: .relaxed) }

    /// An iterator over every entry, all versions, in internal order.
    func makeIterator() -> MemtableIterator { MemtableIterator(memtable: self, list: list) }
}

/// A position in the internal key order (user key ascending, newest version first).
protocol InternalIterator: AnyObject {
    var isValid: Bool { get }
    /// User key of the current entry.
    var key: UnsafeRawBufferPointer { get }
    /// `sequence << 8 | type` of the current entry.
    var tag: UInt64 { get }
    var value: UnsafeRawBufferPointer { get }
    func seekToFirst()
    func seekToLast()
    /// First entry at or after (key, tag).
    func seek(_ key: UnsafeRawBufferPointer, tag: UInt64)
    func next()
    func prev()
    /// Why the walk ended early (an I/O error or corruption), if it did.
    var error: KVError? { get }
    /// Before `seek(key, tag:)` with the same target, called right before it: the table
    /// block the seek will read that the cache does not hold (nil if none). The source
    /// keeps what it found for the seek, so the two do the lookup work once.
    func prepareSeek(_ key: UnsafeRawBufferPointer, tag: UInt64) -> (table: Table, block: Int)?
    /// The block `prepareSeek` asked for, read by the caller (with other sources' blocks).
    func supplyPrepared(_ block: Block)
}

extension InternalIterator {
    var error: KVError? { nil }
    func prepareSeek(_ key: UnsafeRawBufferPointer, tag: UInt64) -> (table: Table, block: Int)? { nil }
    func supplyPrepared(_ block: Block) {}
}

/// Iterates a memtable; keeps it alive while positioned in it.
final class MemtableIterator: InternalIterator {
    let memtable: Memtable
    let list: SkipList
    private var node: SkipList.Node?

    init(memtable: Memtable, list: SkipList) {
        self.memtable = memtable
        self.list = list
    }

    var isValid: Bool { node != nil }
    var key: UnsafeRawBufferPointer { SkipList.key(node!) }
    var tag: UInt64 { SkipList.tag(node!) }
    var value: UnsafeRawBufferPointer { SkipList.value(node!) }
    func seekToFirst() { node = list.first }
    func seekToLast() { node = list.last }
    func seek(_ key: UnsafeRawBufferPointer, tag: UInt64) { node = list.seek(key, tag: tag) }
    func next() { node = SkipList.next(node!, 0) }
    func prev() { node = list.seekBefore(SkipList.key(node!), tag: SkipList.tag(node!)) }
}
