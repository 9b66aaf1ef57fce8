import Atomics
import DequeModule
import PageStore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Appends write batches to one log file with group commit, and applies them to the
/// memtable in log order.
///
/// Writers encode their batch into the log's in-memory pages and insert it into the
/// memtable under one lock (so the memtable has one writer, and log order is sequence
/// order). The pages go to disk as **commit chains**: linked writes then an fdatasync,
/// one ``IORequest/commit(_:_:)``. Up to `maxChainsInFlight` chains are in flight (one when
/// the log is not O_DIRECT: see `chainsInFlightMax`); while
/// they are, the next pages gather, and a completion starts the next chain. A sync writer
/// runs the chain it starts on its own thread (`lead`), the others go through the ring
/// thread. Chains are retired, and writes acknowledged, strictly in log order: a write is
/// acknowledged only when its chain and every earlier chain have completed, so every
/// earlier byte of the log is durable too.
///
/// Invariants:
/// - A page is written once. A chain takes every page up to the fill position; when it
///   takes a partly filled page, filling moves on to the next page (the rest is padding),
///   so a later chain never rewrites a page that holds acknowledged records.
/// - Every fragment records `durableBytes`, the end of the last completed chain when it was
///   encoded; a torn write can only damage bytes at or past it, which is how recovery tells
///   a torn tail from corruption (see `LogReader`).
/// - A sync write is acknowledged, and becomes visible to readers, when a chain that covers
///   it has completed. A buffered write is acknowledged and visible at once, unless an
///   earlier sync write is still waiting: then it waits for that one (readers never see a
///   write before an earlier one).
/// - A failed chain fails every waiting write and every later write, and no chain in flight
///   when its failure arrives is acknowledged, earlier ones included: the engine does not
///   trust data a failed fdatasync was meant to cover, and without O_DIRECT the kernel may
///   report the loss of one chain's pages to another chain's fdatasync (reopen to recover).
final class LogWriter: Sendable {
    let storage: any Storage
    let file: FileID
    let path: String
    let number: UInt64
    let memtable: Memtable
    /// Always zero: the source of the zero-fill writes.
    private let zeros: PageBuffer
    private let memtableLimitBytes: Int
    /// Bytes by which the reservation grows (0: the log grows as it is written).
    private let reservationStep: Int64
    private let bufferedChainPages: Int
    private let metrics: EngineMetrics
    private let state: Mutex<State>
    /// Signalled, once the log is closing, as its chains and reservations complete:
    /// what `close()` waits on.
    private let drained = ChangeSignal()
    /// The newest sequence number readers may see.
    let visibleSequence: ManagedAtomic<UInt64>

    /// Zeros written ahead of the log's tail at a time (see `makeChain`).
    static let zeroChunkBytes = 256 << 10
    /// Most segments (blocks) one chain writes.
    static let maxChainBlocks = 128
    /// SQEs of the longest chain: every block, a zero-fill and the fdatasync
    /// (`Options.validate` checks the ring can hold it).
    static let largestChainSQEs = maxChainBlocks + 2
    /// Chains in flight at once. A new one starts while earlier ones are on their way, so
    /// writers that arrive during a chain need not wait for it to finish; acknowledgements
    /// still go out strictly in log order. (Measured with fillsync: 4 beats 2 at 4 writers
    /// and 8 at 16 writers.)
    static let maxChainsInFlight = 4
    /// Chains this log keeps in flight: `maxChainsInFlight` with O_DIRECT, one without.
    /// Through the page cache, a page's write-back error is reported to whichever
    /// fdatasync on the file looks first, so one in flight beside another could return 0
    /// although pages it covered were lost; one at a time, each fdatasync answers for every
    /// page written before it.
    private let chainsInFlightMax: Int

    typealias Ack = @Sendable (Result<Void, KVError>) -> Void

    private struct Waiter {
        let lastSequence: UInt64
        let sync: Bool
        let ack: Ack
    }

    private struct State {
        /// The tail in memory: filled pages, and which of them chains have taken.
        var pages: LogPages
        /// Chains submitted and not yet retired, in log order (at most `maxChainsInFlight`).
        var inFlight: Deque<InFlightChain> = []
        var nextChainID = 0
        /// Start of the zero-fill region a chain in flight is writing: no other chain may
        /// write data at or past it until that chain completes.
        var zeroInFlightFrom: Int64?
        var flushRequested = false
        var durableBytes: Int64
        var durableSequence: UInt64
        var lastSequence: UInt64
        var waiters: Deque<Waiter> = []
        var failure: KVError?
        /// Set by `beginClose`: appends are refused from then on.
        var closing = false
        /// Set by `seal`: appends are turned away to the next log from then on.
        var sealed = false
        /// Set by `close`: the buffers are gone and the file is closed.
        var closed = false
        /// `fallocate` requests not yet completed (close waits for them: one finishing
        /// after the final truncation would grow the log again).
        var reservationsInFlight = 0
        /// End of the reservation asked for, and of the part confirmed (zero-fill stays
        /// inside the latter: past it a zero-fill could take the space a write needs).
        var preallocatedBytes: Int64
        var reservedBytes: Int64
        /// A reservation was refused (no room, or no fallocate): no more are asked for.
        var reservationsStopped = false
        /// End of the region written with zeros or data: writes below it overwrite written
        /// blocks, so their fdatasync need not journal an extent conversion.
        var zeroedBytes: Int64
        var chainsCompleted = 0
    }

    private struct InFlightChain {
        let id: Int
        let endOffset: Int64
        let lastSequence: UInt64
        let zeroFrom: Int64?
        var result: IOResult?
    }

    /// A commit chain of log pages: what it writes and what its completion makes durable.
    struct Chain: Sendable {
        let id: Int
        let zeroFrom: Int64?
        let segments: [IOSegment]
        let endOffset: Int64
        let lastSequence: UInt64
        let allocate: (offset: Int64, length: Int64)?
    }

    /// Creates log `number` in `directory`: the header page, preallocation and fdatasync,
    /// then a directory fsync, all before any record can be acknowledged in it.
    static func create(
        directory: String, number: UInt64, storage: any Storage, memtable: Memtable,
        lastSequence: UInt64, options: Options, metrics: EngineMetrics
    ) throws(KVError) -> LogWriter {
        let path = directory + "/" + FileNames.log(number)
        // On a nearly full disk the reservation and the zero-fill shrink to what fits: the
        // log starts with its header alone, and later chains grow it as they go.
        // A log rotates once its memtable is full, so it never needs much more than the
        // memtable's size: the reservation is capped there, and the zero-fill stays inside it.
        let needed = (Int64(options.memtableBytes) * 9 / 8 + 4095) / 4096 * 4096
        var preallocated = min(options.logPreallocateBytes, needed)
        var zeroed = min(Int64(zeroChunkBytes), max(0, preallocated - Int64(LogFormat.pageBytes)))
        var refused = false
        let (file, zeros) = try io("create log \(path)") { () throws -> (FileID, PageBuffer) in
            let zeros = try storage.allocator.allocate(pages: zeroChunkBytes / LogFormat.pageBytes)
            zeros.bytes.initializeMemory(as: UInt8.self, repeating: 0)
            let page: PageBuffer
            let file: FileID
            do {
                page = try storage.allocator.allocate()
            } catch {
                storage.allocator.free(zeros)
                throw error
            }
            do {
                file = try storage.openFile(atPath: path, mode: .createNew)
            } catch {
                storage.allocator.free(page)
                storage.allocator.free(zeros)
                throw error
            }
            defer { storage.allocator.free(page) }
            do {
                LogFormat.encodeHeader(logNumber: number, into: page.bytes)
                if preallocated > 0 {
                    do {
                        try storage.performBlocking(.allocate(file, offsetBytes: 0, lengthBytes: preallocated))
                    } catch let error as PageStoreError where error.refusesReservation {
                        (preallocated, zeroed, refused) = (0, 0, true)
                        // (A refused fallocate may keep part of what it took: the header's
                        // write below starts from an empty file either way.)
                        try storage.truncateFile(file, toBytes: 0)
                    }
                }
                var segments = [IOSegment(offsetBytes: 0, buffer: page)]
                if zeroed > 0 {
                    segments.append(IOSegment(offsetBytes: Int64(LogFormat.pageBytes), buffer: zeros.slice(offset: 0, count: Int(zeroed))))
                }
                do {
                    try storage.commit(file, segments)
                } catch let error as PageStoreError where error.isNoSpace {
                    (preallocated, zeroed, refused) = (0, 0, true)
                    try storage.truncateFile(file, toBytes: 0)
                    try storage.commit(file, [IOSegment(offsetBytes: 0, buffer: page)])
                }
                try storage.syncDirectory(atPath: directory)
            } catch {
                try? storage.closeFile(file)
                storage.allocator.free(zeros)
                throw error
            }
            return (file, zeros)
        }
        if refused {
            engineLogger.warning("log \(path): no room for its reservation or zero-fill; it grows as it is written")
        }
        return LogWriter(
            storage: storage, file: file, path: path, number: number, memtable: memtable, zeros: zeros,
            lastSequence: lastSequence, options: options, metrics: metrics, preallocated: preallocated, zeroed: zeroed,
            reservationStep: preallocated == 0 ? 0 : min(options.logPreallocateBytes, max(256 << 10, needed / 8 / 4096 * 4096)))
    }

    private init(
        storage: any Storage, file: FileID, path: String, number: UInt64, memtable: Memtable, zeros: PageBuffer,
        lastSequence: UInt64, options: Options, metrics: EngineMetrics, preallocated: Int64, zeroed: Int64,
        reservationStep: Int64
    ) {
        self.zeros = zeros
        self.metrics = metrics
        self.storage = storage
        self.file = file
        self.path = path
        self.number = number
        self.memtable = memtable
        self.memtableLimitBytes = options.memtableBytes
        self.bufferedChainPages = max(1, options.bufferedChainPages)
        self.reservationStep = reservationStep
        let directIO = (try? storage.fileInfo(file).directIO) ?? false
        self.chainsInFlightMax = directIO ? LogWriter.maxChainsInFlight : 1
        self.visibleSequence = ManagedAtomic(lastSequence)
        let start = Int64(LogFormat.pageBytes)
        self.state = Mutex(State(
            pages: LogPages(lastSequence: lastSequence),
            durableBytes: start, durableSequence: lastSequence, lastSequence: lastSequence,
            preallocatedBytes: preallocated, reservedBytes: preallocated, zeroedBytes: start + zeroed))
    }

    // MARK: appending

    private enum Outcome {
        case failed(KVError)
        case needBlocks(Int)
        case appended(immediate: Bool, chain: Chain?)
        case rotate
    }

    /// What `append` or `sync` did.
    enum Appended {
        /// Acknowledged before the call returned (`ack` will not run).
        case acknowledged
        /// `ack` runs once the write is acknowledged or has failed (it may have run
        /// already). `lead` is a chain the caller asked to run itself (`lead: true`): pass
        /// it to `lead(_:while:)`.
        case waiting(lead: Chain?)
        /// Nothing was appended: the memtable is full or the log is sealed. The caller
        /// rotates to a new memtable and log and tries again there (`ack` will not run).
        case rotate
    }

    /// Appends `batch`; `ack` runs once the write is acknowledged at `durability` (or has
    /// failed). With `lead`, a chain that becomes due is returned for the caller to run on
    /// its own thread (`lead(_:)`) instead of going to the ring thread: only for callers
    /// that may block.
    func append(_ batch: WriteBatch, durability: Durability, lead: Bool, ack: @escaping Ack) -> Appended {
        var batch = batch
        while true {
            let outcome = state.withLock { state -> Outcome in
                // Sealed first: a writer that was away (allocating pages) while a rotation
                // sealed and closed this log goes on in the next one.
                if state.sealed && (state.failure == nil || state.failure?.code == .closed) { return .rotate }
                if let failure = state.failure { return .failed(failure) }
                if state.closing { return .failed(KVError(.closed, "database is closed")) }
                if memtable.count > 0 && memtable.approximateBytes + batch.encodedBytes + batch.count * 48 > memtableLimitBytes {
                    return .rotate
                }
                let missing = state.pages.missingBlocks(forRecordBytes: batch.encodedBytes)
                if missing > 0 { return .needBlocks(missing) }
                batch.seal(firstSequence: state.lastSequence + 1)
                state.lastSequence += UInt64(batch.count)
                batch.encoded.withUnsafeBytes { record in
                    state.pages.append(record, lastSequence: state.lastSequence, durableBytes: state.durableBytes, logNumber: number)
                    memtable.apply(batch: record)
                }
                var immediate = false
                if durability == .sync {
                    state.waiters.append(Waiter(lastSequence: state.lastSequence, sync: true, ack: ack))
                } else if state.waiters.isEmpty {
                    visibleSequence.store(state.lastSequence, ordering: .releasing)
                    immediate = true
                } else {
                    state.waiters.append(Waiter(lastSequence: state.lastSequence, sync: false, ack: ack))
                }
                return .appended(immediate: immediate, chain: startChainIfDue(&state))
            }
            switch outcome {
            case .failed(let error):
                ack(.failure(error))
                return .waiting(lead: nil)
            case .rotate:
                return .rotate
            case .needBlocks(let count):
                // Allocate outside the lock: when the arena is exhausted this waits for a
                // chain's completion to free blocks, and that completion needs the lock.
                do {
                    let blocks = try (0..<count).map { _ in try storage.allocator.allocate(pages: LogPages.blockPages) }
                    let kept = state.withLock { state -> Bool in
                        guard !state.closed else { return false }
                        state.pages.addSpare(blocks)
                        return true
                    }
                    // Closed meanwhile (a rotation): its buffers are gone, and so go these.
                    if !kept { for block in blocks { storage.allocator.free(block) } }
                } catch {
                    ack(.failure(KVError.io(error, while: "allocate log pages")))
                    return .waiting(lead: nil)
                }
            case .appended(let immediate, let chain):
                // A write acknowledged at once leaves a due chain to the ring thread too.
                if let chain, !lead || immediate {
                    submit(chain)
                    return immediate ? .acknowledged : .waiting(lead: nil)
                }
                return immediate ? .acknowledged : .waiting(lead: chain)
            }
        }
    }

    // MARK: chains

    /// Starts a chain when there is room for one and one is due: a sync write waits, a
    /// flush was asked for, or whole pages are ready (those go without the partly filled
    /// page).
    private func startChainIfDue(_ state: inout State) -> Chain? {
        guard state.inFlight.count < chainsInFlightMax, state.failure == nil else { return nil }
        let urgent = state.flushRequested || state.waiters.contains(where: \.sync)
        if !urgent {
            // Only buffered writes wait: their bound is the flush interval, so full pages go
            // out a block at a time, one chain at a time, not an fdatasync per page.
            guard state.inFlight.isEmpty, state.pages.fullPagesPending >= bufferedChainPages else { return nil }
        }
        return makeChain(includePartialPage: urgent, &state)
    }

    private func makeChain(includePartialPage: Bool, _ state: inout State) -> Chain? {
        // No data at or past a zero-fill in flight until it completes.
        if let zeroFrom = state.zeroInFlightFrom, let end = state.pages.pendingEnd(includePartialPage: includePartialPage),
            end > zeroFrom
        {
            return nil
        }
        guard let taken = state.pages.takePages(includePartialPage: includePartialPage, maxSegments: LogWriter.maxChainBlocks)
        else { return nil }
        var segments = taken.segments
        let endOffset = taken.end
        precondition(endOffset > state.durableBytes, "a chain ends past the durable part of the log")
        // Zero-fill ahead of the tail inside the chain: linked after the data it never
        // overlaps, synced by the same fdatasync. Only a chain that goes out alone carries
        // it, and no other chain writes past its start while it is in flight. Later
        // commits then overwrite written blocks, and their fdatasyncs stay cheap (on ext4,
        // writing into fallocated space halves the fdatasync rate).
        state.zeroedBytes = max(state.zeroedBytes, endOffset)
        var zeroFrom: Int64? = nil
        let zeroBytes = min(Int64(LogWriter.zeroChunkBytes), state.reservedBytes - state.zeroedBytes)
        if state.inFlight.isEmpty && state.zeroedBytes < endOffset + Int64(LogWriter.zeroChunkBytes) && zeroBytes > 0 {
            zeroFrom = state.zeroedBytes
            segments.append(IOSegment(offsetBytes: state.zeroedBytes, buffer: zeros.slice(offset: 0, count: Int(zeroBytes))))
            state.zeroedBytes += zeroBytes
            state.zeroInFlightFrom = zeroFrom
        }
        if includePartialPage { state.flushRequested = false }
        let id = state.nextChainID
        state.nextChainID += 1
        state.inFlight.append(InFlightChain(
            id: id, endOffset: endOffset, lastSequence: state.pages.sealedSequence, zeroFrom: zeroFrom, result: nil))
        var allocate: (Int64, Int64)? = nil
        if reservationStep > 0 && !state.reservationsStopped && endOffset + Int64(LogPages.blockBytes * 4) > state.preallocatedBytes {
            allocate = (state.preallocatedBytes, reservationStep)
            state.preallocatedBytes += reservationStep
        }
        // Without the partial page the chain covers only records that end in sealed pages.
        // (With it, taking the page has just sealed everything.)
        return Chain(
            id: id, zeroFrom: zeroFrom, segments: segments, endOffset: endOffset,
            lastSequence: state.pages.sealedSequence, allocate: allocate)
    }

    private func reserveSpace(_ chain: Chain) {
        if let (offset, length) = chain.allocate {
            // Growing the reservation never touches written data, so it need not be
            // ordered with the chain; a failure here shows up as a failed write later.
            state.withLock { $0.reservationsInFlight += 1 }
            storage.submit(.allocate(file, offsetBytes: offset, lengthBytes: length)) { [self] result in
                let closing = state.withLock { state -> Bool in
                    state.reservationsInFlight -= 1
                    if case .success = result {
                        // Only a reservation that joins the confirmed one extends it (one
                        // refused before it leaves a hole the zero-fill must not enter).
                        if offset <= state.reservedBytes { state.reservedBytes = max(state.reservedBytes, offset + length) }
                    } else {
                        state.reservationsStopped = true
                    }
                    return state.closing
                }
                if closing { drained.signal() }
            }
        }
    }

    /// Runs `chain` through the ring thread; its completion may start the next one.
    private func submit(_ chain: Chain) {
        reserveSpace(chain)
        storage.submit(.commit(file, chain.segments)) { [self] result in
            if let next = completed(chain, result) { submit(next) }
        }
    }

    /// Runs `chain` on the calling thread, then, while `waiting()` says the caller's own
    /// write is still not durable, the chains that fall due meanwhile: no hand-off to the
    /// ring thread, so the device gets the next chain as soon as the last one is done.
    /// Once the caller's write is durable, a due chain goes to the ring thread and the
    /// caller returns. Only for callers that may block.
    func lead(_ chain: Chain, while waiting: () -> Bool) {
        var current = chain
        while true {
            reserveSpace(current)
            let result: IOResult
            do {
                result = .success(try storage.performBlocking(.commit(file, current.segments)))
            } catch {
                result = .failure(error as? PageStoreError ?? PageStoreError(kind: .io, operation: "commit", path: path, detail: "\(error)"))
            }
            guard let next = completed(current, result) else { return }
            guard waiting() else {
                submit(next)
                return
            }
            current = next
        }
    }

    /// Retires completed chains in log order, acknowledges the writes they made durable,
    /// and returns the next chain that is due (for the caller to run).
    private func completed(_ chain: Chain, _ result: IOResult) -> Chain? {
        var acks: [(Ack, Result<Void, KVError>)] = []
        var closing = false
        let next = state.withLock { state -> Chain? in
            closing = state.closing
            if let index = state.inFlight.firstIndex(where: { $0.id == chain.id }) {
                state.inFlight[index].result = result
            }
            if case .failure(let error) = result, state.failure == nil {
                // At once, not when the chain's turn to retire comes: without O_DIRECT the
                // kernel reports a write-back error to one of the fdatasyncs in flight on
                // the file, not necessarily to the one whose pages it lost, so no chain
                // still in flight (earlier ones included) is trusted after it.
                let failure = KVError.io(error, while: "log commit to \(path)")
                state.failure = failure
                while let waiter = state.waiters.popFirst() { acks.append((waiter.ack, .failure(failure))) }
            }
            while let first = state.inFlight.first, let outcome = first.result {
                state.inFlight.removeFirst()
                state.chainsCompleted += 1
                if first.zeroFrom != nil { state.zeroInFlightFrom = nil }
                // After a failure nothing is trusted: neither what the failed chain
                // covered, nor any chain in flight beside it, nor anything after it.
                if state.failure != nil { continue }
                switch outcome {
                case .failure:
                    preconditionFailure("a failed chain sets the log's failure when its result arrives")
                case .success:
                    state.durableBytes = first.endOffset
                    state.durableSequence = first.lastSequence
                    while let waiter = state.waiters.first, !waiter.sync || waiter.lastSequence <= first.lastSequence {
                        state.waiters.removeFirst()
                        visibleSequence.store(waiter.lastSequence, ordering: .releasing)
                        acks.append((waiter.ack, .success(())))
                    }
                    if state.waiters.isEmpty { visibleSequence.store(state.lastSequence, ordering: .releasing) }
                }
            }
            guard state.failure == nil else { return nil }
            state.pages.releaseWritten(durable: state.durableBytes) { storage.allocator.free($0) }
            return startChainIfDue(&state)
        }
        if case .success(let bytes) = result {
            metrics.logChains.increment()
            metrics.logBytes.increment(by: Int64(bytes))
        }
        for (ack, result) in acks { ack(result) }
        if closing { drained.signal() }
        return next
    }

    // MARK: flushing and closing

    /// Writes and syncs whatever is pending, on the calling thread (the buffered-write
    /// timer's thread calls this).
    func flush() {
        let chain = state.withLock { state -> Chain? in
            state.flushRequested = true
            return startChainIfDue(&state)
        }
        if let chain { lead(chain, while: { false }) }
    }

    /// Makes every appended write durable; `ack` runs when it is. As with `append`, a due
    /// chain is returned for the caller to `lead` when `lead` is set.
    func sync(lead: Bool, ack: @escaping Ack) -> Appended {
        let (done, failure, chain) = state.withLock { state -> (Bool, KVError?, Chain?) in
            // A log retired whole (a rotation or an ingest between closing it and starting
            // the next) has nothing left to make durable.
            let retired = state.closed && state.failure?.code == .closed
            if state.durableSequence == state.lastSequence && state.inFlight.isEmpty && (state.failure == nil || retired) {
                return (true, nil, nil)
            }
            if let failure = state.failure { return (false, failure, nil) }
            state.waiters.append(Waiter(lastSequence: state.lastSequence, sync: true, ack: ack))
            return (false, nil, startChainIfDue(&state))
        }
        if let failure { ack(.failure(failure)) }
        if done { return .acknowledged }
        if let chain, !lead {
            submit(chain)
            return .waiting(lead: nil)
        }
        return .waiting(lead: chain)
    }

    /// Turns appends away from now on (`Appended.rotate`): the memtable is about to
    /// become immutable and a new log takes the writes.
    func seal() {
        state.withLock { $0.sealed = true }
    }

    /// Refuses appends from now on; a writer that got past the handle's open check while
    /// it was closing fails with `.closed` instead of writing into a log being closed.
    func beginClose() {
        state.withLock { $0.closing = true }
    }

    /// After `beginClose` and a final `sync`: waits until no chain (the kernel may still be
    /// reading its buffers) and no space reservation is in flight, trims the preallocated
    /// tail so a closed log holds only its written pages, and gives the buffers back.
    func close() throws(KVError) {
        // A rotation that could not start the next log leaves this one closed already.
        if state.withLock({ $0.closed }) { return }
        while true {
            let seen = drained.generation
            if state.withLock({ $0.inFlight.isEmpty && $0.reservationsInFlight == 0 }) { break }
            storage.willWait()
            drained.wait(past: seen, timeoutMs: 10)
        }
        let (end, buffers, orphans) = state.withLock { state -> (Int64, [PageBuffer], [Ack]) in
            let end = state.durableBytes
            state.closed = true
            let buffers = state.pages.removeAllBuffers() + [zeros]
            state.failure = state.failure ?? KVError(.closed, "database is closed")
            // Nothing is left to make them durable: whoever still waits hears so.
            let orphans = state.waiters.map(\.ack)
            state.waiters.removeAll()
            return (end, buffers, orphans)
        }
        for ack in orphans { ack(.failure(KVError(.closed, "database closed before the write was durable"))) }
        for buffer in buffers { storage.allocator.free(buffer) }
        try io("close log \(path)") {
            try storage.truncateFile(file, toBytes: end)
            try storage.performBlocking(.sync(file, dataOnly: false))
            try storage.closeFile(file)
        }
    }

    /// Chains completed so far (for stats and tests).
    var chainsCompleted: Int { state.withLock { $0.chainsCompleted } }

    /// The highest sequence number appended (acknowledged or not).
    var lastSequence: UInt64 { state.withLock { $0.lastSequence } }
    /// The failure that stopped this log (a failed chain, or `.closed` once closed).
    var failure: KVError? { state.withLock { $0.failure } }
}
