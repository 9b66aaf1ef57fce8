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
    /// The last key of each data block, to find the block a key may be in.
    let index: TableIndex
    /// Where each data block lies in the file, in key order.
    let handles: [TableFormat.Handle]
    private let filter: [UInt8]
    private let filterLayout: BloomFilter.Layout
    /// Whether data blocks end with the compression trailer (table format 3).
    let hasBlockTrailers: Bool
    /// Where the data blocks end (the index block starts).
    let dataEnd: Int64
    private let onClose: (@Sendable () -> Void)?

    var number: UInt64 { meta.number }
    var blockCount: Int { handles.count }
    /// Memory held by the index and filter.
    var memoryBytes: Int { index.memoryBytes + handles.count * 16 + filter.count }

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
        let corrupt = { (problem: TableProblem) in Table.corruption(problem, path: path) }
        let size = try io("size of \(path)") { try storage.fileSize(file) }
        guard size >= Int64(2 * TableFormat.pageBytes), size % Int64(TableFormat.pageBytes) == 0 else {
            throw KVError(.corruption, "table \(path) is \(size) bytes, not a whole number of pages", path: path, offsetBytes: 0)
        }
        let footerOffset = size - Int64(TableFormat.pageBytes)
        let footer = try readFooter(storage: storage, file: file, path: path, number: number, size: size)
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
            return TableMeta(number: number, fileBytes: size, properties: try properties(contents, at: footer.properties.offset, path: path))
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
        let corrupt = { (problem: TableProblem) in Table.corruption(problem, path: path) }
        let size = try io("size of \(path)") { try storage.fileSize(file) }
        guard size == meta.fileBytes, size >= Int64(2 * TableFormat.pageBytes), size % Int64(TableFormat.pageBytes) == 0 else {
            throw KVError(
                .corruption, "table \(path) is \(size) bytes; the manifest says \(meta.fileBytes)",
                path: path, offsetBytes: min(size, meta.fileBytes))
        }
        let footerOffset = size - Int64(TableFormat.pageBytes)
        let footer = try Table.readFooter(storage: storage, file: file, path: path, number: meta.number, size: size)
        // Index, filter and properties are contiguous: one read.
        let metaStart = footer.index.offset
        let metaPages = Int((footerOffset - metaStart) / Int64(TableFormat.pageBytes))
        // Larger than a block read whole (a big table's index and filter), they go into
        // ordinary memory a piece at a time, as large blocks do: no arena buffer that size.
        let region: PageBuffer?
        let ordinary: UnsafeMutableRawBufferPointer?
        if metaPages > Table.largeBlockPages {
            let owned = UnsafeMutableRawBufferPointer.allocate(byteCount: metaPages * TableFormat.pageBytes, alignment: 64)
            let got: Int
            do throws(KVError) {
                got = try io("read \(path) at offset \(metaStart)") { try storage.read(file, offsetBytes: metaStart, copyingInto: owned) }
            } catch {
                owned.deallocate()
                throw error
            }
            guard got == owned.count else {
                owned.deallocate()
                throw KVError(.corruption, "table \(path) ends at \(metaStart + Int64(got)), inside its index", path: path, offsetBytes: metaStart + Int64(got))
            }
            (region, ordinary) = (nil, owned)
        } else {
            (region, ordinary) = (try Table.read(storage: storage, file: file, path: path, offset: metaStart, pages: metaPages), nil)
        }
        defer {
            if let region { storage.allocator.free(region) }
            ordinary?.deallocate()
        }
        let metaBytes = UnsafeRawBufferPointer(region?.bytes ?? ordinary!)
        func contents(_ handle: TableFormat.Handle) throws(KVError) -> UnsafeRawBufferPointer {
            let start = Int(handle.offset - metaStart)
            let bytes = UnsafeRawBufferPointer(rebasing: metaBytes[start...])
            switch TableFormat.verify(bytes, handle: handle, table: meta.number) {
            case .success(let contents): return contents
            case .failure(let problem): throw corrupt(problem)
            }
        }
        let properties = try Table.properties(try contents(footer.properties), at: footer.properties.offset, path: path)
        guard properties == meta.properties else {
            throw corrupt(TableProblem(offset: footer.properties.offset, reason: "properties differ from the manifest's record of the table"))
        }
        filter = Array(try contents(footer.filter))
        filterLayout = footer.filterLayout
        hasBlockTrailers = footer.version >= 3
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
        index = TableIndex(keys: keys, keyEnds: ends)
        self.handles = handles
        dataEnd = metaStart
    }

    deinit {
        try? storage.closeFile(file)
        onClose?()
    }

    /// The footer of table file `number` of `size` bytes (whole pages, checked by the caller).
    private static func readFooter(
        storage: any Storage, file: FileID, path: String, number: UInt64, size: Int64
    ) throws(KVError) -> TableFormat.Footer {
        let footerOffset = size - Int64(TableFormat.pageBytes)
        let footerPage = try Table.read(storage: storage, file: file, path: path, offset: footerOffset, pages: 1)
        defer { storage.allocator.free(footerPage) }
        switch TableFormat.Footer.decode(UnsafeRawBufferPointer(footerPage.bytes), table: number, fileBytes: size) {
        case .success(let footer): return footer
        case .failure(let problem): throw corruption(TableProblem(offset: footerOffset + problem.offset, reason: problem.reason), path: path)
        }
    }

    /// The properties in a verified properties block at `offset`.
    private static func properties(_ contents: UnsafeRawBufferPointer, at offset: Int64, path: String) throws(KVError) -> TableProperties {
        guard let properties = TableProperties.decode(contents) else {
            throw corruption(TableProblem(offset: offset, reason: "malformed properties block"), path: path)
        }
        return properties
    }

    /// Table `path` is corrupt where `problem` says.
    static func corruption(_ problem: TableProblem, path: String) -> KVError {
        KVError(.corruption, "table \(path) is corrupt at offset \(problem.offset): \(problem.reason)", path: path, offsetBytes: problem.offset)
    }

    func corruption(_ problem: TableProblem) -> KVError { Table.corruption(problem, path: path) }

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

    /// Whether the table's filter lets `hash` through (false: the key is not here).
    func mayContain(hash: UInt64) -> Bool {
        filter.withUnsafeBytes { BloomFilter.mayContain($0, hash: hash, layout: filterLayout) }
    }
}
