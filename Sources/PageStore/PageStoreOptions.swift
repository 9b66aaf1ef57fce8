/// How a page store may reach the disk, and how much memory it may use.
///
/// The defaults prefer the fastest path the machine allows and fall back, with one log
/// line, when it is refused. Set a requirement to `.required` to fail instead.
public struct PageStoreOptions: Sendable {
    /// Whether a feature is tried, demanded or avoided.
    public enum Requirement: Sendable, Equatable {
        /// Use it when the kernel allows; fall back with one warning otherwise.
        case preferred
        /// Use it or fail to open with an `.unsupported` error.
        case required
        /// Never use it.
        case disabled
    }

    /// io_uring (`preferred`) or the pread/pwrite/fdatasync backend.
    public var ioUring: Requirement = .preferred
    /// O_DIRECT on data files; when refused (tmpfs, some file systems) files are opened buffered.
    public var directIO: Requirement = .preferred
    /// Registering the page arena as io_uring fixed buffers (`READ_FIXED`/`WRITE_FIXED`).
    public var fixedBuffers: Requirement = .preferred
    /// Bytes of the page arena: every buffer the store reads into or writes from comes from it.
    public var arenaBytes: Int = 64 << 20
    /// Size of one page frame. A power of two, at least 512 and at most 1 MiB.
    public var pageSizeBytes: Int = 4096
    /// Submission queue entries of the ring (a power of two). Bounds the longest commit chain.
    public var ringEntries: Int = 256
    /// Slots in the registered file table: the most files open at once.
    public var maxOpenFiles: Int = 1024
    /// Most rings kept for blocking callers to run requests on their own thread (0: none,
    /// every request goes through the ring thread). Each registers the arena again.
    public var inlineRings: Int = 8
    /// SQPOLL on the ring thread's ring: a kernel thread polls its submission queue, so
    /// handing SQEs to the kernel takes no system call while the poller is awake. It
    /// costs that thread's CPU (it spins for ``submissionPollingIdleMs`` after the last
    /// submission), so it is off by default; the kernel may refuse it (`EPERM` without
    /// the privilege older kernels ask for, `EINVAL`). Blocking callers' inline rings
    /// never use it: they wait for their completion in `io_uring_enter` in any case.
    public var submissionPolling: Requirement = .disabled
    /// How long the SQPOLL thread spins without work before it sleeps (`sq_thread_idle`).
    public var submissionPollingIdleMs: Int = 1000
    /// The CPU the SQPOLL thread is pinned to (`IORING_SETUP_SQ_AFF`); nil: any.
    public var submissionPollingCPU: Int? = nil
    /// IOPOLL for blocking reads and writes of O_DIRECT files: completions are polled
    /// from the device instead of signalled by its interrupt. These requests go to inline
    /// rings set up with `IORING_SETUP_IOPOLL`; fdatasync, fallocate, commit chains,
    /// buffered files and the ring thread's asynchronous requests stay on rings without
    /// it (IOPOLL rings take no other operation). It pays only on devices with poll
    /// queues (NVMe with `poll_queues`; `stats` says whether the device has them); where
    /// the first file's reads are refused (`EOPNOTSUPP`) it is turned off. Off by default.
    public var completionPolling: Requirement = .disabled
    /// Registering the ring thread's ring file descriptor (`io_uring_register_ring_fd`),
    /// so each `io_uring_enter` skips the kernel's file-descriptor lookup. Inline rings
    /// are used from many threads, and the registration is per thread, so only the ring
    /// thread's ring has it.
    public var registeredRingFD: Requirement = .preferred
    /// Ring modes the tests make the store treat as refused by the kernel ("sqpoll",
    /// "iopoll", "ringfd"), to check each fallback on a machine that would accept them.
    var refusedForTesting: Set<String> = []

    /// The defaults: io_uring, O_DIRECT and fixed buffers where possible, a 64 MiB arena.
    public init() {}
}

extension PageStoreOptions.Requirement {
    /// An optional ring mode refused by the kernel: rethrown when the mode is required;
    /// otherwise logged once, with what the store does instead (`fallback`), and the state
    /// `stats` reports.
    func refused(_ error: PageStoreError, fallback: String) throws -> RingModeState {
        if self == .required { throw error }
        pageStoreLogger.warning("PageStore: \(error); \(fallback)")
        return .refused(reason: "\(error)")
    }
}

extension PageStoreOptions {
    /// Throws the refusal of `mode` the tests ask for (`refusedForTesting`), as the kernel
    /// would.
    func simulateRefusal(of mode: String, operation: String, errno: Int32) throws {
        guard refusedForTesting.contains(mode) else { return }
        throw PageStoreError(kind: .unsupported, operation: operation, errno: errno, detail: "\(mode) refused (simulated by the tests)")
    }
}
