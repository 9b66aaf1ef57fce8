import ArgumentParser
import KVEngine
import PageStore

/// A data block codec named on the command line (`--compression_type`, `--compression`).
enum CompressionName: String, ExpressibleByArgument, CaseIterable {
    case none, lz4, zstd

    var compression: Compression {
        switch self {
        case .none: .none
        case .lz4: .lz4
        case .zstd: .zstd()
        }
    }
}

/// The ring modes a benchmark can run the page store with (`--ring-mode`, `--ring_mode`).
enum RingMode: String, ExpressibleByArgument, CaseIterable {
    /// The library's defaults (today: the ring thread's ring fd registered where the
    /// kernel allows; no SQPOLL, no IOPOLL).
    case `default`
    /// None of the optional modes: no SQPOLL, no IOPOLL, no registered ring fd.
    case plain
    /// SQPOLL on the ring thread's ring, required (the run fails, saying why, if refused).
    case sqpoll
    /// IOPOLL for blocking reads and writes of O_DIRECT files, required.
    case iopoll
    /// The ring thread's ring fd registered, required.
    case ringfd

    /// `options` with this mode.
    func apply(to options: inout PageStoreOptions) {
        switch self {
        case .default: break
        case .plain:
            options.submissionPolling = .disabled
            options.completionPolling = .disabled
            options.registeredRingFD = .disabled
        case .sqpoll: options.submissionPolling = .required
        case .iopoll: options.completionPolling = .required
        case .ringfd: options.registeredRingFD = .required
        }
    }

    static var help: String {
        "Ring mode: " + allCases.map(\.rawValue).joined(separator: ", ")
            + " (default: the library's; sqpoll, iopoll and ringfd are required, so a refusal fails the run and says why)."
    }
}

extension PageStoreStats {
    /// The ring modes in one line, for benchmark output.
    var ringModeLine: String {
        "sqpoll=\(submissionPolling) iopoll=\(completionPolling) ringfd=\(registeredRingFD)"
    }
}
