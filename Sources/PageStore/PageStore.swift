#if canImport(Glibc)
import Glibc
#endif
import CPageStoreSupport
import Logging
import Synchronization

/// The page store's log (its warnings: a refused mode, a fallback), at the level the
/// tests may lower (`pageStoreLogLevel`).
var pageStoreLogger: Logger {
    var logger = Logger(label: "PageStore")
    if let level = pageStoreLogLevel.withLock({ $0 }) { logger.logLevel = level }
    return logger
}

/// A level for the page store's log in place of the logging system's (the tests silence
/// the warnings they cause on purpose).
package let pageStoreLogLevel = Mutex<Logger.Level?>(nil)

/// The real ``Storage``: files on the local file system, read and written with O_DIRECT
/// through io_uring, from page-aligned memory registered as fixed buffers.
///
/// Every open file sits in a slot of the ring's sparse registered-file table and every
/// SQE names it with `IOSQE_FIXED_FILE`. A ``IORequest/commit(_:_:)`` is one linked chain
/// of write SQEs and an fdatasync SQE. Where the kernel refuses io_uring, O_DIRECT or
/// fixed-buffer registration, the store falls back (pread/pwrite, buffered I/O, plain
/// reads and writes), logs one line, and reports the mode in ``stats``; set the matching
/// ``PageStoreOptions/Requirement`` to `.required` to fail instead.
///
/// Thread safety: all methods may be called from any thread at once. Completions run on
/// the store's I/O thread; blocking calls wait on the caller's thread, async calls
/// suspend and never block Swift's cooperative pool.
public final class PageStore: Storage {
    /// The allocator of every buffer this store reads into or writes from.
    public let allocator: PageAllocator
    /// The options the store was opened with.
    public let options: PageStoreOptions
    private let backend: any IOBackend
    private let inlineRings: InlineRingPool
    /// Inline rings with IOPOLL, for blocking reads and writes of O_DIRECT files.
    private let polledRings: InlineRingPool
    /// Whether those rings are used (`.on`), not asked for, or refused.
    private let completionPolling: Mutex<RingModeState>
    /// Whether a file's reads were tried on a polled ring yet (the device's answer).
    private let pollingProbed = Atomic<Bool>(false)
    private let counters = IOCounters()
    private let files: Mutex<FileTable>
    private let warnedBuffered = Atomic<Bool>(false)
    private let isShutDown = Atomic<Bool>(false)

    /// Sets up the arena, the ring (or its fallback) and the file table.
    public init(options: PageStoreOptions = PageStoreOptions()) throws {
        guard options.ringEntries >= 8, options.ringEntries <= 32768,
            options.ringEntries & (options.ringEntries - 1) == 0
        else {
            throw PageStoreError(
                kind: .invalidArgument, operation: "open page store",
                detail: "ringEntries \(options.ringEntries) must be a power of two between 8 and 32768")
        }
        guard options.maxOpenFiles >= 1, options.maxOpenFiles <= 65535 else {
            throw PageStoreError(
                kind: .invalidArgument, operation: "open page store",
                detail: "maxOpenFiles \(options.maxOpenFiles) must be between 1 and 65535")
        }
        self.options = options
        self.allocator = try PageAllocator(arenaBytes: options.arenaBytes, pageSizeBytes: options.pageSizeBytes)
        self.files = Mutex(FileTable(capacity: options.maxOpenFiles))
        if options.fixedBuffers == .required && options.ioUring == .disabled {
            throw PageStoreError(
                kind: .invalidArgument, operation: "open page store",
                detail: "fixed buffers are required but io_uring is disabled")
        }
        var chosen: (any IOBackend)? = nil
        if options.ioUring != .disabled {
            do {
                chosen = try RingWorker.start(options: options, allocator: allocator, counters: counters)
            } catch let error as PageStoreError {
                let ringModeRequired = [options.submissionPolling, options.completionPolling, options.registeredRingFD].contains(.required)
                if options.ioUring == .required || options.fixedBuffers == .required || ringModeRequired { throw error }
                pageStoreLogger.warning("PageStore: \(error); falling back to pread/pwrite/fdatasync")
            }
        }
        if chosen == nil {
            for (name, requirement) in [
                ("SQPOLL", options.submissionPolling), ("IOPOLL", options.completionPolling), ("a registered ring fd", options.registeredRingFD),
            ] where requirement == .required {
                throw PageStoreError(
                    kind: .unsupported, operation: "open page store",
                    detail: "\(name) is required but io_uring is \(options.ioUring == .disabled ? "disabled" : "not available")")
            }
        }
        self.backend = chosen ?? PosixWorker(counters: counters)
        self.inlineRings = InlineRingPool(maxRings: chosen == nil ? 0 : options.inlineRings)
        var polling = RingModeState.off
        if options.completionPolling != .disabled {
            if chosen == nil {
                polling = .refused(reason: "io_uring is not in use")
            } else {
                // The kernel's answer to an IOPOLL ring; the device's comes with the first file.
                do {
                    _ = try Ring(entries: 8, preferredFlags: Ring.completionPollingAttempts)
                    polling = .on(detail: "no file yet")
                } catch let error as PageStoreError {
                    do {
                        polling = try options.completionPolling.refused(error, fallback: "blocking reads and writes wait for interrupts")
                    } catch {
                        backend.shutdown()
                        throw error
                    }
                }
            }
        }
        self.completionPolling = Mutex(polling)
        self.polledRings = InlineRingPool(
            maxRings: polling.isOn ? max(1, options.inlineRings) : 0,
            purpose: "blocking reads and writes are not polled (IOPOLL is off)")
    }

    deinit {
        shutdown()
    }

    /// Waits for in-flight I/O, stops the I/O thread and closes every file.
    /// Later calls fail with a `.closed` error. Safe to call more than once.
    public func shutdown() {
        guard !isShutDown.exchange(true, ordering: .acquiringAndReleasing) else { return }
        backend.shutdown()
        inlineRings.removeAll()
        polledRings.removeAll()
        let open = files.withLock { $0.all }
        for entry in open { Glibc.close(entry.fd) }
    }

    /// The backend, buffer mode and counters since the store was opened.
    public var stats: PageStoreStats {
        PageStoreStats(
            ioMode: backend.mode,
            fixedBuffers: backend.fixedBuffers,
            ringFlags: backend.ringFlags,
            submissionPolling: backend.mode == .posix && options.submissionPolling != .disabled
                ? .refused(reason: "io_uring is not in use") : backend.submissionPolling,
            completionPolling: completionPolling.withLock { $0 },
            registeredRingFD: backend.mode == .posix && options.registeredRingFD != .disabled
                ? .refused(reason: "io_uring is not in use") : backend.registeredRingFD,
            bufferedFiles: counters.bufferedFiles.load(ordering: .relaxed),
            sqesSubmitted: counters.sqesSubmitted.load(ordering: .relaxed),
            enterCalls: counters.enterCalls.load(ordering: .relaxed),
            completions: counters.completions.load(ordering: .relaxed),
            bytesRead: counters.bytesRead.load(ordering: .relaxed),
            bytesWritten: counters.bytesWritten.load(ordering: .relaxed),
            fdatasyncs: counters.fdatasyncs.load(ordering: .relaxed),
            commitChains: counters.commitChains.load(ordering: .relaxed),
            retries: counters.retries.load(ordering: .relaxed))
    }

    /// Files open right now.
    public var openFileCount: Int { files.withLock { $0.openCount } }

    // MARK: files

    public func openFile(atPath path: String, mode: FileOpenMode) throws -> FileID {
        try checkOpen("open", path: path)
        // The slot first: a full table must fail before a file is created.
        guard let slot = files.withLock({ $0.reserve() }) else {
            throw PageStoreError(
                kind: .invalidArgument, operation: "open", path: path,
                detail: "all \(options.maxOpenFiles) registered file slots are in use")
        }
        var opened: FileID? = nil
        do {
            let (fd, directIO) = try openDescriptor(path, mode)
            let info = FileInfo(path: path, alignment: FileAlignment.discover(fd: fd), directIO: directIO)
            var handle: FileID? = nil
            do {
                try backend.register(slot: slot, fd: fd)
                try polledRings.register(slot: slot, fd: fd) {
                    try inlineRings.register(slot: slot, fd: fd) {
                        handle = files.withLock { $0.fill(slot, FileTable.Entry(fd: fd, info: info)) }
                    }
                }
            } catch {
                try? backend.register(slot: slot, fd: -1)
                try? polledRings.register(slot: slot, fd: -1) {}
                try? inlineRings.register(slot: slot, fd: -1) {}
                Glibc.close(fd)
                throw error
            }
            if !directIO { counters.bufferedFiles.wrappingAdd(1, ordering: .relaxed) }
            opened = handle!
        } catch {
            files.withLock { $0.unreserve(slot) }
            throw error
        }
        if let opened, openFileInfo(opened)?.directIO == true, !pollingProbed.load(ordering: .relaxed),
            let refusal = probeCompletionPolling(opened)
        {
            do { try closeFile(opened) } catch { pageStoreLogger.warning("PageStore: could not close \(path) after IOPOLL refused it: \(error)") }
            throw refusal
        }
        return opened!
    }

    private func openFileInfo(_ file: FileID) -> FileInfo? { files.withLock { $0.lookup(file)?.info } }

    /// Opens without O_DIRECT, then switches it on with `fcntl(F_SETFL)`: a file system
    /// that refuses O_DIRECT in `open` may already have created the file, and a second
    /// `O_EXCL` open would then fail.
    private func openDescriptor(_ path: String, _ mode: FileOpenMode) throws -> (Int32, Bool) {
        var flags = (mode.readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC
        if mode.create { flags |= O_CREAT }
        if mode.exclusive { flags |= O_EXCL }
        let fd = Glibc.open(path, flags, 0o644)
        guard fd >= 0 else { throw PageStoreError.io("open", path: path, errno: errno) }
        guard options.directIO != .disabled else { return (fd, false) }
        let current = fcntl(fd, F_GETFL)
        if fcntl(fd, F_SETFL, current | ps_o_direct()) == 0 { return (fd, true) }
        let code = errno
        if options.directIO == .required || code != EINVAL {
            Glibc.close(fd)
            // O_EXCL means this call created the file: failing must not leave it behind.
            if mode.exclusive { unlink(path) }
            throw PageStoreError(
                kind: code == EINVAL ? .unsupported : .io, operation: "open", path: path, errno: code,
                detail: code == EINVAL
                    ? "O_DIRECT refused by the file system and directIO is required" : "could not enable O_DIRECT")
        }
        if !warnedBuffered.exchange(true, ordering: .relaxed) {
            pageStoreLogger.warning(
                "PageStore: O_DIRECT refused on \(path) (\(PageStoreError.errnoText(code))); using buffered I/O with fdatasync")
        }
        return (fd, false)
    }

    public func closeFile(_ file: FileID) throws {
        guard let entry = files.withLock({ $0.lookup(file) }) else { throw unknown(file, "close") }
        // After shutdown every descriptor is closed already and no ring is left to update.
        if isShutDown.load(ordering: .acquiring) { return }
        try backend.register(slot: file.slot, fd: -1)
        try polledRings.register(slot: file.slot, fd: -1) {
            try inlineRings.register(slot: file.slot, fd: -1) {
                _ = files.withLock { $0.release(file) }
            }
        }
        if Glibc.close(entry.fd) != 0 && errno != EINTR {
            throw PageStoreError.io("close", path: entry.info.path, errno: errno)
        }
    }

    public func fileInfo(_ file: FileID) throws -> FileInfo {
        try entry(file, "file info").info
    }

    public func fileSize(_ file: FileID) throws -> Int64 {
        let entry = try entry(file, "fstat")
        var info = stat()
        guard fstat(entry.fd, &info) == 0 else { throw PageStoreError.io("fstat", path: entry.info.path, errno: errno) }
        return Int64(info.st_size)
    }

    public func truncateFile(_ file: FileID, toBytes size: Int64) throws {
        let entry = try entry(file, "ftruncate")
        guard ftruncate(entry.fd, off_t(size)) == 0 else {
            throw PageStoreError.io("ftruncate", path: entry.info.path, offsetBytes: size, errno: errno)
        }
    }

    // MARK: I/O

    public func submit(_ request: IORequest, completion: @escaping @Sendable (IOResult) -> Void) {
        do {
            backend.enqueue(try resolve(request, completion: completion))
        } catch {
            completion(.failure(error as! PageStoreError))
        }
    }

    /// Runs `request` on the calling thread: on an inline ring (no hand-off to the ring
    /// thread and back), or with the posix syscalls; through the ring thread only when no
    /// inline ring can be had.
    @discardableResult
    public func performBlocking(_ request: IORequest) throws -> Int {
        let io = try resolve(request) { _ in }
        if let result = backend.executeInline(io) { return try result.get() }
        if io.kind == .read || io.kind == .write, let result = executePolled(io, file: request.file) { return try result.get() }
        guard let ring = checkOutInlineRing() else { return try submitAndWait(request) }
        // A ring whose io_uring_enter failed is not lent again.
        defer { if !ring.isBroken { inlineRings.checkIn(ring) } }
        return try ring.execute(io, counters: counters).get()
    }

    /// Runs `body` with an ``IOQueue`` on an inline ring of the calling thread's own (no
    /// thread hand-off per request); through the ring thread (or the posix workers) when
    /// no inline ring can be had. Requests `body` leaves in flight are waited for before
    /// this returns; their results are dropped.
    public func withIOQueue<T, Failure: Error>(_ body: (any IOQueue) throws(Failure) -> T) throws(Failure) -> T {
        guard let ring = checkOutInlineRing() else { return try HandOffQueue.run(on: self, body) }
        let queue = InlineRingQueue(ring: ring, counters: counters) { [unowned self] request in
            try self.resolve(request) { _ in }
        }
        defer {
            while queue.inFlight > 0 { _ = queue.wait() }
            // A ring whose io_uring_enter failed is not lent again.
            if queue.failure == nil { inlineRings.checkIn(ring) }
        }
        return try body(queue)
    }

    /// Runs a read or write of an O_DIRECT file on an IOPOLL ring, when completion polling
    /// is on; nil when it is not (or no such ring can be had), and the caller goes on as
    /// without it. A refusal (`EOPNOTSUPP`: the file system or device cannot poll) turns
    /// polling off, unless it is required.
    private func executePolled(_ io: PendingIO, file: FileID) -> IOResult? {
        guard polledRings.maxRings > 0, completionPolling.withLock({ $0.isOn }),
            files.withLock({ $0.lookup(file)?.info.directIO }) == true
        else { return nil }
        guard let ring = checkOutInlineRing(polled: true) else {
            // No polled ring could be made: polling is off from now on (or, required, fails).
            if let reason = polledRings.creationFailure {
                if options.completionPolling == .required {
                    return .failure(PageStoreError(
                        kind: .unsupported, operation: "IOPOLL ring", path: io.path,
                        detail: "completion polling is required, and no IOPOLL ring could be set up: \(reason)"))
                }
                refuseCompletionPolling("no IOPOLL ring could be set up: \(reason)")
            }
            return nil
        }
        let result = ring.execute(io, counters: counters)
        if !ring.isBroken { polledRings.checkIn(ring) }
        if case .failure(let error) = result, error.errno == EOPNOTSUPP {
            // (A first read past the end of an empty file gives the probe no answer.)
            let device = files.withLock { $0.lookup(file)?.fd }.map { Self.devicePolls(fd: $0) } ?? "device unknown"
            if options.completionPolling == .required { return .failure(pollingRequired(path: io.path, device: device)) }
            refuseCompletionPolling("\(error) (\(device))")
            return nil
        }
        return result
    }

    private func pollingRequired(path: String, device: String) -> PageStoreError {
        PageStoreError(
            kind: .unsupported, operation: "IOPOLL read or write", path: path, errno: EOPNOTSUPP,
            detail: "completion polling is required, and the file system or device refuses it (\(device))")
    }

    private func refuseCompletionPolling(_ reason: String) {
        let first = completionPolling.withLock { state -> Bool in
            defer { state = .refused(reason: reason) }
            return state.isOn
        }
        if first { pageStoreLogger.warning("PageStore: IOPOLL refused (\(reason)); blocking reads and writes wait for interrupts") }
    }

    /// With completion polling on, reads the first page of the first non-empty O_DIRECT
    /// file on an IOPOLL ring: the file system's and device's answer (`EOPNOTSUPP` turns polling
    /// off, or, when it is required, is returned as the error the open fails with), and
    /// whether the device polls at all (`queue/io_poll` in sysfs), for `stats`.
    private func probeCompletionPolling(_ file: FileID) -> PageStoreError? {
        guard let fd = files.withLock({ $0.lookup(file)?.fd }) else { return nil }
        // Whatever the probe cannot get (a page, a ring) leaves it for the next open.
        guard completionPolling.withLock({ $0.isOn }), let page = try? allocator.tryAllocate(pages: 1) else { return nil }
        defer { allocator.free(page) }
        let probe = (try? resolve(.read(file, IOSegment(offsetBytes: 0, buffer: page)), completion: { _ in }))
        guard let probe, let ring = checkOutInlineRing(polled: true) else { return nil }
        guard !pollingProbed.exchange(true, ordering: .relaxed) else {
            polledRings.checkIn(ring)
            return nil
        }
        var result = ring.execute(probe, counters: counters)
        if !ring.isBroken { polledRings.checkIn(ring) }
        if options.refusedForTesting.contains("iopoll") {
            result = .failure(PageStoreError(kind: .io, operation: "read", path: probe.path, offsetBytes: 0, errno: EOPNOTSUPP, detail: "simulated by the tests"))
        }
        let device = Self.devicePolls(fd: fd)
        if case .failure(let error) = result, error.errno == EOPNOTSUPP {
            if options.completionPolling == .required {
                // Tried again at the next open.
                pollingProbed.store(false, ordering: .relaxed)
                return pollingRequired(path: probe.path, device: device)
            }
            refuseCompletionPolling("\(error) (\(device))")
            return nil
        }
        switch result {
        case .success(0), .failure:
            // An empty file (a new database's first) reads nothing and answers nothing, nor
            // does a read that failed otherwise: the next file opened is asked instead.
            pollingProbed.store(false, ordering: .relaxed)
            return nil
        case .success: break
        }
        completionPolling.withLock { state in
            if state.isOn { state = .on(detail: device) }
        }
        return nil
    }

    /// Whether the block device under `fd` has poll queues, as sysfs says.
    static func devicePolls(fd: Int32) -> String {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return "device unknown" }
        // glibc's major() and minor().
        let device = UInt64(info.st_dev)
        let major = (device >> 8) & 0xFFF | (device >> 32) & 0xFFFF_F000
        let minor = device & 0xFF | (device >> 12) & 0xFFFF_FF00
        let name = "\(major):\(minor)"
        for path in ["/sys/dev/block/\(name)/queue/io_poll", "/sys/dev/block/\(name)/../queue/io_poll"] {
            guard let handle = fopen(path, "r") else { continue }
            defer { fclose(handle) }
            var byte: Int32 = 0
            byte = fgetc(handle)
            if byte == Int32(UInt8(ascii: "1")) { return "device \(name) has poll queues" }
            if byte == Int32(UInt8(ascii: "0")) {
                return "device \(name) has no poll queues (io_poll 0)"
            }
        }
        return "device \(name): no io_poll in sysfs"
    }

    /// An idle inline ring, or a new one; nil when the pool is at its limit or rings
    /// cannot be created here.
    private func checkOutInlineRing(polled: Bool = false) -> InlineRing? {
        (polled ? polledRings : inlineRings).checkOut(
            create: {
                try InlineRing(
                    entries: options.ringEntries, fileSlots: options.maxOpenFiles + 1, allocator: allocator,
                    fixedBuffers: backend.fixedBuffers, polled: polled)
            },
            openFiles: { files.withLock { $0.slots } })
    }

    /// Checks a request against the file table and its alignment and the ring's size.
    private func resolve(_ request: IORequest, completion: @escaping @Sendable (IOResult) -> Void) throws -> PendingIO {
        let name = request.operationName
        guard !isShutDown.load(ordering: .acquiring) else {
            throw PageStoreError(kind: .closed, operation: name, detail: "page store is shut down")
        }
        guard let entry = files.withLock({ $0.lookup(request.file) }) else { throw unknown(request.file, name) }
        try request.validate(alignment: entry.info.alignment, path: entry.info.path)
        let kind: PendingIO.Kind
        switch request {
        case .read: kind = .read
        case .write: kind = .write
        case .commit: kind = .commit
        case .sync(_, let dataOnly): kind = .sync(dataOnly: dataOnly)
        case .allocate(_, let offset, let length): kind = .allocate(offsetBytes: offset, lengthBytes: length)
        }
        let io = PendingIO(
            kind: kind, slot: request.file.slot, fd: entry.fd, path: entry.info.path,
            alignmentBytes: entry.info.alignment.offsetBytes, segments: request.segments, completion: completion)
        guard io.sqeCount <= backend.maxRequestSQEs else {
            throw PageStoreError(
                kind: .invalidArgument, operation: name, path: entry.info.path,
                detail: "\(io.sqeCount) SQEs exceed the ring's \(backend.maxRequestSQEs); raise ringEntries")
        }
        return io
    }

    // MARK: directories

    public func syncDirectory(atPath path: String) throws {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw PageStoreError.io("open directory", path: path, errno: errno) }
        defer { Glibc.close(fd) }
        guard fsync(fd) == 0 else { throw PageStoreError.io("fsync directory", path: path, errno: errno) }
        counters.fdatasyncs.wrappingAdd(1, ordering: .relaxed)
    }

    public func renameFile(atPath source: String, toPath target: String) throws {
        guard rename(source, target) == 0 else {
            throw PageStoreError(
                kind: .io, operation: "rename", path: source, errno: errno, detail: "to \(target)")
        }
    }

    public func removeFile(atPath path: String) throws {
        guard unlink(path) == 0 else { throw PageStoreError.io("unlink", path: path, errno: errno) }
    }

    public func linkFile(atPath source: String, toPath target: String) throws {
        guard link(source, target) == 0 else {
            throw PageStoreError(kind: .io, operation: "link", path: source, errno: errno, detail: "to \(target)")
        }
    }

    public func createDirectory(atPath path: String) throws {
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
            throw PageStoreError.io("mkdir", path: path, errno: errno)
        }
    }

    public func contentsOfDirectory(atPath path: String) throws -> [String] {
        guard let directory = opendir(path) else { throw PageStoreError.io("opendir", path: path, errno: errno) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public func fileExists(atPath path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0
    }

    // MARK: helpers

    private func checkOpen(_ operation: String, path: String?) throws {
        if isShutDown.load(ordering: .acquiring) {
            throw PageStoreError(kind: .closed, operation: operation, path: path, detail: "page store is shut down")
        }
    }

    private func entry(_ file: FileID, _ operation: String) throws -> FileTable.Entry {
        guard let entry = files.withLock({ $0.lookup(file) }) else { throw unknown(file, operation) }
        return entry
    }

    private func unknown(_ file: FileID, _ operation: String) -> PageStoreError {
        PageStoreError(
            kind: .invalidArgument, operation: operation,
            detail: "\(file) is not open (closed, or from another store)")
    }
}
