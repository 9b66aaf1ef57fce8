import Foundation

/// A generation count with a condition variable: a thread that must wait for some state
/// to change reads the generation, checks the state, and then waits for the generation to
/// move, so a change between the check and the wait is never missed. Whoever changes the
/// state calls `signal()`; every waiter wakes and checks again.
final class ChangeSignal: @unchecked Sendable {
    private let condition = NSCondition()
    /// Guarded by `condition`.
    private var count: UInt64 = 0

    /// The generation now: read it before checking the state a wait depends on.
    var generation: UInt64 {
        condition.lock()
        defer { condition.unlock() }
        return count
    }

    /// Moves the generation on and wakes every waiter.
    func signal() {
        condition.lock()
        count &+= 1
        condition.broadcast()
        condition.unlock()
    }

    /// Blocks until the generation moves past `seen` or `timeoutMs` passes (a bound on
    /// how long a state change that nobody signals, such as a completion a simulated disk
    /// holds back, goes unnoticed).
    func wait(past seen: UInt64, timeoutMs: Int) {
        let deadline = Date(timeIntervalSinceNow: Double(timeoutMs) / 1000)
        condition.lock()
        defer { condition.unlock() }
        while count == seen {
            if !condition.wait(until: deadline) { return }
        }
    }
}
