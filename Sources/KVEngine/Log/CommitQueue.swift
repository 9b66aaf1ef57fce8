import DequeModule
import PageStore

/// The commit pipeline's bookkeeping: chains in flight in log order, the writes waiting
/// for them, and which writes each retired chain acknowledges. A value owned by its
/// `LogWriter`, changed only under the writer's lock; it does no I/O.
///
/// Invariants:
/// - Chains retire strictly in log order: a completed chain waits for every earlier one,
///   so a write is acknowledged only when every earlier byte of the log is durable too.
/// - A sync write is acknowledged when a retired chain covers its last sequence number; a
///   buffered write that had to wait (an earlier sync write was waiting) goes with the
///   first write before it that is acknowledged, never before it.
/// - After a failure nothing more is acknowledged: `fail` hands back every waiter, and
///   chains retiring afterwards make nothing durable.
struct CommitQueue {
    typealias Ack = @Sendable (Result<Void, KVError>) -> Void

    struct Waiter {
        let lastSequence: UInt64
        let sync: Bool
        let ack: Ack
    }

    private struct InFlight {
        let id: Int
        let endOffset: Int64
        let lastSequence: UInt64
        let carriesZeroFill: Bool
        var result: IOResult?
    }

    private var inFlight: Deque<InFlight> = []
    private var nextID = 0
    private(set) var waiters: Deque<Waiter> = []
    /// End of the last retired chain, and the last sequence number it covered.
    private(set) var durableBytes: Int64
    private(set) var durableSequence: UInt64

    /// An empty pipeline after the header page, where records up to `lastSequence` are
    /// durable already.
    init(lastSequence: UInt64) {
        durableBytes = Int64(LogFormat.pageBytes)
        durableSequence = lastSequence
    }

    var chainsInFlight: Int { inFlight.count }
    var isIdle: Bool { inFlight.isEmpty }
    var hasSyncWaiter: Bool { waiters.contains(where: \.sync) }

    /// Enters a chain writing up to `endOffset` and covering records up to
    /// `lastSequence`; returns its id.
    mutating func start(endOffset: Int64, lastSequence: UInt64, carriesZeroFill: Bool) -> Int {
        precondition(endOffset > (inFlight.last?.endOffset ?? durableBytes), "a chain ends past the chains before it")
        let id = nextID
        nextID += 1
        inFlight.append(InFlight(id: id, endOffset: endOffset, lastSequence: lastSequence, carriesZeroFill: carriesZeroFill))
        return id
    }

    mutating func wait(_ waiter: Waiter) {
        waiters.append(waiter)
    }

    /// Records chain `id`'s result, then retires the completed chains at the head of the
    /// queue. While `trusting` (no failure), each successful one moves the durable end and
    /// the waiters it acknowledges go to `acknowledge`, in log order.
    /// Returns whether a retired chain carried the zero-fill.
    mutating func complete(
        _ id: Int, _ result: IOResult, trusting: Bool, acknowledge: (Waiter) -> Void
    ) -> Bool {
        if let index = inFlight.firstIndex(where: { $0.id == id }) { inFlight[index].result = result }
        var retiredZeroFill = false
        while let first = inFlight.first, let outcome = first.result {
            inFlight.removeFirst()
            if first.carriesZeroFill { retiredZeroFill = true }
            // After a failure nothing is trusted: neither what the failed chain covered,
            // nor any chain in flight beside it, nor anything after it.
            guard trusting else { continue }
            if case .failure = outcome { preconditionFailure("a failed chain fails the log when its result arrives") }
            durableBytes = first.endOffset
            durableSequence = first.lastSequence
            while let waiter = waiters.first, !waiter.sync || waiter.lastSequence <= first.lastSequence {
                waiters.removeFirst()
                acknowledge(waiter)
            }
        }
        return retiredZeroFill
    }

    /// Removes and returns every waiter (the log failed or closed: none will be durable).
    mutating func fail() -> [Ack] {
        defer { waiters.removeAll() }
        return waiters.map(\.ack)
    }
}
