/// Orders two positions in the internal order: negative when (aKey, aTag) comes first.
@inline(__always)
func compareInternal(_ aKey: UnsafeRawBufferPointer, _ aTag: UInt64, _ bKey: UnsafeRawBufferPointer, _ bTag: UInt64) -> Int {
    let byKey = SkipList.compareKeys(aKey, bKey)
    if byKey != 0 { return byKey }
    return aTag > bTag ? -1 : (aTag < bTag ? 1 : 0)
}

/// Merges sources that are each in internal order into one, both ways (a linear pick
/// among the few sources a read has: memtables, level-0 tables, one per deeper level).
/// No two sources of one consistent view hold the same (key, tag).
final class MergingIterator: InternalIterator {
    private let children: [any InternalIterator]
    /// `children`, unretained, for the calls made once per entry.
    private let refs: UnsafeMutableBufferPointer<IteratorRef>
    /// Each child's validity, key and tag as of its last move: picking the next entry
    /// compares these without calling into the children.
    private let valid: UnsafeMutableBufferPointer<Bool>
    private let keys: UnsafeMutableBufferPointer<UnsafeRawBufferPointer>
    private let tags: UnsafeMutableBufferPointer<UInt64>
    /// The one allocation `refs`, `keys`, `tags` and `valid` share (a seek makes a
    /// merging iterator, so it allocates little).
    private let storage: UnsafeMutableRawPointer
    private var current = -1
    private var forward = true
    /// A child stopped on an error: the walk ends.
    private var failed = false
    /// The view that built this stack for cursors and takes it back when a cursor is done
    /// with it (`View.park(_:)`); nil for other stacks (compactions, salvage).
    var parkingView: ObjectIdentifier?

    init(_ children: [any InternalIterator]) {
        self.children = children
        let count = children.count
        // Every part's size is a multiple of 8, and each type aligns to at most 8.
        let refBytes = (count * MemoryLayout<IteratorRef>.stride + 7) & ~7
        let keyBytes = count * MemoryLayout<UnsafeRawBufferPointer>.stride
        let tagBytes = count * MemoryLayout<UInt64>.stride
        storage = .allocate(byteCount: max(1, refBytes + keyBytes + tagBytes + count), alignment: 16)
        refs = UnsafeMutableBufferPointer(start: storage.bindMemory(to: IteratorRef.self, capacity: count), count: count)
        for (index, child) in children.enumerated() { (refs.baseAddress! + index).initialize(to: child.unretained) }
        keys = UnsafeMutableBufferPointer(
            start: (storage + refBytes).bindMemory(to: UnsafeRawBufferPointer.self, capacity: count), count: count)
        keys.initialize(repeating: UnsafeRawBufferPointer(start: nil, count: 0))
        tags = UnsafeMutableBufferPointer(start: (storage + refBytes + keyBytes).bindMemory(to: UInt64.self, capacity: count), count: count)
        tags.initialize(repeating: 0)
        valid = UnsafeMutableBufferPointer(
            start: (storage + refBytes + keyBytes + tagBytes).bindMemory(to: Bool.self, capacity: count), count: count)
        valid.initialize(repeating: false)
    }

    deinit {
        _ = refs.deinitialize()
        storage.deallocate()
    }

    /// Back to no position, its sources holding no table or block, for a later walk over
    /// the same sources.
    func park() {
        for child in children { child.park() }
        current = -1
        forward = true
        failed = false
        valid.update(repeating: false)
    }

    @inline(__always)
    private func refresh(_ index: Int) {
        let child = refs[index]
        if child.isValid {
            valid[index] = true
            keys[index] = child.key
            tags[index] = child.tag
        } else {
            valid[index] = false
            if children[index].error != nil { failed = true }
        }
    }

    var isValid: Bool { current >= 0 }
    var key: UnsafeRawBufferPointer { keys[current] }
    var tag: UInt64 { tags[current] }
    var value: UnsafeRawBufferPointer { refs[current].value }
    var error: KVError? {
        for child in children { if let error = child.error { return error } }
        return nil
    }

    private func pickSmallest() { pick(sign: -1) }
    private func pickLargest() { pick(sign: 1) }

    /// Makes the child whose position compares first (`sign` -1) or last (1) current.
    @inline(__always)
    private func pick(sign: Int) {
        current = -1
        for index in 0..<children.count where valid[index] {
            if current < 0 || compareInternal(keys[index], tags[index], keys[current], tags[current]) * sign > 0 {
                current = index
            }
        }
        if failed { current = -1 }
    }

    /// Moves every child with `move`, then picks the current one for the direction.
    private func repositionAll(forward: Bool, _ move: (any InternalIterator) -> Void) {
        for index in children.indices {
            move(children[index])
            refresh(index)
        }
        self.forward = forward
        if forward { pickSmallest() } else { pickLargest() }
    }

    func seekToFirst() { repositionAll(forward: true) { $0.seekToFirst() } }
    func seekToLast() { repositionAll(forward: false) { $0.seekToLast() } }
    func seek(_ key: UnsafeRawBufferPointer, tag: UInt64) {
        // The blocks the table sources will read, all at once (each source keeps what it
        // found, so the seeks below do not look again).
        var missing: [(table: Table, block: Int)] = []
        var askers: [Int] = []
        for (index, child) in children.enumerated() {
            if let wanted = child.prepareSeek(key, tag: tag) {
                missing.append(wanted)
                askers.append(index)
            }
        }
        if missing.count > 1 {
            for (asker, block) in zip(askers, Table.readBlocks(missing)) {
                if let block { children[asker].supplyPrepared(block) }
            }
        }
        repositionAll(forward: true) { $0.seek(key, tag: tag) }
    }

    var newestSequence: UInt64 { children.map(\.newestSequence).max() ?? 0 }

    /// `seek(key)` where a range delete at `sequence` covers [key, end): the sources whose
    /// entries there are all older than it seek to `end` at once.
    func seek(_ key: UnsafeRawBufferPointer, olderThan sequence: UInt64, skippingTo end: UnsafeRawBufferPointer) {
        repositionAll(forward: true) { child in
            if child.newestSequence(lower: key, upper: end) < sequence {
                child.seek(end, tag: UInt64.max)
            } else {
                child.seek(key, tag: UInt64.max)
            }
        }
    }

    func skipOlder(than sequence: UInt64, start: UnsafeRawBufferPointer, end: UnsafeRawBufferPointer) {
        guard current >= 0 else { return }
        var moved = false
        for index in children.indices where valid[index] {
            let child = children[index]
            // Only the part of the source the jump passes over must be older.
            let newest = forward ? child.newestSequence(lower: keys[index], upper: end) : child.newestSequence(lower: start, upper: keys[index])
            guard newest < sequence else { continue }
            if forward {
                // Only forward: a source already past the end stays.
                guard SkipList.compareKeys(keys[index], end) < 0 else { continue }
                child.seek(end, tag: UInt64.max)
            } else {
                guard SkipList.compareKeys(keys[index], start) >= 0 else { continue }
                child.seek(start, tag: UInt64.max)
                if child.isValid { child.prev() } else if child.error == nil { child.seekToLast() }
            }
            refresh(index)
            moved = true
        }
        guard moved else { return }
        if forward { pickSmallest() } else { pickLargest() }
    }

    func next() {
        if !forward {
            // Every other source moves to the first entry after the current one.
            let key = Array(keys[current])
            let tag = tags[current]
            key.withUnsafeBytes { key in
                for index in children.indices where index != current {
                    let child = children[index]
                    child.seek(key, tag: tag)
                    if child.isValid && compareInternal(child.key, child.tag, key, tag) == 0 { child.next() }
                    refresh(index)
                }
            }
            forward = true
        }
        refs[current].next()
        refresh(current)
        pickSmallest()
    }

    func prev() {
        if forward {
            // Every other source moves to the last entry before the current one.
            let key = Array(keys[current])
            let tag = tags[current]
            key.withUnsafeBytes { key in
                for index in children.indices where index != current {
                    let child = children[index]
                    child.seek(key, tag: tag)
                    if child.isValid {
                        child.prev()
                    } else if child.error == nil {
                        child.seekToLast()
                    }
                    refresh(index)
                }
            }
            forward = false
        }
        refs[current].prev()
        refresh(current)
        pickLargest()
    }
}

/// Concatenates the tables of one level (sorted, not overlapping), opening each table
/// (through the table cache) and its walk only when it is reached.
final class LevelIterator: InternalIterator {
    private let tables: [TableFile]
    /// The table `walk` walks (`tables[index]`).
    private var walking: TableFile?
    private var index = 0
    private var walk: TableIterator? {
        didSet { walkRef = walk.map(Unmanaged.passUnretained) }
    }
    /// `walk`, unretained, for the calls made once per entry (`walk` keeps it alive).
    private var walkRef: Unmanaged<TableIterator>?
    private var failure: KVError?
    private let readaheadPages: Int
    private let alwaysReadAhead: Bool
    private let fillCache: Bool

    init(tables: [TableFile], readaheadPages: Int = 64, alwaysReadAhead: Bool = false, fillCache: Bool = true) {
        self.tables = tables
        self.readaheadPages = readaheadPages
        self.alwaysReadAhead = alwaysReadAhead
        self.fillCache = fillCache
    }

    var isValid: Bool { walkRef?._withUnsafeGuaranteedRef { $0.isValid } ?? false }
    var newestSequence: UInt64 { tables.map(\.meta.properties.largestSequence).max() ?? 0 }

    func newestSequence(lower: UnsafeRawBufferPointer, upper: UnsafeRawBufferPointer) -> UInt64 {
        // The tables are sorted and disjoint: from the first that reaches `lower`, those
        // that start at or before `upper`.
        var low = 0
        var high = tables.count
        while low < high {
            let mid = (low + high) / 2
            if tables[mid].meta.largestUserKey.withUnsafeBytes({ SkipList.compareKeys($0, lower) < 0 }) { low = mid + 1 } else { high = mid }
        }
        // ... and the first that starts after `upper`, by a second search: the tables
        // between are read for their sequence numbers alone.
        var first = low
        var end = tables.count
        while first < end {
            let mid = (first + end) / 2
            if tables[mid].meta.smallestUserKey.withUnsafeBytes({ SkipList.compareKeys($0, upper) <= 0 }) { first = mid + 1 } else { end = mid }
        }
        var newest: UInt64 = 0
        for index in low..<max(low, first) { newest = max(newest, tables[index].meta.properties.largestSequence) }
        return newest
    }
    var key: UnsafeRawBufferPointer { walkRef!._withUnsafeGuaranteedRef { $0.key } }
    var tag: UInt64 { walkRef!._withUnsafeGuaranteedRef { $0.tag } }
    var value: UnsafeRawBufferPointer { walkRef!._withUnsafeGuaranteedRef { $0.value } }
    var error: KVError? { failure ?? walk?.error }

    private func open(_ position: Int) -> Bool {
        if let error = walk?.error { failure = failure ?? error }
        guard failure == nil, position >= 0, position < tables.count else {
            // No table walked (the walk's objects stay, for the next table): a later seek
            // opens its table again.
            walk?.park()
            walking = nil
            return false
        }
        index = position
        if walking !== tables[position] {
            do throws(KVError) {
                let table = try tables[position].open()
                // One table iterator for the level's walk, moved from table to table.
                if let walk {
                    walk.rebind(to: table)
                } else {
                    walk = TableIterator(table: table, readaheadPages: readaheadPages, alwaysReadAhead: alwaysReadAhead, fillCache: fillCache)
                }
                walking = tables[position]
            } catch {
                failure = error
                walk = nil
                walking = nil
                return false
            }
        }
        return true
    }

    private func skipForward() {
        while let walk = walkRef, walk._withUnsafeGuaranteedRef({ !$0.isValid && $0.error == nil }) {
            guard open(index + 1) else { return }
            self.walk!.seekToFirst()
        }
    }

    private func skipBackward() {
        while let walk, !walk.isValid, walk.error == nil {
            guard open(index - 1) else { return }
            self.walk!.seekToLast()
        }
    }

    /// Back to no position, holding no table (see `TableIterator.park`).
    func park() {
        walk?.park()
        walking = nil
        if failure != nil { failure = nil }
        preparedPosition = nil
        index = 0
    }

    func seekToFirst() {
        preparedPosition = nil
        guard open(0) else { return }
        walk!.seekToFirst()
        skipForward()
    }

    func seekToLast() {
        preparedPosition = nil
        guard open(tables.count - 1) else { return }
        walk!.seekToLast()
        skipBackward()
    }

    /// The first table whose largest key is at or after the target.
    private func position(of key: UnsafeRawBufferPointer, tag: UInt64) -> Int {
        var low = 0
        var high = tables.count
        while low < high {
            let mid = (low + high) / 2
            let below = tables[mid].meta.largest.withUnsafeBytes { InternalKey.compare($0, key, tag) < 0 }
            if below { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// Set by `prepareSeek` for the seek that follows: the table it opened.
    private var preparedPosition: Int?

    func supplyPrepared(_ block: Block) { walk?.supplyPrepared(block) }

    func prepareSeek(_ key: UnsafeRawBufferPointer, tag: UInt64) -> (table: Table, block: Int)? {
        let position = position(of: key, tag: tag)
        guard open(position) else {
            preparedPosition = nil
            return nil
        }
        preparedPosition = position
        return walk!.prepareSeek(key, tag: tag)
    }

    func seek(_ key: UnsafeRawBufferPointer, tag: UInt64) {
        let position = preparedPosition ?? position(of: key, tag: tag)
        preparedPosition = nil
        guard open(position) else { return }
        walk!.seek(key, tag: tag)
        skipForward()
    }

    func next() {
        walkRef!._withUnsafeGuaranteedRef { $0.next() }
        skipForward()
    }

    func prev() {
        walkRef!._withUnsafeGuaranteedRef { $0.prev() }
        skipBackward()
    }
}
