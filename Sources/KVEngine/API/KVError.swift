import PageStore

/// Why a database call failed: what, where (file and offset when there is one) and why.
///
/// A missing key is not an error (`get` returns nil). Nothing is half-applied when a call
/// throws: a failed write leaves no trace visible to readers.
public struct KVError: Error, Sendable, CustomStringConvertible {
    /// The class of failure.
    public enum Code: Sendable, Equatable {
        /// An argument or option makes no sense (empty key, key or value too large...).
        case invalidArgument
        /// The path holds no database and creating one was not asked for.
        case notADatabase
        /// The database exists and `errorIfExists` was set.
        case alreadyExists
        /// Another process (or handle) holds the database's lock.
        case locked
        /// A file's bytes fail their checks.
        case corruption
        /// The disk refused an operation (the page store's error is in `underlying`).
        case io
        /// The database was written by a newer format version.
        case newerFormat
        /// The handle was closed.
        case closed
        /// The database is open read-only (`Options.readOnly`, or after damage with
        /// `onLogCorruption: .openReadOnly`) and cannot be written.
        case readOnly
        /// No room on the device (`ENOSPC`) or in the quota (`EDQUOT`): the write that hit it
        /// failed and nothing of it is visible. The database stays readable in the process
        /// that hit it; later writes fail too until there is room again, and then go on
        /// (the next write tries, at most every 0.1 s; ``Database/resumeWrites()`` tries now).
        case full
    }

    /// The class of failure.
    public let code: Code
    /// One line saying what failed and why.
    public let message: String
    /// The file concerned, when there is one.
    public let path: String?
    /// The byte offset in `path`, when there is one.
    public let offsetBytes: Int64?
    /// The page store error behind an `.io` failure.
    public let underlying: PageStoreError?

    init(_ code: Code, _ message: String, path: String? = nil, offsetBytes: Int64? = nil, underlying: PageStoreError? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.offsetBytes = offsetBytes
        self.underlying = underlying
    }

    /// Wraps a page store failure.
    static func io(_ error: any Error, while action: String) -> KVError {
        guard let error = error as? PageStoreError else { return KVError(.io, "\(action): \(error)") }
        let code: Code = error.isNoSpace ? .full : .io
        return KVError(code, "\(action): \(error)", path: error.path, offsetBytes: error.offsetBytes, underlying: error)
    }

    /// Whether this is a full disk or quota.
    var isFull: Bool { code == .full }

    /// A refused reservation (see `PageStoreError.refusesReservation`).
    var refusesReservation: Bool { underlying?.refusesReservation ?? false }

    /// The errno behind an I/O failure, if any.
    public var errno: Int32? { underlying?.errno }

    public var description: String { message }
}

/// Runs page store calls, turning their errors into `.io` errors saying what was being done.
@inline(__always)
func io<T>(_ action: @autoclosure () -> String, _ body: () throws -> T) throws(KVError) -> T {
    do {
        return try body()
    } catch let error as KVError {
        throw error
    } catch {
        throw KVError.io(error, while: action())
    }
}
