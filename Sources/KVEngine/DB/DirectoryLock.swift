import PageStore

#if canImport(Glibc)
import Glibc
#endif

/// The `LOCK` file, locked through the database's storage: exclusive while a writing
/// handle is open, with the holder's pid written in it so a refused open can say who
/// holds it; a read-only handle holds a shared lock and writes nothing.
final class DirectoryLock: Sendable {
    private let lock: (any FileLock)?
    let path: String

    /// Takes the lock, exclusive or `shared`. A shared lock creates nothing: a directory
    /// without the file (a copy, say) is read unlocked.
    init(directory: String, shared: Bool = false, storage: any Storage) throws(KVError) {
        path = directory + "/" + FileNames.lock
        let me = "\(getpid())"
        do {
            lock = try storage.lockFile(atPath: path, shared: shared, holder: me + "\n")
        } catch let conflict as FileLockConflict {
            let holder = conflict.holder?.filter(\.isNumber) ?? ""
            let who: String
            if shared {
                who = holder == me ? "a writing handle in this process" : "a writer" + (holder.isEmpty ? "" : " (pid \(holder))")
            } else {
                // (A read-only open writes no pid: the one in the file may be the last writer's.)
                who = holder == me
                    ? "another handle in this process"
                    : "another process" + (holder.isEmpty ? " (a read-only open?)" : " (pid \(holder), or a read-only open)")
            }
            throw KVError(.locked, "database at \(directory) is locked by \(who)", path: path)
        } catch {
            throw KVError.io(error, while: "lock \(path)")
        }
    }

    /// Lets go of the lock. Safe to call more than once.
    func release() { lock?.release() }

    deinit { release() }
}
