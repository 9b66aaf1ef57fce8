#if canImport(Glibc)
import Glibc
#endif

/// How a file is opened by ``Storage/openFile(atPath:mode:)``.
public struct FileOpenMode: Sendable, Equatable {
    /// Create the file when it does not exist.
    public var create: Bool
    /// Fail when the file already exists (with `create`).
    public var exclusive: Bool
    /// Open for reading only.
    public var readOnly: Bool

    /// Open an existing file for reading and writing.
    public static let existing = FileOpenMode(create: false, exclusive: false, readOnly: false)
    /// Open a file for reading and writing, creating it when missing.
    public static let createIfMissing = FileOpenMode(create: true, exclusive: false, readOnly: false)
    /// Create a new file; fail when it exists.
    public static let createNew = FileOpenMode(create: true, exclusive: true, readOnly: false)
    /// Open an existing file for reading only.
    public static let readOnly = FileOpenMode(create: false, exclusive: false, readOnly: true)

    /// A mode from its three switches.
    public init(create: Bool, exclusive: Bool, readOnly: Bool) {
        self.create = create
        self.exclusive = exclusive
        self.readOnly = readOnly
    }
}

/// What a storage knows about an open file.
public struct FileInfo: Sendable, Equatable {
    /// The path the file was opened with.
    public let path: String
    /// Alignment every transfer on it must respect.
    public let alignment: FileAlignment
    /// Whether the file is open with O_DIRECT (false: buffered I/O plus fdatasync).
    public let directIO: Bool

    /// What a storage reports for an open file.
    public init(path: String, alignment: FileAlignment, directIO: Bool) {
        self.path = path
        self.alignment = alignment
        self.directIO = directIO
    }
}

/// The seam between the engine and the disk.
///
/// Everything the engine does to files goes through this protocol: ``PageStore`` carries
/// it out with io_uring (or its fallbacks) on the real file system, and the crash tests
/// implement it with a simulated, fault-injecting disk. The contract both honour:
///
/// - ``submit(_:completion:)`` returns at once; the completion runs exactly once, on a
///   thread of the storage's choosing, and must not block. Requests may complete in any
///   order; a ``IORequest/commit(_:_:)`` succeeds only once its data is durable.
/// - Data written but not covered by a completed fdatasync may be lost by a crash.
/// - Directory changes (create, rename, remove) are durable only after
///   ``syncDirectory(atPath:)`` on the directory that holds them.
/// - A buffer must stay untouched while an I/O on it is in flight.
public protocol Storage: AnyObject, Sendable {
    /// The allocator of the buffers this storage reads into and writes from.
    var allocator: PageAllocator { get }

    /// Opens (and maybe creates) a file. Creating does not make the directory entry durable.
    func openFile(atPath path: String, mode: FileOpenMode) throws -> FileID
    /// Closes a file. No I/O on it may be in flight.
    func closeFile(_ file: FileID) throws
    /// Path, alignment and I/O mode of an open file.
    func fileInfo(_ file: FileID) throws -> FileInfo
    /// Current size of an open file in bytes.
    func fileSize(_ file: FileID) throws -> Int64
    /// Sets the size of an open file (durable after the next fsync of the file).
    func truncateFile(_ file: FileID, toBytes size: Int64) throws

    /// Starts an I/O; `completion` receives its result exactly once.
    func submit(_ request: IORequest, completion: @escaping @Sendable (IOResult) -> Void)

    /// Carries out `request` and blocks the calling thread until it completes. The
    /// default submits and waits; a storage may run it on the caller's thread instead.
    /// Do not call from Swift's cooperative pool; use ``perform(_:)`` there.
    @discardableResult
    func performBlocking(_ request: IORequest) throws -> Int

    /// Says the caller is about to block until completions of requests it submitted
    /// arrive. The real store does nothing (its completions come from the kernel); a
    /// storage that holds completions back, as the crash tests' simulation does to
    /// reorder them, delivers them now.
    func willWait()

    /// Runs `body` with an ``IOQueue``: requests submitted on it and completions taken on
    /// the calling thread, as many in flight as it submits. The default goes through
    /// ``submit(_:completion:)``.
    func withIOQueue<T, Failure: Error>(_ body: (any IOQueue) throws(Failure) -> T) throws(Failure) -> T

    /// Makes the directory's entries (creates, renames, removes) durable.
    func syncDirectory(atPath path: String) throws
    /// Renames a file atomically, replacing `target` if it exists.
    func renameFile(atPath source: String, toPath target: String) throws
    /// Removes a file.
    func removeFile(atPath path: String) throws
    /// Gives the file at `source` a second name, `target` (a hard link: one file, two
    /// names; its data is not copied). Fails with `EEXIST` when `target` exists, and with
    /// `EXDEV` when the two are on different file systems, or this storage keeps no links
    /// (the default). Durable after ``syncDirectory(atPath:)`` on `target`'s directory.
    func linkFile(atPath source: String, toPath target: String) throws
    /// Creates a directory; succeeds when it already exists.
    func createDirectory(atPath path: String) throws
    /// Names in a directory, without `.` and `..`, sorted.
    func contentsOfDirectory(atPath path: String) throws -> [String]
    /// Whether something exists at `path`.
    func fileExists(atPath path: String) -> Bool

    /// Takes the advisory lock of the file at `path` without waiting: exclusive (the file
    /// is created when missing and `holder`, say a pid, written in it) or `shared` (nil
    /// when the file does not exist: there is nothing to lock). Throws
    /// ``FileLockConflict`` when another holder has it. The default is a `flock`.
    func lockFile(atPath path: String, shared: Bool, holder: String) throws -> (any FileLock)?
}

extension Storage {
    public func willWait() {}

    /// The default: no links (`EXDEV`), so callers copy instead.
    public func linkFile(atPath source: String, toPath target: String) throws {
        throw PageStoreError(kind: .io, operation: "link", path: source, errno: EXDEV, detail: "to \(target): this storage keeps no links")
    }

    /// The default: submits and waits (``submitAndWait(_:)``).
    @discardableResult
    public func performBlocking(_ request: IORequest) throws -> Int {
        try submitAndWait(request)
    }

    /// Submits `request` and blocks the calling thread until its completion arrives.
    @discardableResult
    public func submitAndWait(_ request: IORequest) throws -> Int {
        let done = OneShot<IOResult>()
        submit(request) { done.fulfil($0) }
        willWait()
        return try done.wait().get()
    }

    /// Carries out `request`, suspending (never blocking) the calling task until it completes.
    @discardableResult
    public func perform(_ request: IORequest) async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in
            submit(request) { continuation.resume(with: $0) }
        }
    }

    /// Reads `buffer.count` bytes at `offsetBytes` into `buffer`; returns the bytes read,
    /// fewer only at end of file.
    public func read(_ file: FileID, offsetBytes: Int64, into buffer: PageBuffer) throws -> Int {
        try performBlocking(.read(file, IOSegment(offsetBytes: offsetBytes, buffer: buffer)))
    }

    /// Writes all of `buffer` at `offsetBytes` (not durable until a sync or commit).
    public func write(_ file: FileID, offsetBytes: Int64, from buffer: PageBuffer) throws {
        try performBlocking(.write(file, [IOSegment(offsetBytes: offsetBytes, buffer: buffer)]))
    }

    /// Writes the segments, then fdatasyncs, as one linked chain; returns once durable.
    public func commit(_ file: FileID, _ segments: [IOSegment]) throws {
        try performBlocking(.commit(file, segments))
    }

    /// Reads `destination.count` bytes at `offsetBytes` into ordinary memory, through one
    /// arena buffer of at most `pieceBytes` at a time: a transfer longer than the arena
    /// should lend at once (a block holding a very large value). Returns the bytes read,
    /// fewer only at end of file. Offset and count keep the file's alignment.
    public func read(
        _ file: FileID, offsetBytes: Int64, copyingInto destination: UnsafeMutableRawBufferPointer, pieceBytes: Int = 1 << 20
    ) throws -> Int {
        let buffer = try allocator.allocate(pages: pagesForPieces(of: destination.count, pieceBytes))
        defer { allocator.free(buffer) }
        var done = 0
        while done < destination.count {
            let count = min(buffer.count, destination.count - done)
            let got = try read(file, offsetBytes: offsetBytes + Int64(done), into: buffer.slice(offset: 0, count: count))
            UnsafeMutableRawBufferPointer(rebasing: destination[done..<(done + got)])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: buffer.bytes[0..<got]))
            done += got
            if got < count { break }
        }
        return done
    }

    /// Writes all of `source` (ordinary memory) at `offsetBytes`, through one arena buffer
    /// of at most `pieceBytes` at a time (not durable until a sync or commit). Offset and
    /// count keep the file's alignment.
    public func write(_ file: FileID, offsetBytes: Int64, copying source: UnsafeRawBufferPointer, pieceBytes: Int = 1 << 20) throws {
        let buffer = try allocator.allocate(pages: pagesForPieces(of: source.count, pieceBytes))
        defer { allocator.free(buffer) }
        var done = 0
        while done < source.count {
            let count = min(buffer.count, source.count - done)
            let piece = buffer.slice(offset: 0, count: count)
            piece.bytes.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[done..<(done + count)]))
            try write(file, offsetBytes: offsetBytes + Int64(done), from: piece)
            done += count
        }
    }

    private func pagesForPieces(of bytes: Int, _ pieceBytes: Int) -> Int {
        let page = allocator.pageSizeBytes
        return max(1, min((bytes + page - 1) / page, max(1, pieceBytes / page), allocator.pageCount))
    }

    /// fdatasync of the file.
    public func sync(_ file: FileID) throws {
        try performBlocking(.sync(file, dataOnly: true))
    }
}
