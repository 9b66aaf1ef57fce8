import Dispatch
import PageStore

// The commit pipeline: when a chain of log pages is due, what it writes, who runs it, and
// what its completion acknowledges. `CommitQueue` keeps the chains in flight and their
// waiters; this is the part that does I/O.

extension LogWriter {
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

    /// A commit chain of log pages: what it writes and what its completion makes durable.
    struct Chain: Sendable {
        let id: Int
        let segments: [IOSegment]
        let reserve: (offset: Int64, length: Int64)?
    }

    /// Starts a chain when there is room for one and one is due: a sync write waits, a
    /// flush was asked for, or whole pages are ready (those go without the partly filled
    /// page).
    func startChainIfDue(_ state: inout State) -> Chain? {
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

    func makeChain(includePartialPage: Bool, _ state: inout State) -> Chain? {
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
    func reserveSpace(_ chain: Chain) {
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
    func submit(_ chain: Chain) {
        reserveSpace(chain)
        let submitted = DispatchTime.now().uptimeNanoseconds
        storage.submit(.commit(log.file, chain.segments)) { [self] result in
            let (next, acks) = completed(chain, result, submittedNanos: submitted)
            guard let next else { return deliver(acks) }
            // The next chain first: the ring thread submits it once this returns, and a
            // group's wake-ups (a futex wake each) are not on the device's path.
            submit(next)
            deliver(acks, aside: true)
        }
    }

    /// Runs `acks` in order: here, or (`aside`, for a group of several) on the log's
    /// acknowledging queue, so that the caller goes on at once. Acknowledgements only
    /// wake their writers: what they acknowledge is durable and visible already.
    func deliver(_ acks: [(Ack, Result<Void, KVError>)], aside: Bool = false) {
        if aside && acks.count >= LogWriter.acknowledgeAsideCount {
            acknowledging.async { for (ack, result) in acks { ack(result) } }
        } else {
            for (ack, result) in acks { ack(result) }
        }
    }

    /// Acknowledgements of one chain that go to the acknowledging queue, when its
    /// completer has the next chain to start (fewer cost less than the hand-off).
    static let acknowledgeAsideCount = 4

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
            let submitted = DispatchTime.now().uptimeNanoseconds
            do {
                result = .success(try storage.performBlocking(.commit(log.file, current.segments)))
            } catch {
                result = .failure(error as? PageStoreError ?? PageStoreError(kind: .io, operation: "commit", path: log.path, detail: "\(error)"))
            }
            let (completedNext, acks) = completed(current, result, submittedNanos: submitted)
            guard let next = completedNext else { return deliver(acks) }
            guard waiting() else {
                // The next chain to the ring thread first, then the wake-ups, here.
                submit(next)
                deliver(acks)
                return
            }
            deliver(acks, aside: true)
            current = next
        }
    }

    /// Retires completed chains in log order and returns the next chain that is due (for
    /// the caller to run) with the acknowledgements of the writes they made durable (for
    /// the caller to deliver, `deliver`: they are durable and visible already).
    /// `submittedNanos`: when the chain went to the storage (uptime), for the time chains
    /// take.
    func completed(_ chain: Chain, _ result: IOResult, submittedNanos: UInt64) -> (next: Chain?, acks: [(Ack, Result<Void, KVError>)]) {
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
                publish(waiter.lastSequence)
                acks.append((waiter.ack, .success(())))
            }
            if retiredZeroFill { state.space.zeroFillRetired() }
            guard state.failure == nil else { return nil }
            // A streaming record's sequence numbers are taken but not in the memtable yet:
            // they become visible when it is in.
            if state.commits.waiters.isEmpty && !state.streaming { publish(state.lastSequence) }
            state.pages.releaseWritten(durable: state.commits.durableBytes) { storage.allocator.free($0) }
            return startChainIfDue(&state)
        }
        if case .success(let bytes) = result {
            counters.logChains.add()
            counters.logBytes.add(bytes)
            counters.logChainMicros.add(Int((DispatchTime.now().uptimeNanoseconds - submittedNanos) / 1000))
        }
        feed?.signalIfFollowed()
        if closing { drained.signal() }
        if streaming { progress.signal() }
        return (next, acks)
    }
}
