import KVEngine
import PageStore
import Synchronization

/// A storage for `kvctl stress --hold-writes`: plain writes are held in this process's
/// memory and reach the real store only with the fdatasync (or commit) that covers their
/// file, so a SIGKILL loses every unsynced write, as a power cut would. Reads of a file
/// first write out what is held for it. Everything else goes straight to the store.
final class HoldBackStorage: Storage, @unchecked Sendable {
    // @unchecked: `held` is only touched under its mutex; `store` is Sendable.
    private let store: PageStore
    private let held = Mutex<[FileID: [(offset: Int64, bytes: [UInt8])]]>([:])

    init(_ store: PageStore) { self.store = store }

    var allocator: PageAllocator { store.allocator }

    func openFile(atPath path: String, mode: FileOpenMode) throws -> FileID { try store.openFile(atPath: path, mode: mode) }
    func closeFile(_ file: FileID) throws {
        // Never synced: dropped, as a crash would drop them.
        _ = held.withLock { $0.removeValue(forKey: file) }
        try store.closeFile(file)
    }
    func fileInfo(_ file: FileID) throws -> FileInfo { try store.fileInfo(file) }
    func fileSize(_ file: FileID) throws -> Int64 {
        try release(file)
        return try store.fileSize(file)
    }
    func truncateFile(_ file: FileID, toBytes size: Int64) throws {
        try release(file)
        try store.truncateFile(file, toBytes: size)
    }
    func syncDirectory(atPath path: String) throws { try store.syncDirectory(atPath: path) }
    func renameFile(atPath source: String, toPath target: String) throws { try store.renameFile(atPath: source, toPath: target) }
    func removeFile(atPath path: String) throws { try store.removeFile(atPath: path) }
    func linkFile(atPath source: String, toPath target: String) throws { try store.linkFile(atPath: source, toPath: target) }
    func createDirectory(atPath path: String) throws { try store.createDirectory(atPath: path) }
    func contentsOfDirectory(atPath path: String) throws -> [String] { try store.contentsOfDirectory(atPath: path) }
    func fileExists(atPath path: String) -> Bool { store.fileExists(atPath: path) }

    /// Writes out what is held for `file` (not synced: the caller's request does that).
    private func release(_ file: FileID) throws {
        guard let writes = held.withLock({ $0.removeValue(forKey: file) }) else { return }
        for write in writes {
            let buffer = try store.allocator.allocate(pages: write.bytes.count / store.allocator.pageSizeBytes)
            defer { store.allocator.free(buffer) }
            write.bytes.withUnsafeBytes { buffer.bytes.copyMemory(from: $0) }
            try store.performBlocking(.write(file, [IOSegment(offsetBytes: write.offset, buffer: buffer)]))
        }
    }

    func submit(_ request: IORequest, completion: @escaping @Sendable (IOResult) -> Void) {
        if case .write(let file, let segments) = request {
            held.withLock { held in
                for segment in segments {
                    held[file, default: []].append((segment.offsetBytes, Array(UnsafeRawBufferPointer(segment.buffer.bytes))))
                }
            }
            completion(.success(segments.reduce(0) { $0 + $1.buffer.count }))
            return
        }
        do {
            try release(request.file)
        } catch {
            completion(.failure(error as? PageStoreError ?? PageStoreError(kind: .io, operation: "write", path: nil, detail: "\(error)")))
            return
        }
        store.submit(request, completion: completion)
    }
}
