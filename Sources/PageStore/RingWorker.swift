#if canImport(Glibc)
import Glibc
#endif
import CLiburing
import CPageStoreSupport
import Dispatch
import Foundation
import Synchronization

/// The io_uring backend: one thread that owns a ``Ring`` and carries out every request.
///
/// Callers on any thread put work into the inbox; when the ring thread is asleep in
/// `io_uring_enter`, they wake it by writing to an eventfd that the ring always has a
/// read armed on (slot 0 of the registered file table). Completions run on the ring
/// thread, which only hands results over (it never waits for a caller).
final class RingWorker: IOBackend {
    let mode = IOMode.ioUring
    let fixedBuffers: Bool
    let ringFlags: [String]
    let submissionPolling: RingModeState
    let registeredRingFD: RingModeState
    let maxRequestSQEs: Int
    private let inbox: RingInbox
    private let stopped = DispatchSemaphore(value: 0)

    private init(inbox: RingInbox, info: RingInfo) {
        self.inbox = inbox
        self.fixedBuffers = info.fixedBuffers
        self.ringFlags = info.flags
        self.submissionPolling = info.submissionPolling
        self.registeredRingFD = info.registeredRingFD
        self.maxRequestSQEs = info.sqEntries - 1
    }

    /// Starts the ring thread and waits until the ring is set up (or failed to be).
    static func start(
        options: PageStoreOptions, allocator: PageAllocator, counters: IOCounters
    ) throws -> RingWorker {
        let eventFD = eventfd(0, Int32(EFD_CLOEXEC))
        guard eventFD >= 0 else { throw PageStoreError.io("eventfd", path: nil, errno: errno) }
        let inbox = RingInbox(eventFD: eventFD)
        let setup = OneShot<Result<RingInfo, PageStoreError>>()
        let thread = Thread {
            let ring: Ring
            var submissionPolling = RingModeState.off
            do {
                if options.submissionPolling != .disabled {
                    do {
                        try options.simulateRefusal(of: "sqpoll", operation: "io_uring_queue_init", errno: EPERM)
                        ring = try Ring(
                            entries: options.ringEntries, preferredFlags: Ring.submissionPollingAttempts,
                            idleMs: options.submissionPollingIdleMs, cpu: options.submissionPollingCPU)
                        submissionPolling = .on(
                            detail: "idle \(options.submissionPollingIdleMs) ms, "
                                + (options.submissionPollingCPU.map { "cpu \($0)" } ?? "any cpu"))
                    } catch let error as PageStoreError {
                        submissionPolling = try options.submissionPolling.refused(error, fallback: "the ring runs without SQPOLL")
                        ring = try Ring(entries: options.ringEntries)
                    }
                } else {
                    ring = try Ring(entries: options.ringEntries)
                }
            } catch {
                setup.fulfil(.failure(error as! PageStoreError))
                return
            }
            var info: RingInfo
            do {
                info = try RingInfo.prepare(ring, options: options, allocator: allocator, eventFD: eventFD)
                info.submissionPolling = submissionPolling
            } catch {
                setup.fulfil(.failure(error as! PageStoreError))
                return
            }
            setup.fulfil(.success(info))
            let loop = RingLoop(
                ring: ring, inbox: inbox, counters: counters, fixedBuffers: info.fixedBuffers,
                spinNanos: submissionPolling.isOn ? RingLoop.submissionPollingSpinNanos : 0)
            loop.run()
            inbox.finished.signal()
        }
        thread.name = "PageStore.ring"
        thread.start()
        switch setup.wait() {
        case .success(let info):
            return RingWorker(inbox: inbox, info: info)
        case .failure(let error):
            close(eventFD)
            throw error
        }
    }

    func register(slot: UInt32, fd: Int32) throws {
        let done = OneShot<PageStoreError?>()
        inbox.post(.register(slot: slot, fd: fd, done: done))
        if let error = done.wait() { throw error }
    }

    func enqueue(_ io: PendingIO) {
        inbox.post(.io(io))
    }

    func executeInline(_ io: PendingIO) -> IOResult? { nil }

    func shutdown() {
        guard inbox.stop() else { return }
        inbox.finished.wait()
        close(inbox.eventFD)
    }
}

/// What the ring thread learned while setting up.
struct RingInfo: Sendable {
    let fixedBuffers: Bool
    let flags: [String]
    let sqEntries: Int
    var submissionPolling = RingModeState.off
    var registeredRingFD = RingModeState.off

    /// Probes opcodes, registers the sparse file table (slot 0: the wake-up eventfd) and
    /// the arena as fixed buffers, honouring `options.fixedBuffers`.
    static func prepare(
        _ ring: borrowing Ring, options: PageStoreOptions, allocator: PageAllocator, eventFD: Int32
    ) throws -> RingInfo {
        try ring.requireOpcodes([
            ("READ", IORING_OP_READ), ("WRITE", IORING_OP_WRITE),
            ("READ_FIXED", IORING_OP_READ_FIXED), ("WRITE_FIXED", IORING_OP_WRITE_FIXED),
            ("FSYNC", IORING_OP_FSYNC), ("FALLOCATE", IORING_OP_FALLOCATE),
        ])
        try ring.registerSparseFiles(count: options.maxOpenFiles + 1)
        try ring.updateFile(slot: 0, fd: eventFD)
        var fixed = false
        if options.fixedBuffers != .disabled {
            do {
                try ring.registerBuffers(allocator.regions)
                allocator.markRegistered()
                fixed = true
            } catch let error as PageStoreError {
                if options.fixedBuffers == .required { throw error }
                pageStoreLogger.warning(
                    "PageStore: \(error); using non-fixed reads and writes (raise RLIMIT_MEMLOCK to register the arena)")
            }
        }
        var info = RingInfo(fixedBuffers: fixed, flags: ring.setupFlagNames, sqEntries: ring.sqEntries)
        if options.registeredRingFD != .disabled {
            do {
                try options.simulateRefusal(of: "ringfd", operation: "io_uring_register_ring_fd", errno: EINVAL)
                try ring.registerRingFD()
                info.registeredRingFD = .on(detail: "")
            } catch let error as PageStoreError {
                info.registeredRingFD = try options.registeredRingFD.refused(error, fallback: "io_uring_enter looks the ring up by its descriptor")
            }
        }
        return info
    }
}

/// Work handed to the ring thread, and the flag that says whether it must be woken.
final class RingInbox: Sendable {
    enum Work: Sendable {
        case io(PendingIO)
        case register(slot: UInt32, fd: Int32, done: OneShot<PageStoreError?>)
    }

    private struct State {
        var work: [Work] = []
        var sleeping = false
        var stopping = false
    }

    let eventFD: Int32
    let finished = DispatchSemaphore(value: 0)
    private let state = Mutex(State())

    init(eventFD: Int32) { self.eventFD = eventFD }

    /// Queues work; wakes the ring thread when it is (about to be) asleep.
    func post(_ work: Work) {
        let wake = state.withLock { state -> Bool in
            state.work.append(work)
            defer { state.sleeping = false }
            return state.sleeping
        }
        if wake { signal() }
    }

    /// Asks the ring thread to finish in-flight work and exit. False if already asked.
    func stop() -> Bool {
        let first = state.withLock { state -> Bool in
            defer { state.stopping = true; state.sleeping = false }
            return !state.stopping
        }
        if first { signal() }
        return first
    }

    /// Takes all queued work (ring thread only).
    func take() -> (work: [Work], stopping: Bool) {
        state.withLock { state in
            defer { state.work.removeAll(keepingCapacity: true) }
            return (state.work, state.stopping)
        }
    }

    /// Marks the ring thread asleep if no work is queued; true if it may now wait.
    func prepareToSleep() -> Bool {
        state.withLock { state in
            state.sleeping = state.work.isEmpty && !state.stopping
            return state.sleeping
        }
    }

    /// Marks the ring thread awake again.
    func awake() { state.withLock { $0.sleeping = false } }

    private func signal() {
        var one: UInt64 = 1
        while write(eventFD, &one, 8) < 0 && errno == EINTR {}
    }
}
