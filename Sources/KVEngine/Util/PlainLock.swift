#if canImport(Glibc)
import Glibc
#endif

/// A value guarded by a plain `pthread_mutex_t` (glibc's default kind: a futex, no
/// priority inheritance), for the few locks that many threads take at once.
///
/// Why not `Synchronization.Mutex`: on Linux it spins and then sleeps on a
/// priority-inheriting futex, which hands the lock to one sleeping waiter at each unlock
/// (no thread running meanwhile may take it). With more writers than cores that makes a
/// convoy: measured with 64 durable writers on 2 cores, 23% of the samples spun in
/// `Mutex._lockSlow`, most on the log writer's lock and the view's; with those two on
/// this lock, 64 writers commit about 1.5x as fast and 1 to 16 writers as before
/// (docs/BENCHMARKS.md, "Locks").
final class PlainLock<Value>: @unchecked Sendable {
    // @unchecked: `value` is only touched while `mutex` is held.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        precondition(pthread_mutex_init(mutex, nil) == 0, "pthread_mutex_init failed")
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the value, holding the lock.
    @inline(__always)
    func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
