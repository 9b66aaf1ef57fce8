import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// An advisory lock on a file, taken with ``Storage/lockFile(atPath:shared:holder:)``.
/// Released by ``release()`` (more than once is fine) or when the last reference goes.
public protocol FileLock: AnyObject, Sendable {
    /// Lets go of the lock.
    func release()
}

/// A lock that another holder has: exclusive against any other, shared against an
/// exclusive one.
public struct FileLockConflict: Error, Sendable {
    /// The file the lock is on.
    public let path: String
    /// What the exclusive holder wrote in the file (a writer's pid), when anything.
    public let holder: String?

    /// A conflict over `path`, with what its exclusive holder wrote.
    public init(path: String, holder: String?) {
        self.path = path
        self.holder = holder
    }
}

extension Storage {
    /// The default: a `flock` on the real file. An exclusive lock creates the file and
    /// writes `holder` in it; a shared one only opens it, and there is nothing to lock
    /// (nil) when the file does not exist.
    public func lockFile(atPath path: String, shared: Bool, holder: String) throws -> (any FileLock)? {
        try PosixFileLock.take(path, shared: shared, holder: holder)
    }
}

/// A `flock` on an open descriptor.
final class PosixFileLock: FileLock {
    private let fd: Mutex<Int32>

    private init(fd: Int32) { self.fd = Mutex(fd) }

    static func take(_ path: String, shared: Bool, holder: String) throws -> PosixFileLock? {
        let fd = shared ? open(path, O_RDONLY | O_CLOEXEC) : open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            if shared && errno == ENOENT { return nil }
            throw PageStoreError.io("open lock file", path: path, errno: errno)
        }
        if flock(fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0 {
            let code = errno
            var bytes = [UInt8](repeating: 0, count: 64)
            let count = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
            close(fd)
            guard code == EWOULDBLOCK else { throw PageStoreError.io("flock", path: path, errno: code) }
            let text = count > 0 ? String(decoding: bytes[0..<count], as: UTF8.self) : ""
            throw FileLockConflict(path: path, holder: text.isEmpty ? nil : text)
        }
        if !shared {
            let text = Array(holder.utf8)
            _ = ftruncate(fd, 0)
            _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        }
        return PosixFileLock(fd: fd)
    }

    func release() {
        fd.withLock { fd in
            guard fd >= 0 else { return }
            flock(fd, LOCK_UN)
            close(fd)
            fd = -1
        }
    }

    deinit { release() }
}
