import Foundation

/// How ``Database/transaction(_:_:)`` runs a transaction.
public struct TransactionOptions: Sendable {
    /// Times the body runs before a conflict is given up on with ``KVError/Code/conflict``
    /// (below 1 counts as 1). Between attempts the transaction waits a short random time, growing
    /// with each attempt (up to 10 ms), so that contenders do not collide again at once.
    public var maxAttempts: Int
    /// Durability of the commit (nil: ``Options/defaultDurability``).
    public var durability: Durability?

    /// Up to `maxAttempts` runs (32 by default), committing at `durability`.
    public init(maxAttempts: Int = 32, durability: Durability? = nil) {
        self.maxAttempts = maxAttempts
        self.durability = durability
    }
}

/// A read-modify-write unit: reads see one snapshot plus the transaction's own writes, and
/// the writes commit as one atomic batch, only if nothing the transaction read or wrote
/// changed since its snapshot.
///
/// Made by ``Database/transaction(_:_:)``, which runs the body, commits, and on a conflict
/// runs the body again on a fresh snapshot:
///
///     try db.transaction { tx in
///         let count = try tx.get("visits", as: String.self).flatMap { Int($0) } ?? 0
///         try tx.put("visits", String(count + 1))
///     }
///
/// **Isolation.** The commit checks every key the transaction read (a `get`, found or not),
/// every key it wrote, and every key range its scans covered (up to where each stopped),
/// against the writes committed after its snapshot by anyone (other transactions and
/// plain `put`/`delete`/`write` calls alike); any such write is a conflict and nothing of
/// the transaction is applied. Checking reads and scanned ranges, not only writes, makes
/// the result serializable: there is no write skew, on keys or on ranges (a key inserted
/// into a range a transaction scanned is a conflict). A transaction that writes nothing
/// commits without a check (it read one consistent snapshot).
///
/// A transaction is valid only inside the body it was given to; it is not thread-safe.
public final class Transaction {
    /// Hands the transaction to a read thread while its caller awaits the result (one
    /// thread touches it at a time).
    private struct UnsafeTransfer: @unchecked Sendable {
        let value: Transaction
        init(_ value: Transaction) { self.value = value }
    }

    let database: Database
    /// The snapshot every read sees (held, so compaction keeps what it needs, until the
    /// attempt ends).
    let snapshot: Snapshot
    /// The sequence number of the snapshot every read sees.
    public var snapshotSequence: UInt64 { snapshot.sequence }
    /// The writes so far, by key: a value, or nil for a delete.
    private(set) var writes: [[UInt8]: [UInt8]?] = [:]
    /// Range deletes so far, [start, end), in order: each hides the stored keys in its
    /// range (it removed the transaction's own earlier writes there when it was made).
    private(set) var rangeDeletes: [(start: [UInt8], end: [UInt8])] = []
    /// Keys read from the database (not from `writes`).
    private(set) var readKeys: Set<[UInt8]> = []
    /// Ranges scans covered.
    private(set) var readRanges: [KeyRange] = []
    /// False once the body has returned: a transaction kept past its body refuses calls.
    var active = true

    init(database: Database, snapshot: Snapshot) {
        self.database = database
        self.snapshot = snapshot
    }

    private func checkActive() throws(KVError) {
        guard active else {
            throw KVError(.invalidArgument, "the transaction was used after its body returned (keep it inside the closure)")
        }
    }

    // MARK: reads

    /// The value under `key` as this transaction sees it: its own write, else the
    /// snapshot's value.
    public func get(_ key: some KVBytes) throws(KVError) -> [UInt8]? {
        let key = key.kvArray
        try checkActive()
        if let written = writes[key] { return written }
        if deletedByOwnRange(key) { return nil }
        readKeys.insert(key)
        return try database.get(key, snapshot: snapshot)
    }

    private func deletedByOwnRange(_ key: [UInt8]) -> Bool {
        rangeDeletes.contains { !key.lexicographicallyPrecedes($0.start) && key.lexicographicallyPrecedes($0.end) }
    }

    /// The UTF-8 string under `key`, or nil (``KVError/Code/decoding`` when not UTF-8).
    public func get(_ key: String) throws(KVError) -> String? {
        try get(key, as: String.self)
    }

    /// The value under `key` as a `type` (`Data`, `String`, `[UInt8]`), or nil.
    public func get<V: KVValue>(_ key: some KVBytes, as type: V.Type) throws(KVError) -> V? {
        try database.decodeValue(get(key), as: type)
    }

    /// The value under `key` decoded by `decoder` (JSON by default), or nil.
    public func get<T: Decodable>(
        _ key: some KVBytes, decoding type: T.Type, using decoder: some KVValueDecoder = JSONDecoder()
    ) throws(KVError) -> T? {
        let key = key.kvArray
        guard let bytes = try get(key) else { return nil }
        return try ValueCoding.decode(type, from: bytes, key: key, using: decoder)
    }

    /// The entries of `options`' range as this transaction sees them (the snapshot merged
    /// with its own writes), in order, up to `options.limit`. The range they cover joins
    /// what the commit checks: up to the last entry returned when the limit stopped it,
    /// else the whole range.
    public func scan(_ options: ScanOptions = ScanOptions()) throws(KVError) -> [Cursor.Element] {
        try checkActive()
        return record(try merged(options), options: options)
    }

    /// The snapshot's entries of `options`' range merged with this transaction's writes
    /// there, cut at the limit: the stored entries are read only as far as the merge
    /// needs them.
    private func merged(_ options: ScanOptions) throws(KVError) -> [Cursor.Element] {
        var unlimited = options
        unlimited.limit = nil
        let stored = database.scan(unlimited, snapshot: snapshot)
        let range = KeyRange(options)
        let reverse = options.reverse
        let precedes: ([UInt8], [UInt8]) -> Bool = { reverse ? $1.lexicographicallyPrecedes($0) : $0.lexicographicallyPrecedes($1) }
        let local = writes.keys.filter { range.contains($0) }.sorted(by: precedes)
        let limit = options.limit ?? Int.max
        var merged: [Cursor.Element] = []
        var next = try stored.next()
        var j = 0
        while merged.count < limit {
            if j < local.count, next.map({ !precedes($0.key, local[j]) }) ?? true {
                let key = local[j]
                if next?.key == key { next = try stored.next() }  // the own write wins
                if let value = writes[key]! { merged.append((key, value)) }
                j += 1
            } else if let entry = next {
                if !deletedByOwnRange(entry.key) { merged.append(entry) }
                next = try stored.next()
            } else {
                break
            }
        }
        return merged
    }

    /// Adds what a scan covered to the read set and hands its entries back.
    private func record(_ entries: [Cursor.Element], options: ScanOptions) -> [Cursor.Element] {
        var range = KeyRange(options)
        if let limit = options.limit, entries.count >= limit, let last = entries.last?.key {
            // Stopped by the limit: what lies past the last entry was not looked at.
            if options.reverse { range.lower = last } else { range.upper = last + [0] }
        }
        readRanges.append(range)
        return entries
    }

    // MARK: writes

    /// Stores `value` under `key` when the transaction commits.
    public func put(_ key: some KVBytes, _ value: some KVBytes) throws(KVError) {
        try checkActive()
        let key = key.kvArray
        try Transaction.checkKey(key)
        let value = value.kvArray
        if value.count > Limits.maxValueBytes {
            throw KVError(.invalidArgument, "transaction write rejected: value of \(value.count) bytes exceeds the limit of \(Limits.maxValueBytes)")
        }
        writes[key] = .some(value)
    }

    /// Stores `value` encoded by `encoder` (JSON by default) under `key` at commit.
    public func put<T: Encodable>(_ key: some KVBytes, encoding value: T, using encoder: some KVValueEncoder = JSONEncoder()) throws(KVError) {
        try put(key, Array(ValueCoding.encode(value, using: encoder)))
    }

    /// Removes `key` when the transaction commits.
    public func delete(_ key: some KVBytes) throws(KVError) {
        try checkActive()
        let key = key.kvArray
        try Transaction.checkKey(key)
        writes[key] = .some(nil)
    }

    /// Removes every key in [start, end) when the transaction commits (its own earlier
    /// writes there included; later ones win). The range joins what the commit checks.
    public func deleteRange(_ start: some KVBytes, _ end: some KVBytes) throws(KVError) {
        try checkActive()
        let start = start.kvArray
        let end = end.kvArray
        try Transaction.checkKey(start)
        guard start.lexicographicallyPrecedes(end), end.count <= Limits.maxKeyBytes else {
            throw KVError(.invalidArgument, "transaction range delete rejected: the start must be below the end")
        }
        for key in writes.keys where !key.lexicographicallyPrecedes(start) && key.lexicographicallyPrecedes(end) { writes[key] = nil }
        rangeDeletes.append((start, end))
        readRanges.append(KeyRange(lower: start, upper: end))
    }

    private static func checkKey(_ key: [UInt8]) throws(KVError) {
        if key.isEmpty { throw KVError(.invalidArgument, "transaction write rejected: empty key") }
        if key.count > Limits.maxKeyBytes {
            throw KVError(.invalidArgument, "transaction write rejected: key of \(key.count) bytes exceeds the limit of \(Limits.maxKeyBytes)")
        }
    }

    // MARK: async

    /// ``get(_:)-(KVBytes)``, suspending while a table block is read (on one of the
    /// database's read threads).
    nonisolated(nonsending) public func get(_ key: some KVBytes) async throws(KVError) -> [UInt8]? {
        let key = key.kvArray
        try checkActive()
        if let written = writes[key] { return written }
        readKeys.insert(key)
        return try await database.get(key, snapshot: snapshot)
    }

    /// The UTF-8 string under `key`, or nil, suspending while a block is read.
    nonisolated(nonsending) public func get(_ key: String) async throws(KVError) -> String? {
        try await get(key, as: String.self)
    }

    /// The value under `key` as a `type`, or nil, suspending while a block is read.
    nonisolated(nonsending) public func get<V: KVValue>(_ key: some KVBytes, as type: V.Type) async throws(KVError) -> V? {
        try database.decodeValue(await get(key), as: type)
    }

    /// The value under `key` decoded by `decoder`, or nil, suspending while a block is read.
    nonisolated(nonsending) public func get<T: Decodable>(
        _ key: some KVBytes, decoding type: T.Type, using decoder: some KVValueDecoder = JSONDecoder()
    ) async throws(KVError) -> T? {
        let key = key.kvArray
        guard let bytes = try await get(key) else { return nil }
        return try ValueCoding.decode(type, from: bytes, key: key, using: decoder)
    }

    /// ``scan(_:)``, suspending while its blocks are read (on the database's read threads).
    nonisolated(nonsending) public func scan(_ options: ScanOptions = ScanOptions()) async throws(KVError) -> [Cursor.Element] {
        try checkActive()
        let this = UnsafeTransfer(self)
        let entries = try await database.blockingReads.run { () throws(KVError) -> [Cursor.Element] in try this.value.merged(options) }
        return record(entries, options: options)
    }

    /// The batch the commit writes (keys in order), or nil when nothing was written.
    var batch: WriteBatch? {
        guard !writes.isEmpty || !rangeDeletes.isEmpty else { return nil }
        var batch = WriteBatch()
        // The range deletes first: a write made after one (in `writes`) wins over it.
        for range in rangeDeletes { batch.deleteRange(range.start, range.end) }
        for key in writes.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            if let value = writes[key]! { batch.put(key, value) } else { batch.delete(key) }
        }
        return batch
    }

    /// What the commit checks: every key read or written, and the scanned ranges.
    var conflictSet: ConflictSet {
        ConflictSet(keys: readKeys.union(writes.keys).sorted(by: { $0.lexicographicallyPrecedes($1) }), ranges: readRanges)
    }
}

extension Database {
    /// Runs `body` in a ``Transaction`` and commits what it wrote as one atomic batch;
    /// when the commit meets a conflict (see ``Transaction``), nothing is applied and
    /// `body` runs again on a fresh snapshot, up to `options.maxAttempts` times, then the
    /// call throws ``KVError/Code/conflict``. What `body` throws ends the transaction
    /// (nothing is applied) and is thrown; what it returns is returned. Keep `body` free
    /// of effects outside the transaction: it may run more than once.
    // Disfavored: in async code a body without `await` would otherwise pick this form and
    // block a cooperative thread through the commit; there the async form is chosen.
    @_disfavoredOverload
    public func transaction<R>(
        _ options: TransactionOptions = TransactionOptions(), _ body: (Transaction) throws -> R
    ) throws -> R {
        try checkOpen()
        var attempt = 1
        while true {
            let tx = Transaction(database: self, snapshot: try snapshot())
            // Held until the attempt ends (its commit check included: a newer version, a
            // tombstone say, of a key it read stays until then), not for as long as
            // something keeps the transaction.
            defer { tx.snapshot.release() }
            let result: R
            do {
                defer { tx.active = false }
                result = try body(tx)
            }
            let committed = Result { () throws(KVError) in try commitTransaction(tx, durability: options.durability) }
            guard case .failure(let error) = committed else { return result }
            usleep(UInt32(try backoffMicroseconds(after: error, attempt: &attempt, options)))
        }
    }

    /// ``transaction(_:_:)`` with an async body, which runs in the caller's isolation (an
    /// actor's transaction may touch the actor's state); the commit's checks and write run
    /// on the database's own threads.
    ///
    ///     actor Counter {
    ///         let db: Database
    ///         func increment() async throws {
    ///             try await db.transaction { tx in
    ///                 let n = try await tx.get("n", decoding: Int.self) ?? 0
    ///                 try tx.put("n", encoding: n + 1)
    ///             }
    ///         }
    ///     }
    public func transaction<R>(
        _ options: TransactionOptions = TransactionOptions(),
        isolation: isolated (any Actor)? = #isolation,
        _ body: (Transaction) async throws -> R
    ) async throws -> R {
        try checkOpen()
        var attempt = 1
        while true {
            let tx = Transaction(database: self, snapshot: try snapshot())
            // Held until the attempt ends (its commit check included: a newer version, a
            // tombstone say, of a key it read stays until then), not for as long as
            // something keeps the transaction.
            defer { tx.snapshot.release() }
            let result: R
            do {
                defer { tx.active = false }
                result = try await body(tx)
            }
            guard let batch = tx.batch else { return result }
            let conflicts = tx.conflictSet
            let sequence = tx.snapshot.sequence
            let durability = options.durability
            let committed = await blocking.runResult { () throws(KVError) in
                try self.commit(batch, checking: conflicts, since: sequence, durability: durability)
            }
            guard case .failure(let error) = committed else { return result }
            try await Task.sleep(nanoseconds: UInt64(try backoffMicroseconds(after: error, attempt: &attempt, options)) * 1000)
        }
    }
}

extension Database {
    /// After a failed commit of attempt `attempt`: the error again, unless it is a conflict
    /// with attempts left; then the next attempt's number and a random wait before it (up
    /// to 50 us doubled per attempt, at most 10 ms).
    fileprivate func backoffMicroseconds(after error: KVError, attempt: inout Int, _ options: TransactionOptions) throws(KVError) -> Int {
        guard error.code == .conflict && attempt < options.maxAttempts else { throw error }
        counters.transactionRetries.add()
        let ceiling = min(10_000, 50 << min(attempt, 10))
        attempt += 1
        return Int.random(in: 0...ceiling)
    }
}
