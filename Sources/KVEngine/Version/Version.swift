/// The live tables at one moment, per level. Immutable: a change makes a new version.
///
/// Level 0 holds flushed memtables, which may overlap, newest first; every deeper level
/// holds tables with disjoint key ranges, sorted by key.
final class Version: Sendable {
    static let levelCount = 7

    let levels: [[TableFile]]
    /// Range deletes whose writes are in tables (flushed), until no table holds what they
    /// cover; and the same fragmented, for reads.
    let rangeDeleteList: Set<RangeTombstone>
    let rangeDeletes: RangeTombstones

    init(levels: [[TableFile]] = Array(repeating: [], count: Version.levelCount), rangeDeletes: Set<RangeTombstone> = []) {
        self.levels = levels
        self.rangeDeleteList = rangeDeletes
        self.rangeDeletes = RangeTombstones(rangeDeletes)
    }

    /// This version with `edit` applied; `added` holds the tables the edit adds.
    func applying(_ edit: VersionEdit, added: [UInt64: TableFile]) -> Version {
        var levels = self.levels
        for file in edit.deleted {
            levels[file.level].removeAll { $0.number == file.number }
        }
        for file in edit.added {
            levels[file.level].append(added[file.meta.number]!)
        }
        levels[0].sort { $0.meta.properties.largestSequence > $1.meta.properties.largestSequence }
        for level in 1..<Version.levelCount {
            levels[level].sort { left, right in
                left.meta.smallest.withUnsafeBytes { a in right.meta.smallest.withUnsafeBytes { b in InternalKey.compare(a, b) < 0 } }
            }
        }
        var tombstones = rangeDeleteList
        if !edit.droppedRangeDeletes.isEmpty || !edit.addedRangeDeletes.isEmpty {
            tombstones.subtract(edit.droppedRangeDeletes)
            tombstones.formUnion(edit.addedRangeDeletes)
        }
        return Version(levels: levels, rangeDeletes: tombstones)
    }

    /// The range deletes (this version's and `adding`) that no table needs once an edit
    /// removing tables `removing` and adding `added` is in place: no table whose key range
    /// meets the range holds a version older than the range delete (what a range delete
    /// covers is older than it; the memtables hold only newer writes, and the tables a
    /// flush or an ingest adds only newer ones).
    ///
    /// `exact`: the sequence numbers of range deletes that the tables `added` are known to
    /// need (a compaction's outputs, whose entries it saw): those tables are judged by this
    /// alone rather than by their key range.
    func unneededRangeDeletes(
        removing: Set<UInt64>, added: [TableMeta], adding: [RangeTombstone] = [], exact needed: Set<UInt64>? = nil
    ) -> [RangeTombstone] {
        guard !rangeDeleteList.isEmpty || !adding.isEmpty else { return [] }
        let tables = levels.joined().filter { !removing.contains($0.number) }.map(\.meta) + (needed == nil ? added : [])
        return rangeDeleteList.union(adding).filter { tombstone in
            !(needed?.contains(tombstone.sequence) ?? false) && !tables.contains(where: tombstone.mayCover)
        }.sorted { $0.sequence < $1.sequence }
    }

    /// The whole version as an edit (a new manifest's first record).
    func snapshotEdit() -> VersionEdit {
        var edit = VersionEdit()
        for (level, tables) in levels.enumerated() {
            for table in tables { edit.added.append(VersionEdit.AddedFile(level: level, meta: table.meta)) }
        }
        edit.addedRangeDeletes = rangeDeleteList.sorted { $0.sequence < $1.sequence }
        return edit
    }

    func bytes(atLevel level: Int) -> Int64 { levels[level].reduce(0) { $0 + $1.meta.fileBytes } }

    var tableCount: Int { levels.reduce(0) { $0 + $1.count } }

    /// In a level 1..., the first table whose largest user key is at or after `key` (the
    /// only one that can hold it, or where a seek to it starts), by binary search.
    func firstTable(level: Int, reaching key: UnsafeRawBufferPointer) -> TableFile? {
        let tables = levels[level]
        var low = 0
        var high = tables.count
        while low < high {
            let mid = (low + high) / 2
            let below = tables[mid].meta.largestUserKey.withUnsafeBytes { SkipList.compareKeys($0, key) < 0 }
            if below { low = mid + 1 } else { high = mid }
        }
        return low < tables.count ? tables[low] : nil
    }

    /// Tables of `level` whose user-key range meets [lower, upper].
    func overlapping(level: Int, lower: [UInt8]?, upper: [UInt8]?) -> [TableFile] {
        levels[level].filter { $0.meta.overlaps(lower: lower, upper: upper) }
    }

    /// Checks the ordering invariants of deeper levels (a manifest that breaks them is corrupt).
    func orderingProblem() -> String? {
        for level in 1..<Version.levelCount {
            let tables = levels[level]
            for index in tables.indices.dropFirst() {
                let previous = tables[index - 1].meta.largest
                let next = tables[index].meta.smallest
                let ordered = previous.withUnsafeBytes { a in next.withUnsafeBytes { b in InternalKey.compare(a, b) < 0 } }
                if !ordered {
                    return "level \(level) tables \(tables[index - 1].number) and \(tables[index].number) overlap"
                }
            }
        }
        return nil
    }
}
