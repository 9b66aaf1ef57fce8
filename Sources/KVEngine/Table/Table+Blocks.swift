import PageStore

// A table's data blocks: read (one, or many at once), verified, cached, and searched.

extension Table {
    /// Verifies a block's bytes and copies them into a `Block`.
    func makeBlock(_ bytes: UnsafeRawBufferPointer, index: Int) throws(KVError) -> Block {
        let handle = handles[index]
        switch TableFormat.verify(bytes, handle: handle, table: meta.number) {
        case .failure(let problem):
            throw corruption(problem)
        case .success(let contents):
            switch TableFormat.dataBlock(contents, hasTrailer: hasBlockTrailers) {
            case .success(let block): return block
            case .failure(let problem): throw corruption(TableProblem(offset: handle.offset, reason: problem.description))
            }
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
    func get(
        _ userKey: UnsafeRawBufferPointer, hash: UInt64, snapshot: UInt64, floor: UInt64 = 0, filterPassed: Bool = false
    ) throws(KVError) -> Memtable.Lookup {
        try withFound(userKey, hash: hash, snapshot: snapshot, floor: floor, filterPassed: filterPassed) { $0.copied }
    }

    /// As `get`, with the answer where it lies in its block: `body` runs while the block
    /// is held. A version older than `floor` (a range delete covering the key) reads as
    /// deleted. `filterPassed`: the caller has asked the filter (`mayContain`) already.
    func withFound<R>(
        _ userKey: UnsafeRawBufferPointer, hash: UInt64, snapshot: UInt64, floor: UInt64 = 0, filterPassed: Bool = false,
        _ body: (Memtable.Borrowed) -> R
    ) throws(KVError) -> R {
        guard filterPassed || mayContain(hash: hash) else { return body(.missing) }
        let tag = Tag.seeking(snapshot)
        let index = self.index.findBlock(userKey, tag: tag)
        guard index < handles.count else { return body(.missing) }
        let block = try block(index)
        let found = try find(in: block, userKey, tag: tag, index: index, floor: floor)
        return withExtendedLifetime(block) { body(found) }
    }

    /// Finishes a lookup in the block that may hold (userKey, tag).
    func lookup(in block: Block, _ userKey: UnsafeRawBufferPointer, tag: UInt64, index: Int, floor: UInt64 = 0) throws(KVError) -> Memtable.Lookup {
        try find(in: block, userKey, tag: tag, index: index, floor: floor).copied
    }

    /// As `lookup`, the value left in `block` (valid while the caller holds it).
    func find(in block: Block, _ userKey: UnsafeRawBufferPointer, tag: UInt64, index: Int, floor: UInt64 = 0) throws(KVError) -> Memtable.Borrowed {
        switch block.pointSearch(userKey, tag: tag) {
        case .corrupt:
            throw corruption(TableProblem(offset: handles[index].offset, reason: "malformed block entry"))
        case .none, .entry(sameUserKey: false, _, _):
            return .missing
        case .entry(sameUserKey: true, let found, let value):
            if Tag.isDelete(found) || Tag.sequence(found) < floor { return .deleted }
            return .value(UnsafeRawBufferPointer(rebasing: block.bytes[value]))
        }
    }
}
