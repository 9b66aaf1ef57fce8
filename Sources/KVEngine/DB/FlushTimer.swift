import Atomics
import Dispatch
import Foundation
import PageStore
import Synchronization

/// Writes and syncs buffered log pages every `intervalMs`.
final class FlushTimer: Sendable {
    private let stopped = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private let intervalMs: Int

    init(intervalMs: Int) {
        self.intervalMs = intervalMs
    }

    private let threadID = ManagedAtomic<UInt>(0)

    func start(_ database: Database) {
        let thread = Thread { [self, weak database] in
            threadID.store(UInt(pthread_self()), ordering: .releasing)
            while stopped.wait(timeout: .now() + .milliseconds(intervalMs)) == .timedOut {
                guard let log = database?.currentView.log else { break }
                log.flush()
            }
            finished.signal()
        }
        thread.name = "KVEngine.flush"
        thread.start()
    }

    /// Stops the timer; waits for its thread unless called on it (a drop of the last
    /// handle there closes the database).
    func stop() {
        stopped.signal()
        if threadID.load(ordering: .acquiring) == UInt(pthread_self()) { return }
        finished.wait()
    }
}
