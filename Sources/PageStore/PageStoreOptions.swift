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

    /// The defaults: io_uring, O_DIRECT and fixed buffers where possible, a 64 MiB arena.
    public init() {}
}
