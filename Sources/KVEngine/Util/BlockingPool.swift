import DequeModule
import Dispatch
import Foundation
import Synchronization

/// Runs the blocking parts of the async API (a memtable rotation, a write stall, a table
/// read, a full-disk resume) on threads of its own, never on Swift's cooperative pool: at
/// most `limit` at once, later work queued in order. Threads start as work arrives and
/// end after `idleSeconds` without any, so a database that makes no async calls has none.
final class BlockingPool: Sendable {
    private struct State {
        var jobs: Deque<@Sendable () -> Void> = []
        var threads = 0
        /// Threads waiting for work and not yet handed any. Positive only while `jobs` is
        /// empty: a thread looks for a job and counts itself idle in one step.
        var idle = 0
    }

    private let state = Mutex(State())
    /// Signalled once per job handed to an idle thread.
    private let wakeup = DispatchSemaphore(value: 0)
    let limit: Int
    let idleSeconds: Double

    init(limit: Int, idleSeconds: Double = 2) {
        precondition(limit > 0)
        self.limit = limit
        self.idleSeconds = idleSeconds
    }

    /// Runs `body` on a pool thread and suspends until it returns.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws(KVError) -> T) async throws(KVError) -> T {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, KVError>, Never>) in
            submit { continuation.resume(returning: Result { () throws(KVError) in try body() }) }
        }
        return try result.get()
    }

    private enum Start { case wakeIdle, newThread, queued }

    private func submit(_ job: @escaping @Sendable () -> Void) {
        let start = state.withLock { state -> Start in
            state.jobs.append(job)
            if state.idle > 0 {
                state.idle -= 1
                return .wakeIdle
            }
            guard state.threads < limit else { return .queued }  // a busy thread takes it next
            state.threads += 1
            return .newThread
        }
        switch start {
        case .wakeIdle: wakeup.signal()
        case .newThread:
            let thread = Thread { [self] in work() }
            thread.name = "KVEngine.blocking"
            thread.start()
        case .queued: break
        }
    }

    private func work() {
        while true {
            let job = state.withLock { state -> (@Sendable () -> Void)? in
                if let job = state.jobs.popFirst() { return job }
                state.idle += 1
                return nil
            }
            if let job {
                job()
                continue
            }
            guard wakeup.wait(timeout: .now() + idleSeconds) == .timedOut else { continue }
            let exit = state.withLock { state -> Bool in
                // Idle count spent: a job was handed to an idle thread just now, and its
                // signal is on the way; this thread takes it.
                guard state.idle > 0 else { return false }
                state.idle -= 1
                state.threads -= 1
                return true
            }
            if exit { return }
            wakeup.wait()
        }
    }
}
