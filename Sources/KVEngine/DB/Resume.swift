import Dispatch
import PageStore

extension Database {
    /// Shortest time between two attempts to resume writes on a full disk: a write that
    /// fails on a full disk does not try again at once (each try may write part of a
    /// table before the disk refuses it).
    static let resumeIntervalNanos: UInt64 = 100_000_000

    /// The full-disk failure that stopped writes, if that is what stopped them and
    /// nothing else is broken (after any other failure of a manifest or a log, only a
    /// reopen knows what is on disk).
    var fullDiskStop: KVError? {
        guard let log = currentView.log else { return nil }
        if let failure = versions.failure, !failure.isFull { return nil }
        let logFailure = log.failure
        // A log closed whole (retired by a rotation or an ingest) is no failure of its own.
        if let logFailure, !logFailure.isFull && logFailure.code != .closed { return nil }
        if let error = backgroundError.withLock({ $0 }) { return error.isFull ? error : nil }
        if let logFailure, logFailure.isFull { return logFailure }
        return nil
    }

    /// Whether writes go on (nothing has stopped them).
    private var writesGoOn: Bool {
        backgroundError.withLock { $0 == nil } && versions.failure == nil && currentView.log.map { $0.failure == nil } ?? false
    }

    /// Starts writes again after a full disk stopped them, now rather than at the next
    /// write (which tries by itself, at most every 0.1 s). Returns false when writes were
    /// not stopped by a full disk (a stop for any other reason lasts until a reopen); throws
    /// `.full` when there is still no room.
    @discardableResult
    public func resumeWrites() throws(KVError) -> Bool {
        try checkOpen()
        if fullDiskStop == nil { return false }
        return try resumeAfterFullDisk(now: true)
    }

    /// After writes stopped on a full disk (a log chain, a log's creation, a flush or a
    /// compaction or a manifest found no room), starts them again if there is room now,
    /// and says whether it did (RocksDB's automatic recovery from `NoSpace`). Tried by the
    /// writes after the one that met the full disk, at most every ``resumeIntervalNanos``
    /// (`now`: at once). True also when writes go on already (another writer resumed
    /// them), so that the caller tries its write again.
    ///
    /// The stopped log is closed at its durable end, and a memtable of exactly the
    /// acknowledged writes (the stopped memtable less the entries of writes that failed)
    /// is flushed, with the frozen memtables, before the next log starts after them: the
    /// stopped log is then in tables and obsolete, so nothing a failed chain left in it
    /// can be replayed, and the next log's records follow the tables' last sequence.
    func resumeAfterFullDisk(now: Bool = false) throws(KVError) -> Bool {
        guard fullDiskStop != nil else { return writesGoOn }
        return try rotation.withLock { (_: inout Void) throws(KVError) -> Bool in
            try checkOpen()
            guard let stopped = fullDiskStop, let old = currentView.log else { return writesGoOn }
            // The write that meets the full disk fails with it; a later one tries again.
            let time = DispatchTime.now().uptimeNanoseconds
            let due = resumeAttempt.withLock { last -> Bool in
                defer { if now || last == 0 || time - last >= Database.resumeIntervalNanos { last = time } }
                return now || last != 0 && time - last >= Database.resumeIntervalNanos
            }
            guard due else { throw stopped }
            // A manifest that found no room first: a new one, of the state in memory.
            try versions.restartAfterFullDisk()
            // A log that still takes writes (a flush stopped them) makes its buffered writes
            // durable if it can; then chains in flight land and the file is cut at its
            // durable end.
            // Anything but a full disk here (an I/O error) stops writes until a reopen.
            if old.failure == nil {
                old.seal()
                do throws(KVError) {
                    try makeDurable(old)
                } catch where error.isFull {
                    // Its buffered writes go into a table below instead.
                } catch {
                    fail(error, while: "resuming writes")
                    throw error
                }
            }
            try close(old)
            let closedAt = DispatchTime.now().uptimeNanoseconds
            logsClosedAt.withLock { $0[old.number] = closedAt }
            // What readers may have seen: the log's acknowledged writes, or what an ingest
            // put in tables after the log was retired.
            let acknowledged = max(old.visibleSequence.load(ordering: .acquiring), versions.lastSequence)
            let number: UInt64
            if currentView.memtable.count == 0, let newest = currentView.immutables.first, newest.lastSequence == acknowledged,
                newest.nextLogNumber > old.number
            {
                number = newest.nextLogNumber  // frozen by an earlier attempt
            } else {
                let kept = Memtable()
                let walk = currentView.memtable.makeIterator()
                walk.seekToFirst()
                while walk.isValid {
                    if Tag.sequence(walk.tag) <= acknowledged {
                        kept.add(
                            sequence: Tag.sequence(walk.tag), type: Tag.type(walk.tag) ?? .delete,
                            key: walk.key, value: walk.value)
                    }
                    walk.next()
                }
                // The range deletes too: they are not in the skip list.
                for tombstone in currentView.memtable.rangeDeleteList where tombstone.sequence <= acknowledged {
                    tombstone.start.withUnsafeBytes { start in
                        tombstone.end.withUnsafeBytes { end in kept.add(sequence: tombstone.sequence, type: .rangeDelete, key: start, value: end) }
                    }
                }
                number = versions.newFileNumber()
                // Frozen even when empty: its flush records the next log as the first needed.
                let frozen = FrozenMemtable(memtable: kept, nextLogNumber: number, lastSequence: acknowledged)
                view.withLock { $0 = $0.with(memtable: Memtable(), immutables: [frozen] + $0.immutables) }
            }
            hasBackgroundError.store(false, ordering: .releasing)
            backgroundError.withLock { $0 = nil }
            do throws(KVError) {
                try waitForFlushes()
                try startLog(number, lastSequence: acknowledged, freezing: nil)
            } catch {
                // Still no room: the flush or the log's creation has stopped writes again.
                fail(error, while: "resuming writes")
                throw error
            }
            resumeAttempt.withLock { $0 = 0 }
            engineLogger.info("\(path): writes resumed after a full disk, from sequence \(acknowledged)")
            backgroundThreads?.wakeCompaction()
            return true
        }
    }
}
