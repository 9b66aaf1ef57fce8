import PageStore

// A record too long to cut into pages whole streams into the log a few blocks at a time.

extension LogWriter {
    /// Records longer than this are streamed: cut into pages a few blocks at a time and
    /// written as they are cut, instead of cut whole into pages first (see `stream`).
    static let streamThresholdBytes = 2 << 20
    /// Most blocks the log holds while a record streams (8 MiB): what is being written and
    /// what is being filled. A record of any length then needs no more of the page arena.
    static let streamMaxBlocks = 32

    /// Appends a long record (sealed, its sequence numbers taken, `streaming` set) a few
    /// blocks at a time: cuts what the blocks in hand hold, hands the whole pages to
    /// chains, and waits for room (at most `streamMaxBlocks` held) before taking more
    /// blocks. Once the last fragment is cut the record goes into the memtable and is
    /// acknowledged as any other.
    ///
    /// A crash in between leaves a record with no last fragment at the tail, which
    /// recovery drops as a torn tail (it was never acknowledged). A failed chain ends the
    /// stream with the log's failure: no later record follows the unfinished one.
    func stream(_ batch: WriteBatch, lastSequence: UInt64, durability: Durability, lead: Bool, ack: @escaping Ack) -> Appended {
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
                    let immediate = acknowledgeOrQueue(through: lastSequence, durability: durability, ack: ack, &state)
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
                    return handOver(chain, acknowledged: immediate, lead: lead)
                }
            }
        }
    }
}
