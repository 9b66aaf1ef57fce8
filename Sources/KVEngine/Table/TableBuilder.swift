import PageStore

/// What the manifest records of a table file.
struct TableMeta: Equatable, Sendable {
    var number: UInt64
    var fileBytes: Int64
    var properties: TableProperties

    var smallest: [UInt8] { properties.smallest }
    var largest: [UInt8] { properties.largest }

    var smallestUserKey: ArraySlice<UInt8> { properties.smallest.dropLast(InternalKey.tagBytes) }
    var largestUserKey: ArraySlice<UInt8> { properties.largest.dropLast(InternalKey.tagBytes) }

    /// Whether the table's user-key range meets [lower, upper] (nil: unbounded).
    func overlaps(lower: [UInt8]?, upper: [UInt8]?) -> Bool {
        if let lower, largestUserKey.lexicographicallyPrecedes(lower) { return false }
        if let upper, upper.lexicographicallyPrecedes(smallestUserKey) { return false }
        return true
    }
}

/// Writes one sorted table: entries in internal-key order go into page-aligned blocks that
/// are staged in large fixed buffers and written with O_DIRECT while the next fill; the
/// index, filter, properties and footer follow, and the last write is a commit chain
/// (write -> fdatasync). The caller fsyncs the directory before the table is referenced.
final class TableBuilder {
    static let chunkPages = 256

    let storage: any Storage
    let path: String
    let number: UInt64
    private let file: FileID
    private var chunks: [PageBuffer] = []
    private var pending: [OneShot<IOResult>?] = [nil, nil]
    private var current = 0
    /// Bytes staged in the current chunk.
    private var staged = 0
    /// File offset where the current chunk starts.
    private var chunkOffset: Int64 = 0
    private var block: BlockBuilder
    private var index = BlockBuilder()
    private var lastKey: [UInt8] = []
    private var hashes: [UInt64] = []
    private var lastHashedKey: [UInt8] = []
    private var hasHashedKey = false
    private(set) var properties = TableProperties()
    private var reserved: Int64
    private var finished = false
    /// The table format version written (the build's; tests write older ones to check
    /// that they are still read).
    private let formatVersion: UInt32
    /// How data blocks are compressed (table format 3; older formats write none).
    private let compression: Compression
    /// Raw bytes at which a data block is cut: a page's worth, or with compression what
    /// should compress to about a page.
    private var rawBlockTarget: Int
    /// Compressed over raw size of recent blocks.
    private var compressionRatio = 0.5
    /// Zstandard's context, made with the first block it compresses.
    private var zstdContext: ZstdContext? = nil
    /// Where data blocks go as they are written, and how (see `CacheFill`).
    private let cacheFill: (cache: BlockCache, mode: CacheFill)?

    /// How a table's data blocks enter the block cache as they are written (RocksDB's
    /// `prepopulate_block_cache`): the builder holds them in memory already, and the
    /// kernel's page cache would have them for an engine that reads through it.
    enum CacheFill {
        /// As a read would put them there (the CLOCK hand makes room): a flush's blocks,
        /// the newest writes, the likeliest to be read.
        case insert
        /// Only while the cache has free room, evicting nothing: a compaction's output,
        /// which must not push out what readers use.
        case ifRoom
    }

    init(
        storage: any Storage, directory: String, number: UInt64, expectedBytes: Int64,
        formatVersion: UInt32 = TableFormat.version, compression: Compression = .none,
        restartInterval: Int = 16, cacheFill: (cache: BlockCache, mode: CacheFill)? = nil
    ) throws(KVError) {
        block = BlockBuilder(restartInterval: restartInterval)
        self.cacheFill = cacheFill
        precondition((1...TableFormat.version).contains(formatVersion), "a table format this build writes")
        self.formatVersion = formatVersion
        self.compression = formatVersion >= 3 ? compression : .none
        rawBlockTarget = formatVersion >= 3
            ? (self.compression == .none ? TableFormat.blockTargetBytes - 1 : TableBuilder.rawTarget(0.5))
            : TableFormat.blockTargetBytes
        self.storage = storage
        self.number = number
        path = directory + "/" + FileNames.table(number)
        reserved = max(0, expectedBytes) / Int64(TableFormat.pageBytes) * Int64(TableFormat.pageBytes)
        let path = path
        (file, chunks) = try io("create table \(path)") { () throws -> (FileID, [PageBuffer]) in
            let file = try storage.openFile(atPath: path, mode: .createNew)
            do {
                let first = try storage.allocator.allocate(pages: TableBuilder.chunkPages)
                let second = try storage.allocator.allocate(pages: TableBuilder.chunkPages)
                return (file, [first, second])
            } catch {
                try? storage.closeFile(file)
                try? storage.removeFile(atPath: path)
                throw error
            }
        }
        if reserved > 0 {
            let (file, reserved) = (file, reserved)
            do throws(KVError) {
                _ = try io("reserve \(reserved) bytes for table \(path)") {
                    try storage.performBlocking(.allocate(file, offsetBytes: 0, lengthBytes: reserved))
                }
            } catch where error.refusesReservation {
                // No room for the whole estimate: the table is written without a
                // reservation (a part the failed fallocate may have kept goes first, as
                // the file must end with the table's footer); a write that finds no room
                // fails then.
                do throws(KVError) {
                    try io("drop the reservation of \(path)") { try storage.truncateFile(file, toBytes: 0) }
                } catch {
                    abandon()
                    throw error
                }
                self.reserved = 0
            } catch {
                abandon()
                throw error
            }
        }
    }

    deinit {
        if !finished { abandon() }
    }

    /// Bytes written so far (data blocks staged or written).
    var fileBytes: Int64 { chunkOffset + Int64(staged) + Int64(block.estimatedBytes) }

    /// Adds an entry; entries must arrive in increasing internal-key order.
    func add(_ userKey: UnsafeRawBufferPointer, tag: UInt64, value: UnsafeRawBufferPointer) throws(KVError) {
        if !block.isEmpty && block.estimatedBytes(addingKey: userKey.count + InternalKey.tagBytes, value: value.count) > rawBlockTarget {
            // The block ends with the previous entry, whose key is still in `lastKey`.
            try finishDataBlock()
        }
        lastKey.removeAll(keepingCapacity: true)
        InternalKey.append(userKey, tag: tag, to: &lastKey)
        if properties.entries == 0 { properties.smallest = lastKey }
        lastKey.withUnsafeBytes { block.add($0, value) }
        if !hasHashedKey || SkipList.compareKeys(userKey, lastHashedKey.withUnsafeBytes { $0 }) != 0 {
            hashes.append(BloomFilter.hash(userKey))
            lastHashedKey.removeAll(keepingCapacity: true)
            lastHashedKey.append(contentsOf: userKey)
            hasHashedKey = true
            if formatVersion >= 3 { properties.userKeys = (properties.userKeys ?? 0) + 1 }
        }
        let sequence = Tag.sequence(tag)
        properties.entries += 1
        if Tag.isDelete(tag) { properties.deletions += 1 }
        properties.smallestSequence = min(properties.smallestSequence, sequence)
        properties.largestSequence = max(properties.largestSequence, sequence)
    }

    private func finishDataBlock() throws(KVError) {
        let contents = block.finish()
        let handle: TableFormat.Handle
        if formatVersion >= 3 {
            if case .zstd = compression, zstdContext == nil { zstdContext = ZstdContext() }
            let stored = TableFormat.encodeDataBlock(contents, compression: compression, context: zstdContext)
            handle = try append(stored)
            if compression != .none && contents.count <= BlockCodec.maxCompressedRawBytes {
                // The next block's raw size aims at one page once compressed, from how
                // well the blocks so far compressed (a moving average of the ratio).
                // A block stored raw (the data stopped compressing) resets the average at
                // once, so that the next blocks are a page again.
                let ratio = Double(stored.count) / Double(contents.count)
                compressionRatio = stored.last == Compression.none.kind ? 1 : compressionRatio * 0.75 + ratio * 0.25
                rawBlockTarget = TableBuilder.rawTarget(compressionRatio)
            }
        } else {
            handle = try append(contents)
        }
        if let (cache, mode) = cacheFill, let copy = contents.withUnsafeBytes({ Block(copying: $0) }) {
            let key = BlockKey(table: number, offset: handle.offset)
            switch mode {
            case .insert: cache.insert(key, copy)
            case .ifRoom: cache.insertIfRoom(key, copy)
            }
        }
        properties.dataBytes += UInt64(handle.length)
        var encoded: [UInt8] = []
        TableFormat.encodeHandle(handle, into: &encoded)
        // The index key of a block is its last internal key.
        lastKey.withUnsafeBytes { key in encoded.withUnsafeBytes { index.add(key, $0) } }
    }

    /// Stages a block at the next page boundary; returns its handle.
    private func append(_ contents: [UInt8]) throws(KVError) -> TableFormat.Handle {
        let length = contents.count + TableFormat.checksumBytes
        let padded = (length + TableFormat.pageBytes - 1) / TableFormat.pageBytes * TableFormat.pageBytes
        let capacity = TableBuilder.chunkPages * TableFormat.pageBytes
        if staged + padded > capacity { try writeChunk() }
        let offset = chunkOffset + Int64(staged)
        if padded > capacity {
            // A block larger than a chunk (a very large value) is sealed in ordinary memory
            // and written a chunk's worth at a time: no arena buffer larger than a chunk.
            var sealed = [UInt8](repeating: 0, count: padded)
            sealed.withUnsafeMutableBytes { buffer in
                contents.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: buffer[0..<contents.count]).copyMemory(from: $0) }
                _ = TableFormat.seal(buffer, contents: contents.count, table: number, offset: offset)
            }
            try io("write table \(path) at offset \(offset)") {
                try sealed.withUnsafeBytes { try storage.write(file, offsetBytes: offset, copying: $0, pieceBytes: capacity) }
            }
            chunkOffset += Int64(padded)
            return TableFormat.Handle(offset: offset, length: length)
        }
        let target = UnsafeMutableRawBufferPointer(rebasing: chunks[current].bytes[staged..<(staged + padded)])
        contents.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: target[0..<contents.count]).copyMemory(from: $0) }
        _ = TableFormat.seal(target, contents: contents.count, table: number, offset: offset)
        staged += padded
        return TableFormat.Handle(offset: offset, length: length)
    }

    /// Sends the staged chunk to disk (asynchronously) and moves filling to the other one.
    private func writeChunk() throws(KVError) {
        guard staged > 0 else { return }
        let done = OneShot<IOResult>()
        let segment = IOSegment(offsetBytes: chunkOffset, buffer: chunks[current].slice(offset: 0, count: staged))
        storage.submit(.write(file, [segment])) { done.fulfil($0) }
        pending[current] = done
        chunkOffset += Int64(staged)
        staged = 0
        current ^= 1
        try waitFor(current)
    }

    private func waitFor(_ slot: Int) throws(KVError) {
        guard let done = pending[slot] else { return }
        storage.willWait()
        let result = done.wait()
        pending[slot] = nil
        if case .failure(let error) = result { throw KVError.io(error, while: "write table \(path)") }
    }

    /// The raw size of a block that should compress, at `ratio`, to a little under a
    /// page with its trailer and checksum (a page's worth when it does not compress, at
    /// most 64 KiB).
    static func rawTarget(_ ratio: Double) -> Int {
        let target = Double(TableFormat.blockTargetBytes - 1 - BlockCodec.rawLengthBytes) / max(ratio, 0.0625) * 0.95
        return min(64 << 10, max(TableFormat.blockTargetBytes - 1, Int(target)))
    }

    /// Writes the rest and the footer, fdatasyncs, and closes the file.
    func finish() throws(KVError) -> TableMeta {
        precondition(properties.entries > 0, "an empty table is never written")
        if !block.isEmpty { try finishDataBlock() }
        properties.largest = lastKey
        let indexHandle = try append(index.finish())
        var footer = TableFormat.Footer(index: indexHandle, filter: .init(offset: 0, length: 0), properties: .init(offset: 0, length: 0))
        footer.version = formatVersion
        footer.filter = try append(BloomFilter.build(hashes: hashes, layout: footer.filterLayout))
        footer.properties = try append(properties.encode())
        // The footer page.
        let capacity = TableBuilder.chunkPages * TableFormat.pageBytes
        if staged + TableFormat.pageBytes > capacity { try writeChunk() }
        footer.encode(table: number, into: UnsafeMutableRawBufferPointer(rebasing: chunks[current].bytes[staged..<(staged + TableFormat.pageBytes)]))
        staged += TableFormat.pageBytes
        let fileBytes = chunkOffset + Int64(staged)
        try waitFor(0)
        try waitFor(1)
        let segment = IOSegment(offsetBytes: chunkOffset, buffer: chunks[current].slice(offset: 0, count: staged))
        let path = path
        try io("write table \(path)") {
            try storage.commit(file, [segment])
            if reserved > fileBytes {
                // Give back what the reservation overestimated.
                try storage.truncateFile(file, toBytes: fileBytes)
                try storage.performBlocking(.sync(file, dataOnly: false))
            }
        }
        finished = true
        release()
        try io("close table \(path)") { try storage.closeFile(file) }
        return TableMeta(number: number, fileBytes: fileBytes, properties: properties)
    }

    private func release() {
        for slot in 0..<2 {
            if let done = pending[slot] {
                storage.willWait()
                _ = done.wait()
                pending[slot] = nil
            }
        }
        for chunk in chunks { storage.allocator.free(chunk) }
        chunks = []
    }

    /// Gives up: waits for writes in flight, closes and removes the file.
    func abandon() {
        guard !finished else { return }
        finished = true
        release()
        try? storage.closeFile(file)
        try? storage.removeFile(atPath: path)
    }
}
