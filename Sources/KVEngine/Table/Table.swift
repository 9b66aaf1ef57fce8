import PageStore

/// An open sorted table: its index and filter in memory, its data blocks read on demand
/// (through the block cache), so a lookup that misses the cache costs one block read.
///
/// Tables are opened by the ``TableCache`` and closed (their descriptor and registered
/// slot given back) when the last of the cache, iterators and reads lets go.
final class Table: Sendable {
    let meta: TableMeta
    let path: String
    let storage: any Storage
    let file: FileID
    let cache: BlockCache
    /// Last internal key of each data block, concatenated; `keyEnds[i]` ends key `i`.
    private let indexKeys: [UInt8]
    private let keyEnds: [Int32]
    /// The bytes every index key's user key begins with (the common prefix of the first
    /// and the last), and for each index key the 8 user-key bytes after them, big-endian,
    /// zero-padded: `findBlock` narrows its search on these before comparing whole keys.
    private let sharedPrefix: [UInt8]
    private let prefixes: [UInt64]
    /// Every `Table.sampleStride`-th prefix: a search starts here (a few cache lines for
    /// the whole table) and finishes in one stride of `prefixes`, instead of touching a
    /// new cache line at every step of a search over the whole array.
    private let samples: [UInt64]
    static let sampleStride = 64
    let handles: [TableFormat.Handle]
    private let filter: [UInt8]
    private let filterLayout: BloomFilter.Layout
    /// Where the data blocks end (the index block starts).
    let dataEnd: Int64
    private let onClose: (@Sendable () -> Void)?

    var number: UInt64 { meta.number }
    var blockCount: Int { handles.count }
    /// Memory held by the index and filter.
    var memoryBytes: Int {
        indexKeys.count + keyEnds.count * 4 + (prefixes.count + samples.count) * 8 + handles.count * 16 + filter.count
    }

    /// Opens table `meta.number` in `directory`, reading and verifying its footer, index,
    /// filter and properties.
    /// `onClose` runs when the table closes (the table cache counts open tables with it).
    static func open(
        storage: any Storage, directory: String, meta: TableMeta, cache: BlockCache, onClose: (@Sendable () -> Void)? = nil
    ) throws(KVError) -> Table {
        let path = directory + "/" + FileNames.table(meta.number)
        let file = try io("open table \(path)") { try storage.openFile(atPath: path, mode: .readOnly) }
        do {
            return try Table(storage: storage, path: path, file: file, meta: meta, cache: cache, onClose: onClose)
        } catch {
            try? storage.closeFile(file)
            throw error
        }
    }

    /// What table `number` in `directory` says of itself (size, properties), read from its
    /// footer and properties block without a manifest's record to check them against
    /// (`Database.salvage`). `open` then verifies the rest.
    static func readMeta(storage: any Storage, directory: String, number: UInt64) throws(KVError) -> TableMeta {
        let path = directory + "/" + FileNames.table(number)
        let file = try io("open table \(path)") { try storage.openFile(atPath: path, mode: .readOnly) }
        defer { try? storage.closeFile(file) }
        let corrupt = { (problem: TableProblem) in
            KVError(.corruption, "table \(path) is corrupt at offset \(problem.offset): \(problem.reason)", path: path, offsetBytes: problem.offset)
        }
        let size = try io("size of \(path)") { try storage.fileSize(file) }
        guard size >= Int64(2 * TableFormat.pageBytes), size % Int64(TableFormat.pageBytes) == 0 else {
            throw KVError(.corruption, "table \(path) is \(size) bytes, not a whole number of pages", path: path, offsetBytes: 0)
        }
        let footerOffset = size - Int64(TableFormat.pageBytes)
        let footerPage = try Table.read(storage: storage, file: file, path: path, offset: footerOffset, pages: 1)
        defer { storage.allocator.free(footerPage) }
        let footer: TableFormat.Footer
        switch TableFormat.Footer.decode(UnsafeRawBufferPointer(footerPage.bytes), table: number, fileBytes: size) {
        case .success(let decoded): footer = decoded
        case .failure(let problem): throw corrupt(TableProblem(offset: footerOffset + problem.offset, reason: problem.reason))
        }
        let start = footer.properties.offset / Int64(TableFormat.pageBytes) * Int64(TableFormat.pageBytes)
        let pages = Int((footerOffset - start) / Int64(TableFormat.pageBytes))
        guard pages > 0 else { throw corrupt(TableProblem(offset: footerOffset, reason: "properties block out of place")) }
        let region = try Table.read(storage: storage, file: file, path: path, offset: start, pages: pages)
        defer { storage.allocator.free(region) }
        let bytes = UnsafeRawBufferPointer(rebasing: region.bytes[Int(footer.properties.offset - start)...])
        switch TableFormat.verify(bytes, handle: footer.properties, table: number) {
        case .failure(let problem):
            throw corrupt(problem)
        case .success(let contents):
            guard let properties = TableProperties.decode(contents) else {
                throw corrupt(TableProblem(offset: footer.properties.offset, reason: "malformed properties block"))
            }
            return TableMeta(number: number, fileBytes: size, properties: properties)
        }
    }

    private init(
        storage: any Storage, path: String, file: FileID, meta: TableMeta, cache: BlockCache, onClose: (@Sendable () -> Void)?
    ) throws(KVError) {
        self.onClose = onClose
        self.storage = storage
        self.path = path
        self.file = file
        self.meta = meta
        self.cache = cache
        let corrupt = { (problem: TableProblem) in
            KVError(.corruption, "table \(path) is corrupt at offset \(problem.offset): \(problem.reason)", path: path, offsetBytes: problem.offset)
        }
        let size = try io("size of \(path)") { try storage.fileSize(file) }
        guard size == meta.fileBytes, size >= Int64(2 * TableFormat.pageBytes), size % Int64(TableFormat.pageBytes) == 0 else {
            throw KVError(
                .corruption, "table \(path) is \(size) bytes; the manifest says \(meta.fileBytes)",
                path: path, offsetBytes: min(size, meta.fileBytes))
        }
        let footerOffset = size - Int64(TableFormat.pageBytes)
        let footerPage = try Table.read(storage: storage, file: file, path: path, offset: footerOffset, pages: 1)
        defer { storage.allocator.free(footerPage) }
        let footer: TableFormat.Footer
        switch TableFormat.Footer.decode(UnsafeRawBufferPointer(footerPage.bytes), table: meta.number, fileBytes: size) {
        case .success(let decoded): footer = decoded
        case .failure(let problem): throw corrupt(TableProblem(offset: footerOffset + problem.offset, reason: problem.reason))
        }
        // Index, filter and properties are contiguous: one read.
        let metaStart = footer.index.offset
        let metaPages = Int((footerOffset - metaStart) / Int64(TableFormat.pageBytes))
        let region = try Table.read(storage: storage, file: file, path: path, offset: metaStart, pages: metaPages)
        defer { storage.allocator.free(region) }
        func contents(_ handle: TableFormat.Handle) throws(KVError) -> UnsafeRawBufferPointer {
            let start = Int(handle.offset - metaStart)
            let bytes = UnsafeRawBufferPointer(rebasing: region.bytes[start...])
            switch TableFormat.verify(bytes, handle: handle, table: meta.number) {
            case .success(let contents): return contents
            case .failure(let problem): throw corrupt(problem)
            }
        }
        guard let properties = TableProperties.decode(try contents(footer.properties)) else {
            throw corrupt(TableProblem(offset: footer.properties.offset, reason: "malformed properties block"))
        }
        guard properties == meta.properties else {
            throw corrupt(TableProblem(offset: footer.properties.offset, reason: "properties differ from the manifest's record of the table"))
        }
        filter = Array(try contents(footer.filter))
        filterLayout = footer.filterLayout
        guard let indexBlock = Block(copying: try contents(footer.index)) else {
            throw corrupt(TableProblem(offset: footer.index.offset, reason: "malformed index block"))
        }
        var keys: [UInt8] = []
        var ends: [Int32] = []
        var handles: [TableFormat.Handle] = []
        let cursor = BlockCursor(indexBlock)
        cursor.seekToFirst()
        var expected = Int64(0)
        while cursor.isValid {
            guard let handle = TableFormat.decodeHandle(cursor.value), handle.offset == expected,
                handle.offset + Int64(handle.length) <= metaStart
            else {
                throw corrupt(TableProblem(offset: footer.index.offset, reason: "index entry \(handles.count) names a block out of place"))
            }
            expected = handle.offset + Int64(handle.pages * TableFormat.pageBytes)
            keys.append(contentsOf: cursor.key.bytes)
            ends.append(Int32(keys.count))
            handles.append(handle)
            cursor.advance()
        }
        guard !cursor.corrupt, !handles.isEmpty, expected == metaStart else {
            throw corrupt(TableProblem(offset: footer.index.offset, reason: "malformed index block"))
        }
        indexKeys = keys
        keyEnds = ends
        (sharedPrefix, prefixes) = keys.withUnsafeBytes { keys in
            func userKey(_ index: Int) -> UnsafeRawBufferPointer {
                let start = index == 0 ? 0 : Int(ends[index - 1])
                return InternalKey.userKey(UnsafeRawBufferPointer(rebasing: keys[start..<Int(ends[index])]))
            }
            let first = userKey(0)
            let last = userKey(ends.count - 1)
            var shared = 0
            while shared < min(first.count, last.count) && first[shared] == last[shared] { shared += 1 }
            return (Array(first.prefix(shared)), (0..<ends.count).map { Table.prefix(of: userKey($0), after: shared) })
        }
        let prefixes = self.prefixes
        samples = stride(from: 0, to: prefixes.count, by: Table.sampleStride).map { prefixes[$0] }
        self.handles = handles
        dataEnd = metaStart
    }

    deinit {
        try? storage.closeFile(file)
        onClose?()
    }

    /// Reads `pages` pages at `offset` into a fresh buffer (the caller frees it).
    static func read(storage: any Storage, file: FileID, path: String, offset: Int64, pages: Int) throws(KVError) -> PageBuffer {
        try io("read \(path) at offset \(offset)") { () throws -> PageBuffer in
            let buffer = try storage.allocator.allocate(pages: pages)
            do {
                let got = try storage.read(file, offsetBytes: offset, into: buffer)
                guard got == buffer.count else {
                    throw KVError(.corruption, "table \(path) ends at \(offset + Int64(got)), inside a block", path: path, offsetBytes: offset + Int64(got))
                }
            } catch {
                storage.allocator.free(buffer)
                throw error
            }
            return buffer
        }
    }

    // MARK: index

    func indexKey(_ index: Int) -> UnsafeRawBufferPointer {
        let start = index == 0 ? 0 : Int(keyEnds[index - 1])
        return indexKeys.withUnsafeBytes { UnsafeRawBufferPointer(rebasing: $0[start..<Int(keyEnds[index])]) }
    }

    /// The 8 bytes of `key` after its first `skip`, big-endian, zero-padded. Between keys
    /// that share their first `skip` bytes, a smaller prefix means a smaller key.
    @inline(__always)
    static func prefix(of key: UnsafeRawBufferPointer, after skip: Int) -> UInt64 {
        var value: UInt64 = 0
        for offset in 0..<8 {
            value <<= 8
            if skip + offset < key.count { value |= UInt64(key[skip + offset]) }
        }
        return value
    }

    /// The first block whose last key is at or after (userKey, tag), or `blockCount`.
    func findBlock(_ userKey: UnsafeRawBufferPointer, tag: UInt64) -> Int {
        // A key outside the shared prefix's range is before or after every index key.
        let shared = sharedPrefix.count
        let head = sharedPrefix.withUnsafeBytes { SkipList.compareKeys($0, UnsafeRawBufferPointer(rebasing: userKey.prefix(shared))) }
        if head > 0 { return 0 }
        if head < 0 { return handles.count }
        // Index keys with a smaller prefix are before the target, with a larger one after:
        // only those with an equal prefix need whole-key comparisons.
        let target = Table.prefix(of: userKey, after: shared)
        var (low, high) = prefixes.withUnsafeBufferPointer { prefixes in
            samples.withUnsafeBufferPointer { samples -> (Int, Int) in
                /// The first index in `low..<high` of `values` at or above `target`
                /// (`orEqual`), or above it.
                func bound(_ values: UnsafeBufferPointer<UInt64>, _ low: Int, _ high: Int, orEqual: Bool) -> Int {
                    var low = low
                    var high = high
                    while low < high {
                        let mid = (low + high) / 2
                        if values[mid] < target || (!orEqual && values[mid] == target) { low = mid + 1 } else { high = mid }
                    }
                    return low
                }
                /// The same over all of `prefixes`: sample `j` is the first at or above (or
                /// above), so the answer lies after sample `j - 1` and at or before sample `j`.
                func bound(orEqual: Bool) -> Int {
                    let sample = bound(samples, 0, samples.count, orEqual: orEqual)
                    let low = sample == 0 ? 0 : (sample - 1) * Table.sampleStride + 1
                    return bound(prefixes, low, min(prefixes.count, sample * Table.sampleStride), orEqual: orEqual)
                }
                return (bound(orEqual: true), bound(orEqual: false))
            }
        }
        return indexKeys.withUnsafeBytes { keys in
            while low < high {
                let mid = (low + high) / 2
                let start = mid == 0 ? 0 : Int(keyEnds[mid - 1])
                let key = UnsafeRawBufferPointer(rebasing: keys[start..<Int(keyEnds[mid])])
                if InternalKey.compare(key, userKey, tag) < 0 { low = mid + 1 } else { high = mid }
            }
            return low
        }
    }

    func mayContain(hash: UInt64) -> Bool {
        filter.withUnsafeBytes { BloomFilter.mayContain($0, hash: hash, layout: filterLayout) }
    }

    // MARK: blocks

    func corruption(_ problem: TableProblem) -> KVError {
        KVError(.corruption, "table \(path) is corrupt at offset \(problem.offset): \(problem.reason)", path: path, offsetBytes: problem.offset)
    }

    /// Verifies a block's bytes and copies them into a `Block`.
    func makeBlock(_ bytes: UnsafeRawBufferPointer, index: Int) throws(KVError) -> Block {
        let handle = handles[index]
        switch TableFormat.verify(bytes, handle: handle, table: meta.number) {
        case .failure(let problem):
            throw corruption(problem)
        case .success(let contents):
            guard let block = Block(copying: contents) else {
                throw corruption(TableProblem(offset: handle.offset, reason: "malformed block"))
            }
            return block
        }
    }

    /// Block `index` from a read of it that has completed: the read checked (a failure or
    /// a short read is an error naming the file and offset), the bytes verified.
    func landedBlock(_ index: Int, _ buffer: PageBuffer, _ outcome: IOResult) throws(KVError) -> Block {
        let handle = handles[index]
        switch outcome {
        case .failure(let error):
            throw KVError.io(error, while: "read \(path) at offset \(handle.offset)")
        case .success(let got):
            guard got == buffer.count else {
                throw KVError(
                    .corruption, "table \(path) ends at \(handle.offset + Int64(got)), inside a block",
                    path: path, offsetBytes: handle.offset + Int64(got))
            }
        }
        return try makeBlock(UnsafeRawBufferPointer(buffer.bytes), index: index)
    }

    /// Reads the blocks all at once on one ``IOQueue`` (so their latencies overlap) and
    /// returns them verified, in order; nil for one that failed (its reader reads it again
    /// and reports the error) or that found the arena short. Not cached here.
    static func readBlocks(_ wanted: [(table: Table, block: Int)]) -> [Block?] {
        guard let storage = wanted.first?.table.storage else { return [] }
        var blocks = [Block?](repeating: nil, count: wanted.count)
        storage.withIOQueue { queue in
            var buffers: [Int: PageBuffer] = [:]
            for (position, read) in wanted.enumerated() {
                let handle = read.table.handles[read.block]
                guard handle.pages <= Table.largeBlockPages, let buffer = try? storage.allocator.tryAllocate(pages: handle.pages) else { break }
                buffers[position] = buffer
                queue.submit(.read(read.table.file, IOSegment(offsetBytes: handle.offset, buffer: buffer)), tag: position)
            }
            while queue.inFlight > 0 {
                for (position, outcome) in queue.wait() {
                    let buffer = buffers.removeValue(forKey: position)!
                    defer { storage.allocator.free(buffer) }
                    blocks[position] = try? wanted[position].table.landedBlock(wanted[position].block, buffer, outcome)
                }
            }
        }
        return blocks
    }

    /// Blocks longer than this many pages (a chunk's worth) are read a piece at a time
    /// into ordinary memory, never into one arena buffer, and never read ahead.
    static let largeBlockPages = TableBuilder.chunkPages

    /// Data block `index`, from the cache or the disk (then cached when `fillCache`).
    func block(_ index: Int, fillCache: Bool = true) throws(KVError) -> Block {
        let handle = handles[index]
        let key = BlockKey(table: meta.number, offset: handle.offset)
        if let cached = cache.lookup(key) { return cached }
        if handle.pages > Table.largeBlockPages {
            // A block holding a very large value: read into ordinary memory a piece at a
            // time (no arena buffer larger than a piece), and not cached when larger than
            // a cache shard can hold (the cache turns it away).
            var bytes = [UInt8](repeating: 0, count: handle.pages * TableFormat.pageBytes)
            let got = try io("read \(path) at offset \(handle.offset)") {
                try bytes.withUnsafeMutableBytes { try storage.read(file, offsetBytes: handle.offset, copyingInto: $0) }
            }
            guard got == bytes.count else {
                throw KVError(
                    .corruption, "table \(path) ends at \(handle.offset + Int64(got)), inside a block",
                    path: path, offsetBytes: handle.offset + Int64(got))
            }
            let verified = bytes.withUnsafeBytes { raw -> Result<Block, KVError> in
                do throws(KVError) { return .success(try makeBlock(raw, index: index)) } catch { return .failure(error) }
            }
            let block = try verified.get()
            if fillCache { cache.insert(key, block) }
            return block
        }
        let buffer = try Table.read(storage: storage, file: file, path: path, offset: handle.offset, pages: handle.pages)
        defer { storage.allocator.free(buffer) }
        let block = try makeBlock(UnsafeRawBufferPointer(buffer.bytes), index: index)
        if fillCache { cache.insert(key, block) }
        return block
    }

    /// The newest version of `userKey` at or below `snapshot` in this table.
    func get(_ userKey: UnsafeRawBufferPointer, hash: UInt64, snapshot: UInt64) throws(KVError) -> Memtable.Lookup {
        try withFound(userKey, hash: hash, snapshot: snapshot) { $0.copied }
    }

    /// As `get`, with the answer where it lies in its block: `body` runs while the block
    /// is held.
    func withFound<R>(
        _ userKey: UnsafeRawBufferPointer, hash: UInt64, snapshot: UInt64, _ body: (Memtable.Borrowed) -> R
    ) throws(KVError) -> R {
        guard mayContain(hash: hash) else { return body(.missing) }
        let tag = Tag.seeking(snapshot)
        let index = findBlock(userKey, tag: tag)
        guard index < handles.count else { return body(.missing) }
        let block = try block(index)
        let found = try find(in: block, userKey, tag: tag, index: index)
        return withExtendedLifetime(block) { body(found) }
    }

    /// Finishes a lookup in the block that may hold (userKey, tag).
    func lookup(in block: Block, _ userKey: UnsafeRawBufferPointer, tag: UInt64, index: Int) throws(KVError) -> Memtable.Lookup {
        try find(in: block, userKey, tag: tag, index: index).copied
    }

    /// As `lookup`, the value left in `block` (valid while the caller holds it).
    func find(in block: Block, _ userKey: UnsafeRawBufferPointer, tag: UInt64, index: Int) throws(KVError) -> Memtable.Borrowed {
        switch block.pointSearch(userKey, tag: tag) {
        case .corrupt:
            throw corruption(TableProblem(offset: handles[index].offset, reason: "malformed block entry"))
        case .none, .entry(sameUserKey: false, _, _):
            return .missing
        case .entry(sameUserKey: true, let found, let value):
            if Tag.isDelete(found) { return .deleted }
            return .value(UnsafeRawBufferPointer(rebasing: block.bytes[value]))
        }
    }

    /// Reads every data block, verifying checksums, that entries are in order, and that
    /// the first and last are the properties' smallest and largest keys; `visit` sees each
    /// entry (user key, tag, value) on the way. Returns the blocks read.
    func verifyBlocks(
        visit: ((UnsafeRawBufferPointer, UInt64, UnsafeRawBufferPointer) -> Void)? = nil
    ) throws(KVError) -> Int {
        let walk = TableIterator(table: self, readaheadPages: TableBuilder.chunkPages, alwaysReadAhead: true)
        walk.seekToFirst()
        var previous: [UInt8] = []
        var entries: UInt64 = 0
        while walk.isValid {
            let current = InternalKey.encode(walk.key, tag: walk.tag)
            if entries > 0 {
                let ordered = previous.withUnsafeBytes { a in current.withUnsafeBytes { b in InternalKey.compare(a, b) < 0 } }
                if !ordered { throw corruption(TableProblem(offset: 0, reason: "entries out of order after entry \(entries)")) }
            }
            if entries == 0 && current != meta.properties.smallest {
                throw corruption(TableProblem(offset: 0, reason: "first entry is not the properties' smallest key"))
            }
            visit?(walk.key, walk.tag, walk.value)
            previous = current
            entries += 1
            walk.next()
        }
        if let error = walk.error { throw error }
        if entries > 0 && previous != meta.properties.largest {
            throw corruption(TableProblem(offset: 0, reason: "last entry is not the properties' largest key"))
        }
        guard entries == meta.properties.entries else {
            throw corruption(TableProblem(offset: 0, reason: "\(entries) entries read; the properties say \(meta.properties.entries)"))
        }
        return blockCount
    }
}
