import Atomics
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
/// one ``IORequest/commit(_:_:)``. Up to `Options.logChainsInFlight` chains are in flight
/// (one by default, and always one when the log is not O_DIRECT: see `chainsInFlightMax`); while
/// they are, the next pages gather, and a completion starts the next chain. A sync writer
/// runs the chain it starts on its own thread (`lead`), the others go through the ring
/// thread. Chains are retired, and writes acknowledged, strictly in log order: a write is
/// acknowledged only when its chain and every earlier chain have completed, so every
/// earlier byte of the log is durable too.
///
/// The writer orchestrates three values, each changed only under its lock: `LogPages`
/// (the tail in memory, fragments in pages), `CommitQueue` (chains in flight, waiters,
/// acknowledgements in log order) and `LogSpace` (reservation and zero-fill ahead of the
/// tail); `LogFile` creates and closes the file.
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
    let log: LogFile
    var number: UInt64 { log.number }
    let memtable: Memtable
    private let storage: any Storage
    private let memtableLimitBytes: Int
    private let bufferedChainPages: Int
    private let counters: EngineCounters
    private let state: PlainLock<State>
    /// Signalled, once the log is closing, as its chains and reservations complete:
    /// what `close()` waits on.
    private let drained = ChangeSignal()
    /// Signalled as a streamed record moves on (a chain completes while one is streaming)
    /// and when it is in: what writers waiting for it, and the streaming writer waiting for
    /// room, wait on.
    private let progress = ChangeSignal()
    /// Held while a writer takes log blocks from the page arena.
    private let allocating = Mutex(())
    /// The newest sequence number readers may see.
    let visibleSequence: ManagedAtomic<UInt64>

    /// Most segments (blocks) one chain writes.
    static let maxChainBlocks = 128
    /// SQEs of the longest chain: every block, a zero-fill and the fdatasync
    /// (`Options.validate` checks the ring can hold it).
    static let largestChainSQEs = maxChainBlocks + 2
    /// Chains in flight at once by default (`Options.logChainsInFlight`). More than one
    /// lets a chain start while earlier ones are on their way, acknowledgements still
    /// strictly in log order; but fdatasyncs of one file do not overlap in the file
    /// system, so here each extra chain only splits a group. Measured with fillsync
    /// (docs/BENCHMARKS.md): one chain gave 27-29k commits/s at 16 writers against 20-22k
    /// with four and 16-17k with eight, and 39k at 64 writers against 32-33k with four;
    /// equal at 4 writers.
    static let maxChainsInFlight = 1
    /// Records longer than this are streamed: cut into pages a few blocks at a time and
    /// written as they are cut, instead of cut whole into pages first (see `stream`).
    static let streamThresholdBytes = 2 << 20
    /// Most blocks the log holds while a record streams (8 MiB): what is being written and
    /// what is being filled. A record of any length then needs no more of the page arena.
    static let streamMaxBlocks = 32
    /// Chains this log keeps in flight: `Options.logChainsInFlight` with O_DIRECT, one without.
    /// Through the page cache, a page's write-back error is reported to whichever
    /// fdatasync on the file looks first, so one in flight beside another could return 0
    /// although pages it covered were lost; one at a time, each fdatasync answers for every
    /// page written before it.
    private let chainsInFlightMax: Int

    typealias Ack = CommitQueue.Ack

    private struct State {
        var pages: LogPages
        var commits: CommitQueue
        var space: LogSpace
        var flushRequested = false
        /// The highest sequence number appended.
        var lastSequence: UInt64
        var failure: KVError?
        /// Set by `beginClose`: appends are refused from then on.
        var closing = false
        /// Set by `seal`: appends are turned away to the next log from then on.
        var sealed = false
        /// Set by `close`: the buffers are gone and the file is closed.
        var closed = false
        /// A record is streaming (`stream`): nothing else is appended, no chain takes the
        /// partly filled page, and the log is not sealed, until it is in.
        var streaming = false
    }

    /// A commit chain of log pages: what it writes and what its completion makes durable.
    struct Chain: Sendable {
        let id: Int
        let segments: [IOSegment]
        let reserve: (offset: Int64, length: Int64)?
    }

    /// Creates log `number` in `directory` (see `LogFile.create`) for writes into
    /// `memtable` after `lastSequence`.
    static func create(
        directory: String, number: UInt64, storage: any Storage, memtable: Memtable,
        lastSequence: UInt64, options: Options, counters: EngineCounters
    ) throws(KVError) -> LogWriter {
        let (log, space) = try LogFile.create(directory: directory, number: number, storage: storage, options: options)
        return LogWriter(log: log, space: space, memtable: memtable, lastSequence: lastSequence, options: options, counters: counters)
    }

    private init(log: LogFile, space: LogSpace, memtable: Memtable, lastSequence: UInt64, options: Options, counters: EngineCounters) {
        self.log = log
        self.storage = log.storage
        self.counters = counters
        self.memtable = memtable
        self.memtableLimitBytes = options.memtableBytes
        self.bufferedChainPages = max(1, options.bufferedChainPages)
        self.chainsInFlightMax = log.directIO ? max(1, options.logChainsInFlight) : 1
        self.visibleSequence = ManagedAtomic(lastSequence)
        self.state = PlainLock(State(
            pages: LogPages(lastSequence: lastSequence), commits: CommitQueue(lastSequence: lastSequence),
            space: space, lastSequence: lastSequence))
    }

    // MARK: appending

    private enum Outcome {
        case failed(KVError)
        case needBlocks(Int)
        case appended(immediate: Bool, chain: Chain?)
        case rotate
        case waitForStream
        case stream(lastSequence: UInt64)
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
        // The copy sealing makes (the caller keeps its batch) is made here, not under the lock.
        batch.makeUnique()
        while true {
            let seen = progress.generation
            let outcome = state.withLock { state -> Outcome in
                // A record streaming goes in whole before anything else.
                if state.streaming { return .waitForStream }
                // Sealed first: a writer that was away (allocating pages) while a rotation
                // sealed and closed this log goes on in the next one.
                if state.sealed && (state.failure == nil || state.failure?.code == .closed) { return .rotate }
                if let failure = state.failure { return .failed(failure) }
                if state.closing { return .failed(KVError(.closed, "database is closed")) }
                if memtable.count > 0 && memtable.approximateBytes + batch.encodedBytes + batch.count * 48 > memtableLimitBytes {
                    return .rotate
                }
                if batch.encodedBytes > LogWriter.streamThresholdBytes {
                    batch.seal(firstSequence: state.lastSequence + 1)
                    state.lastSequence += UInt64(batch.count)
                    state.streaming = true
                    return .stream(lastSequence: state.lastSequence)
                }
                let missing = state.pages.missingBlocks(forRecordBytes: batch.encodedBytes)
                if missing > 0 { return .needBlocks(missing) }
                batch.seal(firstSequence: state.lastSequence + 1)
                state.lastSequence += UInt64(batch.count)
                batch.encoded.withUnsafeBytes { record in
                    state.pages.append(record, lastSequence: state.lastSequence, durableBytes: state.commits.durableBytes, logNumber: number)
                    memtable.apply(batch: record)
                }
                var immediate = false
                if durability == .buffered && state.commits.waiters.isEmpty {
                    visibleSequence.store(state.lastSequence, ordering: .releasing)
                    immediate = true
                } else {
                    state.commits.wait(.init(lastSequence: state.lastSequence, sync: durability == .sync, ack: ack))
                }
                return .appended(immediate: immediate, chain: startChainIfDue(&state))
            }
            switch outcome {
            case .failed(let error):
                ack(.failure(error))
                return .waiting(lead: nil)
            case .rotate:
                return .rotate
            case .waitForStream:
                storage.willWait()
                progress.wait(past: seen, timeoutMs: 10)
            case .stream(let lastSequence):
                return stream(batch, lastSequence: lastSequence, durability: durability, lead: lead, ack: ack)
            case .needBlocks(let count):
                // Allocate outside the lock: when the arena is exhausted this waits for a
                // chain's completion to free blocks, and that completion needs the lock.
                do {
                    // One writer at a time: writers that each took part of what they need
                    // could hold the whole arena between them and wait for each other.
                    storage.willWait()
                    let blocks = try allocating.withLock { _ in
                        try (0..<count).map { _ in try storage.allocator.allocate(pages: LogPages.blockPages) }
                    }
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

    /// Appends a long record (sealed, its sequence numbers taken, `streaming` set) a few
    /// blocks at a time: cuts what the blocks in hand hold, hands the whole pages to
    /// chains, and waits for room (at most `streamMaxBlocks` held) before taking more
    /// blocks. Once the last fragment is cut the record goes into the memtable and is
    /// acknowledged as any other.
    ///
    /// A crash in between leaves a record with no last fragment at the tail, which
    /// recovery drops as a torn tail (it was never acknowledged). A failed chain ends the
    /// stream with the log's failure: no later record follows the unfinished one.
    private func stream(_ batch: WriteBatch, lastSequence: UInt64, durability: Durability, lead: Bool, ack: @escaping Ack) -> Appended {
        enum Step {
            case failed(KVError)
            case more(blocks: Int, chain: Chain?)
            case done(immediate: Bool, chain: Chain?, closing: Bool)
        }
        var offset = 0
        return batch.encoded.withUnsafeBytes { record -> Appended in
            while true {
                let seen = progress.generation
                let step = state.withLock { state -> Step in
                    if let failure = state.failure {
                        state.streaming = false
                        return .failed(failure)
                    }
                    offset = state.pages.append(
                        record, from: offset, lastSequence: lastSequence, durableBytes: state.commits.durableBytes, logNumber: number)
                    guard offset == record.count else {
                        let chain = startChainIfDue(&state)
                        let remaining = (record.count - offset) / LogPages.blockBytes + 1
                        return .more(blocks: min(remaining, max(0, LogWriter.streamMaxBlocks - state.pages.heldBlocks)), chain: chain)
                    }
                    state.streaming = false
                    memtable.apply(batch: record)
                    var immediate = false
                    if durability == .buffered && state.commits.waiters.isEmpty {
                        visibleSequence.store(state.lastSequence, ordering: .releasing)
                        immediate = true
                    } else {
                        state.commits.wait(.init(lastSequence: lastSequence, sync: durability == .sync, ack: ack))
                    }
                    return .done(immediate: immediate, chain: startChainIfDue(&state), closing: state.closing)
                }
                switch step {
                case .failed(let error):
                    progress.signal()
                    ack(.failure(error))
                    return .waiting(lead: nil)
                case .more(let count, let chain):
                    if let chain { submit(chain) }
                    guard count > 0 else {
                        // Every block it may hold is in hand: wait for a chain to free some.
                        storage.willWait()
                        progress.wait(past: seen, timeoutMs: 10)
                        continue
                    }
                    do {
                        // The pages come back as chains complete (a storage that holds
                        // completions back delivers them now).
                        storage.willWait()
                        for _ in 0..<count {
                            let block = try storage.allocator.allocate(pages: LogPages.blockPages)
                            state.withLock { $0.pages.addSpare([block]) }
                        }
                    } catch {
                        let failure = KVError.io(error, while: "allocate log pages")
                        // The log cannot go on after an unfinished record: it fails, and so
                        // does every write still waiting in it.
                        let orphans = state.withLock { state -> [Ack] in
                            state.streaming = false
                            guard state.failure == nil else { return [] }
                            state.failure = failure
                            return state.commits.fail()
                        }
                        progress.signal()
                        for orphan in orphans { orphan(.failure(failure)) }
                        ack(.failure(failure))
                        return .waiting(lead: nil)
                    }
                case .done(let immediate, let chain, let closing):
                    progress.signal()
                    if closing { drained.signal() }
                    if let chain, !lead || immediate {
                        submit(chain)
                        return immediate ? .acknowledged : .waiting(lead: nil)
                    }
                    return immediate ? .acknowledged : .waiting(lead: chain)
                }
            }
        }
    }

    // MARK: chains

    /// Starts a chain when there is room for one and one is due: a sync write waits, a
    /// flush was asked for, or whole pages are ready (those go without the partly filled
    /// page).
    private func startChainIfDue(_ state: inout State) -> Chain? {
        guard state.commits.chainsInFlight < chainsInFlightMax, state.failure == nil else { return nil }
        if state.streaming {
            // The pages a streaming record has filled go as they fill, and only whole
            // pages: the partly filled one is the record's next fragment's.
            guard state.pages.fullPagesPending > 0 else { return nil }
            return makeChain(includePartialPage: false, &state)
        }
        let urgent = state.flushRequested || state.commits.hasSyncWaiter
        if !urgent {
            // Only buffered writes wait: their bound is the flush interval, so full pages go
            // out a block at a time, one chain at a time, not an fdatasync per page.
            guard state.commits.isIdle, state.pages.fullPagesPending >= bufferedChainPages else { return nil }
        }
        return makeChain(includePartialPage: urgent, &state)
    }

    private func makeChain(includePartialPage: Bool, _ state: inout State) -> Chain? {
        if let end = state.pages.pendingEnd(includePartialPage: includePartialPage), state.space.blocksData(endingAt: end) {
            return nil
        }
        guard let taken = state.pages.takePages(includePartialPage: includePartialPage, maxSegments: LogWriter.maxChainBlocks)
        else { return nil }
        var segments = taken.segments
        // The zero-fill goes inside the chain: linked after the data it never overlaps,
        // synced by the same fdatasync.
        let (zeroFill, reserve) = state.space.plan(chainEndingAt: taken.end, alone: state.commits.isIdle)
        if let zeroFill {
            segments.append(IOSegment(offsetBytes: zeroFill.from, buffer: log.zeros.slice(offset: 0, count: Int(zeroFill.bytes))))
        }
        if includePartialPage { state.flushRequested = false }
        // Without the partial page the chain covers only records that end in sealed pages.
        // (With it, taking the page has just sealed everything.)
        let id = state.commits.start(endOffset: taken.end, lastSequence: state.pages.sealedSequence, carriesZeroFill: zeroFill != nil)
        return Chain(id: id, segments: segments, reserve: reserve)
    }

    /// Asks for the reservation `chain` carries, if any. Growing the reservation never
    /// touches written data, so it need not be ordered with the chain; a failure here
    /// shows up as a failed write later.
    private func reserveSpace(_ chain: Chain) {
        guard let (offset, length) = chain.reserve else { return }
        storage.submit(.allocate(log.file, offsetBytes: offset, lengthBytes: length)) { [self] result in
            let closing = state.withLock { state -> Bool in
                state.space.reservationCompleted(offset: offset, length: length, succeeded: (try? result.get()) != nil)
                return state.closing
            }
            if closing { drained.signal() }
        }
    }

    /// Runs `chain` through the ring thread; its completion may start the next one.
    private func submit(_ chain: Chain) {
        reserveSpace(chain)
        storage.submit(.commit(log.file, chain.segments)) { [self] result in
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
                result = .success(try storage.performBlocking(.commit(log.file, current.segments)))
            } catch {
                result = .failure(error as? PageStoreError ?? PageStoreError(kind: .io, operation: "commit", path: log.path, detail: "\(error)"))
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
        var streaming = false
        let next = state.withLock { state -> Chain? in
            closing = state.closing
            streaming = state.streaming
            if case .failure(let error) = result, state.failure == nil {
                // At once, not when the chain's turn to retire comes: without O_DIRECT the
                // kernel reports a write-back error to one of the fdatasyncs in flight on
                // the file, not necessarily to the one whose pages it lost, so no chain
                // still in flight (earlier ones included) is trusted after it.
                let failure = KVError.io(error, while: "log commit to \(log.path)")
                state.failure = failure
                acks += state.commits.fail().map { ($0, .failure(failure)) }
            }
            let retiredZeroFill = state.commits.complete(chain.id, result, trusting: state.failure == nil) { waiter in
                visibleSequence.store(waiter.lastSequence, ordering: .releasing)
                acks.append((waiter.ack, .success(())))
            }
            if retiredZeroFill { state.space.zeroFillRetired() }
            guard state.failure == nil else { return nil }
            // A streaming record's sequence numbers are taken but not in the memtable yet:
            // they become visible when it is in.
            if state.commits.waiters.isEmpty && !state.streaming {
                visibleSequence.store(state.lastSequence, ordering: .releasing)
            }
            state.pages.releaseWritten(durable: state.commits.durableBytes) { storage.allocator.free($0) }
            return startChainIfDue(&state)
        }
        if case .success(let bytes) = result {
            counters.logChains.add()
            counters.logBytes.add(bytes)
        }
        for (ack, result) in acks { ack(result) }
        if closing { drained.signal() }
        if streaming { progress.signal() }
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
            if state.commits.durableSequence == state.lastSequence && state.commits.isIdle && (state.failure == nil || retired) {
                return (true, nil, nil)
            }
            if let failure = state.failure { return (false, failure, nil) }
            state.commits.wait(.init(lastSequence: state.lastSequence, sync: true, ack: ack))
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
    /// A record streaming goes in first (the memtable must not change once sealed).
    func seal() {
        while true {
            let seen = progress.generation
            let sealed = state.withLock { state -> Bool in
                if state.streaming { return false }
                state.sealed = true
                return true
            }
            if sealed { return }
            storage.willWait()
            progress.wait(past: seen, timeoutMs: 10)
        }
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
            if state.withLock({ $0.commits.isIdle && $0.space.reservationsInFlight == 0 && !$0.streaming }) { break }
            storage.willWait()
            drained.wait(past: seen, timeoutMs: 10)
        }
        let (end, buffers, orphans) = state.withLock { state -> (Int64, [PageBuffer], [Ack]) in
            state.closed = true
            state.failure = state.failure ?? KVError(.closed, "database is closed")
            // Nothing is left to make them durable: whoever still waits hears so.
            return (state.commits.durableBytes, state.pages.removeAllBuffers() + [log.zeros], state.commits.fail())
        }
        for ack in orphans { ack(.failure(KVError(.closed, "database closed before the write was durable"))) }
        for buffer in buffers { storage.allocator.free(buffer) }
        try log.close(end: end)
    }

    /// Whether a record is streaming (appends wait for it).
    var isStreaming: Bool { state.withLock { $0.streaming } }

    /// The highest sequence number appended (acknowledged or not).
    var lastSequence: UInt64 { state.withLock { $0.lastSequence } }
    /// The failure that stopped this log (a failed chain, or `.closed` once closed).
    var failure: KVError? { state.withLock { $0.failure } }
}
