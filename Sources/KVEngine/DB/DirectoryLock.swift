import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The `LOCK` file: an exclusive `flock` held while a writing handle is open, with the
/// holder's pid written in it so a refused open can say who holds it; a read-only handle
/// holds a shared `flock` and writes nothing.
final class DirectoryLock: Sendable {
    private let fd: Mutex<Int32>
    let path: String

    /// Takes the lock, exclusive or `shared`. A shared lock opens `LOCK` read-only and
    /// creates nothing: a directory without the file (a copy, say) is read unlocked.
    init(directory: String, shared: Bool = false) throws(KVError) {
        path = directory + "/LOCK"
        let fd = shared ? open(path, O_RDONLY | O_CLOEXEC) : open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            if shared && errno == ENOENT {
                self.fd = Mutex(-1)
                return
            }
            throw KVError(.io, "cannot open lock file \(path): \(String(cString: strerror(errno)))", path: path)
        }
        if flock(fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0 {
            let code = errno
            var bytes = [UInt8](repeating: 0, count: 32)
            let count = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
            close(fd)
            if code == EWOULDBLOCK {
                let holder = count > 0 ? String(decoding: bytes[0..<count], as: UTF8.self).filter(\.isNumber) : ""
                let who: String
                if shared {
                    who = holder == "\(getpid())" ? "a writing handle in this process" : "a writer" + (holder.isEmpty ? "" : " (pid \(holder))")
                } else {
                    // (A read-only open writes no pid: the one in the file may be the last writer's.)
                    who = holder == "\(getpid())"
                        ? "another handle in this process"
                        : "another process" + (holder.isEmpty ? " (a read-only open?)" : " (pid \(holder), or a read-only open)")
                }
                throw KVError(.locked, "database at \(directory) is locked by \(who)", path: path)
            }
            throw KVError(.io, "cannot lock \(path): \(String(cString: strerror(code)))", path: path)
        }
        if !shared {
            let pid = Array("\(getpid())\n".utf8)
            _ = ftruncate(fd, 0)
            _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        }
        self.fd = Mutex(fd)
    }

    /// Lets go of the lock. Safe to call more than once.
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
