import DequeModule
import Foundation

/// Runs blocking work for the async API (a memtable rotation, a write stall, a table read,
/// a full-disk resume) on threads of its own, never on Swift's cooperative pool: at most
/// `limit` at once, later work queued in order. Threads start as work arrives and end
/// after `idleSeconds` without any, so a database that makes no async calls has none, and
/// a closed one keeps none for long.
final class BlockingPool: @unchecked Sendable {
    // @unchecked: `jobs`, `threads` and `waiting` are only touched under `condition`.
    private let condition = NSCondition()
    private var jobs: Deque<@Sendable () -> Void> = []
    private var threads = 0
    /// Threads blocked in `condition.wait`, ready to take a job.
    private var waiting = 0
    let limit: Int
    let idleSeconds: Double
    let name: String

    init(name: String, limit: Int, idleSeconds: Double = 2) {
        precondition(limit > 0)
        self.name = name
        self.limit = limit
        self.idleSeconds = idleSeconds
    }

    /// Runs `body` on a pool thread and suspends until it returns.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws(KVError) -> T) async throws(KVError) -> T {
        try await runResult(body).get()
    }

    /// Runs `body` on a pool thread and suspends until it returns, with its outcome.
    func runResult<T: Sendable>(_ body: @escaping @Sendable () throws(KVError) -> T) async -> Result<T, KVError> {
        await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, KVError>, Never>) in
            submit { continuation.resume(returning: Result { () throws(KVError) in try body() }) }
        }
    }

    /// `run` for a body that may throw any error (a caller's closure inside it).
    func runThrowing<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, any Error>, Never>) in
            submit { continuation.resume(returning: Result { try body() }) }
        }
        return try result.get()
    }

    private func submit(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        var start = false
        if waiting >= jobs.count {
            condition.signal()  // a waiting thread takes it
        } else if threads < limit {
            threads += 1
            start = true
        }  // else a busy thread takes it when it is done
        condition.unlock()
        if start {
            let thread = Thread { [self] in work() }
            thread.name = name
            thread.start()
        }
    }

    private func work() {
        condition.lock()
        while true {
            if let job = jobs.popFirst() {
                condition.unlock()
                job()
                condition.lock()
                continue
            }
            waiting += 1
            let signalled = condition.wait(until: Date(timeIntervalSinceNow: idleSeconds))
            waiting -= 1
            if !signalled && jobs.isEmpty {
                threads -= 1
                condition.unlock()
                return
            }
        }
    }
}
