import Atomics
import Dispatch
import Foundation
import PageStore
import Synchronization

/// The flush and compaction threads. They hold the database weakly: dropping the last
/// handle closes it (from whichever thread drops it, one of these included).
final class BackgroundThreads: Sendable {
    private let flushWakeup = DispatchSemaphore(value: 0)
    private let compactionWakeup = DispatchSemaphore(value: 0)
    private let stopping = ManagedAtomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let threads = ThreadList()

    private final class ThreadList: Sendable {
        let ids = Mutex<[pthread_t]>([])
    }

    func start(_ database: Database) {
        for (name, wakeup, work) in [
            ("KVEngine.flush-tables", flushWakeup, { @Sendable (db: Database, stop: () -> Bool) in db.flushWhileDue(stopping: stop) }),
            ("KVEngine.compact", compactionWakeup, { @Sendable (db: Database, stop: () -> Bool) in db.compactWhileDue(stopping: stop) }),
        ] as [(String, DispatchSemaphore, @Sendable (Database, () -> Bool) -> Void)] {
            let thread = Thread { [weak database, stopping, finished, threads] in
                threads.ids.withLock { $0.append(pthread_self()) }
                while !stopping.load(ordering: .acquiring) {
                    _ = wakeup.wait(timeout: .now() + .milliseconds(100))
                    if stopping.load(ordering: .acquiring) { break }
                    guard let db = database else { break }
                    work(db) { stopping.load(ordering: .acquiring) }
                }
                finished.signal()
            }
            thread.name = name
            thread.start()
        }
    }

    var isStopping: Bool { stopping.load(ordering: .acquiring) }

    func wakeFlush() { flushWakeup.signal() }
    func wakeCompaction() { compactionWakeup.signal() }

    /// Stops both threads and waits for them (work under way finishes or is abandoned),
    /// except the calling thread when it is one of them.
    func stop() {
        stopping.store(true, ordering: .releasing)
        flushWakeup.signal()
        compactionWakeup.signal()
        let me = pthread_self()
        let waits = 2 - threads.ids.withLock { $0.filter { pthread_equal($0, me) != 0 }.count }
        for _ in 0..<waits { finished.wait() }
    }
}
