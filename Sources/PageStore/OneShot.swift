import Dispatch
import Synchronization

/// A value handed from one thread to a thread blocked waiting for it.
///
/// Used where a synchronous caller waits for a completion that another thread (the ring
/// thread, or a thread freeing pages) delivers. Never used on Swift's cooperative pool:
/// async callers get continuations instead.
package final class OneShot<Value: Sendable>: Sendable {
    private let value = Mutex<Value?>(nil)
    private let ready = DispatchSemaphore(value: 0)

    package init() {}

    /// Delivers the value and wakes the waiter. Call exactly once.
    package func fulfil(_ result: Value) {
        value.withLock { $0 = result }
        ready.signal()
    }

    /// Blocks until `fulfil` has been called, then returns its value.
    package func wait() -> Value {
        ready.wait()
        return value.withLock { $0! }
    }

    /// Whether `fulfil` has been called (never blocks).
    package var isFulfilled: Bool { value.withLock { $0 != nil } }
}
