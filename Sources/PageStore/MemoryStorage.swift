import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A ``Storage`` that keeps every file in this process's memory: a database on it is gone
/// with the storage, and nothing reaches a disk. For tests that need no disk, and for
/// caches that need no durability (give it as `Options.storage`).
///
/// It honours the same contract as ``PageStore`` where a caller can tell: paths name files
/// in directories that must exist, reads past the end are short, alignment is checked as
/// O_DIRECT would (512 bytes), a `commit` is one write then a sync, and locks conflict as
/// `flock` locks do. A request is carried out before ``submit(_:completion:)`` returns and
/// its completion runs on the storage's own thread, as a ring's would. Syncs do nothing:
/// there is no crash to survive (the crash tests' simulated disk models those).
public final class MemoryStorage: Storage, @unchecked Sendable {
    // @unchecked: all mutable state is in `state`, under its mutex.
    /// A file: its size, and its bytes up to the last one written (past them, up to
    /// `size`, it reads as zeros, so a reservation costs no memory).
    private final class File {
        var bytes: [UInt8] = []
        var size = 0
    }

    private struct State {
        var files: [String: File] = [:]
        var directories: Set<String> = ["/"]
        var open: [UInt32: (file: File, path: String, readOnly: Bool)] = [:]
        var nextSlot: UInt32 = 0
        /// Lock holders per path: -1 exclusive, else the number of shared holders.
        var locks: [String: Int] = [:]
    }

    private let state = Mutex(State())
    /// Where completions run, in submission order.
    private let completions = DispatchQueue(label: "PageStore.MemoryStorage.completions")
    public let allocator: PageAllocator
    private static let alignment = FileAlignment(memoryBytes: 512, offsetBytes: 512, source: .assumed)

    /// An empty storage (only `/` exists) whose buffers come from an arena of
    /// `arenaBytes`.
    public init(arenaBytes: Int = 64 << 20) throws {
        allocator = try PageAllocator(arenaBytes: arenaBytes)
    }

    private static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    private static func normalized(_ path: String) -> String {
        path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
    }

    public func openFile(atPath path: String, mode: FileOpenMode) throws -> FileID {
        try state.withLock { state in
            var file = state.files[path]
            if file != nil && mode.create && mode.exclusive { throw PageStoreError.io("open", path: path, errno: EEXIST) }
            if file == nil {
                guard mode.create else { throw PageStoreError.io("open", path: path, errno: ENOENT) }
                guard !mode.readOnly else { throw PageStoreError.io("open", path: path, errno: EINVAL) }
                guard state.directories.contains(Self.parent(of: path)) else { throw PageStoreError.io("open", path: path, errno: ENOENT) }
                guard !state.directories.contains(path) else { throw PageStoreError.io("open", path: path, errno: EISDIR) }
                file = File()
                state.files[path] = file
            }
            let slot = state.nextSlot
            state.nextSlot += 1
            state.open[slot] = (file!, path, mode.readOnly)
            return FileID(slot: slot, generation: 0)
        }
    }

    private func opened(_ file: FileID) throws -> (file: File, path: String, readOnly: Bool) {
        try state.withLock { state in
            guard let entry = state.open[file.slot] else {
                throw PageStoreError(kind: .invalidArgument, operation: "use file", detail: "\(file) is not open")
            }
            return entry
        }
    }

    public func closeFile(_ file: FileID) throws {
        _ = try opened(file)
        _ = state.withLock { $0.open.removeValue(forKey: file.slot) }
    }

    public func fileInfo(_ file: FileID) throws -> FileInfo {
        FileInfo(path: try opened(file).path, alignment: Self.alignment, directIO: true)
    }

    public func fileSize(_ file: FileID) throws -> Int64 {
        let entry = try opened(file)
        return state.withLock { _ in Int64(entry.file.size) }
    }

    public func truncateFile(_ file: FileID, toBytes size: Int64) throws {
        let entry = try opened(file)
        guard size >= 0, !entry.readOnly else { throw PageStoreError.io("ftruncate", path: entry.path, errno: entry.readOnly ? EBADF : EINVAL) }
        state.withLock { _ in Self.resize(entry.file, Int(size)) }
    }

    private static func resize(_ file: File, _ size: Int) {
        if size < file.bytes.count { file.bytes.removeLast(file.bytes.count - size) }
        file.size = size
    }

    public func submit(_ request: IORequest, completion: @escaping @Sendable (IOResult) -> Void) {
        let result = Result { () throws(PageStoreError) -> Int in try perform(request) }
        completions.async { completion(result) }
    }

    public func performBlocking(_ request: IORequest) throws -> Int {
        try perform(request)
    }

    private func perform(_ request: IORequest) throws(PageStoreError) -> Int {
        let entry: (file: File, path: String, readOnly: Bool)
        do {
            entry = try opened(request.file)
            try request.validate(alignment: Self.alignment, path: entry.path)
        } catch {
            throw error as? PageStoreError ?? PageStoreError(kind: .io, operation: request.operationName, detail: "\(error)")
        }
        if entry.readOnly {
            switch request {
            case .write, .commit, .allocate: throw PageStoreError.io(request.operationName, path: entry.path, errno: EBADF)
            case .read, .sync: break
            }
        }
        return state.withLock { _ -> Int in
            let file = entry.file
            switch request {
            case .read(_, let segment):
                let start = Int(segment.offsetBytes)
                let end = min(file.size, start + segment.buffer.count)
                guard start < end else { return 0 }
                let stored = min(end, max(start, file.bytes.count))
                let target = segment.buffer.bytes
                if start < stored {
                    file.bytes[start..<stored].withUnsafeBytes { target.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: stored - start) }
                }
                if stored < end { UnsafeMutableRawBufferPointer(rebasing: target[(stored - start)..<(end - start)]).initializeMemory(as: UInt8.self, repeating: 0) }
                return end - start
            case .write(_, let segments), .commit(_, let segments):
                var total = 0
                for segment in segments {
                    let start = Int(segment.offsetBytes)
                    let end = start + segment.buffer.count
                    if end > file.bytes.count { file.bytes.append(contentsOf: [UInt8](repeating: 0, count: end - file.bytes.count)) }
                    file.size = max(file.size, end)
                    file.bytes.withUnsafeMutableBytes {
                        UnsafeMutableRawBufferPointer(rebasing: $0[start..<end]).copyMemory(from: UnsafeRawBufferPointer(segment.buffer.bytes))
                    }
                    total += segment.buffer.count
                }
                return total
            case .sync:
                return 0
            case .allocate(_, let offset, let length):
                file.size = max(file.size, Int(offset + length))
                return 0
            }
        }
    }

    public func syncDirectory(atPath path: String) throws {
        guard state.withLock({ $0.directories.contains(Self.normalized(path)) }) else {
            throw PageStoreError.io("fsync directory", path: path, errno: ENOENT)
        }
    }

    public func renameFile(atPath source: String, toPath target: String) throws {
        try state.withLock { state in
            guard let file = state.files.removeValue(forKey: source) else { throw PageStoreError.io("rename", path: source, errno: ENOENT) }
            guard state.directories.contains(Self.parent(of: target)) else {
                state.files[source] = file
                throw PageStoreError.io("rename", path: target, errno: ENOENT)
            }
            state.files[target] = file
        }
    }

    public func linkFile(atPath source: String, toPath target: String) throws {
        try state.withLock { state in
            guard let file = state.files[source] else { throw PageStoreError.io("link", path: source, errno: ENOENT) }
            guard state.files[target] == nil, !state.directories.contains(Self.normalized(target)) else {
                throw PageStoreError.io("link", path: target, errno: EEXIST)
            }
            guard state.directories.contains(Self.parent(of: target)) else { throw PageStoreError.io("link", path: target, errno: ENOENT) }
            state.files[target] = file
        }
    }

    public func removeFile(atPath path: String) throws {
        try state.withLock { state in
            if state.files.removeValue(forKey: path) != nil { return }
            let directory = Self.normalized(path)
            guard state.directories.contains(directory), directory != "/" else { throw PageStoreError.io("remove", path: path, errno: ENOENT) }
            let inside = state.files.keys.contains { Self.parent(of: $0) == directory }
                || state.directories.contains { $0 != directory && Self.parent(of: $0) == directory }
            guard !inside else { throw PageStoreError.io("remove", path: path, errno: ENOTEMPTY) }
            state.directories.remove(directory)
        }
    }

    /// Creates the directory and any missing parents; succeeds when it already exists.
    public func createDirectory(atPath path: String) throws {
        let directory = Self.normalized(path)
        try state.withLock { state in
            var missing: [String] = []
            var next = directory
            while !state.directories.contains(next) {
                guard state.files[next] == nil else { throw PageStoreError.io("mkdir", path: next, errno: ENOTDIR) }
                missing.append(next)
                next = Self.parent(of: next)
                if next == "." { break }
            }
            for name in missing { state.directories.insert(name) }
        }
    }

    public func contentsOfDirectory(atPath path: String) throws -> [String] {
        let directory = Self.normalized(path)
        return try state.withLock { state in
            guard state.directories.contains(directory) else { throw PageStoreError.io("list", path: path, errno: ENOENT) }
            let prefix = directory == "/" ? "/" : directory + "/"
            let names = state.files.keys.filter { Self.parent(of: $0) == directory }
                + state.directories.filter { $0 != directory && Self.parent(of: $0) == directory }
            return names.map { String($0.dropFirst(prefix.count)) }.sorted()
        }
    }

    public func fileExists(atPath path: String) -> Bool {
        state.withLock { $0.files[path] != nil || $0.directories.contains(Self.normalized(path)) }
    }

    /// Locks as `flock` does, within this storage: one exclusive holder or any number of
    /// shared ones. An exclusive lock creates the file and writes `holder` in it.
    public func lockFile(atPath path: String, shared: Bool, holder: String) throws -> (any FileLock)? {
        try state.withLock { state -> (any FileLock)? in
            let file = state.files[path]
            if shared && file == nil { return nil }
            let held = state.locks[path] ?? 0
            guard held == 0 || (shared && held > 0) else {
                throw FileLockConflict(path: path, holder: file.map { String(decoding: $0.bytes, as: UTF8.self) })
            }
            if !shared {
                guard state.directories.contains(Self.parent(of: path)) else { throw PageStoreError.io("open lock file", path: path, errno: ENOENT) }
                let target = file ?? File()
                target.bytes = Array(holder.utf8)
                target.size = target.bytes.count
                state.files[path] = target
            }
            state.locks[path] = shared ? held + 1 : -1
            return Lock(storage: self, path: path, shared: shared)
        }
    }

    private func unlock(_ path: String, shared: Bool) {
        state.withLock { state in
            guard let held = state.locks[path] else { return }
            let left = shared ? held - 1 : 0
            state.locks[path] = left > 0 ? left : nil
        }
    }

    private final class Lock: FileLock, @unchecked Sendable {
        // @unchecked: `released` is only touched under its mutex.
        private let storage: MemoryStorage
        private let path: String
        private let shared: Bool
        private let released = Mutex(false)

        init(storage: MemoryStorage, path: String, shared: Bool) {
            self.storage = storage
            self.path = path
            self.shared = shared
        }

        func release() {
            let first = released.withLock { released -> Bool in
                defer { released = true }
                return !released
            }
            if first { storage.unlock(path, shared: shared) }
        }

        deinit { release() }
    }
}
