#if canImport(Glibc)
import Glibc
#endif
import CLiburing
import CPageStoreSupport
import DequeModule
import Dispatch

/// The ring thread's state: the ring, the requests in flight and those waiting for room.
///
/// What a completion means is `RingOp`'s business (shared with the inline rings): the one
/// place where short transfers, `EINTR`, `EAGAIN` and cancelled links are retried:
/// - a short read or write resumes at the bytes done, rounded down to the file's
///   alignment (an O_DIRECT read that ends off-alignment has reached end of file);
/// - a commit is a chain `write -> ... -> fdatasync` linked with `IOSQE_IO_LINK`; a short
///   write breaks the chain and the rest completes `-ECANCELED`, so the unfinished writes
///   and a fresh fdatasync are submitted again as a new chain;
/// - any other error fails the request, and a failed fdatasync is never retried: the
///   data it was meant to cover is not trusted (the caller sees the error).
/// This loop owns slots, SQ and CQ room, the wake-up eventfd and the order of work.
struct RingLoop: ~Copyable {
    private let ring: Ring
    private let inbox: RingInbox
    private let counters: IOCounters
    private let fixedBuffers: Bool
    /// With SQPOLL: how long the loop watches the CQ for a completion before it sleeps in
    /// `io_uring_enter` (0: it sleeps at once). The poller thread hands SQEs to the
    /// kernel without a system call; this saves the wait's, as fio's `--sqthread_poll`
    /// does by spinning on the CQ.
    private let spinNanos: UInt64
    private var ops: [RingOp?] = []
    private var freeSlots: [Int] = []
    private var backlog: Deque<RingOp> = []
    private var inflightSQEs = 0
    private var requestsInFlight = 0
    private let eventBuffer = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    /// Completions handled before new work is submitted (see `run`).
    private let completions = UnsafeMutableBufferPointer<ps_completion>.allocate(capacity: 4)

    private static let eventTag = UInt64.max
    /// The CQ watch under SQPOLL: about two 4 KiB reads of a virtio disk.
    static let submissionPollingSpinNanos: UInt64 = 200_000

    init(ring: consuming Ring, inbox: RingInbox, counters: IOCounters, fixedBuffers: Bool, spinNanos: UInt64 = 0) {
        self.ring = ring
        self.inbox = inbox
        self.counters = counters
        self.fixedBuffers = fixedBuffers
        self.spinNanos = spinNanos
    }

    deinit {
        eventBuffer.deallocate()
        completions.deallocate()
    }

    /// Runs until asked to stop and every accepted request has completed, then tears the
    /// ring down (consuming: the ring is gone when this returns).
    consuming func run() {
        armEventRead()
        while true {
            let stopping = drainInbox()
            prepareBacklog()
            if stopping && requestsInFlight == 0 && backlog.isEmpty { return }
            var sleep = inbox.prepareToSleep() || (stopping && backlog.isEmpty)
            if sleep && spinNanos > 0 && requestsInFlight > 0 {
                // SQPOLL: the SQEs reach the kernel without entering it; watch the CQ a
                // while (new work posted meanwhile shows as the eventfd read's CQE).
                submit(waitCount: 0)
                let deadline = DispatchTime.now().uptimeNanoseconds + spinNanos
                while ring.completionsReady == 0 && DispatchTime.now().uptimeNanoseconds < deadline {}
                if ring.completionsReady > 0 { sleep = false }
            }
            submit(waitCount: sleep ? 1 : 0)
            inbox.awake()
            // Completions are handled a few at a time and the work their callbacks queue
            // is submitted at once: the device sees new requests as soon as old ones
            // finish, instead of after the whole batch (measured: batching resubmissions
            // costs ~15% of QD32 random-read IOPS on a virtio disk).
            while true {
                let reaped = ring.reap(into: completions)
                if reaped == 0 { break }
                for index in 0..<reaped { handle(completions[index]) }
                // Fewer than a chunk: the CQ is empty, and the loop's next submit-and-wait
                // carries the new work in the same io_uring_enter.
                if reaped < completions.count { break }
                _ = drainInbox()
                prepareBacklog()
                if ring.unsubmittedSQEs > 0 { submit(waitCount: 0) }
            }
        }
    }

    /// Moves queued work into the backlog; returns whether a stop was asked for.
    private mutating func drainInbox() -> Bool {
        let (work, stopping) = inbox.take()
        for item in work {
            switch item {
            case .io(let io):
                backlog.append(RingOp(io))
            case .register(let slot, let fd, let done):
                do {
                    try ring.updateFile(slot: slot, fd: fd)
                    done.fulfil(nil)
                } catch {
                    done.fulfil(error as? PageStoreError)
                }
            }
        }
        return stopping
    }

    private mutating func submit(waitCount: Int) {
        // io_uring_submit with nothing to submit does not enter the kernel.
        guard waitCount > 0 || ring.unsubmittedSQEs > 0 else { return }
        do {
            _ = try ring.submit(waitCount: waitCount)
            counters.enterCalls.wrappingAdd(1, ordering: .relaxed)
        } catch {
            // io_uring_enter itself failing (not an I/O error, which arrives in a CQE)
            // means the ring is unusable; nothing acknowledged depends on continuing.
            fatalError("PageStore ring: \(error)")
        }
    }

    // MARK: preparing

    private mutating func armEventRead() {
        let sqe = ring.nextSQE()
        io_uring_prep_read(sqe, 0, eventBuffer, 8, 0)
        sqe.pointee.flags |= UInt8(PS_IOSQE_FIXED_FILE)
        sqe.pointee.user_data = Self.eventTag
        inflightSQEs += 1
    }

    /// Prepares waiting requests while SQ space and CQ room allow; a request's SQEs are
    /// always prepared together so that a chain never spans two submissions.
    private mutating func prepareBacklog() {
        while let op = backlog.first {
            let needed = op.remainingSQEs
            if inflightSQEs + needed > ring.cqEntries { return }
            if ring.sqSpaceLeft < needed {
                submit(waitCount: 0)
                if ring.sqSpaceLeft < needed { return }
            }
            backlog.removeFirst()
            prepare(op)
        }
    }

    private mutating func prepare(_ op: RingOp) {
        if op.slot < 0 {
            if let slot = freeSlots.popLast() {
                op.slot = slot
                ops[slot] = op
            } else {
                op.slot = ops.count
                ops.append(op)
            }
            requestsInFlight += 1
        }
        let prepared = op.prepare(on: ring, userDataBase: UInt64(op.slot) << 16, fixedBuffers: fixedBuffers)
        inflightSQEs += prepared
        counters.sqesSubmitted.wrappingAdd(prepared, ordering: .relaxed)
    }

    // MARK: completing

    private mutating func handle(_ cqe: ps_completion) {
        inflightSQEs -= 1
        if cqe.user_data == Self.eventTag {
            armEventRead()
            return
        }
        guard let op = ops[Int(cqe.user_data >> 16)] else { preconditionFailure("completion for a free op slot") }
        op.absorb(tag: cqe.user_data & 0xFFFF, result: cqe.res, counters: counters)
        guard op.pending == 0 else { return }
        guard let result = op.conclusion(counters: counters) else {
            backlog.prepend(op)
            return
        }
        ops[op.slot] = nil
        freeSlots.append(op.slot)
        requestsInFlight -= 1
        op.io.completion(result)
    }
}
