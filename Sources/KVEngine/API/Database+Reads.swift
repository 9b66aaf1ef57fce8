import Atomics
import Dispatch
import Foundation
import PageStore
import Synchronization

// Point lookups, snapshots and scans.

extension Database {
    /// The value stored under `key`, or nil.
    public func get(_ key: [UInt8], snapshot: Snapshot? = nil) throws(KVError) -> [UInt8]? {
        try lookup(key, snapshot: snapshot)
    }

    func lookup(_ key: [UInt8], snapshot: Snapshot?) throws(KVError) -> [UInt8]? {
        try checkOpen()
        counters.gets.add()
        let view = currentView
        let sequence = snapshot?.sequence ?? view.visibleSequence
        let found = key.withUnsafeBytes { key in
            Result { () throws(KVError) -> Memtable.Lookup in try view.get(key, snapshot: sequence) }
        }
        if case .value(let value) = try found.get() { return value }
        return nil
    }

    /// Calls `body` with the value stored under `key` (nil when there is none) without
    /// copying it: the bytes lie in the memtable or in a cached table block, and are valid
    /// only during the call (LMDB's reads hand out pointers the same way). What `body`
    /// returns or throws is what this returns or throws; errors of the read itself are
    /// ``KVError``s.
    ///
    ///     let length = try db.withValue(forKey: key) { $0?.count ?? 0 }
    public func withValue<R>(
        forKey key: [UInt8], snapshot: Snapshot? = nil, _ body: (_ value: UnsafeRawBufferPointer?) throws -> R
    ) throws -> R {
        try checkOpen()
        counters.gets.add()
        let view = currentView
        let sequence = snapshot?.sequence ?? view.visibleSequence
        return try withExtendedLifetime(view) {
            try key.withUnsafeBytes { key in try view.withValue(key, snapshot: sequence, body) }
        }
    }

    /// A lookup that only consults the memtables: nil when the key's fate lies in tables.
    func lookupInMemory(_ key: [UInt8], view: View, snapshot: Snapshot?) throws(KVError) -> (value: [UInt8]?, Void)? {
        try checkOpen()
        let sequence = snapshot?.sequence ?? view.visibleSequence
        return key.withUnsafeBytes { key -> (value: [UInt8]?, Void)? in
            switch view.getFromMemtables(key, snapshot: sequence) {
            case .value(let value): return (value, ())
            case .deleted: return (nil, ())
            case .missing: return view.version.tableCount == 0 ? (nil, ()) : nil
            }
        }
    }

    /// Takes a snapshot: reads through it see the database as it is now, and compaction
    /// keeps the versions it needs until it is released. Throws `.closed` after `close()`.
    public func snapshot() throws(KVError) -> Snapshot {
        try checkOpen()
        return snapshots.take { currentView.visibleSequence }
    }

    /// An ordered walk over the keys in `options`' range, at `snapshot` (default: now).
    /// Nothing is read until the cursor's first `next()` (or the first step of a
    /// `for try await` loop); after `close()` that step throws `.closed`.
    public func scan(_ options: ScanOptions = ScanOptions(), snapshot: Snapshot? = nil) -> Cursor {
        do throws(KVError) {
            try checkOpen()
        } catch {
            return Cursor(failing: error, options: options)
        }
        counters.scans.add()
        let view = currentView
        // The snapshot is read before the cursor asks whether any source holds a range
        // delete: one published after it is past the snapshot (`Cursor.checksRangeDeletes`).
        let sequence = snapshot?.sequence ?? view.visibleSequence
        return Cursor(view: view, database: self, snapshot: sequence, options: options)
    }

    /// Calls `body` with each key and value in `options`' range, in order, without copying
    /// them (the buffers are valid only during the call); return false to stop. Throws
    /// when a table cannot be read or is corrupt, and `.closed` after `close()`.
    public func forEach(
        _ options: ScanOptions = ScanOptions(), snapshot: Snapshot? = nil,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try scan(options, snapshot: snapshot).forEach(body)
    }

    /// The newest sequence number readers see.
    var visibleSequence: UInt64 { currentView.visibleSequence }
}
