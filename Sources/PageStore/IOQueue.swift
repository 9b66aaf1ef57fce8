import CPageStoreSupport
import Dispatch
import Synchronization

/// A queue of requests that one thread keeps full: it submits, then takes completions in
/// the order the device finishes them and submits more, as fio does at a queue depth.
///
/// Obtained from ``Storage/withIOQueue(_:)`` and used only on that call's thread. On a
/// ``PageStore`` with inline rings, the requests go to a ring of the calling thread's own:
/// a submission and a completion cost no thread hand-off.
public protocol IOQueue: AnyObject {
    /// Requests submitted whose completions have not been taken yet.
    var inFlight: Int { get }
    /// Sends `request`, known by `tag` when it completes. The request reaches the device
    /// at the latest when ``wait()`` is called next.
    func submit(_ request: IORequest, tag: Int)
    /// Blocks until at least one request has completed and returns every completed one.
    /// Empty only when nothing is in flight.
    func wait() -> [(tag: Int, result: IOResult)]
}

extension Storage {
    /// Runs `body` with an ``IOQueue`` whose requests go through ``submit(_:completion:)``
    /// (the default for storages without rings of their own). Requests `body` leaves in
    /// flight are waited for before this returns; their results are dropped.
    public func withIOQueue<T, Failure: Error>(_ body: (any IOQueue) throws(Failure) -> T) throws(Failure) -> T {
        try HandOffQueue.run(on: self, body)
    }
}

/// An ``IOQueue`` over ``Storage/submit(_:completion:)``: completions arrive on whatever
/// thread the storage calls them on and are handed to the waiting thread.
final class HandOffQueue: IOQueue {
    private let storage: any Storage
    private let arrivals = Arrivals()
    private(set) var inFlight = 0

    init(storage: any Storage) { self.storage = storage }

    /// Runs `body` with a queue over `storage`, then waits for what it left in flight.
    static func run<T, Failure: Error>(on storage: any Storage, _ body: (any IOQueue) throws(Failure) -> T) throws(Failure) -> T {
        let queue = HandOffQueue(storage: storage)
        defer { while queue.inFlight > 0 { _ = queue.wait() } }
        return try body(queue)
    }

    func submit(_ request: IORequest, tag: Int) {
        inFlight += 1
        storage.submit(request) { [arrivals] result in arrivals.deliver(tag, result) }
    }

    func wait() -> [(tag: Int, result: IOResult)] {
        guard inFlight > 0 else { return [] }
        storage.willWait()
        let taken = arrivals.take()
        inFlight -= taken.count
        return taken
    }
}

/// Completions in the order they land: delivered on any thread, taken by one.
private final class Arrivals: Sendable {
    private let landed = Mutex<[(tag: Int, result: IOResult)]>([])
    private let signal = DispatchSemaphore(value: 0)

    func deliver(_ tag: Int, _ result: IOResult) {
        landed.withLock { $0.append((tag, result)) }
        signal.signal()
    }

    /// Waits for at least one completion and returns every one that has landed.
    func take() -> [(tag: Int, result: IOResult)] {
        signal.wait()
        let taken = landed.withLock { landed in
            defer { landed.removeAll(keepingCapacity: true) }
            return landed
        }
        // One signal per delivery: consume those of the others taken along (each is
        // posted right after its append, so these waits are short).
        for _ in 1..<max(1, taken.count) { signal.wait() }
        return taken
    }
}

/// An ``IOQueue`` on an inline ring checked out by the calling thread: SQEs are prepared
/// on `submit` and handed to the kernel, with the wait, in one `io_uring_enter`.
final class InlineRingQueue: IOQueue {
    private let ring: InlineRing
    private let counters: IOCounters
    private let resolve: (IORequest) throws -> PendingIO
    /// Requests on the ring, by slot (the high bits of their SQEs' user data).
    private var ops: [Int: (op: RingOp, tag: Int)] = [:]
    private var freeSlots: [Int] = []
    /// Completed (or refused at submission) and not yet taken.
    private var done: [(tag: Int, result: IOResult)] = []
    private let completions = UnsafeMutableBufferPointer<ps_completion>.allocate(capacity: 64)
    private(set) var inFlight = 0
    /// Set when `io_uring_enter` failed: every request then fails, and the ring, whose
    /// queues are in an unknown state, must not be used again.
    private(set) var failure: PageStoreError?

    /// SQEs prepared before they are handed to the kernel without waiting for `wait()`.
    static let submitBatch = 4

    init(ring: InlineRing, counters: IOCounters, resolve: @escaping (IORequest) throws -> PendingIO) {
        self.ring = ring
        self.counters = counters
        self.resolve = resolve
    }

    deinit { completions.deallocate() }

    func submit(_ request: IORequest, tag: Int) {
        inFlight += 1
        do {
            let io = try resolve(request)
            if let failure { throw failure }
            let slot = freeSlots.popLast() ?? ops.count
            let op = RingOp(io)
            ops[slot] = (op, tag)
            prepare(op, slot: slot)
            // Hand the kernel a few SQEs at a time as they come: a device given a whole
            // queue in one burst tends to answer in one burst, and the queue runs dry.
            if ring.ring.unsubmittedSQEs >= InlineRingQueue.submitBatch { _ = enter(waitCount: 0) }
        } catch {
            done.append((tag, .failure(error as! PageStoreError)))
        }
    }

    /// Prepares `op`'s SQEs, first handing the kernel what is queued when the SQ is full
    /// (and, if the kernel takes nothing, taking completions until it does).
    private func prepare(_ op: RingOp, slot: Int) {
        while ring.ring.sqSpaceLeft < op.remainingSQEs {
            guard enter(waitCount: 0) else { return }
            if ring.ring.sqSpaceLeft >= op.remainingSQEs { break }
            guard enter(waitCount: 1) else { return }
            reap()
        }
        let prepared = op.prepare(on: ring.ring, userDataBase: UInt64(slot) << 16, fixedBuffers: ring.fixedBuffers)
        counters.sqesSubmitted.wrappingAdd(prepared, ordering: .relaxed)
    }

    /// One `io_uring_enter`; on failure every request fails and false is returned.
    private func enter(waitCount: Int) -> Bool {
        guard failure == nil else { return false }
        counters.enterCalls.wrappingAdd(1, ordering: .relaxed)
        do {
            _ = try ring.ring.submit(waitCount: waitCount)
            return true
        } catch {
            failure = error as? PageStoreError
                ?? PageStoreError(kind: .io, operation: "io_uring_enter", detail: "\(error)")
            // Requests on the ring may still be in the kernel's hands: their memory is
            // never reused (their owners' frees leave it allocated).
            for (_, entry) in ops {
                ring.quarantine(entry.op)
                done.append((entry.tag, .failure(failure!)))
            }
            ops.removeAll()
            freeSlots.removeAll()
            return false
        }
    }

    func wait() -> [(tag: Int, result: IOResult)] {
        while done.isEmpty && !ops.isEmpty {
            guard enter(waitCount: 1) else { break }
            reap()
        }
        let taken = done
        done.removeAll(keepingCapacity: true)
        inFlight -= taken.count
        return taken
    }

    /// Takes every ready CQE; a request whose last SQE completed either concludes or is
    /// prepared again (short transfer, EINTR, EAGAIN).
    private func reap() {
        while true {
            let reaped = ring.ring.reap(into: completions)
            if reaped == 0 { return }
            for index in 0..<reaped {
                let userData = completions[index].user_data
                let slot = Int(userData >> 16)
                guard let (op, tag) = ops[slot] else { continue }
                op.absorb(tag: userData & 0xFFFF, result: completions[index].res, counters: counters)
                guard op.pending == 0 else { continue }
                if let result = op.conclusion(counters: counters) {
                    ops[slot] = nil
                    freeSlots.append(slot)
                    done.append((tag, result))
                } else {
                    prepare(op, slot: slot)
                }
            }
        }
    }
}
