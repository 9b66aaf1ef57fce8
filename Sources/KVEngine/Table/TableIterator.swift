import PageStore

/// Reads a table's data blocks ahead of a sequential walk: a run of pages into one fixed
/// buffer, and the next run already on its way into a second one while the first is used.
/// Blocks read this way enter the block cache only when the walk asks (a scan's
/// `fillCache`; never for a compaction). When the arena has no room, the walk reads block
/// by block instead.
final class Readahead {
    private let table: Table
    private let pages: Int
    private var buffers: [PageBuffer?] = [nil, nil]
    private var ranges: [Range<Int64>] = [0..<0, 0..<0]
    private var pending: [OneShot<IOResult>?] = [nil, nil]

    init(table: Table, pages: Int) {
        self.table = table
        self.pages = pages
    }

    deinit {
        for slot in 0..<2 {
            if let done = pending[slot] {
                table.storage.willWait()
                _ = done.wait()
            }
            if let buffer = buffers[slot] { table.storage.allocator.free(buffer) }
        }
    }

    /// Block `index`, from a run read ahead, or nil when no buffer could be had.
    func block(_ index: Int) throws(KVError) -> Block? {
        let handle = table.handles[index]
        guard handle.pages <= Table.largeBlockPages else { return nil }
        let end = handle.offset + Int64(handle.pages * TableFormat.pageBytes)
        for slot in 0..<2 where ranges[slot].lowerBound <= handle.offset && end <= ranges[slot].upperBound {
            try settle(slot)
            // Reaching the later run: start the one after it in the other buffer.
            if ranges[slot ^ 1].upperBound <= ranges[slot].lowerBound { start(slot ^ 1, at: ranges[slot].upperBound) }
            return try serve(slot, index)
        }
        // A jump (or the first block): read this run now, the next one ahead.
        guard start(0, at: handle.offset, atLeast: handle.pages) else { return nil }
        try settle(0)
        guard ranges[0].lowerBound <= handle.offset && end <= ranges[0].upperBound else { return nil }
        start(1, at: ranges[0].upperBound)
        return try serve(0, index)
    }

    private func serve(_ slot: Int, _ index: Int) throws(KVError) -> Block {
        let handle = table.handles[index]
        let start = Int(handle.offset - ranges[slot].lowerBound)
        let bytes = UnsafeRawBufferPointer(rebasing: buffers[slot]!.bytes[start...])
        return try table.makeBlock(bytes, index: index)
    }

    @discardableResult
    private func start(_ slot: Int, at offset: Int64, atLeast minimum: Int = 0) -> Bool {
        if let done = pending[slot] {
            table.storage.willWait()
            _ = done.wait()
            pending[slot] = nil
        }
        ranges[slot] = 0..<0
        guard offset < table.dataEnd else { return false }
        let want = max(minimum, pages)
        if let buffer = buffers[slot], buffer.count < want * TableFormat.pageBytes {
            table.storage.allocator.free(buffer)
            buffers[slot] = nil
        }
        if buffers[slot] == nil {
            // Read-ahead is an optimization: it never takes the last quarter of the arena,
            // which the log, table writes and lookups need (a cursor left open holds its
            // buffers until it goes).
            let allocator = table.storage.allocator
            if allocator.freePages - want >= allocator.pageCount / 4 {
                buffers[slot] = try? allocator.tryAllocate(pages: want)
            }
        }
        guard let buffer = buffers[slot] else { return false }
        let length = min(Int64(want * TableFormat.pageBytes), table.dataEnd - offset)
        let done = OneShot<IOResult>()
        table.storage.submit(.read(table.file, IOSegment(offsetBytes: offset, buffer: buffer.slice(offset: 0, count: Int(length))))) {
            done.fulfil($0)
        }
        pending[slot] = done
        ranges[slot] = offset..<(offset + length)
        return true
    }

    private func settle(_ slot: Int) throws(KVError) {
        guard let done = pending[slot] else { return }
        table.storage.willWait()
        let result = done.wait()
        pending[slot] = nil
        switch result {
        case .failure(let error):
            ranges[slot] = 0..<0
            throw KVError.io(error, while: "read ahead in \(table.path)")
        case .success(let got):
            ranges[slot] = ranges[slot].lowerBound..<(ranges[slot].lowerBound + Int64(got / TableFormat.pageBytes * TableFormat.pageBytes))
        }
    }
}

/// Walks one table in internal-key order, both ways. An I/O error or a corrupt block ends
/// the walk and is kept in `error`.
final class TableIterator: InternalIterator {
    /// The table walked; nil only while parked (`park()`, until `rebind(to:)`).
    private(set) var table: Table!
    private var blockIndex = 0
    private var cursor: BlockCursor? {
        didSet { cursorRef = cursor.map(Unmanaged.passUnretained) }
    }
    /// The block cursor last used, kept (without its block) while `cursor` is nil, so
    /// that the walk makes one cursor and one key buffer in its life, not one per block.
    private var spareCursor: BlockCursor?
    /// `cursor`, unretained, for the calls made once per entry (`cursor` keeps it alive).
    private var cursorRef: Unmanaged<BlockCursor>?
    private(set) var error: KVError?
    /// Sequential block loads in a row; reading ahead starts after a few.
    private var sequentialLoads = 0
    private var readahead: Readahead?
    private let readaheadPages: Int
    private let alwaysReadAhead: Bool
    private let fillCache: Bool
    /// What `prepareSeek` found for the seek that follows it: the block index, and the
    /// block when the cache had it.
    private var prepared: (index: Int, block: Block?)?

    /// `readaheadPages`: run length for sequential walks; `alwaysReadAhead` (compaction,
    /// verification) starts reading ahead at once and never touches the cache;
    /// `fillCache`: blocks read (ahead or not) enter the block cache, and a sequential
    /// walk takes blocks the cache holds from it instead of reading them again.
    init(table: Table, readaheadPages: Int = 64, alwaysReadAhead: Bool = false, fillCache: Bool = true) {
        self.table = table
        self.readaheadPages = readaheadPages
        self.alwaysReadAhead = alwaysReadAhead
        self.fillCache = fillCache && !alwaysReadAhead
    }

    /// Walks `table` instead, from no position: a level's walk reuses its iterator from
    /// table to table (and a parked one when it is taken again) rather than making one.
    func rebind(to table: Table) {
        park()
        self.table = table
    }

    /// Lets go of the table, the block and any read-ahead, keeping the objects a later
    /// walk reuses (an iterator stack parked by its view: `View.park(_:)`).
    func park() {
        dropCursor()
        // (Each only when set: clearing a `KVError?` that is already nil still copies it.)
        if readahead != nil { readahead = nil }
        if prepared != nil { prepared = nil }
        if error != nil { error = nil }
        sequentialLoads = 0
        blockIndex = 0
        table = nil
    }

    /// No current block; the cursor object stays, without its block, for the next load.
    private func dropCursor() {
        guard let cursor else { return }
        cursor.release()
        spareCursor = cursor
        self.cursor = nil
    }

    var isValid: Bool { cursorRef?._withUnsafeGuaranteedRef { $0.isValid } ?? false }
    var newestSequence: UInt64 { table.meta.properties.largestSequence }
    var key: UnsafeRawBufferPointer { cursorRef!._withUnsafeGuaranteedRef { InternalKey.userKey($0.key.bytes) } }
    var tag: UInt64 { cursorRef!._withUnsafeGuaranteedRef { InternalKey.tag($0.key.bytes) } }
    var value: UnsafeRawBufferPointer { cursorRef!._withUnsafeGuaranteedRef { $0.value } }

    private func load(_ index: Int, sequential: Bool, block known: Block? = nil) -> Bool {
        guard error == nil, index >= 0, index < table.blockCount else {
            dropCursor()
            return false
        }
        blockIndex = index
        sequentialLoads = sequential ? sequentialLoads + 1 : 0
        do throws(KVError) {
            var block = known
            if block == nil && sequential && (alwaysReadAhead || sequentialLoads >= 2) {
                let key = BlockKey(table: table.number, offset: table.handles[index].offset)
                if fillCache, let cached = table.cache.lookup(key) {
                    block = cached
                } else {
                    if readahead == nil { readahead = Readahead(table: table, pages: readaheadPages) }
                    block = try readahead!.block(index)
                    if fillCache, let block { table.cache.insert(key, block) }
                }
            }
            if block == nil { block = try table.block(index, fillCache: fillCache) }
            // One cursor (and key buffer) for the walk, moved on from block to block.
            if let reused = cursor ?? spareCursor {
                reused.reset(block!)
                spareCursor = nil
                cursor = reused
            } else {
                cursor = BlockCursor(block!)
            }
            return true
        } catch {
            self.error = error
            dropCursor()
            return false
        }
    }

    private func checkCorrupt() {
        if let cursor = cursorRef, cursor._withUnsafeGuaranteedRef({ $0.corrupt }) {
            error = table.corruption(TableProblem(offset: table.handles[blockIndex].offset, reason: "malformed block entry"))
            dropCursor()
        }
    }

    /// Moves past empty ends of blocks going forward.
    private func skipForward() {
        while let cursor = cursorRef, cursor._withUnsafeGuaranteedRef({ !$0.isValid && !$0.corrupt }) {
            guard load(blockIndex + 1, sequential: true) else { return }
            self.cursor!.seekToFirst()
        }
        checkCorrupt()
    }

    private func skipBackward() {
        while let cursor, !cursor.isValid, !cursor.corrupt {
            guard load(blockIndex - 1, sequential: false) else { return }
            self.cursor!.seekToLast()
        }
        checkCorrupt()
    }

    func seekToFirst() {
        prepared = nil
        guard load(0, sequential: alwaysReadAhead) else { return }
        cursor!.seekToFirst()
        skipForward()
    }

    func seekToLast() {
        prepared = nil
        guard load(table.blockCount - 1, sequential: false) else { return }
        cursor!.seekToLast()
        skipBackward()
    }

    func prepareSeek(_ key: UnsafeRawBufferPointer, tag: UInt64) -> (table: Table, block: Int)? {
        let index = table.index.findBlock(key, tag: tag)
        guard index < table.blockCount, !alwaysReadAhead else {
            prepared = (index, nil)
            return nil
        }
        let cached = table.cache.lookup(BlockKey(table: table.number, offset: table.handles[index].offset))
        // The seek reads it after the other sources' lookups: its loads start now.
        cached?.prefetchForSearch()
        prepared = (index, cached)
        return cached == nil ? (table, index) : nil
    }

    func supplyPrepared(_ block: Block) {
        guard let index = prepared?.index else { return }
        prepared = (index, block)
        if fillCache { table.cache.insert(BlockKey(table: table.number, offset: table.handles[index].offset), block) }
    }

    func seek(_ key: UnsafeRawBufferPointer, tag: UInt64) {
        let (index, block) = prepared ?? (table.index.findBlock(key, tag: tag), nil)
        prepared = nil
        guard load(index, sequential: alwaysReadAhead, block: block) else { return }
        cursor!.seek(key, tag: tag)
        skipForward()
    }

    func next() {
        cursorRef!._withUnsafeGuaranteedRef { $0.advance() }
        skipForward()
    }

    func prev() {
        cursorRef!._withUnsafeGuaranteedRef { $0.retreat() }
        skipBackward()
    }
}
