import PageStore

extension Database {
    /// The values stored under `keys` (nil where absent), in order, at one snapshot.
    ///
    /// The lookups that reach tables are done together: each round finds, for every key
    /// still open, the next table that may hold it (key range and bloom filter), serves it
    /// from the block cache when it can, and submits every block read the round needs at
    /// once through the ring, so their latencies overlap (the device sees the batch as one
    /// queue of reads).
    public func get(keys: [[UInt8]], snapshot: Snapshot? = nil) throws(KVError) -> [[UInt8]?] {
        try checkOpen()
        metrics.gets.increment(by: Int64(keys.count))
        let view = currentView
        let sequence = snapshot?.sequence ?? view.visibleSequence
        let tag = sequence << 8 | 0xFF
        var results = [[UInt8]?](repeating: nil, count: keys.count)

        struct Pending {
            let index: Int
            let hash: UInt64
            let candidates: [Table]
            var next = 0
        }
        var open: [Pending] = []
        for (index, key) in keys.enumerated() {
            let (found, candidates) = key.withUnsafeBytes { key -> (Memtable.Lookup, [Table]) in
                let found = view.getFromMemtables(key, snapshot: sequence)
                return (found, found == .missing ? view.candidates(key) : [])
            }
            switch found {
            case .value(let value): results[index] = value
            case .deleted: break
            case .missing:
                if !candidates.isEmpty {
                    open.append(Pending(index: index, hash: key.withUnsafeBytes { BloomFilter.hash($0) }, candidates: candidates))
                }
            }
        }

        struct Read {
            let table: Table
            let block: Int
            var waiting: [Int] = []
        }
        while !open.isEmpty {
            var reads: [BlockKey: Read] = [:]
            var stillOpen: [Pending] = []
            for var pending in open {
                while pending.next < pending.candidates.count {
                    let table = pending.candidates[pending.next]
                    pending.next += 1
                    guard table.mayContain(hash: pending.hash) else { continue }
                    let block = keys[pending.index].withUnsafeBytes { table.findBlock($0, tag: tag) }
                    guard block < table.blockCount else { continue }
                    let blockKey = BlockKey(table: table.number, offset: table.handles[block].offset)
                    if let cached = cache.lookup(blockKey) {
                        let found = try lookup(keys[pending.index], in: cached, table: table, block: block, tag: tag)
                        if found == .missing { continue }
                        if case .value(let value) = found { results[pending.index] = value }
                        break
                    }
                    reads[blockKey, default: Read(table: table, block: block)].waiting.append(stillOpen.count)
                    stillOpen.append(pending)
                    break
                }
            }
            if reads.isEmpty { break }
            let batch = Array(reads.values)
            let blocks = try readBlocks(batch.map { ($0.table, $0.block, $0.waiting) })
            var next: [Pending] = []
            var resolved = Set<Int>()
            for (read, block) in zip(batch, blocks) {
                for position in read.waiting {
                    let pending = stillOpen[position]
                    let found = try lookup(keys[pending.index], in: block, table: read.table, block: read.block, tag: tag)
                    switch found {
                    case .missing: break
                    case .deleted: resolved.insert(position)
                    case .value(let value):
                        results[pending.index] = value
                        resolved.insert(position)
                    }
                }
            }
            for (position, pending) in stillOpen.enumerated() where !resolved.contains(position) && pending.next < pending.candidates.count {
                next.append(pending)
            }
            open = next
        }
        return results
    }

    private func lookup(_ key: [UInt8], in block: Block, table: Table, block index: Int, tag: UInt64) throws(KVError) -> Memtable.Lookup {
        let found = key.withUnsafeBytes { key in
            Result { () throws(KVError) -> Memtable.Lookup in try table.lookup(in: block, key, tag: tag, index: index) }
        }
        return try found.get()
    }

    /// Before a cursor's first seek: the block each table source will read to position
    /// itself at `key` (every level-0 table that reaches it, one table per deeper level),
    /// read all at once into the cache, so the seek's reads overlap instead of following
    /// one another. Errors are left for the seek itself to report.
    func prefetchForSeek(_ view: View, _ key: [UInt8]) {
        guard view.version.tableCount > 1 else { return }
        var reads: [(table: Table, block: Int, waiting: [Int])] = []
        key.withUnsafeBytes { key in
            func add(_ table: Table) {
                let block = table.findBlock(key, tag: .max)
                if block < table.blockCount && !cache.contains(BlockKey(table: table.number, offset: table.handles[block].offset)) {
                    reads.append((table, block, []))
                }
            }
            for table in view.version.levels[0]
            where table.meta.largestUserKey.withUnsafeBytes({ SkipList.compareKeys($0, key) >= 0 }) {
                add(table)
            }
            for level in 1..<Version.levelCount {
                if let table = view.version.firstTable(level: level, reaching: key) { add(table) }
            }
        }
        if reads.count > 1 { _ = try? readBlocks(reads) }
    }

    /// Reads the blocks all at once (one submission each, none waited for before the
    /// last is submitted), verifies them and puts them in the cache.
    private func readBlocks(_ reads: [(table: Table, block: Int, waiting: [Int])]) throws(KVError) -> [Block] {
        var buffers: [PageBuffer?] = []
        var done: [OneShot<IOResult>?] = []
        defer {
            for (buffer, wait) in zip(buffers, done) {
                if let wait, !wait.isFulfilled {
                    storage.willWait()
                    _ = wait.wait()
                }
                if let buffer { storage.allocator.free(buffer) }
            }
        }
        for read in reads {
            let handle = read.table.handles[read.block]
            // When the arena is short, the rest of the batch reads one block at a time.
            guard let buffer = try? storage.allocator.tryAllocate(pages: handle.pages) else {
                buffers.append(nil)
                done.append(nil)
                continue
            }
            let finished = OneShot<IOResult>()
            storage.submit(.read(read.table.file, IOSegment(offsetBytes: handle.offset, buffer: buffer))) { finished.fulfil($0) }
            buffers.append(buffer)
            done.append(finished)
        }
        storage.willWait()
        var blocks: [Block] = []
        for (index, read) in reads.enumerated() {
            guard let wait = done[index], let buffer = buffers[index] else {
                blocks.append(try read.table.block(read.block))
                continue
            }
            let handle = read.table.handles[read.block]
            switch wait.wait() {
            case .failure(let error):
                throw KVError.io(error, while: "read \(read.table.path) at offset \(handle.offset)")
            case .success(let got):
                guard got == buffer.count else {
                    throw KVError(
                        .corruption, "table \(read.table.path) ends at \(handle.offset + Int64(got)), inside a block",
                        path: read.table.path, offsetBytes: handle.offset + Int64(got))
                }
            }
            let block = try read.table.makeBlock(UnsafeRawBufferPointer(buffer.bytes), index: read.block)
            cache.insert(BlockKey(table: read.table.number, offset: handle.offset), block)
            blocks.append(block)
        }
        return blocks
    }
}
