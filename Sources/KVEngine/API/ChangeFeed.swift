import Atomics
import Dispatch
import Foundation
import PageStore
import Synchronization

/// One committed batch, as the change feed delivers it.
public struct ChangeBatch: Sendable {
    /// The sequence number of the batch's first entry (its entries take the numbers from
    /// here, in order).
    public let firstSequence: UInt64
    /// The entries, as the leader committed them.
    public let batch: WriteBatch

    /// The sequence number of the batch's last entry: once it is applied, a database is
    /// through this sequence (what `write` returned to the leader).
    public var sequence: UInt64 { firstSequence + UInt64(max(batch.count, 1)) - 1 }
}

/// The committed batches of a database in sequence order, read from its logs: those
/// retained (``Options/logRetention``) and the live one, then, when following, each new
/// commit as it becomes durable. From ``Database/changes(since:follow:)``.
///
/// The feed carries durable commits: a `.buffered` write appears once its log chain has
/// landed (within ``Options/bufferedFlushIntervalMs``), never before, so a follower never
/// holds a write the leader could lose in a crash. Iterate with `for try await` (an
/// `AsyncSequence`) or call ``next()`` from a thread that may block. While a feed exists it
/// keeps the logs it has yet to read from removal; ``cancel()`` (or letting go of it)
/// releases them and ends a wait.
public final class ChangeFeed: AsyncSequence, Sendable {
    public typealias Element = ChangeBatch

    let db: Database
    let follow: Bool
    private let state: Mutex<State>
    private let cancelled = ManagedAtomic<Bool>(false)

    private struct State: ~Copyable {
        /// The last sequence number delivered (or asked to start after).
        var position: UInt64
        /// The log being read, and the offset of the last record taken from it (0: none yet).
        var log: UInt64?
        var offset: Int64 = 0
        var pending: [ChangeBatch] = []
        var pendingIndex = 0
    }

    init(db: Database, since sequence: UInt64, follow: Bool) {
        self.db = db
        self.follow = follow
        state = Mutex(State(position: sequence))
        if follow { db.feedSignal.followers.wrappingIncrement(ordering: .relaxed) }
    }

    deinit {
        releasePin()
        if follow { db.feedSignal.followers.wrappingDecrement(ordering: .relaxed) }
    }

    /// Whether ``cancel()`` has ended the feed.
    public var isCancelled: Bool { cancelled.load(ordering: .acquiring) }

    /// Ends the feed: a ``next()`` waiting for a commit returns nil, and so does every
    /// later call; the logs it kept may go.
    public func cancel() {
        cancelled.store(true, ordering: .releasing)
        db.feedSignal.signal()
        releasePin()
    }

    /// The next committed batch, blocking until one is durable when following; nil at the
    /// end (not following: nothing more now; following: cancelled, or the database closed).
    /// Throws `.notRetained` when the changes after the position are no longer in a log.
    public func next() throws(KVError) -> ChangeBatch? {
        while !cancelled.load(ordering: .acquiring) {
            if let batch = state.withLock({ state -> ChangeBatch? in
                guard state.pendingIndex < state.pending.count else { return nil }
                defer { state.pendingIndex += 1 }
                return state.pending[state.pendingIndex]
            }) {
                return batch
            }
            if db.closed.load(ordering: .acquiring) { return nil }
            let seen = db.feedSignal.generation
            do throws(KVError) {
                if try readMore() { continue }
            } catch {
                // A read the close cut short ends the feed as the close does.
                if db.closed.load(ordering: .acquiring) { return nil }
                throw error
            }
            guard follow else { return nil }
            db.storage.willWait()
            db.feedSignal.wait(past: seen, timeoutMs: 100)
        }
        return nil
    }

    /// The feed as an `AsyncSequence`: each step runs ``next()`` on a thread of its own
    /// pool (a follower waits there for commits, off Swift's cooperative pool).
    public struct Iterator: AsyncIteratorProtocol {
        let feed: ChangeFeed

        /// The next batch; cancelling the task cancels the feed (see ``ChangeFeed/cancel()``).
        public mutating func next() async throws -> ChangeBatch? {
            let feed = feed
            return try await withTaskCancellationHandler {
                try await ChangeFeed.waiters.run { () throws(KVError) -> ChangeBatch? in try feed.next() }
            } onCancel: {
                feed.cancel()
            }
        }
    }

    public func makeAsyncIterator() -> Iterator { Iterator(feed: self) }

    /// Where async feeds wait: apart from the database's pools, which a follower waiting
    /// for commits would hold. At most 64 wait at once in a process; more queue.
    static let waiters = BlockingPool(name: "KVEngine.change-feeds", limit: 64)

    /// Finds (and pins) where the feed starts, or says the changes are gone: at
    /// `changes(since:)`, so that its logs are kept from then on.
    func prepare() throws(KVError) {
        try state.withLock { (state: inout State) throws(KVError) in try start(&state) }
    }

    /// Whether the feed may read log `number`: a log kept after its flush, or one the
    /// manifest records (a read-only handle's directory may hold one that is neither,
    /// which its open ignored: see `Recovery`).
    private func readable(_ number: UInt64) -> Bool {
        let versions = db.versions
        return number < versions.logNumber || !versions.tracksLogs || versions.liveLogs.contains(number)
            || number == db.currentView.log?.number
    }

    // MARK: reading the logs

    /// Reads what the logs hold after the position into `pending`; false when there is
    /// nothing more yet.
    private func readMore() throws(KVError) -> Bool {
        try state.withLock { (state: inout State) throws(KVError) -> Bool in
            // Another caller read more meanwhile: that first. Cancelled: nothing is pinned again.
            if state.pendingIndex < state.pending.count { return true }
            if cancelled.load(ordering: .acquiring) { return false }
            state.pending.removeAll(keepingCapacity: true)
            state.pendingIndex = 0
            if state.log == nil { try start(&state) }
            guard let number = state.log else { return false }
            // Whether the log is closed is read before it is: a log that closes after this
            // is read to its durable end now and to its end the next time.
            let live = db.currentView.log
            let closed = live.map { $0.number != number } ?? true
            let limit = closed ? nil : live?.durableBytes
            let path = db.path + "/" + FileNames.log(number)
            let reader = LogReader(storage: db.storage, path: path, number: number)
            var position = state.position
            let after = state.offset
            var batches: [ChangeBatch] = []
            var lastOffset = after
            var gap: (expected: UInt64, found: UInt64)? = nil
            let result = try reader.replay(from: after, limit: limit) { record, offset in
                guard after == 0 || offset > after, gap == nil, record.count >= WriteBatch.headerBytes else { return nil }
                let first = Coding.fixed64(record, at: 0)
                let count = UInt64(Coding.fixed32(record, at: 8))
                guard count > 0, first &+ count &- 1 > position else {
                    lastOffset = offset
                    return nil
                }
                guard first <= position + 1 else {
                    gap = (position + 1, first)
                    return nil
                }
                batches.append(ChangeBatch(firstSequence: first, batch: WriteBatch(record: record)))
                position = first + count - 1
                lastOffset = offset
                return nil
            }
            if case .corruption(let offset, let reason) = result.end {
                throw KVError(.corruption, "change feed: log \(path) is corrupt at offset \(offset): \(reason)", path: path, offsetBytes: offset)
            }
            state.offset = lastOffset
            // The live log starts after the position: what lies between went into tables
            // with no log record (nothing of it can come from this log).
            if gap == nil, batches.isEmpty, let live, live.number == number, live.baseSequence > state.position {
                gap = (state.position + 1, live.baseSequence + 1)
            }
            // The batches before a gap go out first; the next call meets the gap again.
            if let gap, batches.isEmpty {
                throw KVError(
                    .notRetained,
                    "change feed: sequence numbers \(gap.expected)...\(gap.found - 1) are in no log (an ingest adds its entries as tables, and so does a resume after a full disk for writes that were not yet durable); follow on from a checkpoint taken after sequence \(gap.found - 1)",
                    path: path)
            }
            if !batches.isEmpty {
                state.pending = batches
                state.position = position
                return true
            }
            guard closed else { return false }
            // This log is read to its end: on to the next one, if there is one.
            let names = try io("list \(db.path)") { try db.storage.contentsOfDirectory(atPath: db.path) }
            guard let next = names.compactMap(FileNames.logNumber).filter({ $0 > number && readable($0) }).min() else { return false }
            try move(&state, to: next)
            return true
        }
    }

    /// Chooses the log the changes after the position are in, or says they are gone.
    private func start(_ state: inout State) throws(KVError) {
        let names = try io("list \(db.path)") { try db.storage.contentsOfDirectory(atPath: db.path) }
        let logs = names.compactMap(FileNames.logNumber).filter(readable).sorted()
        var chosen: UInt64? = nil
        var oldest: UInt64? = nil
        for number in logs {
            let reader = LogReader(storage: db.storage, path: db.path + "/" + FileNames.log(number), number: number)
            guard let first = try? reader.firstSequence() else { continue }
            oldest = oldest ?? first
            if first <= state.position + 1 { chosen = number } else { break }
        }
        let live = db.currentView.log
        if chosen == nil, let oldest, oldest > state.position + 1 {
            throw notRetained(after: state.position, oldest: oldest)
        }
        if chosen == nil {
            // No log holds a record: the changes start in the live log, if nothing was
            // lost before it.
            let base = live?.baseSequence ?? db.currentView.visibleSequence
            guard state.position >= base else { throw notRetained(after: state.position, oldest: base + 1) }
            chosen = live?.number
        }
        guard let chosen else { return }
        try move(&state, to: chosen)
    }

    private func notRetained(after position: UInt64, oldest: UInt64) -> KVError {
        KVError(
            .notRetained,
            "change feed: changes after sequence \(position) are no longer kept; the oldest retained change is sequence \(oldest) (changes(since: \(oldest - 1))), and Options.logRetention keeps logs longer; a follower starts again from a checkpoint",
            path: db.path)
    }

    /// Starts reading log `number`, pinning it (and the logs after it) against removal.
    private func move(_ state: inout State, to number: UInt64) throws(KVError) {
        let pinned = db.logPins.withLock { pins -> Bool in
            guard db.storage.fileExists(atPath: db.path + "/" + FileNames.log(number)) else { return false }
            pins[number, default: 0] += 1
            return true
        }
        let previous = state.log
        if pinned {
            state.log = number
            state.offset = 0
        }
        if let previous { db.releaseLogs(previous) }
        if !pinned {
            state.log = nil
            throw KVError(
                .notRetained,
                "change feed: log \(FileNames.log(number)), which holds the changes after sequence \(state.position), was removed (its writes are in tables; Options.logRetention keeps logs longer); a follower starts again from a checkpoint",
                path: db.path + "/" + FileNames.log(number))
        }
    }

    private func releasePin() {
        let pinned = state.withLock { state -> UInt64? in
            defer { state.log = nil }
            return state.log
        }
        if let pinned { db.releaseLogs(pinned) }
    }
}

/// What change feeds that follow new commits wait on.
final class FeedSignal: Sendable {
    /// Feeds that wait for commits: while there are none, chains do not signal.
    let followers = ManagedAtomic<Int>(0)
    private let change = ChangeSignal()

    var generation: UInt64 { change.generation }
    func signal() { change.signal() }
    func signalIfFollowed() { if followers.load(ordering: .relaxed) > 0 { change.signal() } }
    func wait(past seen: UInt64, timeoutMs: Int) { change.wait(past: seen, timeoutMs: timeoutMs) }
}

extension Database {
    /// The committed batches after `sequence`, in sequence order, as a ``ChangeFeed``:
    /// from the logs the database still has, then (`follow`, the default) each new commit
    /// as it becomes durable, until the feed is cancelled or the database closes.
    ///
    /// `sequence` is one a commit, a snapshot or a checkpoint returned (the feed starts with
    /// the batch after it): 0 for everything since the database was created, if its logs
    /// are all retained. Changes no log holds any more (see ``Options/logRetention``) are
    /// refused here with `.notRetained`, naming the oldest one kept; from this call on, the
    /// logs the feed has yet to read are kept. A feed that reaches the entries of an ingest
    /// (which go into tables without a log record) ends with `.notRetained` there, after
    /// the batches before them.
    public func changes(since sequence: UInt64, follow: Bool = true) throws(KVError) -> ChangeFeed {
        try checkOpen()
        let feed = ChangeFeed(db: self, since: sequence, follow: follow)
        try feed.prepare()
        return feed
    }

    /// Applies a batch of a leader's change feed to this database, a follower: `sequence`
    /// is the batch's first sequence number (``ChangeBatch/firstSequence``), which must
    /// follow this database's last one, so the follower stays equal to the leader at each
    /// sequence. Refused with `.invalidArgument` (and nothing written) otherwise. Returns the
    /// batch's last sequence number. A follower takes no other writes; it starts empty
    /// (following from 0) or as a checkpoint of the leader (from the checkpoint's sequence).
    @discardableResult
    public func apply(_ batch: WriteBatch, sequence: UInt64, durability: Durability? = nil) throws(KVError) -> UInt64 {
        try write(batch, durability: durability) { _, last in
            guard last &+ 1 == sequence else {
                return KVError(
                    .invalidArgument,
                    "apply: the batch starts at sequence \(sequence), and this database is through \(last) (a follower applies the leader's batches in order, each right after the last)")
            }
            return nil
        }
    }

    /// `apply(_:sequence:durability:)` of a change feed's batch.
    @discardableResult
    public func apply(_ change: ChangeBatch, durability: Durability? = nil) throws(KVError) -> UInt64 {
        try apply(change.batch, sequence: change.firstSequence, durability: durability)
    }

    /// `apply(_:durability:)`, suspending while it runs on one of the database's threads.
    @discardableResult
    public func apply(_ change: ChangeBatch, durability: Durability? = nil) async throws(KVError) -> UInt64 {
        try await blocking.run { () throws(KVError) -> UInt64 in try self.apply(change, durability: durability) }
    }
}
