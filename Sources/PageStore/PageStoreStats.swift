import Synchronization

/// How a page store reaches the disk.
public enum IOMode: String, Sendable {
    /// io_uring with registered files.
    case ioUring = "io_uring"
    /// pread/pwrite/fdatasync on a worker thread.
    case posix = "posix"
}

/// Whether one of the ring modes (``PageStoreOptions/submissionPolling``,
/// ``PageStoreOptions/completionPolling``, ``PageStoreOptions/registeredRingFD``) is in use.
public enum RingModeState: Sendable, Equatable, CustomStringConvertible {
    /// Not asked for (the option is `.disabled`), or not applicable (posix backend).
    case off
    /// In use; `detail` says how (e.g. the SQPOLL thread's idle time).
    case on(detail: String)
    /// Asked for and refused; `reason` says by what and why.
    case refused(reason: String)

    public var description: String {
        switch self {
        case .off: "off"
        case .on(let detail): detail.isEmpty ? "on" : "on (\(detail))"
        case .refused(let reason): "refused: \(reason)"
        }
    }

    /// Whether the mode is in use.
    public var isOn: Bool {
        if case .on = self { return true }
        return false
    }
}

/// A snapshot of a page store's counters since it was opened.
public struct PageStoreStats: Sendable, CustomStringConvertible {
    /// The backend in use.
    public var ioMode: IOMode
    /// Whether the page arena is registered as fixed buffers.
    public var fixedBuffers: Bool
    /// Ring setup flags the kernel accepted for the ring thread's ring (empty in posix mode).
    public var ringFlags: [String]
    /// SQPOLL on the ring thread's ring.
    public var submissionPolling: RingModeState = .off
    /// IOPOLL for blocking reads and writes of O_DIRECT files.
    public var completionPolling: RingModeState = .off
    /// The ring thread's ring file descriptor registered.
    public var registeredRingFD: RingModeState = .off
    /// Files opened buffered because O_DIRECT was refused.
    public var bufferedFiles: Int
    /// SQEs of requests handed to the kernel (the ring's own wake-up reads not counted).
    public var sqesSubmitted: Int
    /// Calls into the kernel to submit or wait (io_uring_enter, or syscalls in posix mode).
    public var enterCalls: Int
    /// Completions reaped.
    public var completions: Int
    /// Bytes read.
    public var bytesRead: Int
    /// Bytes written.
    public var bytesWritten: Int
    /// fdatasync and fsync operations completed, inside commits or alone.
    public var fdatasyncs: Int
    /// Linked write->fdatasync chains completed.
    public var commitChains: Int
    /// Resubmissions after short transfers, EINTR, EAGAIN or a cancelled link.
    public var retries: Int

    /// SQEs per submit call: how well submissions are batched.
    public var meanSQEsPerSubmit: Double {
        enterCalls == 0 ? 0 : Double(sqesSubmitted) / Double(enterCalls)
    }

    public var description: String {
        """
        io mode: \(ioMode.rawValue)\(ringFlags.isEmpty ? "" : " (" + ringFlags.joined(separator: ",") + ")")
        fixed buffers: \(fixedBuffers ? "yes" : "no")
        submission polling (SQPOLL): \(submissionPolling)
        completion polling (IOPOLL): \(completionPolling)
        registered ring fd: \(registeredRingFD)
        buffered files (O_DIRECT refused): \(bufferedFiles)
        sqes submitted: \(sqesSubmitted)
        enter calls: \(enterCalls)
        mean sqes per submit: \(String(format2: meanSQEsPerSubmit))
        completions: \(completions)
        bytes read: \(bytesRead)
        bytes written: \(bytesWritten)
        fdatasyncs: \(fdatasyncs)
        commit chains: \(commitChains)
        retries: \(retries)
        """
    }
}

extension String {
    /// A number with two decimals, without Foundation.
    init(format2 value: Double) {
        let scaled = Int((value * 100).rounded())
        let fraction = abs(scaled % 100)
        self = "\(scaled / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}

/// The live counters behind ``PageStoreStats``, updated from the I/O threads.
final class IOCounters: Sendable {
    let sqesSubmitted = Atomic<Int>(0)
    let enterCalls = Atomic<Int>(0)
    let completions = Atomic<Int>(0)
    let bytesRead = Atomic<Int>(0)
    let bytesWritten = Atomic<Int>(0)
    let fdatasyncs = Atomic<Int>(0)
    let commitChains = Atomic<Int>(0)
    let retries = Atomic<Int>(0)
    let bufferedFiles = Atomic<Int>(0)

    /// Counts `bytes` read or written.
    func countTransfer(reading: Bool, bytes: Int) {
        if reading {
            bytesRead.wrappingAdd(bytes, ordering: .relaxed)
        } else {
            bytesWritten.wrappingAdd(bytes, ordering: .relaxed)
        }
    }
}
