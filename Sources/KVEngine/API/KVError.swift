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
        /// (the next write tries, at most every 0.1 s; `resumeWrites()` tries now).
        case full
        /// A transaction's commit found that a key it read or wrote (or a key in a range it
        /// scanned) was written by another commit after its snapshot, and the attempts
        /// ``TransactionOptions/maxAttempts`` allows ran out; nothing of it was applied.
        case conflict
        /// A stored value is not what it was asked for as: a `String` from bytes that are
        /// not UTF-8, or a `Codable` value its decoder refused (the decoder's error is in
        /// the message). A value that could not be encoded is refused with this code too.
        case decoding
        /// The change feed was asked for changes the database no longer keeps (its logs
        /// were removed once their writes were in tables; ``Options/logRetention`` keeps
        /// them longer), or that never were in a log (an ingest's): the message names the
        /// oldest sequence it can start after. A follower starts again from a checkpoint.
        case notRetained
    }

    // Each code as a static member, so that a catch can name it: `catch KVError.locked`
    // (matched by `~=` below), as Foundation's `CocoaError.fileNoSuchFile` is.

    /// Matches `.invalidArgument` in a `catch` (`catch KVError.invalidArgument`).
    public static let invalidArgument = Code.invalidArgument
    /// Matches `.notADatabase` in a `catch`.
    public static let notADatabase = Code.notADatabase
    /// Matches `.alreadyExists` in a `catch`.
    public static let alreadyExists = Code.alreadyExists
    /// Matches `.locked` in a `catch`.
    public static let locked = Code.locked
    /// Matches `.corruption` in a `catch`.
    public static let corruption = Code.corruption
    /// Matches `.io` in a `catch`.
    public static let io = Code.io
    /// Matches `.newerFormat` in a `catch`.
    public static let newerFormat = Code.newerFormat
    /// Matches `.closed` in a `catch`.
    public static let closed = Code.closed
    /// Matches `.readOnly` in a `catch`.
    public static let readOnly = Code.readOnly
    /// Matches `.full` in a `catch`.
    public static let full = Code.full
    /// Matches `.conflict` in a `catch`.
    public static let conflict = Code.conflict
    /// Matches `.decoding` in a `catch`.
    public static let decoding = Code.decoding
    /// Matches `.notRetained` in a `catch`.
    public static let notRetained = Code.notRetained

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

extension KVError.Code {
    /// Whether `error` is a ``KVError`` with this code: what `catch KVError.locked` uses.
    public static func ~= (code: KVError.Code, error: any Error) -> Bool {
        (error as? KVError)?.code == code
    }
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
