import DequeModule
import PageStore

extension Database {
    /// The values stored under `keys` (nil where absent), in order, at one snapshot.
    ///
    /// The lookups that reach tables share one queue of block reads: for each key the next
    /// table that may hold it (key range and bloom filter) is asked, from the block cache
    /// when it can; otherwise its block read is submitted through the ring, up to
    /// ``Options/batchReadDepth`` at once. Each completion answers the keys waiting on that
    /// block (or sends them on to their next table) and starts the next read, so the device
    /// sees a full queue for as long as the batch lasts. Two keys in one block share a read.
    public func get(keys: [[UInt8]], snapshot: Snapshot? = nil) throws(KVError) -> [[UInt8]?] {
        try checkOpen()
        counters.gets.add(keys.count)
        let view = currentView
        let sequence = snapshot?.sequence ?? view.visibleSequence
        var results = [[UInt8]?](repeating: nil, count: keys.count)
        var open: [TableLookup] = []
        for (index, key) in keys.enumerated() {
            let (found, candidates, floor) = key.withUnsafeBytes { key -> (Memtable.Lookup, [TableFile], UInt64) in
                let floor = view.rangeDeleteFloor(key, snapshot: sequence)
                let found = view.getFromMemtables(key, snapshot: sequence, floor: floor)
                return (found, found == .missing ? view.candidates(key) : [], floor)
            }
            switch found {
            case .value(let value): results[index] = value
            case .deleted: break
            case .missing:
                if !candidates.isEmpty {
                    open.append(TableLookup(index: index, hash: key.withUnsafeBytes { BloomFilter.hash($0) }, candidates: candidates, floor: floor))
                }
            }
        }
        if !open.isEmpty { try getFromTables(keys, open, tag: Tag.seeking(sequence), into: &results) }
        return results
    }

    /// One key of a batched lookup on its way through the tables that may hold it.
    private struct TableLookup {
        let index: Int
        let hash: UInt64
        let candidates: [TableFile]
        /// Versions older than this read as deleted (a range delete covers the key).
        let floor: UInt64
        var next = 0
    }

    /// The pipelined part of `get(keys:snapshot:)`: lookups wait in `ready` for their next
    /// table; at most `batchReadDepth` block reads are in flight on one ``IOQueue`` (an
    /// inline ring of this thread's where the store has one); completions are taken in the
    /// order the device finishes them.
    private func getFromTables(_ keys: [[UInt8]], _ open: [TableLookup], tag: UInt64, into results: inout [[UInt8]?]) throws(KVError) {
        try storage.withIOQueue { queue throws(KVError) in
            try getFromTables(keys, open, tag: tag, into: &results, queue: queue)
        }
    }

    private func getFromTables(
        _ keys: [[UInt8]], _ open: [TableLookup], tag: UInt64, into results: inout [[UInt8]?], queue: any IOQueue
    ) throws(KVError) {
        struct Read {
            let table: Table
            let block: Int
            let buffer: PageBuffer
            var lookups: [TableLookup]
        }
        let depth = min(options.batchReadDepth, options.pageStore.ringEntries)
        var reads: [Int: Read] = [:]  // in flight, by tag
        var tagOfBlock: [BlockKey: Int] = [:]
        var nextTag = 0
        var ready = Deque(open)
        defer {
            // On an error, the reads still in flight must land before their buffers go back.
            while !reads.isEmpty {
                for (tag, _) in queue.wait() {
                    if let read = reads.removeValue(forKey: tag) { storage.allocator.free(read.buffer) }
                }
            }
        }

        /// Whether `block` of `table` answers the lookup (a value or a deletion).
        func answers(_ lookup: TableLookup, _ block: Block, _ table: Table, _ index: Int) throws(KVError) -> Bool {
            switch try self.lookup(keys[lookup.index], in: block, table: table, block: index, tag: tag, floor: lookup.floor) {
            case .missing: return false
            case .deleted: return true
            case .value(let value):
                results[lookup.index] = value
                return true
            }
        }

        /// Moves `lookup` on until it is answered, waits on a read in flight, or has run out
        /// of tables. False when it needs a read that cannot start now (queue full, or the
        /// arena short while other reads are in flight): it stays at that table.
        func advance(_ lookup: inout TableLookup) throws(KVError) -> Bool {
            while lookup.next < lookup.candidates.count {
                let table = try lookup.candidates[lookup.next].open()
                guard table.mayContain(hash: lookup.hash) else {
                    lookup.next += 1
                    continue
                }
                let block = keys[lookup.index].withUnsafeBytes { table.index.findBlock($0, tag: tag) }
                guard block < table.blockCount else {
                    lookup.next += 1
                    continue
                }
                let handle = table.handles[block]
                let blockKey = BlockKey(table: table.number, offset: handle.offset)
                if let readTag = tagOfBlock[blockKey] {
                    lookup.next += 1
                    reads[readTag]!.lookups.append(lookup)
                    return true
                }
                if let cached = cache.lookup(blockKey) {
                    lookup.next += 1
                    if try answers(lookup, cached, table, block) { return true }
                    continue
                }
                guard reads.count < depth else { return false }
                guard handle.pages <= Table.largeBlockPages, let buffer = try? storage.allocator.tryAllocate(pages: handle.pages) else {
                    if !reads.isEmpty { return false }
                    // The arena is short and nothing of ours is in flight: read this one
                    // block on its own (waiting for pages) rather than stall.
                    lookup.next += 1
                    if try answers(lookup, try table.block(block), table, block) { return true }
                    continue
                }
                lookup.next += 1
                let readTag = nextTag
                nextTag += 1
                reads[readTag] = Read(table: table, block: block, buffer: buffer, lookups: [lookup])
                tagOfBlock[blockKey] = readTag
                queue.submit(.read(table.file, IOSegment(offsetBytes: handle.offset, buffer: buffer)), tag: readTag)
                return true
            }
            return true
        }

        /// Starts what the queue has room for, in order.
        func refill() throws(KVError) {
            while var lookup = ready.first {
                guard try advance(&lookup) else {
                    ready[ready.startIndex] = lookup
                    return
                }
                ready.removeFirst()
            }
        }

        try refill()
        while !reads.isEmpty {
            var landed: [(read: Read, outcome: IOResult)] = []
            for (readTag, outcome) in queue.wait() {
                let read = reads.removeValue(forKey: readTag)!
                tagOfBlock[BlockKey(table: read.table.number, offset: read.table.handles[read.block].offset)] = nil
                landed.append((read, outcome))
            }
            defer { for (read, _) in landed { storage.allocator.free(read.buffer) } }
            // Each block answers its keys and sends the rest on before the next is looked
            // at, so new reads reach the device a few at a time, not as one burst after
            // the whole group (a device that gets them in bursts serves them in bursts).
            for (read, outcome) in landed {
                let block = try read.table.landedBlock(read.block, read.buffer, outcome)
                cache.insert(BlockKey(table: read.table.number, offset: read.table.handles[read.block].offset), block)
                for lookup in read.lookups where try !answers(lookup, block, read.table, read.block) {
                    ready.append(lookup)
                }
                try refill()
            }
        }
    }

    private func lookup(_ key: [UInt8], in block: Block, table: Table, block index: Int, tag: UInt64, floor: UInt64) throws(KVError) -> Memtable.Lookup {
        let found = key.withUnsafeBytes { key in
            Result { () throws(KVError) -> Memtable.Lookup in try table.lookup(in: block, key, tag: tag, index: index, floor: floor) }
        }
        return try found.get()
    }
}
