extension Database {
    /// The number of keys a scan of everything would return at `snapshot` (default: now),
    /// exact. Answered from the tables' properties without reading a block when
    /// ``countFromProperties(snapshot:)`` can; otherwise by a walk of every key, which
    /// reads every table once and leaves the block cache as it was.
    public func count(snapshot: Snapshot? = nil) throws(KVError) -> Int {
        if let counted = try countFromProperties(snapshot: snapshot) { return counted }
        return try scan(ScanOptions(fillCache: false), snapshot: snapshot).countRemaining()
    }

    /// The number of keys at `snapshot` (default: now) when the tables' properties give it
    /// exactly, with no block read; nil otherwise. They do when the memtables are empty
    /// and every table, whatever its level, covers a key range no other table touches,
    /// holds one version of each of its keys, no deletion and nothing newer than the
    /// snapshot, and no range delete is in force (table format 3 counts a table's keys): what a database loaded by
    /// `ingest(sorted:)` into an empty one is, and one compacted (`compactRange()`) after
    /// its last overwrite and deletion with no snapshot open. It reads the properties the
    /// manifest records, not the tables: a missing or damaged table does not change the
    /// answer (`check` finds those; a walk would fail on them).
    public func countFromProperties(snapshot: Snapshot? = nil) throws(KVError) -> Int? {
        try checkOpen()
        let view = currentView
        let sequence = snapshot?.sequence ?? view.visibleSequence
        guard view.memtable.count == 0, view.immutables.allSatisfy({ $0.memtable.count == 0 }), view.version.rangeDeletes.isEmpty else {
            return nil
        }
        var tables: [TableMeta] = []
        for level in view.version.levels {
            for table in level {
                let properties = table.meta.properties
                guard properties.deletions == 0, properties.userKeys == properties.entries,
                    properties.largestSequence <= sequence
                else { return nil }
                tables.append(table.meta)
            }
        }
        tables.sort { $0.smallestUserKey.lexicographicallyPrecedes($1.smallestUserKey) }
        for index in tables.indices.dropFirst()
        where !tables[index - 1].largestUserKey.lexicographicallyPrecedes(tables[index].smallestUserKey) {
            return nil
        }
        return tables.reduce(0) { $0 + Int($1.properties.entries) }
    }
}
