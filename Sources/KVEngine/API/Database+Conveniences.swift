import Foundation

// `String` (UTF-8) and `ContiguousBytes` (e.g. `Data`) forms of the byte API, and the
// async variants, which suspend rather than block and so are safe on the cooperative pool.

extension Database {
    /// The UTF-8 string stored under `key`, or nil (also nil if the value is not UTF-8).
    public func get(_ key: String, snapshot: Snapshot? = nil) throws(KVError) -> String? {
        guard let bytes = try get(Array(key.utf8), snapshot: snapshot) else { return nil }
        return String(validating: bytes, as: UTF8.self)
    }

    /// Stores UTF-8 `value` under UTF-8 `key`.
    public func put(_ key: String, _ value: String, durability: Durability? = nil) throws(KVError) {
        try put(Array(key.utf8), Array(value.utf8), durability: durability)
    }

    /// Removes UTF-8 `key`.
    public func delete(_ key: String, durability: Durability? = nil) throws(KVError) {
        try delete(Array(key.utf8), durability: durability)
    }

    /// The value stored under the bytes of `key` (any contiguous bytes, e.g. `Data`).
    public func get(bytes key: some ContiguousBytes, snapshot: Snapshot? = nil) throws(KVError) -> [UInt8]? {
        try get(key.withUnsafeBytes { Array($0) }, snapshot: snapshot)
    }

    /// Stores the bytes of `value` under the bytes of `key` (any contiguous bytes).
    public func put(bytes key: some ContiguousBytes, _ value: some ContiguousBytes, durability: Durability? = nil) throws(KVError) {
        try put(key.withUnsafeBytes { Array($0) }, value.withUnsafeBytes { Array($0) }, durability: durability)
    }

    // MARK: async

    /// Stores `value` under `key`, suspending until acknowledged.
    public func put(_ key: [UInt8], _ value: [UInt8], durability: Durability? = nil) async throws(KVError) {
        var batch = WriteBatch()
        batch.put(key, value)
        try await write(batch, durability: durability)
    }

    /// Removes `key`, suspending until acknowledged.
    public func delete(_ key: [UInt8], durability: Durability? = nil) async throws(KVError) {
        var batch = WriteBatch()
        batch.delete(key)
        try await write(batch, durability: durability)
    }

    /// Stores UTF-8 `value` under UTF-8 `key`, suspending until acknowledged.
    public func put(_ key: String, _ value: String, durability: Durability? = nil) async throws(KVError) {
        try await put(Array(key.utf8), Array(value.utf8), durability: durability)
    }

    /// The value under `key`, suspending while a table block is read from disk.
    public func get(_ key: [UInt8], snapshot: Snapshot? = nil) async throws(KVError) -> [UInt8]? {
        let view = currentView
        if let found = try lookupInMemory(key, view: view, snapshot: snapshot) { return found.value }
        return try await blockingReads.run { () throws(KVError) -> [UInt8]? in try self.lookup(key, snapshot: snapshot) }
    }

    /// The values stored under `keys` (nil where absent), in order, at one snapshot,
    /// suspending while the batch's block reads are in flight (they run on a thread of
    /// their own, as `get(keys:snapshot:)` does them, never on the cooperative pool).
    public func get(keys: [[UInt8]], snapshot: Snapshot? = nil) async throws(KVError) -> [[UInt8]?] {
        return try await blockingReads.run { () throws(KVError) -> [[UInt8]?] in try self.get(keys: keys, snapshot: snapshot) }
    }
}
