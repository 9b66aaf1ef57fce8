#if canImport(Glibc)
import Glibc
#endif
import CLiburing
import CPageStoreSupport
import DequeModule

/// The ring thread's state: the ring, the requests in flight and those waiting for room.
///
/// The one place where io_uring completions are interpreted, and so the one place where
/// short transfers, `EINTR`, `EAGAIN` and cancelled links are retried:
/// - a short read or write resumes at the bytes done, rounded down to the file's
///   alignment (an O_DIRECT read that ends off-alignment has reached end of file);
/// - a commit is a chain `write -> ... -> fdatasync` linked with `IOSQE_IO_LINK`; a short
///   write breaks the chain and the rest completes `-ECANCELED`, so the unfinished writes
///   and a fresh fdatasync are submitted again as a new chain;
/// - any other error fails the request, and a failed fdatasync is never retried: the
///   data it was meant to cover is not trusted (the caller sees the error).
struct RingLoop: ~Copyable {
    private let ring: Ring
    private let inbox: RingInbox
    private let counters: IOCounters
    private let fixedBuffers: Bool
    private var ops: [RingOp?] = []
    private var freeSlots: [Int] = []
    private var backlog: Deque<RingOp> = []
    private var inflightSQEs = 0
    private var requestsInFlight = 0
    private let eventBuffer = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    /// Completions handled before new work is submitted (see `run`).
    private let completions = UnsafeMutableBufferPointer<ps_completion>.allocate(capacity: 4)

    private static let eventTag = UInt64.max

    init(ring: consuming Ring, inbox: RingInbox, counters: IOCounters, fixedBuffers: Bool) {
        self.ring = ring
        self.inbox = inbox
        self.counters = counters
        self.fixedBuffers = fixedBuffers
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
            let sleep = inbox.prepareToSleep() || (stopping && backlog.isEmpty)
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

/// One request's progress on the ring thread.
final class RingOp {
    let io: PendingIO
    var slot = -1
    var progress: [Int]
    var segmentDone: [Bool]
    var syncDone = false
    var pending = 0
    var retry = false
    var attempts = 0
    var error: PageStoreError?

    init(_ io: PendingIO) {
        self.io = io
        progress = Array(repeating: 0, count: io.segments.count)
        segmentDone = Array(repeating: false, count: io.segments.count)
    }

    /// SQEs the next submission of this request takes: unfinished transfers, plus the
    /// fdatasync of a commit (always issued again, since it must cover the rewrites).
    var remainingSQEs: Int {
        let transfers = segmentDone.lazy.filter { !$0 }.count
        switch io.kind {
        case .read, .write: return transfers
        case .commit: return transfers + 1
        case .sync, .allocate: return 1
        }
    }

    /// Records the first hard error; later ones (often `-ECANCELED`) add nothing.
    func fail(errno code: Int32, offsetBytes: Int64?) {
        guard error == nil else { return }
        error = .io(io.operationName, path: io.path, offsetBytes: offsetBytes, errno: code)
    }

    static let syncTag: UInt64 = 0xFFFF
    static let allocateTag: UInt64 = 0xFFFE

    /// Prepares the SQEs of every unfinished part on `ring` (the caller reserved the
    /// space), tagged `userDataBase | part`; returns how many.
    func prepare(on ring: borrowing Ring, userDataBase base: UInt64, fixedBuffers: Bool) -> Int {
        retry = false
        let before = pending
        let fileSlot = Int32(io.slot)
        let link = io.kind == .commit
        for (index, segment) in io.segments.enumerated() where !segmentDone[index] {
            let done = progress[index]
            let sqe = ring.nextSQE()
            let address = segment.buffer.base + done
            let length = UInt32(segment.buffer.count - done)
            let offset = UInt64(segment.offsetBytes) + UInt64(done)
            let fixed = fixedBuffers && segment.buffer.bufferIndex >= 0
            if io.kind == .read {
                if fixed {
                    io_uring_prep_read_fixed(sqe, fileSlot, address, length, offset, Int32(segment.buffer.bufferIndex))
                } else {
                    io_uring_prep_read(sqe, fileSlot, address, length, offset)
                }
            } else if fixed {
                io_uring_prep_write_fixed(sqe, fileSlot, address, length, offset, Int32(segment.buffer.bufferIndex))
            } else {
                io_uring_prep_write(sqe, fileSlot, address, length, offset)
            }
            sqe.pointee.flags |= UInt8(PS_IOSQE_FIXED_FILE) | (link ? UInt8(PS_IOSQE_IO_LINK) : 0)
            sqe.pointee.user_data = base | UInt64(index)
            pending += 1
        }
        switch io.kind {
        case .commit, .sync:
            var dataOnly = true
            if case .sync(let only) = io.kind { dataOnly = only }
            let sqe = ring.nextSQE()
            io_uring_prep_fsync(sqe, fileSlot, dataOnly ? UInt32(PS_FSYNC_DATASYNC) : 0)
            sqe.pointee.flags |= UInt8(PS_IOSQE_FIXED_FILE)
            sqe.pointee.user_data = base | RingOp.syncTag
            pending += 1
        case .allocate(let offset, let length):
            let sqe = ring.nextSQE()
            io_uring_prep_fallocate(sqe, fileSlot, 0, off_t(offset), off_t(length))
            sqe.pointee.flags |= UInt8(PS_IOSQE_FIXED_FILE)
            sqe.pointee.user_data = base | RingOp.allocateTag
            pending += 1
        case .read, .write:
            break
        }
        return pending - before
    }

    /// Takes one completion of this request (`tag`: the low 16 bits of its user data).
    func absorb(tag: UInt64, result: Int32, counters: IOCounters) {
        counters.completions.wrappingAdd(1, ordering: .relaxed)
        pending -= 1
        let transient = result == -ECANCELED || result == -EINTR || result == -EAGAIN
        switch tag {
        case RingOp.syncTag, RingOp.allocateTag:
            if result == 0 {
                syncDone = true
                if tag == RingOp.syncTag { counters.fdatasyncs.wrappingAdd(1, ordering: .relaxed) }
            } else if transient {
                retry = true
            } else {
                fail(errno: -result, offsetBytes: nil)
            }
        default:
            let index = Int(tag)
            if result >= 0 {
                finishTransfer(index: index, bytes: Int(result), counters: counters)
            } else if transient {
                retry = true
            } else {
                fail(errno: -result, offsetBytes: io.segments[index].offsetBytes + Int64(progress[index]))
            }
        }
    }

    private func finishTransfer(index: Int, bytes: Int, counters: IOCounters) {
        let isRead = io.kind == .read
        counters.countTransfer(reading: isRead, bytes: bytes)
        let length = io.segments[index].buffer.count
        progress[index] += bytes
        if progress[index] == length {
            segmentDone[index] = true
            return
        }
        let alignment = io.alignmentBytes
        if isRead {
            // End of file: nothing more, or an O_DIRECT read that stopped off-alignment.
            if bytes == 0 || progress[index] % alignment != 0 {
                segmentDone[index] = true
                return
            }
        } else {
            // Resume on an aligned boundary; the bytes past it are written again.
            progress[index] -= progress[index] % alignment
        }
        retry = true
    }

    /// Once no SQE is pending: the request's result, or nil when it must be submitted
    /// again (short transfer, EINTR, EAGAIN, a cancelled link).
    func conclusion(counters: IOCounters) -> IOResult? {
        precondition(pending == 0)
        if error == nil && retry {
            attempts += 1
            if attempts < maxIOAttempts {
                counters.retries.wrappingAdd(1, ordering: .relaxed)
                return nil
            }
            error = PageStoreError(
                kind: .io, operation: io.operationName, path: io.path,
                detail: "no progress after \(maxIOAttempts) attempts (short transfers or EAGAIN)")
        }
        if let error { return .failure(error) }
        if io.kind == .commit { counters.commitChains.wrappingAdd(1, ordering: .relaxed) }
        return .success(progress.reduce(0, +))
    }
}
