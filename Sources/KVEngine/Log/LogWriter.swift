import Atomics
import Dispatch
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
/// tail); `LogFile` creates and closes the file. This file takes appends and syncs;
/// `LogWriter+Chains.swift` runs the chains, `LogWriter+Stream.swift` streams long
/// records. Their shared state is internal only so those files can reach it: nothing
/// else touches it.
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
    let storage: any Storage
    private let memtableLimitBytes: Int
    let bufferedChainPages: Int
    let counters: EngineCounters
    let state: PlainLock<State>
    /// Signalled, once the log is closing, as its chains and reservations complete:
    /// what `close()` waits on.
    let drained = ChangeSignal()
    /// Signalled as a streamed record moves on (a chain completes while one is streaming)
    /// and when it is in: what writers waiting for it, and the streaming writer waiting for
    /// room, wait on.
    let progress = ChangeSignal()
    /// Where a chain's completer hands the acknowledgements of a group when it has the
    /// next chain to start (`deliver(_:aside:)`); serial, so they run in log order.
    let acknowledging = DispatchQueue(label: "kvengine.log.acknowledge")
    /// Held while a writer takes log blocks from the page arena.
    private let allocating = Mutex(())
    /// The newest sequence number readers may see.
    let visibleSequence: ManagedAtomic<UInt64>
    /// The last sequence number before this log's first record (its records follow it).
    let baseSequence: UInt64
    /// What change feeds following this log wait on (signalled as chains complete).
    let feed: FeedSignal?

    /// Where the durable part of the log ends: every page before it is written whole and
    /// never again.
    var durableBytes: Int64 { state.withLock { $0.commits.durableBytes } }

    /// Chains this log keeps in flight: `Options.logChainsInFlight` with O_DIRECT, one without.
    /// Through the page cache, a page's write-back error is reported to whichever
    /// fdatasync on the file looks first, so one in flight beside another could return 0
    /// although pages it covered were lost; one at a time, each fdatasync answers for every
    /// page written before it.
    let chainsInFlightMax: Int

    typealias Ack = CommitQueue.Ack

    struct State {
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


    /// Creates log `number` in `directory` (see `LogFile.create`) for writes into
    /// `memtable` after `lastSequence`.
    static func create(
        directory: String, number: UInt64, storage: any Storage, memtable: Memtable,
        lastSequence: UInt64, options: Options, counters: EngineCounters, feed: FeedSignal? = nil
    ) throws(KVError) -> LogWriter {
        let (log, space) = try LogFile.create(directory: directory, number: number, storage: storage, options: options)
        return LogWriter(log: log, space: space, memtable: memtable, lastSequence: lastSequence, options: options, counters: counters, feed: feed)
    }

    private init(
        log: LogFile, space: LogSpace, memtable: Memtable, lastSequence: UInt64, options: Options, counters: EngineCounters,
        feed: FeedSignal?
    ) {
        self.feed = feed
        self.log = log
        self.storage = log.storage
        self.counters = counters
        self.memtable = memtable
        self.memtableLimitBytes = options.memtableBytes
        self.bufferedChainPages = max(1, options.bufferedChainPages)
        self.chainsInFlightMax = log.directIO ? max(1, options.logChainsInFlight) : 1
        self.visibleSequence = ManagedAtomic(lastSequence)
        self.baseSequence = lastSequence
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
    /// that may block. `precondition`, when given, runs under the lock just before the
    /// batch would take its sequence numbers, with the memtable every earlier write of
    /// this log is in: an error it returns fails the append (`ack` gets it) and nothing is
    /// written (a transaction's last conflict check, or a follower's check that the batch
    /// takes the sequence numbers the leader gave it: the log's last sequence number is
    /// passed too). `assigned` gets the batch's last sequence number, under the lock, once
    /// it has taken its numbers.
    func append(
        _ batch: inout WriteBatch, durability: Durability, lead: Bool,
        precondition: ((Memtable, UInt64) -> KVError?)? = nil, assigned: ((UInt64) -> Void)? = nil, ack: @escaping Ack
    ) -> Appended {
        // Sealing writes the batch's header in place: a batch whose bytes another holder
        // shares (a caller's) is copied here, not under the lock; one handed over whole
        // (`put`'s own) is not copied at all.
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
                if let precondition, let refusal = precondition(memtable, state.lastSequence) { return .failed(refusal) }
                if batch.encodedBytes > LogWriter.streamThresholdBytes {
                    batch.seal(firstSequence: state.lastSequence + 1)
                    state.lastSequence += UInt64(batch.count)
                    assigned?(state.lastSequence)
                    state.streaming = true
                    return .stream(lastSequence: state.lastSequence)
                }
                let missing = state.pages.missingBlocks(forRecordBytes: batch.encodedBytes)
                if missing > 0 { return .needBlocks(missing) }
                batch.seal(firstSequence: state.lastSequence + 1)
                state.lastSequence += UInt64(batch.count)
                assigned?(state.lastSequence)
                batch.encoded.withUnsafeBytes { record in
                    state.pages.append(record, lastSequence: state.lastSequence, durableBytes: state.commits.durableBytes, logNumber: number)
                    memtable.apply(batch: record)
                }
                let immediate = acknowledgeOrQueue(through: state.lastSequence, durability: durability, ack: ack, &state)
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
                return handOver(chain, acknowledged: immediate, lead: lead)
            }
        }
    }

    /// Acknowledges a write whose record is in (sequence numbers through `lastSequence`)
    /// at once, or queues `ack` for the chain that makes it durable: a buffered write is
    /// acknowledged, and visible, at once unless an earlier write still waits (readers
    /// never see a write before an earlier one). True: acknowledged now.
    func acknowledgeOrQueue(through lastSequence: UInt64, durability: Durability, ack: @escaping Ack, _ state: inout State) -> Bool {
        precondition(lastSequence == state.lastSequence, "a write is acknowledged or queued as the log's newest")
        if durability == .buffered && state.commits.waiters.isEmpty {
            publish(state.lastSequence)
            return true
        }
        state.commits.wait(.init(lastSequence: lastSequence, sync: durability == .sync, ack: ack))
        return false
    }

    /// What a caller of `append` or `sync` gets once its write is in: a due chain goes to
    /// the ring thread unless the caller leads it, and a write acknowledged at once leads
    /// nothing.
    func handOver(_ chain: Chain?, acknowledged: Bool, lead: Bool) -> Appended {
        if let chain, !lead || acknowledged {
            submit(chain)
            return acknowledged ? .acknowledged : .waiting(lead: nil)
        }
        return acknowledged ? .acknowledged : .waiting(lead: chain)
    }

    /// Makes every sequence number through `sequence` visible to readers. Called under
    /// the lock, in log order.
    func publish(_ sequence: UInt64) {
        precondition(sequence >= visibleSequence.load(ordering: .relaxed), "visibility never goes back")
        visibleSequence.store(sequence, ordering: .releasing)
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
        return handOver(chain, acknowledged: done, lead: lead)
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
