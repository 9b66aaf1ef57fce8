import Atomics

#if canImport(Glibc)
import Glibc
#endif

/// An ordered skip list of (user key, tag) entries in an ``Arena``, with lock-free readers
/// and one writer at a time (the caller serializes writers).
///
/// Entries are ordered by user key ascending (bytewise), then by `Tag` descending: the
/// newest version of a key comes first. Nodes are never moved or freed while the list
/// lives; a writer links a new node bottom-up with release stores, and readers follow
/// links with acquire loads, so a reader sees either the old list or the list with the
/// node fully initialized.
///
/// Node layout in the arena:
///
///     0   8  tag
///     8   4  key length
///     12  4  value length
///     16  4  height
///     24  8 * height  next links (atomic)
///     ..  key bytes, then value bytes
final class SkipList: @unchecked Sendable {
    // @unchecked: the arena and `random` are touched only by the single writer (the
    // memtable's caller holds the write lock); readers touch nodes through atomics.

    typealias Node = UnsafeMutableRawPointer

    static let maxHeight = 12
    private static let linksOffset = 24

    let arena = Arena()
    private let head: Node
    private let height = ManagedAtomic<Int>(1)
    private var random = SplitMix(seed: 0x2545_F491_4F6C_DD1D)

    init() {
        precondition(MemoryLayout<UnsafeAtomic<UInt>.Storage>.size == 8)
        head = SkipList.makeNode(arena, tag: 0, key: UnsafeRawBufferPointer(start: nil, count: 0),
                                 value: UnsafeRawBufferPointer(start: nil, count: 0), height: SkipList.maxHeight)
    }

    // MARK: node fields

    static func tag(_ node: Node) -> UInt64 { node.load(as: UInt64.self) }

    static func key(_ node: Node) -> UnsafeRawBufferPointer {
        let height = Int(node.load(fromByteOffset: 16, as: UInt32.self))
        let length = Int(node.load(fromByteOffset: 8, as: UInt32.self))
        return UnsafeRawBufferPointer(start: node + linksOffset + 8 * height, count: length)
    }

    static func value(_ node: Node) -> UnsafeRawBufferPointer {
        let height = Int(node.load(fromByteOffset: 16, as: UInt32.self))
        let keyLength = Int(node.load(fromByteOffset: 8, as: UInt32.self))
        let length = Int(node.load(fromByteOffset: 12, as: UInt32.self))
        return UnsafeRawBufferPointer(start: node + linksOffset + 8 * height + keyLength, count: length)
    }

    private static func link(_ node: Node, _ level: Int) -> UnsafeAtomic<UInt> {
        UnsafeAtomic(at: (node + linksOffset + 8 * level).assumingMemoryBound(to: UnsafeAtomic<UInt>.Storage.self))
    }

    static func next(_ node: Node, _ level: Int) -> Node? {
        Node(bitPattern: link(node, level).load(ordering: .acquiring))
    }

    private static func setNext(_ node: Node, _ level: Int, _ target: Node?) {
        link(node, level).store(UInt(bitPattern: target), ordering: .releasing)
    }

    private static func makeNode(
        _ arena: Arena, tag: UInt64, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, height: Int
    ) -> Node {
        let node = arena.allocate(linksOffset + 8 * height + key.count + value.count)
        node.storeBytes(of: tag, as: UInt64.self)
        node.storeBytes(of: UInt32(key.count), toByteOffset: 8, as: UInt32.self)
        node.storeBytes(of: UInt32(value.count), toByteOffset: 12, as: UInt32.self)
        node.storeBytes(of: UInt32(height), toByteOffset: 16, as: UInt32.self)
        for level in 0..<height {
            (node + linksOffset + 8 * level).bindMemory(to: UnsafeAtomic<UInt>.Storage.self, capacity: 1)
                .initialize(to: .init(0))
        }
        let payload = node + linksOffset + 8 * height
        if let base = key.baseAddress { payload.copyMemory(from: base, byteCount: key.count) }
        if let base = value.baseAddress { (payload + key.count).copyMemory(from: base, byteCount: value.count) }
        return node
    }

    // MARK: ordering

    /// Bytewise order of user keys: negative, zero or positive. Eight bytes at a time as
    /// big-endian words (most keys differ within the first 16 bytes, and a call into
    /// `memcmp` costs more than the comparison of such keys), `memcmp` for the rest.
    @inline(__always)
    static func compareKeys(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Int {
        let common = min(a.count, b.count)
        var offset = 0
        if common >= 8, let pa = a.baseAddress, let pb = b.baseAddress {
            while offset + 8 <= common {
                let x = UInt64(bigEndian: pa.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
                let y = UInt64(bigEndian: pb.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
                if x != y { return x < y ? -1 : 1 }
                offset += 8
                if offset == 16 && common > 24 { break }
            }
        }
        if offset < common {
            let result = memcmp(a.baseAddress! + offset, b.baseAddress! + offset, common - offset)
            if result != 0 { return Int(result) }
        }
        return a.count - b.count
    }

    /// Order of a node against (key, tag): negative when the node comes first.
    private static func compare(_ node: Node, _ key: UnsafeRawBufferPointer, _ tag: UInt64) -> Int {
        let byKey = compareKeys(SkipList.key(node), key)
        if byKey != 0 { return byKey }
        let nodeTag = SkipList.tag(node)
        return nodeTag > tag ? -1 : (nodeTag < tag ? 1 : 0)
    }

    // MARK: writer

    /// Inserts an entry. The caller guarantees one writer at a time and that (key, tag)
    /// is not already present.
    func insert(tag: UInt64, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        withUnsafeTemporaryAllocation(of: Node.self, capacity: SkipList.maxHeight) { previous in
            previous.initialize(repeating: head)
            var node = head
            var level = height.load(ordering: .relaxed) - 1
            // The node last found at or after the key: met again one level down, it needs
            // no second comparison (RocksDB's InlineSkipList does the same).
            var atOrAfter: Node? = nil
            while true {
                let next = SkipList.next(node, level)
                if let next, next != atOrAfter, SkipList.compare(next, key, tag) < 0 {
                    node = next
                    continue
                }
                atOrAfter = next
                previous[level] = node
                if level == 0 { break }
                level -= 1
            }
            let newHeight = randomHeight()
            if newHeight > height.load(ordering: .relaxed) {
                // Readers that see the new height before the links find nil at the new
                // levels of `head` and simply drop down.
                height.store(newHeight, ordering: .relaxed)
            }
            let created = SkipList.makeNode(arena, tag: tag, key: key, value: value, height: newHeight)
            for level in 0..<newHeight {
                SkipList.setNext(created, level, SkipList.next(previous[level], level))
                SkipList.setNext(previous[level], level, created)
            }
        }
    }

    /// 1 + a geometric draw with p = 1/4, capped at `maxHeight`.
    private func randomHeight() -> Int {
        var result = 1
        while result < SkipList.maxHeight && random.below(4) == 0 { result += 1 }
        return result
    }

    // MARK: readers

    /// The first node at or after (key, tag), or nil.
    func seek(_ key: UnsafeRawBufferPointer, tag: UInt64) -> Node? {
        var node = head
        var level = height.load(ordering: .relaxed) - 1
        var atOrAfter: Node? = nil
        while true {
            let next = SkipList.next(node, level)
            if let next, next != atOrAfter, SkipList.compare(next, key, tag) < 0 {
                node = next
            } else if level == 0 {
                return next
            } else {
                atOrAfter = next
                level -= 1
            }
        }
    }

    /// The last node before (key, tag), or nil.
    func seekBefore(_ key: UnsafeRawBufferPointer, tag: UInt64) -> Node? {
        var node = head
        var level = height.load(ordering: .relaxed) - 1
        while true {
            if let next = SkipList.next(node, level), SkipList.compare(next, key, tag) < 0 {
                node = next
            } else if level == 0 {
                return node == head ? nil : node
            } else {
                level -= 1
            }
        }
    }

    /// The first node, or nil when empty.
    var first: Node? { SkipList.next(head, 0) }

    /// The last node, or nil when empty.
    var last: Node? {
        var node = head
        var level = height.load(ordering: .relaxed) - 1
        while true {
            if let next = SkipList.next(node, level) {
                node = next
            } else if level == 0 {
                return node == head ? nil : node
            } else {
                level -= 1
            }
        }
    }
}
