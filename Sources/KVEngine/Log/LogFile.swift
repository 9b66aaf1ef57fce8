import PageStore

/// A log file on disk, as its `LogWriter` writes it: created with its header page, a
/// reservation and a first zero-fill all durable (and its directory entry synced) before
/// any record can be acknowledged in it; closed by trimming it to its durable end.
struct LogFile: Sendable {
    let storage: any Storage
    let file: FileID
    let path: String
    let number: UInt64
    /// Always zero: the source of the zero-fill writes (`LogSpace.zeroChunkBytes`).
    let zeros: PageBuffer
    /// Whether the file is O_DIRECT (decides how many chains may be in flight).
    let directIO: Bool

    /// Creates log `number` in `directory`, and the space plan that goes with it.
    ///
    /// A log rotates once its memtable is full, so it never needs much more than the
    /// memtable's size: the reservation is capped there, and the zero-fill stays inside
    /// it. On a nearly full disk the reservation and the zero-fill shrink to nothing: the
    /// log starts with its header alone, and later chains grow it as they go.
    static func create(
        directory: String, number: UInt64, storage: any Storage, options: Options
    ) throws(KVError) -> (LogFile, LogSpace) {
        let path = directory + "/" + FileNames.log(number)
        let needed = (Int64(options.memtableBytes) * 9 / 8 + 4095) / 4096 * 4096
        var reserved = min(options.logPreallocateBytes, needed)
        var zeroed = min(Int64(LogSpace.zeroChunkBytes), max(0, reserved - Int64(LogFormat.pageBytes)))
        var refused = false
        let (file, zeros) = try io("create log \(path)") { () throws -> (FileID, PageBuffer) in
            let zeros = try storage.allocator.allocate(pages: LogSpace.zeroChunkBytes / LogFormat.pageBytes)
            zeros.bytes.initializeMemory(as: UInt8.self, repeating: 0)
            let page: PageBuffer
            let file: FileID
            do {
                page = try storage.allocator.allocate()
            } catch {
                storage.allocator.free(zeros)
                throw error
            }
            do {
                file = try storage.openFile(atPath: path, mode: .createNew)
            } catch {
                storage.allocator.free(page)
                storage.allocator.free(zeros)
                throw error
            }
            defer { storage.allocator.free(page) }
            do {
                LogFormat.encodeHeader(logNumber: number, into: page.bytes)
                if reserved > 0 {
                    do {
                        try storage.performBlocking(.allocate(file, offsetBytes: 0, lengthBytes: reserved))
                    } catch let error as PageStoreError where error.refusesReservation {
                        (reserved, zeroed, refused) = (0, 0, true)
                        // (A refused fallocate may keep part of what it took: the header's
                        // write below starts from an empty file either way.)
                        try storage.truncateFile(file, toBytes: 0)
                    }
                }
                var segments = [IOSegment(offsetBytes: 0, buffer: page)]
                if zeroed > 0 {
                    segments.append(IOSegment(offsetBytes: Int64(LogFormat.pageBytes), buffer: zeros.slice(offset: 0, count: Int(zeroed))))
                }
                do {
                    try storage.commit(file, segments)
                } catch let error as PageStoreError where error.isNoSpace {
                    (reserved, zeroed, refused) = (0, 0, true)
                    try storage.truncateFile(file, toBytes: 0)
                    try storage.commit(file, [IOSegment(offsetBytes: 0, buffer: page)])
                }
                try storage.syncDirectory(atPath: directory)
            } catch {
                try? storage.closeFile(file)
                storage.allocator.free(zeros)
                throw error
            }
            return (file, zeros)
        }
        if refused {
            engineLogger.warning("log \(path): no room for its reservation or zero-fill; it grows as it is written")
        }
        let directIO = (try? storage.fileInfo(file).directIO) ?? false
        let step = reserved == 0 ? 0 : min(options.logPreallocateBytes, max(256 << 10, needed / 8 / 4096 * 4096))
        return (
            LogFile(storage: storage, file: file, path: path, number: number, zeros: zeros, directIO: directIO),
            LogSpace(reserved: reserved, zeroed: zeroed, reservationStep: step)
        )
    }

    /// Trims the file to `end` (its durable part: the preallocated tail goes), syncs and
    /// closes it. No chain or reservation may be in flight.
    func close(end: Int64) throws(KVError) {
        try io("close log \(path)") {
            try storage.truncateFile(file, toBytes: end)
            try storage.performBlocking(.sync(file, dataOnly: false))
            try storage.closeFile(file)
        }
    }
}
