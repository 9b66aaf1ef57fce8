#if canImport(Glibc)
import Glibc
#endif

/// An error from the page store: what failed, on which file and offset, and why.
///
/// Every I/O failure, misuse and missing kernel feature is reported as one of these.
/// `description` is a single line meant for people, for example
/// `write failed on /db/000003.log at offset 8192: No space left on device (errno 28)`.
public struct PageStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The class of failure.
    public enum Kind: Sendable, Equatable {
        /// The kernel returned an error for an I/O or file-system call.
        case io
        /// A buffer address, file offset or length is not a multiple of the required alignment.
        case misaligned
        /// An argument makes no sense (an unknown file handle, an empty request, a chain too long).
        case invalidArgument
        /// A required feature (io_uring, O_DIRECT, fixed buffers, an opcode) is not available.
        case unsupported
        /// The page allocator cannot satisfy a request of this size at all.
        case exhausted
        /// The store has been shut down.
        case closed
    }

    /// The class of failure.
    public let kind: Kind
    /// The operation that failed, such as `read`, `commit`, `open`.
    public let operation: String
    /// The file the operation was on, when there is one.
    public let path: String?
    /// The byte offset in `path` the operation was at, when there is one.
    public let offsetBytes: Int64?
    /// The errno the kernel returned, when the failure came from the kernel.
    public let errno: Int32?

    /// No room on the device (ENOSPC) or in the quota (EDQUOT).
    public var isNoSpace: Bool { errno == ENOSPC || errno == EDQUOT }

    /// A reservation (fallocate) that the engine goes on without: no room for it, or a
    /// file system without fallocate (EOPNOTSUPP).
    public var refusesReservation: Bool { isNoSpace || errno == EOPNOTSUPP }
    /// Extra detail: the value that was wrong and what was required.
    public let detail: String?

    /// Creates an error. Most code uses the static constructors instead.
    public init(
        kind: Kind, operation: String, path: String? = nil, offsetBytes: Int64? = nil,
        errno: Int32? = nil, detail: String? = nil
    ) {
        self.kind = kind
        self.operation = operation
        self.path = path
        self.offsetBytes = offsetBytes
        self.errno = errno
        self.detail = detail
    }

    /// An error the kernel returned for `operation`.
    public static func io(
        _ operation: String, path: String?, offsetBytes: Int64? = nil, errno: Int32
    ) -> PageStoreError {
        PageStoreError(kind: .io, operation: operation, path: path, offsetBytes: offsetBytes, errno: errno)
    }

    /// One line: `OPERATION failed on PATH at offset N: DETAIL (errno E)`.
    public var description: String {
        var text = "\(operation) failed"
        if let path { text += " on \(path)" }
        if let offsetBytes { text += " at offset \(offsetBytes)" }
        var reasons: [String] = []
        if let detail { reasons.append(detail) }
        if let errno { reasons.append("\(Self.errnoText(errno)) (errno \(errno))") }
        if reasons.isEmpty { reasons.append("\(kind)") }
        return text + ": " + reasons.joined(separator: ": ")
    }

    /// The C library's text for an errno value.
    static func errnoText(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text)
    }
}
