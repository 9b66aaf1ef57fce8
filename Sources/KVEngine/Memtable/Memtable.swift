import Atomics

/// The in-memory, ordered write buffer: every write lands here after it is in the log.
///
/// One writer at a time (the log writer's lock serializes them); any number of readers,
/// lock-free. Every entry carries its sequence number; a delete is a tombstone entry.
final class Memtable: Sendable {
    private let list = SkipList()
    /// The keys' bloom filter (nil: none; every lookup walks the list).
    private let filter: MemtableFilter?

    /// A memtable whose point lookups consult a bloom filter of about `filterBytes`
    /// first (0: none; `MemtableFilter.bytes(forMemtable:)` sizes one for a budget).
    init(filterBytes: Int = 0) {
        filter = filterBytes > 0 ? MemtableFilter(bytes: filterBytes) : nil
    }
    private let bytes = ManagedAtomic<Int>(0)
    private let entryCount = ManagedAtomic<Int>(0)
    /// The newest sequence number added (what a scan's skip past a range delete compares).
    private let newest = ManagedAtomic<UInt64>(0)
    /// Range deletes, apart from the entries: the list, and its fragments, cut by the
    /// first read after a range delete is added (not by the writer, under the log's lock).
    private let rangeDeleteCount = ManagedAtomic<Int>(0)
    private let rangeDeleteState = PlainLock<(list: [RangeTombstone], fragments: RangeTombstones?)>(([], .empty))

    /// What a lookup found.
    enum Lookup: Equatable {
        case value([UInt8])
        case deleted
        case missing
    }

    /// A lookup's answer where it lies: the value's bytes in the memtable's arena or in a
    /// cached block, valid only while their owner (the memtable, the block) lives.
    enum Borrowed {
        case value(UnsafeRawBufferPointer)
        case deleted
        case missing

        var copied: Lookup {
            switch self {
            case .value(let bytes): return .value(Array(bytes))
            case .deleted: return .deleted
            case .missing: return .missing
            }
        }
    }

    /// Adds one entry. The caller serializes writers.
    func add(sequence: UInt64, type: EntryType, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        if type == .rangeDelete {
            rangeDeleteState.withLock { state in
                state.list.append(RangeTombstone(start: Array(key), end: Array(value), sequence: sequence))
                state.fragments = nil  // cut again by the next read that needs them
            }
            rangeDeleteCount.wrappingIncrement(ordering: .releasing)
        } else {
            filter?.add(hash: BloomFilter.hash(key))
            list.insert(tag: Tag.make(sequence, type), key: key, value: value)
        }
        newest.store(max(newest.load(ordering: .relaxed), sequence), ordering: .relaxed)
        bytes.wrappingIncrement(by: key.count + value.count + 48, ordering: .relaxed)
        entryCount.wrappingIncrement(ordering: .relaxed)
    }

    /// The range deletes added, fragmented (empty at once when there are none).
    var rangeDeletes: RangeTombstones {
        guard rangeDeleteCount.load(ordering: .acquiring) > 0 else { return .empty }
        return rangeDeleteState.withLock { state in
            if let fragments = state.fragments { return fragments }
            let fragments = RangeTombstones(state.list)
            state.fragments = fragments
            return fragments
        }
    }

    /// The range deletes added, as written.
    var rangeDeleteList: [RangeTombstone] {
        guard rangeDeleteCount.load(ordering: .acquiring) > 0 else { return [] }
        return rangeDeleteState.withLock { $0.list }
    }

    /// Whether a range delete was added.
    var hasRangeDeletes: Bool { rangeDeleteCount.load(ordering: .acquiring) > 0 }

    /// The newest sequence number added (0: none).
    var newestSequence: UInt64 { newest.load(ordering: .relaxed) }

    /// Entries in the skip list (range deletes not counted).
    var pointCount: Int { count - rangeDeleteCount.load(ordering: .acquiring) }

    /// Applies every entry of an encoded write batch. The caller serializes writers.
    @discardableResult
    func apply(batch record: UnsafeRawBufferPointer) -> Bool {
        WriteBatch.forEachEntry(in: record) { sequence, type, key, value in
            add(sequence: sequence, type: type, key: key, value: value)
        }
    }

    /// The newest version of `key` with a sequence number at most `snapshot`.
    func get(_ key: UnsafeRawBufferPointer, hash: UInt64? = nil, snapshot: UInt64, floor: UInt64 = 0) -> Lookup {
        find(key, hash: hash, snapshot: snapshot, floor: floor).copied
    }

    /// As `get`, the value left in the arena (valid while this memtable lives). A version
    /// older than `floor` (the newest range delete covering the key that the snapshot
    /// sees) reads as deleted. `hash`: the key's `BloomFilter.hash` when the caller has it.
    func find(_ key: UnsafeRawBufferPointer, hash: UInt64? = nil, snapshot: UInt64, floor: UInt64 = 0) -> Borrowed {
        if let filter, !filter.mayContain(hash: hash ?? BloomFilter.hash(key)) { return .missing }
        guard let node = list.seek(key, tag: Tag.seeking(snapshot)),
            SkipList.compareKeys(SkipList.key(node), key) == 0
        else { return .missing }
        let tag = SkipList.tag(node)
        if Tag.isDelete(tag) || Tag.sequence(tag) < floor { return .deleted }
        return .value(SkipList.value(node))
    }

    /// Approximate memory held: entry bytes plus per-node overhead.
    var approximateBytes: Int { bytes.load(ordering: .relaxed) }

    /// Entries added (versions, tombstones included).
    var count: Int { entryCount.load(ordering: .relaxed) }

    /// An iterator over every entry, all versions, in internal order.
    func makeIterator() -> MemtableIterator { MemtableIterator(memtable: self, list: list) }
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
    var newestSequence: UInt64 { memtable.newestSequence }
    var key: UnsafeRawBufferPointer { SkipList.key(node!) }
    var tag: UInt64 { SkipList.tag(node!) }
    var value: UnsafeRawBufferPointer { SkipList.value(node!) }
    func seekToFirst() { node = list.first }
    func seekToLast() { node = list.last }
    func seek(_ key: UnsafeRawBufferPointer, tag: UInt64) { node = list.seek(key, tag: tag) }
    func next() { node = SkipList.next(node!, 0) }
    func prev() { node = list.seekBefore(SkipList.key(node!), tag: SkipList.tag(node!)) }
}
