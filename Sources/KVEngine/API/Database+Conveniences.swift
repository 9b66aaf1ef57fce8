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

    /// Applies `batch` atomically, suspending until it is acknowledged at `durability`.
    public func write(_ batch: WriteBatch, durability: Durability? = nil) async throws(KVError) {
        guard let log = log else {
            throw KVError(.readOnly, "database at \(path) was opened read-only after log corruption", path: path)
        }
        try validateForAsync(batch)
        let durability = durability ?? options.defaultDurability
        let started = DispatchTime.now().uptimeNanoseconds
        let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Void, KVError>, Never>) in
            let appended = log.append(batch, durability: durability, lead: false) {
                continuation.resume(returning: $0)
            }
            if appended.immediate { continuation.resume(returning: .success(())) }
        }
        if case .failure = outcome { metrics.writeErrors.increment() }
        try outcome.get()
        countWrite(batch, durability: durability, startedNanos: started)
    }

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

    /// The value under `key`. Reads are served from memory today; this variant exists so
    /// callers need not change when reads go to disk.
    public func get(_ key: [UInt8], snapshot: Snapshot? = nil) async throws(KVError) -> [UInt8]? {
        try lookup(key, snapshot: snapshot)
    }

    /// Makes every acknowledged write durable, suspending until it is.
    public func sync() async throws(KVError) {
        guard let log = log else { return }
        let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Void, KVError>, Never>) in
            if log.sync(lead: false, ack: { continuation.resume(returning: $0) }).immediate {
                continuation.resume(returning: .success(()))
            }
        }
        try outcome.get()
    }
}
