import ArgumentParser
import Dispatch
import PageStore
import Synchronization
import Foundation
import KVEngine

#if canImport(Glibc)
import Glibc
#endif

/// `kvctl pagestore bench`: the page store's side of `scripts/bench-pagestore.sh`.
///
/// Runs one workload on an existing file for a fixed time and prints
/// `WORKLOAD ops/s=N` plus latency and the store's submission stats. The file must already
/// be laid out (the script lets fio create it, so both sides read the same blocks).
struct PageStoreBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure 4 KiB random reads at a queue depth, or write+fdatasync commits, on a file.")

    enum Workload: String, ExpressibleByArgument, CaseIterable {
        case randread
        case writesync
    }

    enum Driver: String, ExpressibleByArgument, CaseIterable {
        /// Completions resubmit from the I/O thread, keeping `depth` requests in flight.
        case pipelined
        /// `depth` threads each issue blocking calls one after another.
        case threads
    }

    @Option(help: "File to run on (must exist and be at least --size-mb large).")
    var file: String

    @Option(help: "Workload: \(Workload.allCases.map(\.rawValue).joined(separator: ", ")).")
    var workload: Workload = .randread

    @Option(help: "Requests kept in flight.")
    var depth = 1

    @Option(help: "How the requests are issued: \(Driver.allCases.map(\.rawValue).joined(separator: ", ")).")
    var driver: Driver = .pipelined

    @Option(help: "Bytes of the file the offsets fall in, in MiB.")
    var sizeMb = 1024

    @Option(help: "Seconds to run.")
    var seconds = 10.0

    @Option(help: "Block size in bytes.")
    var blockSize = 4096

    @Option(help: "Seed of the offset sequence.")
    var seed: UInt64 = 1

    @Option(name: .customLong("ring-mode"), help: ArgumentHelp(RingMode.help))
    var ringMode: RingMode = .default

    func run() throws {
        var options = PageStoreOptions()
        options.arenaBytes = max(8 << 20, depth * blockSize * 2)
        ringMode.apply(to: &options)
        let store: PageStore
        let handle: FileID
        do {
            store = try PageStore(options: options)
        } catch {
            print("\(workload.rawValue) depth=\(depth) driver=\(driver.rawValue) ring-mode=\(ringMode.rawValue) refused: \(error)")
            throw ExitCode(69)
        }
        defer { store.shutdown() }
        do {
            handle = try store.openFile(atPath: file, mode: .existing)
        } catch let error as PageStoreError where error.kind == .unsupported {
            // IOPOLL's answer comes with the first file.
            print("\(workload.rawValue) depth=\(depth) driver=\(driver.rawValue) ring-mode=\(ringMode.rawValue) refused: \(error)")
            throw ExitCode(69)
        }
        let blocks = UInt64(sizeMb) * (1 << 20) / UInt64(blockSize)
        let pagesPerBlock = max(1, blockSize / store.allocator.pageSizeBytes)
        let buffers = try (0..<depth).map { _ in try store.allocator.allocate(pages: pagesPerBlock) }
        for buffer in buffers { memset(buffer.base, 0x5A, buffer.count) }

        let run = BenchRun(deadline: DispatchTime.now().uptimeNanoseconds + UInt64(seconds * 1e9))
        let start = DispatchTime.now().uptimeNanoseconds
        switch driver {
        case .pipelined:
            for (index, buffer) in buffers.enumerated() {
                let issuer = Issuer(
                    store: store, file: handle, buffer: buffer, workload: workload, blocks: blocks,
                    blockSize: blockSize, seed: seed &+ UInt64(index) &* 7919, run: run)
                issuer.next()
            }
            run.finished.wait()
        case .threads:
            let group = DispatchGroup()
            for (index, buffer) in buffers.enumerated() {
                group.enter()
                let thread = Thread {
                    var random = SplitMix(seed: seed &+ UInt64(index) &* 7919)
                    while DispatchTime.now().uptimeNanoseconds < run.deadline {
                        let request = makeRequest(handle, buffer, &random, blocks: blocks)
                        let began = DispatchTime.now().uptimeNanoseconds
                        do { try store.performBlocking(request) } catch { run.fail(error) }
                        run.completed(latencyNanos: DispatchTime.now().uptimeNanoseconds - began)
                    }
                    group.leave()
                }
                thread.start()
            }
            group.wait()
        }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        if let error = run.firstError { throw error }
        let operations = run.operations
        let meanMicros = run.meanLatencyMicros
        print("\(workload.rawValue) depth=\(depth) driver=\(driver.rawValue) ring-mode=\(ringMode.rawValue) ops=\(operations) seconds=\(String(format: "%.2f", elapsed)) ops/s=\(Int(Double(operations) / elapsed)) mean_us=\(String(format: "%.2f", meanMicros))")
        let stats = store.stats
        print("stats: mode=\(stats.ioMode.rawValue) fixed=\(stats.fixedBuffers) \(stats.ringModeLine) enters=\(stats.enterCalls) sqes=\(stats.sqesSubmitted) sqes/enter=\(String(format: "%.2f", stats.meanSQEsPerSubmit)) fdatasyncs=\(stats.fdatasyncs) chains=\(stats.commitChains)")
        for buffer in buffers { store.allocator.free(buffer) }
        try store.closeFile(handle)
    }

    func makeRequest(_ file: FileID, _ buffer: PageBuffer, _ random: inout SplitMix, blocks: UInt64) -> IORequest {
        let offset = Int64(random.next() % blocks) * Int64(blockSize)
        let segment = IOSegment(offsetBytes: offset, buffer: buffer)
        return workload == .randread ? .read(file, segment) : .commit(file, [segment])
    }
}

/// Counters shared by the issuing loops of one benchmark run.
final class BenchRun: Sendable {
    let deadline: UInt64
    let finished = DispatchSemaphore(value: 0)
    private let state = Mutex<(operations: Int, latencyNanos: UInt64, inFlight: Int, error: (any Error)?)>((0, 0, 0, nil))

    init(deadline: UInt64) { self.deadline = deadline }

    var operations: Int { state.withLock { $0.operations } }
    var firstError: (any Error)? { state.withLock { $0.error } }
    var meanLatencyMicros: Double {
        let (operations, nanos) = state.withLock { ($0.operations, $0.latencyNanos) }
        return operations == 0 ? 0 : Double(nanos) / Double(operations) / 1000
    }

    func started() { state.withLock { $0.inFlight += 1 } }
    func completed(latencyNanos: UInt64) {
        state.withLock {
            $0.operations += 1
            $0.latencyNanos += latencyNanos
        }
    }
    func fail(_ error: any Error) { state.withLock { if $0.error == nil { $0.error = error } } }
    /// One issuer stopped; signals `finished` when the last one has.
    func inFlightDone() {
        let last = state.withLock { state -> Bool in
            state.inFlight -= 1
            return state.inFlight <= 0
        }
        if last { finished.signal() }
    }
}

/// One request slot of the pipelined driver: each completion issues the next request
/// from the I/O thread, so `depth` requests stay in flight without thread hand-offs.
final class Issuer: Sendable {
    let store: PageStore
    let file: FileID
    let buffer: PageBuffer
    let workload: PageStoreBench.Workload
    let blocks: UInt64
    let blockSize: Int
    let run: BenchRun
    private let random: Mutex<SplitMix>

    init(
        store: PageStore, file: FileID, buffer: PageBuffer, workload: PageStoreBench.Workload,
        blocks: UInt64, blockSize: Int, seed: UInt64, run: BenchRun
    ) {
        self.store = store
        self.file = file
        self.buffer = buffer
        self.workload = workload
        self.blocks = blocks
        self.blockSize = blockSize
        self.random = Mutex(SplitMix(seed: seed))
        self.run = run
        run.started()
    }

    func next() {
        let offset = Int64(random.withLock { $0.next() } % blocks) * Int64(blockSize)
        let segment = IOSegment(offsetBytes: offset, buffer: buffer)
        let request: IORequest = workload == .randread ? .read(file, segment) : .commit(file, [segment])
        let began = DispatchTime.now().uptimeNanoseconds
        store.submit(request) { [self] result in
            let now = DispatchTime.now().uptimeNanoseconds
            if case .failure(let error) = result { run.fail(error) }
            run.completed(latencyNanos: now - began)
            if now < run.deadline, case .success = result {
                next()
            } else {
                run.inFlightDone()
            }
        }
    }
}
