#if canImport(Glibc)
import Glibc
#endif
import CLiburing
import CPageStoreSupport

/// One request's progress on a ring (the ring thread's or an inline one), and the rules
/// that turn its completions into a result or a resubmission.
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
