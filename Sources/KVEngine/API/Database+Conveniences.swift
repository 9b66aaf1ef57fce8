import Foundation

// Keys and values of any ``KVBytes`` type (`Data`, `String`, slices...), values read back
// as any ``KVValue`` type or decoded as `Codable`, and the async form of every call, with
// the same name and arguments. The async forms suspend rather than block: what may wait
// for the disk runs on the database's own threads, never on Swift's cooperative pool.
// Every form funnels into the `[UInt8]` one.

extension Database {
    // MARK: reads

    /// The UTF-8 string stored under `key`, or nil; throws ``KVError/Code/decoding`` when
    /// the value is not UTF-8.
    public func get(_ key: String, snapshot: Snapshot? = nil) throws(KVError) -> String? {
        try get(key, as: String.self, snapshot: snapshot)
    }

    /// The value stored under `key` (any ``KVBytes``: `Data`, `String`, a slice...), or nil.
    public func get(_ key: some KVBytes, snapshot: Snapshot? = nil) throws(KVError) -> [UInt8]? {
        try get(key.kvArray, snapshot: snapshot)
    }

    /// The value stored under `key` as a `type` (`Data`, `String`, `[UInt8]`), or nil.
    ///
    ///     let data = try db.get("photo:1", as: Data.self)
    public func get<V: KVValue>(_ key: some KVBytes, as type: V.Type, snapshot: Snapshot? = nil) throws(KVError) -> V? {
        try decodeValue(get(key.kvArray, snapshot: snapshot), as: type)
    }

    /// The value stored under `key` decoded as a `type` by `decoder` (JSON by default), or
    /// nil; ``KVError/Code/decoding`` when the decoder refuses it.
    public func get<T: Decodable>(
        _ key: some KVBytes, decoding type: T.Type, using decoder: some KVValueDecoder = JSONDecoder(),
        snapshot: Snapshot? = nil
    ) throws(KVError) -> T? {
        let key = key.kvArray
        guard let bytes = try get(key, snapshot: snapshot) else { return nil }
        return try ValueCoding.decode(type, from: bytes, key: key, using: decoder)
    }

    /// The value stored under the bytes of `key` (any `ContiguousBytes`), or nil.
    public func get(bytes key: some ContiguousBytes, snapshot: Snapshot? = nil) throws(KVError) -> [UInt8]? {
        try get(key.withUnsafeBytes { Array($0) }, snapshot: snapshot)
    }

    /// `withValue(forKey:snapshot:_:)` for a key of any ``KVBytes`` type.
    public func withValue<R>(
        forKey key: some KVBytes, snapshot: Snapshot? = nil, _ body: (_ value: UnsafeRawBufferPointer?) throws -> R
    ) throws -> R {
        try withValue(forKey: key.kvArray, snapshot: snapshot, body)
    }

    // MARK: writes

    /// Stores `value` under `key` (each any ``KVBytes``: `Data`, `String`, a slice...).
    @discardableResult
    public func put(_ key: some KVBytes, _ value: some KVBytes, durability: Durability? = nil) throws(KVError) -> UInt64 {
        return try put(key.kvArray, value.kvArray, durability: durability)
    }

    /// Stores `value` encoded by `encoder` (JSON by default) under `key`.
    @discardableResult
    public func put<T: Encodable>(
        _ key: some KVBytes, encoding value: T, using encoder: some KVValueEncoder = JSONEncoder(),
        durability: Durability? = nil
    ) throws(KVError) -> UInt64 {
        let bytes = try ValueCoding.encode(value, using: encoder)
        return try put(key.kvArray, Array(bytes), durability: durability)
    }

    /// Stores the bytes of `value` under the bytes of `key` (any `ContiguousBytes`).
    @discardableResult
    public func put(bytes key: some ContiguousBytes, _ value: some ContiguousBytes, durability: Durability? = nil) throws(KVError) -> UInt64 {
        return try put(key.withUnsafeBytes { Array($0) }, value.withUnsafeBytes { Array($0) }, durability: durability)
    }

    /// Removes `key` (any ``KVBytes``; a no-op when it is absent).
    @discardableResult
    public func delete(_ key: some KVBytes, durability: Durability? = nil) throws(KVError) -> UInt64 {
        return try delete(key.kvArray, durability: durability)
    }

    // MARK: async reads

    /// The value under `key`, suspending while a table block is read from disk.
    public func get(_ key: [UInt8], snapshot: Snapshot? = nil) async throws(KVError) -> [UInt8]? {
        let view = currentView
        if let found = try lookupInMemory(key, view: view, snapshot: snapshot) { return found.value }
        return try await blockingReads.run { () throws(KVError) -> [UInt8]? in try self.lookup(key, snapshot: snapshot) }
    }

    /// The UTF-8 string stored under `key`, or nil, suspending while a block is read.
    public func get(_ key: String, snapshot: Snapshot? = nil) async throws(KVError) -> String? {
        try await get(key, as: String.self, snapshot: snapshot)
    }

    /// The value stored under `key`, or nil, suspending while a block is read.
    public func get(_ key: some KVBytes, snapshot: Snapshot? = nil) async throws(KVError) -> [UInt8]? {
        try await get(key.kvArray, snapshot: snapshot)
    }

    /// The value stored under `key` as a `type`, or nil, suspending while a block is read.
    public func get<V: KVValue>(_ key: some KVBytes, as type: V.Type, snapshot: Snapshot? = nil) async throws(KVError) -> V? {
        try decodeValue(await get(key.kvArray, snapshot: snapshot), as: type)
    }

    /// The value stored under `key` decoded by `decoder`, or nil, suspending while a block
    /// is read.
    public func get<T: Decodable>(
        _ key: some KVBytes, decoding type: T.Type, using decoder: some KVValueDecoder = JSONDecoder(),
        snapshot: Snapshot? = nil
    ) async throws(KVError) -> T? {
        let key = key.kvArray
        guard let bytes = try await get(key, snapshot: snapshot) else { return nil }
        return try ValueCoding.decode(type, from: bytes, key: key, using: decoder)
    }

    /// The value stored under the bytes of `key`, or nil, suspending while a block is read.
    public func get(bytes key: some ContiguousBytes, snapshot: Snapshot? = nil) async throws(KVError) -> [UInt8]? {
        try await get(key.withUnsafeBytes { Array($0) }, snapshot: snapshot)
    }

    /// The values stored under `keys` (nil where absent), in order, at one snapshot,
    /// suspending while the batch's block reads are in flight (they run on a thread of
    /// their own, as `get(keys:snapshot:)` does them, never on the cooperative pool).
    public func get(keys: [[UInt8]], snapshot: Snapshot? = nil) async throws(KVError) -> [[UInt8]?] {
        return try await blockingReads.run { () throws(KVError) -> [[UInt8]?] in try self.get(keys: keys, snapshot: snapshot) }
    }

    /// `withValue(forKey:snapshot:_:)` suspending while a block is read: `body` runs on
    /// one of the database's read threads, with the value valid only during the call.
    public func withValue<R: Sendable>(
        forKey key: some KVBytes, snapshot: Snapshot? = nil,
        _ body: @escaping @Sendable (_ value: UnsafeRawBufferPointer?) throws -> R
    ) async throws -> R {
        let key = key.kvArray
        return try await blockingReads.runThrowing { try self.withValue(forKey: key, snapshot: snapshot, body) }
    }

    /// `forEach(_:snapshot:_:)` suspending while its blocks are read: `body` runs on one
    /// of the database's read threads, with buffers valid only during each call.
    public func forEach(
        _ options: ScanOptions = ScanOptions(), snapshot: Snapshot? = nil,
        _ body: @escaping @Sendable (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) async throws {
        try await blockingReads.runThrowing { try self.forEach(options, snapshot: snapshot, body) }
    }

    // MARK: async writes

    /// Stores `value` under `key`, suspending until acknowledged.
    @discardableResult
    public func put(_ key: [UInt8], _ value: [UInt8], durability: Durability? = nil) async throws(KVError) -> UInt64 {
        var batch = WriteBatch()
        batch.put(key, value)
        return try await write(batch, durability: durability)
    }

    /// Stores `value` under `key` (any ``KVBytes``), suspending until acknowledged.
    @discardableResult
    public func put(_ key: some KVBytes, _ value: some KVBytes, durability: Durability? = nil) async throws(KVError) -> UInt64 {
        return try await put(key.kvArray, value.kvArray, durability: durability)
    }

    /// Stores `value` encoded by `encoder` under `key`, suspending until acknowledged.
    @discardableResult
    public func put<T: Encodable>(
        _ key: some KVBytes, encoding value: T, using encoder: some KVValueEncoder = JSONEncoder(),
        durability: Durability? = nil
    ) async throws(KVError) -> UInt64 {
        let bytes = try ValueCoding.encode(value, using: encoder)
        return try await put(key.kvArray, Array(bytes), durability: durability)
    }

    /// Stores the bytes of `value` under the bytes of `key`, suspending until acknowledged.
    @discardableResult
    public func put(bytes key: some ContiguousBytes, _ value: some ContiguousBytes, durability: Durability? = nil) async throws(KVError) -> UInt64 {
        return try await put(key.withUnsafeBytes { Array($0) }, value.withUnsafeBytes { Array($0) }, durability: durability)
    }

    /// Removes `key`, suspending until acknowledged.
    @discardableResult
    public func delete(_ key: [UInt8], durability: Durability? = nil) async throws(KVError) -> UInt64 {
        var batch = WriteBatch()
        batch.delete(key)
        return try await write(batch, durability: durability)
    }

    /// Removes `key` (any ``KVBytes``), suspending until acknowledged.
    @discardableResult
    public func delete(_ key: some KVBytes, durability: Durability? = nil) async throws(KVError) -> UInt64 {
        return try await delete(key.kvArray, durability: durability)
    }

    // MARK: async maintenance

    /// `close()`, suspending (on one of the database's threads) while the memtables
    /// are flushed and the files closed.
    public func close() async throws(KVError) {
        try await blocking.run { () throws(KVError) in try self.close() }
    }

    /// `compactRange(start:end:)`, suspending while it runs on one of the database's
    /// threads.
    public func compactRange(start: [UInt8]? = nil, end: [UInt8]? = nil) async throws(KVError) {
        try await blocking.run { () throws(KVError) in try self.compactRange(start: start, end: end) }
    }

    /// `ingest(sorted:)`, suspending while it runs on one of the database's threads.
    @discardableResult
    public func ingest<Entries: Sequence & Sendable>(sorted entries: Entries) async throws(KVError) -> IngestReport
    where Entries.Element == (key: [UInt8], value: [UInt8]) {
        try await blocking.run { () throws(KVError) -> IngestReport in try self.ingest(sorted: entries) }
    }

    /// `resumeWrites()`, suspending while it runs on one of the database's threads.
    public func resumeWrites() async throws(KVError) -> Bool {
        try await blocking.run { () throws(KVError) -> Bool in try self.resumeWrites() }
    }

    /// A stored value as a `type`, or nil.
    func decodeValue<V: KVValue>(_ bytes: [UInt8]?, as type: V.Type) throws(KVError) -> V? {
        guard let bytes else { return nil }
        if let same = bytes as? V { return same }
        let decoded = bytes.withUnsafeBytes { raw in Result { () throws(KVError) -> V in try V(kvBytes: raw) } }
        return try decoded.get()
    }
}
