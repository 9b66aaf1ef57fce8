import Dispatch
import PageStore

// A transaction's commit: its conflict checks, then its batch through the log. Two checks
// make it exact without holding the log's lock across a table read: the first looks at
// everything the database holds (tables may need reads from disk), the second, under the
// log's lock as the batch takes its sequence numbers, at the one memtable every write
// since the first check can be in (a write that went to another log turned the append
// away to a rotation, and the checks run again).

/// A key range a transaction's scan covered: `lower` included, `upper` excluded (nil:
/// unbounded).
struct KeyRange: Sendable {
    var lower: [UInt8]?
    var upper: [UInt8]?

    /// [lower, upper) (nil: unbounded).
    init(lower: [UInt8]?, upper: [UInt8]?) {
        self.lower = lower
        self.upper = upper
    }

    /// The range a scan with `options` walks (its start, end and prefix).
    init(_ options: ScanOptions) {
        lower = options.start
        upper = options.end
        if let prefix = options.prefix {
            if lower.map({ $0.lexicographicallyPrecedes(prefix) }) ?? true { lower = prefix }
            if let successor = Cursor.successor(of: prefix), upper.map({ successor.lexicographicallyPrecedes($0) }) ?? true {
                upper = successor
            }
        }
    }

    func contains(_ key: [UInt8]) -> Bool {
        if let lower, key.lexicographicallyPrecedes(lower) { return false }
        if let upper, !key.lexicographicallyPrecedes(upper) { return false }
        return true
    }
}

/// What a commit checks: sorted keys and ranges.
struct ConflictSet: Sendable {
    let keys: [[UInt8]]
    let ranges: [KeyRange]

    /// The first key in the set with a version newer than `snapshot` among `source`'s
    /// entries (every version of every key), or nil; throws the source's read error.
    func firstConflict(in source: any InternalIterator, since snapshot: UInt64) throws(KVError) -> [UInt8]? {
        for key in keys {
            key.withUnsafeBytes { source.seek($0, tag: UInt64.max) }
            if source.isValid && Tag.sequence(source.tag) > snapshot
                && key.withUnsafeBytes({ SkipList.compareKeys(source.key, $0) == 0 })
            {
                return key
            }
            if let error = source.error { throw error }
        }
        for range in ranges {
            if let lower = range.lower {
                lower.withUnsafeBytes { source.seek($0, tag: UInt64.max) }
            } else {
                source.seekToFirst()
            }
            while source.isValid {
                if let upper = range.upper, upper.withUnsafeBytes({ SkipList.compareKeys(source.key, $0) >= 0 }) { break }
                if Tag.sequence(source.tag) > snapshot { return Array(source.key) }
                source.next()
            }
            if let error = source.error { throw error }
        }
        return nil
    }

    /// The first key or range of the set that a range delete of `tombstones` newer than
    /// `snapshot` meets (its description), or nil.
    func firstConflict(in tombstones: RangeTombstones, since snapshot: UInt64) -> [UInt8]? {
        guard !tombstones.isEmpty else { return nil }
        for key in keys where key.withUnsafeBytes({ tombstones.cover($0, snapshot: .max).map { $0.fragment.sequences.first! > snapshot } ?? false }) {
            return key
        }
        for range in ranges where tombstones.anyNewer(than: snapshot, lower: range.lower, upper: range.upper) {
            return range.lower ?? []
        }
        return nil
    }

    func conflictError(_ key: [UInt8], snapshot: UInt64) -> KVError {
        KVError(.conflict, "transaction conflict: \(KeyText.describe(key)) was written after the transaction's snapshot (sequence \(snapshot)); nothing was applied")
    }
}

extension Database {
    /// Commits `tx`: nothing to do when it wrote nothing, else its batch, checked.
    func commitTransaction(_ tx: Transaction, durability: Durability?) throws(KVError) {
        guard let batch = tx.batch else { return }
        try commit(batch, checking: tx.conflictSet, since: tx.snapshot.sequence, durability: durability)
    }

    /// Writes `batch` atomically if no key or range of `conflicts` has a version newer
    /// than `snapshot`, else throws `.conflict` and writes nothing. Writes stopped by a full
    /// disk go on first if there is room again, as a plain write's would.
    func commit(_ batch: WriteBatch, checking conflicts: ConflictSet, since snapshot: UInt64, durability: Durability?) throws(KVError) {
        let durability = durability ?? options.defaultDurability
        let started = DispatchTime.now().uptimeNanoseconds
        do throws(KVError) {
            try validateForAsync(batch)
            do throws(KVError) {
                try checkAndAppend(batch, checking: conflicts, since: snapshot, durability: durability)
            } catch where error.isFull {
                guard try resumeAfterFullDisk() else { throw error }
                try checkAndAppend(batch, checking: conflicts, since: snapshot, durability: durability)
            }
        } catch {
            if error.code == .conflict { counters.transactionsConflicted.add() } else { counters.writeErrors.add() }
            throw error
        }
        counters.transactionsCommitted.add()
        countWrite(batch, durability: durability, startedNanos: started)
    }

    /// The two checks and the append, again from the first check after a rotation.
    private func checkAndAppend(_ batch: WriteBatch, checking conflicts: ConflictSet, since snapshot: UInt64, durability: Durability) throws(KVError) {
        try makeRoomForWrite()
        while true {
            let log = try writableLog()
            let view = currentView
            guard view.log === log else { continue }
            let sources = view.makeIterator(fillCache: true)
            let conflict = try conflicts.firstConflict(in: sources, since: snapshot)
            view.park(sources)
            if let key = conflict { throw conflicts.conflictError(key, snapshot: snapshot) }
            // A range delete after the snapshot that meets what the transaction read or wrote.
            for source in [view.version.rangeDeletes] + view.immutables.map(\.memtable.rangeDeletes) {
                if let key = conflicts.firstConflict(in: source, since: snapshot) { throw conflicts.conflictError(key, snapshot: snapshot) }
            }
            betweenConflictChecks.withLock { $0 }?()
            let done = CommitWaiter()
            var batch = batch
            let appended = log.append(
                &batch, durability: durability, lead: durability == .sync,
                precondition: { memtable, _ in
                    do throws(KVError) {
                        if let key = conflicts.firstConflict(in: memtable.rangeDeletes, since: snapshot) {
                            return conflicts.conflictError(key, snapshot: snapshot)
                        }
                        guard let key = try conflicts.firstConflict(in: memtable.makeIterator(), since: snapshot) else { return nil }
                        return conflicts.conflictError(key, snapshot: snapshot)
                    } catch {
                        return error
                    }
                }, ack: { done.fulfil($0) })
            if case .rotate = appended {
                try rotate(from: log)
                continue
            }
            try settle(appended, on: log, done)
            return
        }
    }
}
