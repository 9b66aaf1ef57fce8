#if canImport(Glibc)
import Glibc
#endif
import CLiburing
import CPageStoreSupport

/// The owner of one liburing ring.
///
/// Not copyable: exactly one value owns the ring's memory and file descriptor, and the
/// ring is torn down when that value goes away. With `SINGLE_ISSUER` and `DEFER_TASKRUN`
/// only the thread that created the ring may use it, so a `Ring` lives on one thread
/// (``RingWorker``'s) for its whole life.
struct Ring: ~Copyable {
    /// The liburing state, on the heap so its address never changes.
    let raw: UnsafeMutablePointer<io_uring>
    /// Setup flags the kernel accepted.
    let setupFlags: UInt32
    /// Submission queue size.
    let sqEntries: Int
    /// Completion queue size.
    let cqEntries: Int

    /// The setup flags tried first, each dropped in turn when the kernel refuses it.
    static let preferredFlags: [(name: String, flag: UInt32)] = [
        ("SINGLE_ISSUER", UInt32(PS_SETUP_SINGLE_ISSUER)),
        ("DEFER_TASKRUN", UInt32(PS_SETUP_DEFER_TASKRUN)),
        ("COOP_TASKRUN", UInt32(PS_SETUP_COOP_TASKRUN)),
    ]

    /// Every flag a ring may be set up with, by name (for stats).
    static let flagNames: [(name: String, flag: UInt32)] = preferredFlags + [
        ("SQPOLL", UInt32(PS_SETUP_SQPOLL)), ("SQ_AFF", UInt32(PS_SETUP_SQ_AFF)), ("IOPOLL", UInt32(PS_SETUP_IOPOLL)),
    ]

    /// Flag sets tried in turn, most to fewest: all three, COOP_TASKRUN alone
    /// (DEFER_TASKRUN needs SINGLE_ISSUER), then none.
    static let defaultFlagAttempts: [UInt32] = [
        preferredFlags.reduce(UInt32(0)) { $0 | $1.flag }, UInt32(PS_SETUP_COOP_TASKRUN), 0,
    ]

    /// The attempt with SQPOLL: SQPOLL alone. The kernel refuses COOP_TASKRUN and
    /// DEFER_TASKRUN beside it (its poller runs the completions' work), and with
    /// SINGLE_ISSUER added, QD1 reads measured a third slower here (7.3-8.1k against
    /// 9.9-11.8k ops/s, 2026-12-04).
    static let submissionPollingAttempts: [UInt32] = [UInt32(PS_SETUP_SQPOLL)]

    /// The attempts with IOPOLL (a blocking caller's ring: any thread, one at a time).
    static let completionPollingAttempts: [UInt32] = [
        UInt32(PS_SETUP_IOPOLL | PS_SETUP_COOP_TASKRUN), UInt32(PS_SETUP_IOPOLL),
    ]

    /// Sets up a ring of `entries` SQEs (CQ twice that), with `SINGLE_ISSUER |
    /// DEFER_TASKRUN | COOP_TASKRUN` when the kernel takes them; on `EINVAL` retries with
    /// fewer flags. Must be called on the thread that will use the ring. With SQPOLL in
    /// the flags, `idleMs` and `cpu` set up its thread (`cpu` adds SQ_AFF).
    init(entries: Int, preferredFlags attempts: [UInt32] = Ring.defaultFlagAttempts, idleMs: Int = 0, cpu: Int? = nil) throws {
        raw = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
        raw.initialize(to: io_uring())
        var lastError: Int32 = 0
        var accepted: UInt32? = nil
        for var flags in attempts {
            var params = io_uring_params()
            if flags & UInt32(PS_SETUP_SQPOLL) != 0 {
                params.sq_thread_idle = UInt32(clamping: idleMs)
                if let cpu {
                    flags |= UInt32(PS_SETUP_SQ_AFF)
                    params.sq_thread_cpu = UInt32(clamping: cpu)
                }
            }
            params.flags = flags | UInt32(IORING_SETUP_CQSIZE)
            params.cq_entries = UInt32(entries * 2)
            let result = io_uring_queue_init_params(UInt32(entries), raw, &params)
            if result == 0 {
                accepted = flags
                break
            }
            lastError = -result
            if lastError != EINVAL { break }
        }
        guard let accepted else {
            raw.deinitialize(count: 1)
            raw.deallocate()
            let detail = attempts.allSatisfy({ $0 & UInt32(PS_SETUP_SQPOLL) != 0 })
                ? "the kernel refused SQPOLL"
                : attempts.allSatisfy({ $0 & UInt32(PS_SETUP_IOPOLL) != 0 }) ? "the kernel refused IOPOLL" : "io_uring is not available"
            throw PageStoreError(kind: .unsupported, operation: "io_uring_queue_init", errno: lastError, detail: detail)
        }
        setupFlags = accepted
        sqEntries = Int(raw.pointee.sq.ring_entries)
        cqEntries = Int(raw.pointee.cq.ring_entries)
    }

    deinit {
        io_uring_queue_exit(raw)
        raw.deinitialize(count: 1)
        raw.deallocate()
    }

    /// Names of the accepted setup flags, for stats.
    var setupFlagNames: [String] {
        Self.flagNames.filter { setupFlags & $0.flag != 0 }.map(\.name)
    }

    /// Registers the ring's own file descriptor for this thread's `io_uring_enter` calls
    /// (liburing uses the registered index from then on; `io_uring_queue_exit` drops it).
    func registerRingFD() throws {
        let result = io_uring_register_ring_fd(raw)
        if result < 0 {
            throw PageStoreError(kind: .unsupported, operation: "io_uring_register_ring_fd", errno: -result)
        }
    }

    /// Fails with `.unsupported` naming the first opcode the kernel does not support.
    func requireOpcodes(_ opcodes: [(String, io_uring_op)]) throws {
        guard let probe = io_uring_get_probe_ring(raw) else {
            throw PageStoreError(kind: .unsupported, operation: "io_uring probe", detail: "kernel refused probe")
        }
        defer { io_uring_free_probe(probe) }
        for (name, opcode) in opcodes where io_uring_opcode_supported(probe, Int32(opcode.rawValue)) == 0 {
            throw PageStoreError(kind: .unsupported, operation: "io_uring probe", detail: "opcode \(name) unsupported")
        }
    }

    /// Registers a sparse file table of `count` empty slots.
    func registerSparseFiles(count: Int) throws {
        let result = io_uring_register_files_sparse(raw, UInt32(count))
        if result < 0 {
            throw PageStoreError(kind: .unsupported, operation: "register sparse file table", errno: -result)
        }
    }

    /// Puts `fd` (or -1 to empty it) into slot `slot` of the registered file table.
    func updateFile(slot: UInt32, fd: Int32) throws {
        var descriptor = fd
        let result = io_uring_register_files_update(raw, slot, &descriptor, 1)
        if result < 0 {
            throw PageStoreError(kind: .io, operation: "register file in slot \(slot)", errno: -result)
        }
    }

    /// Registers `regions` as fixed buffers 0..<regions.count.
    func registerBuffers(_ regions: [iovec]) throws {
        let result = regions.withUnsafeBufferPointer {
            io_uring_register_buffers(raw, $0.baseAddress, UInt32($0.count))
        }
        if result < 0 {
            throw PageStoreError(kind: .unsupported, operation: "register fixed buffers", errno: -result)
        }
    }

    /// Completions in the CQ, not yet reaped (no system call).
    var completionsReady: Int { Int(io_uring_cq_ready(raw)) }

    /// SQEs prepared but not yet handed to the kernel.
    var unsubmittedSQEs: Int { Int(io_uring_sq_ready(raw)) }

    /// Free SQ slots right now.
    var sqSpaceLeft: Int { Int(io_uring_sq_space_left(raw)) }

    /// The next free SQE; the caller must have checked ``sqSpaceLeft``.
    func nextSQE() -> UnsafeMutablePointer<io_uring_sqe> {
        guard let sqe = io_uring_get_sqe(raw) else { preconditionFailure("SQ full: space was not reserved") }
        return sqe
    }

    /// Submits prepared SQEs and waits for at least `waitCount` completions.
    /// Retries `EINTR`; on `EBUSY`/`EAGAIN` (CQ full) returns 0 so the caller reaps and
    /// tries again. Returns how many SQEs the kernel took.
    func submit(waitCount: Int) throws -> Int {
        while true {
            let result = waitCount > 0
                ? io_uring_submit_and_wait(raw, UInt32(waitCount))
                : io_uring_submit(raw)
            if result >= 0 { return Int(result) }
            switch -result {
            case EINTR: continue
            case EBUSY, EAGAIN: return 0
            case ETIME: return 0
            default:
                throw PageStoreError(kind: .io, operation: "io_uring_enter", errno: -result)
            }
        }
    }

    /// Copies ready completions into `buffer` and advances the CQ; returns how many.
    /// Flushes overflowed completions into the CQ first when the kernel reports any.
    func reap(into buffer: UnsafeMutableBufferPointer<ps_completion>) -> Int {
        if io_uring_cq_has_overflow(raw) {
            _ = io_uring_get_events(raw)
        }
        return Int(ps_peek_completions(raw, buffer.baseAddress, UInt32(buffer.count)))
    }
}
