#if canImport(Glibc)
import CPageStoreSupport
import Glibc
#endif
import Dispatch
import DequeModule
import Foundation
import Synchronization

/// The fallback backend where io_uring is refused (seccomp, `kernel.io_uring_disabled`,
/// old kernels): one thread carrying out requests in order with pread, pwrite, fdatasync
/// and fallocate. The same contract as the ring: a commit completes only after its
/// fdatasync, and a failed fdatasync fails the commit and is not retried.
final class PosixWorker: IOBackend {
    let mode = IOMode.posix
    let fixedBuffers = false
    let ringFlags: [String] = []
    let submissionPolling = RingModeState.off
    let registeredRingFD = RingModeState.off
    let maxRequestSQEs = Int.max
    private let counters: IOCounters
    private let queue = Mutex<(work: Deque<PendingIO>, stopping: Bool)>(([], false))
    private let available = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    init(counters: IOCounters) {
        self.counters = counters
        let thread = Thread { [self] in run() }
        thread.name = "PageStore.posix"
        thread.start()
    }

    func register(slot: UInt32, fd: Int32) throws {}

    func enqueue(_ io: PendingIO) {
        queue.withLock { $0.work.append(io) }
        available.signal()
    }

    func shutdown() {
        let first = queue.withLock { state -> Bool in
            defer { state.stopping = true }
            return !state.stopping
        }
        guard first else { return }
        available.signal()
        finished.wait()
    }

    private func run() {
        while true {
            available.wait()
            let (next, stopping) = queue.withLock { ($0.work.popFirst(), $0.stopping) }
            guard let io = next else {
                if stopping { break }
                continue
            }
            io.completion(execute(io))
        }
        finished.signal()
    }

    /// Blocking calls run here, on the caller's thread: the syscalls block anyway.
    func executeInline(_ io: PendingIO) -> IOResult? { execute(io) }

    private func execute(_ io: PendingIO) -> IOResult {
        do {
            switch io.kind {
            case .read:
                return .success(try transfer(io, io.segments[0], reading: true))
            case .write:
                return .success(try io.segments.reduce(0) { $0 + (try transfer(io, $1, reading: false)) })
            case .commit:
                let total = try io.segments.reduce(0) { $0 + (try transfer(io, $1, reading: false)) }
                try retrying(io, offsetBytes: nil) { fdatasync(io.fd) }
                counters.fdatasyncs.wrappingAdd(1, ordering: .relaxed)
                counters.commitChains.wrappingAdd(1, ordering: .relaxed)
                return .success(total)
            case .sync(let dataOnly):
                try retrying(io, offsetBytes: nil) { dataOnly ? fdatasync(io.fd) : fsync(io.fd) }
                counters.fdatasyncs.wrappingAdd(1, ordering: .relaxed)
                return .success(0)
            case .allocate(let offset, let length):
                // fallocate(2) itself, as the ring's op: posix_fallocate would emulate it on a
                // file system without it by writing a byte into every block, unordered with
                // the writes going on in the same range. Without it, EOPNOTSUPP.
                let result = ps_fallocate(io.fd, offset, length)
                counters.enterCalls.wrappingAdd(1, ordering: .relaxed)
                if result != 0 { throw PageStoreError.io(io.operationName, path: io.path, offsetBytes: offset, errno: errno) }
                return .success(0)
            }
        } catch {
            return .failure(error as! PageStoreError)
        }
    }

    /// Moves one segment, resuming short transfers on an aligned boundary; a read stops
    /// at end of file.
    private func transfer(_ io: PendingIO, _ segment: IOSegment, reading: Bool) throws -> Int {
        var done = 0
        var attempts = 0
        while done < segment.buffer.count {
            let offset = segment.offsetBytes + Int64(done)
            let count = try retrying(io, offsetBytes: offset) {
                reading
                    ? pread(io.fd, segment.buffer.base + done, segment.buffer.count - done, off_t(offset))
                    : pwrite(io.fd, segment.buffer.base + done, segment.buffer.count - done, off_t(offset))
            }
            counters.countTransfer(reading: reading, bytes: count)
            done += count
            if done == segment.buffer.count { break }
            if reading && (count == 0 || done % io.alignmentBytes != 0) { break }
            if !reading { done -= done % io.alignmentBytes }
            attempts += 1
            counters.retries.wrappingAdd(1, ordering: .relaxed)
            if attempts >= maxIOAttempts {
                throw PageStoreError(
                    kind: .io, operation: io.operationName, path: io.path, offsetBytes: offset,
                    detail: "no progress after \(maxIOAttempts) attempts (short transfers)")
            }
        }
        return done
    }

    /// Runs a syscall, retrying `EINTR` and `EAGAIN`; throws any other errno.
    @discardableResult
    private func retrying<R: BinaryInteger>(
        _ io: PendingIO, offsetBytes: Int64?, _ call: () -> R
    ) throws -> Int {
        while true {
            counters.enterCalls.wrappingAdd(1, ordering: .relaxed)
            let result = call()
            if result >= 0 { return Int(result) }
            let code = errno
            if code == EINTR || code == EAGAIN {
                counters.retries.wrappingAdd(1, ordering: .relaxed)
                continue
            }
            throw PageStoreError.io(io.operationName, path: io.path, offsetBytes: offsetBytes, errno: code)
        }
    }
}
