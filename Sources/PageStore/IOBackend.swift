import Dispatch
import Synchronization

/// One I/O resolved against the file table, ready for a backend.
struct PendingIO: Sendable {
    enum Kind: Sendable, Equatable {
        case read
        case write
        case commit
        case sync(dataOnly: Bool)
        case allocate(offsetBytes: Int64, lengthBytes: Int64)
    }

    let kind: Kind
    let slot: UInt32
    let fd: Int32
    let path: String
    /// Offset/length alignment of the file; short transfers resume on a multiple of it.
    let alignmentBytes: Int
    let segments: [IOSegment]
    let completion: @Sendable (IOResult) -> Void

    var operationName: String {
        switch kind {
        case .read: "read"
        case .write: "write"
        case .commit: "commit"
        case .sync(let dataOnly): dataOnly ? "fdatasync" : "fsync"
        case .allocate: "fallocate"
        }
    }

    /// SQEs one submission of the whole request takes.
    var sqeCount: Int {
        switch kind {
        case .read, .write: segments.count
        case .commit: segments.count + 1
        case .sync, .allocate: 1
        }
    }
}

/// The part of a page store that talks to the kernel: io_uring (``RingWorker``) or the
/// pread/pwrite fallback (``PosixWorker``).
protocol IOBackend: AnyObject, Sendable {
    var mode: IOMode { get }
    var fixedBuffers: Bool { get }
    var ringFlags: [String] { get }
    /// SQPOLL on the backend's ring.
    var submissionPolling: RingModeState { get }
    /// The backend's ring file descriptor registered.
    var registeredRingFD: RingModeState { get }
    /// Longest request in SQEs (a commit chain must fit one submission).
    var maxRequestSQEs: Int { get }
    /// Puts `fd` into registered-file slot `slot` (-1 empties it).
    func register(slot: UInt32, fd: Int32) throws
    /// Starts an I/O; its completion runs on the backend's thread.
    func enqueue(_ io: PendingIO)
    /// Runs `io` on the calling thread when the backend can (the posix backend); nil otherwise.
    func executeInline(_ io: PendingIO) -> IOResult?
    /// Waits for in-flight I/O, then stops the backend's thread.
    func shutdown()
}

/// Most attempts one request gets (short transfers, EINTR, EAGAIN, broken links) before
/// it fails with the last reason.
let maxIOAttempts = 32
