import CPageStoreSupport
#if canImport(Glibc)
import Glibc
#endif

/// Builds one block: entries with keys prefix-compressed against the previous key, a
/// restart point (a full key) every `restartInterval` entries, then the restart offsets
/// and their count (docs/FORMAT.md, "Blocks").
struct BlockBuilder {
    /// Entries between restart points (`Options.blockRestartInterval` for data blocks).
    let restartInterval: Int

    private(set) var bytes: [UInt8] = []
    private var restarts: [UInt32] = [0]
    private var counter = 0
    private var lastKey: [UInt8] = []
    private(set) var entries = 0

    init(restartInterval: Int = 16) {
        precondition(restartInterval >= 1)
        self.restartInterval = restartInterval
        bytes.reserveCapacity(LogFormat.pageBytes)
    }

    var isEmpty: Bool { entries == 0 }

    /// Size of the block if finished now.
    var estimatedBytes: Int { bytes.count + restarts.count * 4 + 4 }

    /// Size after adding an entry of these lengths (an upper bound: no prefix sharing).
    func estimatedBytes(addingKey keyBytes: Int, value valueBytes: Int) -> Int {
        estimatedBytes + keyBytes + valueBytes + 15 + 4
    }

    /// Adds an entry; keys must arrive in increasing internal order.
    mutating func add(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) {
        var shared = 0
        if counter < restartInterval {
            let limit = min(lastKey.count, key.count)
            while shared < limit && lastKey[shared] == key[shared] { shared += 1 }
        } else {
            restarts.append(UInt32(bytes.count))
            counter = 0
        }
        Coding.putVarint(UInt64(shared), into: &bytes)
        Coding.putVarint(UInt64(key.count - shared), into: &bytes)
        Coding.putVarint(UInt64(value.count), into: &bytes)
        bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: key[shared...]))
        bytes.append(contentsOf: value)
        lastKey.removeAll(keepingCapacity: true)
        lastKey.append(contentsOf: key)
        counter += 1
        entries += 1
    }

    /// The block's contents; the builder is reset.
    mutating func finish() -> [UInt8] {
        for restart in restarts { Coding.putFixed32(restart, into: &bytes) }
        Coding.putFixed32(UInt32(restarts.count), into: &bytes)
        let result = bytes
        bytes.removeAll(keepingCapacity: true)
        restarts = [0]
        counter = 0
        lastKey.removeAll(keepingCapacity: true)
        entries = 0
        return result
    }
}

/// A verified block's contents in memory of its own (the block cache holds these).
final class Block: CacheCharged, @unchecked Sendable {
    // @unchecked: the memory is written once, in init, and only read afterwards.
    let base: UnsafeMutableRawPointer
    let count: Int
    let restartsOffset: Int
    let restartCount: Int

    /// Copies `contents` (without the checksum); nil when the restart array is malformed.
    init?(copying contents: UnsafeRawBufferPointer) {
        guard contents.count >= 4 else { return nil }
        let restarts = Int(Coding.fixed32(contents, at: contents.count - 4))
        guard restarts >= 1, restarts <= (contents.count - 4) / 4 else { return nil }
        count = contents.count
        restartCount = restarts
        restartsOffset = contents.count - 4 - restarts * 4
        base = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 16)
        base.copyMemory(from: contents.baseAddress!, byteCount: count)
    }

    /// Decompresses `payload` (codec `kind`, `rawLength` bytes when done) into memory of
    /// its own; nil when it does not decompress to that length or the restart array is
    /// malformed.
    init?(decompressing payload: UnsafeRawBufferPointer, kind: UInt8, rawLength: Int) {
        guard rawLength >= 4, rawLength <= BlockCodec.maxCompressedRawBytes else { return nil }
        let memory = UnsafeMutableRawPointer.allocate(byteCount: rawLength, alignment: 16)
        let raw = UnsafeMutableRawBufferPointer(start: memory, count: rawLength)
        guard BlockCodec.decompress(kind: kind, payload, into: raw) else {
            memory.deallocate()
            return nil
        }
        let restarts = Int(Coding.fixed32(UnsafeRawBufferPointer(raw), at: rawLength - 4))
        guard restarts >= 1, restarts <= (rawLength - 4) / 4 else {
            memory.deallocate()
            return nil
        }
        base = memory
        count = rawLength
        restartCount = restarts
        restartsOffset = rawLength - 4 - restarts * 4
    }

    deinit { base.deallocate() }

    /// A block of no entries (one restart, at its end), that a parked cursor walks.
    static let empty = [UInt8]([0, 0, 0, 0, 1, 0, 0, 0]).withUnsafeBytes { Block(copying: $0)! }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// Starts loading what a search of the block reads first, its restart array and the
    /// lines where its first and middle entries lie, into the CPU cache (a hint).
    @inline(__always)
    func prefetchForSearch() {
        ps_prefetch(base + restartsOffset)
        ps_prefetch(base)
        ps_prefetch(base + restartsOffset / 2)
    }

    /// Memory charged to the cache for this block.
    var charge: Int { count + 96 }

    func restart(_ index: Int) -> Int { Int(Coding.fixed32(bytes, at: restartsOffset + index * 4)) }

    /// The key of restart entry `index`, where it lies in the block (a restart entry
    /// shares no prefix with the one before); nil when the entry is malformed.
    func restartKey(_ index: Int) -> UnsafeRawBufferPointer? {
        let bytes = self.bytes
        var p = restart(index)
        guard p < restartsOffset, let shared = Coding.varint(bytes, &p), shared == 0, let unshared = Coding.varint(bytes, &p),
            Coding.varint(bytes, &p) != nil, p <= restartsOffset, unshared >= UInt64(InternalKey.tagBytes),
            unshared <= UInt64(restartsOffset - p)
        else { return nil }
        return UnsafeRawBufferPointer(rebasing: bytes[p..<(p + Int(unshared))])
    }

    /// The last restart whose key is before (userKey, tag), or 0; nil when a restart
    /// entry the search reads is malformed.
    func lastRestart(before userKey: UnsafeRawBufferPointer, tag: UInt64) -> Int? {
        var low = 0
        var high = restartCount - 1
        while low < high {
            let mid = (low + high + 1) / 2
            guard let key = restartKey(mid) else { return nil }
            if InternalKey.compare(key, userKey, tag) < 0 { low = mid } else { high = mid - 1 }
        }
        return low
    }

    /// What a point search found: the first entry at or after the target, with its user
    /// key compared to the target's.
    enum PointEntry {
        /// No entry at or after the target in this block.
        case none
        /// A malformed entry (the walk stopped there).
        case corrupt
        case entry(sameUserKey: Bool, tag: UInt64, value: Range<Int>)
    }

    /// The first entry at or after (userKey, tag), found without a cursor: the binary
    /// search compares restart keys where they lie (a restart entry shares no prefix),
    /// and only the entries after the chosen restart are decoded, their keys rebuilt in
    /// scratch memory on the stack. The point lookup's path (`Table.lookup`); iterators
    /// use `BlockCursor`.
    func pointSearch(_ userKey: UnsafeRawBufferPointer, tag: UInt64) -> PointEntry {
        let bytes = self.bytes
        let limit = restartsOffset
        guard let low = lastRestart(before: userKey, tag: tag) else { return .corrupt }
        // Forward from there; every key of the block fits in `limit` bytes.
        return withUnsafeTemporaryAllocation(byteCount: max(limit, 1), alignment: 8) { scratch -> PointEntry in
            var p = restart(low)
            var keyLength = 0
            while p < limit {
                guard let shared = Coding.varint(bytes, &p), let unshared = Coding.varint(bytes, &p),
                    let valueLength = Coding.varint(bytes, &p),
                    // In this order: each check keeps the next one's arithmetic in range.
                    p <= limit, shared <= UInt64(keyLength), unshared <= UInt64(limit - p), valueLength <= UInt64(limit - p) - unshared,
                    shared + unshared >= UInt64(InternalKey.tagBytes)
                else { return .corrupt }
                (scratch.baseAddress! + Int(shared)).copyMemory(from: bytes.baseAddress! + p, byteCount: Int(unshared))
                keyLength = Int(shared + unshared)
                p += Int(unshared)
                let key = UnsafeRawBufferPointer(rebasing: scratch[0..<keyLength])
                if InternalKey.compare(key, userKey, tag) >= 0 {
                    let same = SkipList.compareKeys(InternalKey.userKey(key), userKey) == 0
                    return .entry(sameUserKey: same, tag: InternalKey.tag(key), value: p..<(p + Int(valueLength)))
                }
                p += Int(valueLength)
            }
            return .none
        }
    }
}

/// A growable byte buffer with a stable address between mutations (iterators hand out
/// pointers to their current key).
final class KeyBuffer {
    private(set) var base: UnsafeMutableRawPointer
    private var capacity: Int
    private(set) var count = 0

    init(capacity: Int = 64) {
        self.capacity = capacity
        base = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
    }

    deinit { base.deallocate() }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// Keeps the first `keep` bytes and appends `suffix`.
    func replace(keeping keep: Int, with suffix: UnsafeRawBufferPointer) {
        let needed = keep + suffix.count
        if needed > capacity {
            let grown = UnsafeMutableRawPointer.allocate(byteCount: max(needed, capacity * 2), alignment: 8)
            grown.copyMemory(from: base, byteCount: keep)
            base.deallocate()
            base = grown
            capacity = max(needed, capacity * 2)
        }
        if let source = suffix.baseAddress { (base + keep).copyMemory(from: source, byteCount: suffix.count) }
        count = needed
    }

    func set(_ bytes: UnsafeRawBufferPointer) { replace(keeping: 0, with: bytes) }
}

/// Walks the entries of one block. Malformed entries (which a verified checksum makes
/// unlikely but not impossible: a bug, or a collision) end the walk and set `corrupt`.
final class BlockCursor {
    /// The block walked; ``Block/empty`` once the cursor is parked (`release()`).
    private(set) var block: Block
    let key: KeyBuffer
    /// Offset of the current entry; `block.restartsOffset` when past the end.
    private(set) var offset: Int
    private(set) var next: Int
    private(set) var valueRange: Range<Int> = 0..<0
    private(set) var corrupt = false

    /// A cursor over `block`, not positioned. `key`: the buffer it rebuilds keys in,
    /// handed on from the walk's previous cursor (which must not be used afterwards) so
    /// that a walk allocates it once.
    init(_ block: Block, key: KeyBuffer = KeyBuffer()) {
        self.block = block
        self.key = key
        offset = block.restartsOffset
        next = block.restartsOffset
    }

    /// Walks `block` instead, from no position (keeping the key buffer): a table walk
    /// moving to its next block reuses its cursor rather than making one.
    func reset(_ block: Block) {
        self.block = block
        offset = block.restartsOffset
        next = block.restartsOffset
        valueRange = 0..<0
        corrupt = false
    }

    /// Lets go of the block (the cursor is kept for a later `reset`, walking nothing).
    func release() { reset(Block.empty) }

    var isValid: Bool { offset < block.restartsOffset }

    var value: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: block.bytes[valueRange])
    }

    /// Decodes the entry at `at` (whose predecessor's key is in `key`); false when malformed.
    private func decode(at position: Int) -> Bool {
        let bytes = block.bytes
        let limit = block.restartsOffset
        var p = position
        guard let shared = Coding.varint(bytes, &p), let unshared = Coding.varint(bytes, &p),
            let valueLength = Coding.varint(bytes, &p),
            // In this order: each check keeps the next one's arithmetic in range (the
            // varints may run into the restart array of a malformed block).
            p <= limit, shared <= UInt64(key.count), unshared <= UInt64(limit - p), valueLength <= UInt64(limit - p) - unshared,
            shared + unshared >= UInt64(InternalKey.tagBytes)
        else {
            corrupt = true
            offset = limit
            next = limit
            return false
        }
        key.replace(keeping: Int(shared), with: UnsafeRawBufferPointer(rebasing: bytes[p..<(p + Int(unshared))]))
        p += Int(unshared)
        valueRange = p..<(p + Int(valueLength))
        offset = position
        next = p + Int(valueLength)
        return true
    }

    func seekToFirst() {
        seekToRestart(0)
    }

    private func seekToRestart(_ index: Int) {
        key.replace(keeping: 0, with: UnsafeRawBufferPointer(start: nil, count: 0))
        let position = block.restart(index)
        guard position < block.restartsOffset else {
            offset = block.restartsOffset
            return
        }
        _ = decode(at: position)
    }

    func advance() {
        guard isValid else { return }
        if next >= block.restartsOffset {
            offset = block.restartsOffset
            return
        }
        _ = decode(at: next)
    }

    func seekToLast() {
        seekToRestart(block.restartCount - 1)
        while isValid && next < block.restartsOffset { advance() }
    }

    /// First entry at or after (userKey, tag).
    func seek(_ userKey: UnsafeRawBufferPointer, tag: UInt64) {
        guard let low = block.lastRestart(before: userKey, tag: tag) else {
            corrupt = true
            offset = block.restartsOffset
            next = block.restartsOffset
            return
        }
        seekToRestart(low)
        while isValid && InternalKey.compare(key.bytes, userKey, tag) < 0 { advance() }
    }

    /// Moves to the entry before the current one (invalid when there is none).
    func retreat() {
        let target = isValid ? offset : block.restartsOffset
        // The last restart before the current entry, then forward to its predecessor.
        var index = block.restartCount - 1
        while index > 0 && block.restart(index) >= target { index -= 1 }
        if block.restart(index) >= target {
            offset = block.restartsOffset
            return
        }
        seekToRestart(index)
        while isValid && next < target { advance() }
    }
}
