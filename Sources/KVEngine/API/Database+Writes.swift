import Atomics
import Dispatch
import Foundation
import PageStore
import Synchronization

// Writes: the sync and async entry points share the log's append (`LogWriter.Appended`)
// and differ only in how they wait for it (`settle`).

extension Database {
    /// Stores `value` under `key`; returns the write's sequence number.
    @discardableResult
    public func put(_ key: [UInt8], _ value: [UInt8], durability: Durability? = nil) throws(KVError) -> UInt64 {
        var batch = WriteBatch(reservingFor: key.count, value.count)
        batch.put(key, value)
        return try write(consume batch, durability: durability, precondition: nil)
    }

    /// Removes `key` (a no-op when it is absent); returns the write's sequence number.
    @discardableResult
    public func delete(_ key: [UInt8], durability: Durability? = nil) throws(KVError) -> UInt64 {
        var batch = WriteBatch(reservingFor: key.count, 0)
        batch.delete(key)
        return try write(consume batch, durability: durability, precondition: nil)
    }

    /// Deletes every key in [start, end) with one write, whatever the range holds (RocksDB's
    /// `DeleteRange`): a range delete that gets, scans (both ways), batched gets and
    /// snapshots taken after it honour, and that compaction applies to the tables it
    /// rewrites, dropping it once no table holds what it covers (`compactRange(start:end:)`
    /// reclaims the space at once). Returns its sequence number. Refused with
    /// `.invalidArgument` unless `start` is below `end`.
    @discardableResult
    public func deleteRange(_ start: [UInt8], _ end: [UInt8], durability: Durability? = nil) throws(KVError) -> UInt64 {
        var batch = WriteBatch()
        batch.deleteRange(start, end)
        return try write(consume batch, durability: durability, precondition: nil)
    }

    /// `deleteRange(_:_:durability:)`, suspending until it is acknowledged.
    @discardableResult
    public func deleteRange(_ start: [UInt8], _ end: [UInt8], durability: Durability? = nil) async throws(KVError) -> UInt64 {
        var batch = WriteBatch()
        batch.deleteRange(start, end)
        return try await write(batch, durability: durability)
    }

    /// Applies every entry of `batch` atomically; returns the sequence number of its last
    /// entry (the entries take the numbers up to it, in order): the database is through
    /// that sequence once the write returns, as snapshots, checkpoints and the change feed
    /// count it.
    ///
    /// When level 0 or the compaction backlog runs too far ahead, the write is first
    /// slowed (a millisecond) or held until background work catches up.
    @discardableResult
    public func write(_ batch: consuming WriteBatch, durability: Durability? = nil) throws(KVError) -> UInt64 {
        try write(batch, durability: durability, precondition: nil)
    }

    /// `write`, with a check under the log's lock before the batch takes its numbers.
    func write(_ batch: consuming WriteBatch, durability: Durability?, precondition: ((Memtable, UInt64) -> KVError?)?) throws(KVError) -> UInt64 {
        let durability = durability ?? options.defaultDurability
        let started = DispatchTime.now().uptimeNanoseconds
        let sequence: UInt64
        do throws(KVError) {
            try validateForAsync(batch)
            do throws(KVError) {
                sequence = try commit(&batch, durability: durability, precondition: precondition)
            } catch where error.isFull {
                // Writes stopped on a full disk: go on if there is room again.
                guard try resumeAfterFullDisk() else { throw error }
                sequence = try commit(&batch, durability: durability, precondition: precondition)
            }
        } catch {
            counters.writeErrors.add()
            throw error
        }
        countWrite(batch, durability: durability, startedNanos: started)
        return sequence
    }

    /// Appends `batch` and waits until it is acknowledged; returns its last sequence number.
    private func commit(_ batch: inout WriteBatch, durability: Durability, precondition: ((Memtable, UInt64) -> KVError?)?) throws(KVError) -> UInt64 {
        try makeRoomForWrite()
        while true {
            let log = try writableLog()
            let done = CommitWaiter()
            // A sync writer may block anyway: it runs its commit chain on its own thread.
            let appended = log.append(
                &batch, durability: durability, lead: durability == .sync, precondition: precondition,
                assigned: { done.assign($0) }
            ) { done.fulfil($0) }
            if case .rotate = appended {
                try rotate(from: log)
                continue
            }
            try settle(appended, on: log, done)
            return done.sequence
        }
    }

    /// Blocks until what `appended` says the log took is acknowledged, first running on
    /// this thread the chain it handed back.
    func settle(_ appended: LogWriter.Appended, on log: LogWriter, _ done: CommitWaiter) throws(KVError) {
        guard case .waiting(let chain) = appended else { return }
        if let chain { log.lead(chain, while: { !done.isFulfilled }) }
        storage.willWait()
        try done.wait().get()
    }

    /// Counts an acknowledged write in the metrics.
    func countWrite(_ batch: WriteBatch, durability: Durability, startedNanos: UInt64) {
        if durability == .sync {
            counters.syncWrites.add()
            counters.commitDuration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - startedNanos))
        } else {
            counters.bufferedWrites.add()
        }
        counters.writeEntries.add(batch.count)
        counters.userBytes.add(batch.encodedBytes)
    }

    /// Makes every write acknowledged so far durable (writes and syncs the log's pending
    /// pages), for callers that wrote `.buffered` and now need a durability point.
    public func sync() throws(KVError) {
        try checkOpen()
        guard let log = currentView.log else { return }
        try makeDurable(log)
    }

    /// Makes every write appended to `log` durable, running the chain on this thread.
    func makeDurable(_ log: LogWriter) throws(KVError) {
        let done = CommitWaiter()
        try settle(log.sync(lead: true) { done.fulfil($0) }, on: log, done)
    }

    /// The log that takes writes now, or why there is none.
    func writableLog() throws(KVError) -> LogWriter {
        guard let log = currentView.log else {
            if let fullAtOpen {
                throw KVError(
                    .full, "database at \(path) was opened without room to write, so read-only (\(fullAtOpen.message)); reopen once there is room",
                    path: fullAtOpen.path)
            }
            throw KVError(
                .readOnly,
                options.readOnly
                    ? "database at \(path) is open read-only (Options.readOnly)"
                    : "database at \(path) was opened read-only after damage (Options.onLogCorruption = .openReadOnly)",
                path: path)
        }
        if hasBackgroundError.load(ordering: .acquiring), let error = backgroundError.withLock({ $0 }) { throw error }
        return log
    }

    /// Checks the handle is open and the batch within limits.
    func validateForAsync(_ batch: WriteBatch) throws(KVError) {
        try checkOpen()
        if let problem = batch.oversize { throw KVError(.invalidArgument, "write rejected: \(problem)") }
        if batch.count == 0 { throw KVError(.invalidArgument, "write rejected: the batch is empty") }
    }

    // MARK: async

    /// Applies `batch` atomically, suspending until it is acknowledged at `durability`;
    /// returns the sequence number of its last entry. Work that blocks (a memtable
    /// rotation, a write stall) runs off Swift's cooperative pool.
    @discardableResult
    public func write(_ batch: WriteBatch, durability: Durability? = nil) async throws(KVError) -> UInt64 {
        let durability = durability ?? options.defaultDurability
        let started = DispatchTime.now().uptimeNanoseconds
        let sequence: UInt64
        do throws(KVError) {
            try validateForAsync(batch)
            do throws(KVError) {
                sequence = try await commit(batch, durability: durability)
            } catch where error.isFull {
                // Writes stopped on a full disk: go on if there is room again.
                guard try await blocking.run({ () throws(KVError) in try self.resumeAfterFullDisk() }) else { throw error }
                sequence = try await commit(batch, durability: durability)
            }
        } catch {
            counters.writeErrors.add()
            throw error
        }
        countWrite(batch, durability: durability, startedNanos: started)
        return sequence
    }

    /// Appends `batch` and suspends until it is acknowledged; returns its last sequence number.
    private func commit(_ batch: WriteBatch, durability: Durability) async throws(KVError) -> UInt64 {
        // A long record streams into the log, waiting for the page arena as it goes, and
        // other writes wait for it: off the cooperative pool. (A stream that starts between
        // this check and the append still holds this thread until it is in.)
        if batch.encodedBytes > LogWriter.streamThresholdBytes || currentView.log?.isStreaming == true {
            return try await blocking.run { () throws(KVError) -> UInt64 in
                var batch = batch
                return try self.commit(&batch, durability: durability, precondition: nil)
            }
        }
        if mayNeedRoom { try await blocking.run { () throws(KVError) in try self.makeRoomForWrite() } }
        let assigned = ManagedAtomic<UInt64>(0)
        var batch = batch
        while true {
            let log = try writableLog()
            let rotate = try await settle { ack in
                log.append(&batch, durability: durability, lead: false, assigned: { assigned.store($0, ordering: .relaxed) }, ack: ack)
            }
            guard rotate else { return assigned.load(ordering: .relaxed) }
            try await blocking.run { () throws(KVError) in try self.rotate(from: log) }
        }
    }

    /// Suspends until what `take` hands the log (an append or a sync, which runs the
    /// acknowledgement it is given) is acknowledged. True: nothing was taken, the log
    /// wants a rotation.
    private func settle(_ take: (@escaping LogWriter.Ack) -> LogWriter.Appended) async throws(KVError) -> Bool {
        let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Void, KVError>?, Never>) in
            switch take({ continuation.resume(returning: $0) }) {
            case .rotate: continuation.resume(returning: nil)
            case .acknowledged: continuation.resume(returning: .success(()))
            case .waiting: break
            }
        }
        guard let outcome else { return true }
        try outcome.get()
        return false
    }

    /// Whether a write may have to wait for background work (a cheap check).
    private var mayNeedRoom: Bool {
        let version = currentView.version
        return version.levels[0].count >= options.level0SlowdownTrigger
            || picker.pendingBytes(version) >= options.pendingCompactionSlowdownBytes
    }

    /// Makes every acknowledged write durable, suspending until it is.
    public func sync() async throws(KVError) {
        try checkOpen()
        guard let log = currentView.log else { return }
        _ = try await settle { ack in log.sync(lead: false, ack: ack) }
    }
}
