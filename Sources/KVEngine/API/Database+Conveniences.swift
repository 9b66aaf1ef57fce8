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
    /// Work that blocks (a memtable rotation, a write stall) runs off Swift's cooperative
    /// pool.
    public func write(_ batch: WriteBatch, durability: Durability? = nil) async throws(KVError) {
        let durability = durability ?? options.defaultDurability
        let started = DispatchTime.now().uptimeNanoseconds
        do throws(KVError) {
            try validateForAsync(batch)
            do throws(KVError) {
                try await commit(batch, durability: durability)
            } catch where error.isFull {
                // Writes stopped on a full disk: go on if there is room again.
                guard try await blocking.run({ () throws(KVError) in try self.resumeAfterFullDisk() }) else { throw error }
                try await commit(batch, durability: durability)
            }
        } catch {
            metrics.writeErrors.increment()
            throw error
        }
        countWrite(batch, durability: durability, startedNanos: started)
    }

    /// Appends `batch` and suspends until it is acknowledged.
    private func commit(_ batch: WriteBatch, durability: Durability) async throws(KVError) {
        if mayNeedRoom { try await blocking.run { () throws(KVError) in try self.makeRoomForWrite() } }
        while true {
            let log = try writableLog()
            let rotate = try await settle { ack in log.append(batch, durability: durability, lead: false, ack: ack) }
            guard rotate else { return }
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
        return try await blocking.run { () throws(KVError) -> [UInt8]? in try self.lookup(key, snapshot: snapshot) }
    }

    /// The values stored under `keys` (nil where absent), in order, at one snapshot,
    /// suspending while the batch's block reads are in flight (they run on a thread of
    /// their own, as `get(keys:snapshot:)` does them, never on the cooperative pool).
    public func get(keys: [[UInt8]], snapshot: Snapshot? = nil) async throws(KVError) -> [[UInt8]?] {
        return try await blocking.run { () throws(KVError) -> [[UInt8]?] in try self.get(keys: keys, snapshot: snapshot) }
    }

    /// Makes every acknowledged write durable, suspending until it is.
    public func sync() async throws(KVError) {
        try checkOpen()
        guard let log = currentView.log else { return }
        _ = try await settle { ack in log.sync(lead: false, ack: ack) }
    }
}
