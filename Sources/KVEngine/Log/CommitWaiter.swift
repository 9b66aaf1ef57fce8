import Dispatch
import Synchronization

/// What a writer waits on while its batch is committed: the batch's last sequence number,
/// set as the batch takes its numbers, and the acknowledgement (`fulfil`, from whichever
/// thread completes the commit). The semaphore a blocked writer sleeps on is made only by
/// `wait` when the acknowledgement has not come yet, so a write acknowledged before
/// `append` returns (a buffered one, as a rule) allocates this object alone.
final class CommitWaiter: Sendable {
    private struct State {
        var result: Result<Void, KVError>? = nil
        var wakeup: DispatchSemaphore? = nil
    }

    private let state = Mutex(State())
    private let assigned = Atomic<UInt64>(0)

    /// The batch's last sequence number (0 until it has taken its numbers).
    var sequence: UInt64 { assigned.load(ordering: .acquiring) }

    func assign(_ sequence: UInt64) { assigned.store(sequence, ordering: .releasing) }

    /// Delivers the outcome and wakes the waiter. Call exactly once.
    func fulfil(_ result: Result<Void, KVError>) {
        let wakeup = state.withLock { state -> DispatchSemaphore? in
            state.result = result
            return state.wakeup
        }
        wakeup?.signal()
    }

    /// Whether the outcome has been delivered (never blocks).
    var isFulfilled: Bool { state.withLock { $0.result != nil } }

    /// Blocks until `fulfil` has been called, then returns its outcome.
    func wait() -> Result<Void, KVError> {
        let wakeup = state.withLock { state -> DispatchSemaphore? in
            if state.result != nil { return nil }
            if state.wakeup == nil { state.wakeup = DispatchSemaphore(value: 0) }
            return state.wakeup
        }
        wakeup?.wait()
        return state.withLock { $0.result! }
    }
}
