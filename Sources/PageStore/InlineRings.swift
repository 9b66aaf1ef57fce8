#if canImport(Glibc)
import Glibc
#endif
import CLiburing
import CPageStoreSupport
import Synchronization

/// A ring a blocking caller borrows to run its request on its own thread.
///
/// The ring thread costs a blocking caller two thread wake-ups per request (eventfd to
/// wake the ring thread, semaphore to wake the caller): about 60 us on a virtual machine,
/// 20-40% of a 4 KiB read or a write+fdatasync. An inline ring has no such hand-off: the
/// caller prepares the SQEs, and waits for their CQEs in the same `io_uring_enter`.
///
/// Set up with `COOP_TASKRUN` only (any thread may use it, one at a time); it mirrors the
/// store's registered file table and registers the same arena as fixed buffers. The SQE
/// preparation and every retry rule are `RingOp`'s, shared with the ring thread.
final class InlineRing: @unchecked Sendable {
    // @unchecked: a ring is used by the one thread that checked it out of the pool; file
    // registration from other threads goes through io_uring_register, which the kernel
    // serializes with submissions.
    let ring: Ring
    let fixedBuffers: Bool
    let allocator: PageAllocator
    private let completions = UnsafeMutableBufferPointer<ps_completion>.allocate(capacity: 16)
    /// Set when an `io_uring_enter` failed: the ring's queues are in an unknown state, and
    /// it is not lent again.
    private(set) var isBroken = false

    /// `polled`: set up with IOPOLL, for reads and writes of O_DIRECT files only.
    init(entries: Int, fileSlots: Int, allocator: PageAllocator, fixedBuffers wanted: Bool, polled: Bool = false) throws {
        self.allocator = allocator
        ring = try Ring(entries: entries, preferredFlags: polled ? Ring.completionPollingAttempts : [UInt32(PS_SETUP_COOP_TASKRUN), 0])
        try ring.registerSparseFiles(count: fileSlots)
        var fixed = false
        if wanted && allocator.isRegistered {
            fixed = (try? ring.registerBuffers(allocator.regions)) != nil
        }
        fixedBuffers = fixed
    }

    deinit { completions.deallocate() }

    /// Runs `io` to its end on the calling thread.
    func execute(_ io: PendingIO, counters: IOCounters) -> IOResult {
        let op = RingOp(io)
        while true {
            let prepared = op.prepare(on: ring, userDataBase: 0, fixedBuffers: fixedBuffers)
            counters.sqesSubmitted.wrappingAdd(prepared, ordering: .relaxed)
            while op.pending > 0 {
                do {
                    _ = try ring.submit(waitCount: op.pending)
                } catch {
                    // The ring itself failed, with SQEs of this request perhaps still in
                    // the kernel's hands: their memory is never reused (the caller's free
                    // leaves it allocated), and the ring is not used again.
                    isBroken = true
                    quarantine(op)
                    return .failure(error as! PageStoreError)
                }
                counters.enterCalls.wrappingAdd(1, ordering: .relaxed)
                while true {
                    let reaped = ring.reap(into: completions)
                    if reaped == 0 { break }
                    for index in 0..<reaped {
                        op.absorb(tag: completions[index].user_data & 0xFFFF, result: completions[index].res, counters: counters)
                    }
                }
            }
            if let result = op.conclusion(counters: counters) { return result }
        }
    }
}

extension InlineRing {
    /// Keeps the memory of `op`'s transfers out of use for good (see ``PageAllocator/quarantine(_:)``).
    func quarantine(_ op: RingOp) {
        for segment in op.io.segments { allocator.quarantine(segment.buffer) }
    }
}

/// The store's inline rings: idle ones to borrow, and all of them, so a file opened or
/// closed is registered in each.
final class InlineRingPool: Sendable {
    private struct State {
        var idle: [InlineRing] = []
        var all: [InlineRing] = []
        /// Set when a ring could not be created: the pool stops trying.
        var disabled = false
    }

    private let state = Mutex(State())
    private let registration = Mutex(())
    let maxRings: Int
    /// What the pool's rings are for, in its warning.
    private let purpose: String
    /// Why a ring could not be created (the pool then stops trying).
    private let failure = Mutex<String?>(nil)

    init(maxRings: Int, purpose: String = "blocking calls go through the ring thread") {
        self.maxRings = maxRings
        self.purpose = purpose
    }

    /// Why the pool stopped creating rings, if it did.
    var creationFailure: String? { failure.withLock { $0 } }

    /// An idle ring, a new one (registering `openFiles` in it), or nil when the pool is at
    /// its limit or rings cannot be created; then the caller goes through the ring thread.
    func checkOut(create: () throws -> InlineRing, openFiles: () -> [(UInt32, Int32)]) -> InlineRing? {
        if let ring = state.withLock({ $0.idle.popLast() }) { return ring }
        return registration.withLock { _ -> InlineRing? in
            let canCreate = state.withLock { !$0.disabled && $0.all.count < maxRings }
            guard canCreate else { return nil }
            do {
                let ring = try create()
                for (slot, fd) in openFiles() { try ring.ring.updateFile(slot: slot, fd: fd) }
                state.withLock { $0.all.append(ring) }
                return ring
            } catch {
                state.withLock { $0.disabled = true }
                failure.withLock { $0 = "\(error)" }
                pageStoreLogger.warning("PageStore: inline rings unavailable (\(error)); \(purpose)")
                return nil
            }
        }
    }

    func checkIn(_ ring: InlineRing) {
        state.withLock { $0.idle.append(ring) }
    }

    /// Runs `body` with file registration serialized against ring creation, and puts
    /// `fd` (or -1) into `slot` of every ring.
    func register(slot: UInt32, fd: Int32, then body: () throws -> Void) throws {
        try registration.withLock { _ in
            for ring in state.withLock({ $0.all }) { try ring.ring.updateFile(slot: slot, fd: fd) }
            try body()
        }
    }

    /// Drops every ring (at shutdown).
    func removeAll() {
        state.withLock {
            $0.idle.removeAll()
            $0.all.removeAll()
            $0.disabled = true
        }
    }
}
