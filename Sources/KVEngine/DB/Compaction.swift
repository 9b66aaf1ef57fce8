import Atomics
import Dispatch
import Foundation
import PageStore
import Synchronization

extension Database {
    /// Compacts every level's tables that meet [start, end] (nil: unbounded) down into the
    /// deepest level that holds data, dropping shadowed versions and tombstones no snapshot
    /// needs. Waits for frozen memtables to be flushed first. Blocks the calling thread.
    public func compactRange(start: [UInt8]? = nil, end: [UInt8]? = nil) throws(KVError) {
        try checkOpen()
        _ = try writableLog()  // a read-only database writes no table (and after a failure, neither)
        // Flush what is in memory first: the memtable too.
        if let log = currentView.log, currentView.memtable.count > 0 { try rotate(from: log) }
        try waitForFlushes()
        try compacting.withLock { (_: inout Int) throws(KVError) in
            let version = currentView.version
            guard let deepest = (0..<Version.levelCount).last(where: { !version.levels[$0].isEmpty }) else { return }
            let bottom = max(1, deepest)
            for level in 0..<bottom {
                guard var plan = plan(level: level, version: currentView.version, lower: start, upper: end) else { continue }
                // Tables reaching the bottom are rewritten: that is where tombstones go.
                if plan.outputLevel == bottom { plan.trivial = false }
                try run(plan)
            }
            // A bottom level that was not just rewritten compacts into itself.
            if deepest == bottom, let plan = plan(level: bottom, version: currentView.version, lower: start, upper: end, intoItself: true),
                plan.inputs.contains(where: { $0.meta.properties.deletions > 0 || $0.meta.properties.entries > 0 && bottom == 0 })
            {
                try run(plan)
            }
        }
        backgroundThreads?.wakeCompaction()
    }

    /// Levels' scores: level 0 by table count, deeper ones by size against their targets.
    func pickCompaction(_ version: Version, level0: Bool = true) -> CompactionPlan? {
        let best = compactionScore(version, level0: level0)
        guard best.score >= 1 else { return nil }
        return plan(level: best.level, version: version, lower: nil, upper: nil, rotate: true)
    }

    /// The level most in need of compaction and its score (due at 1 or more); level 0
    /// only when `level0`.
    func compactionScore(_ version: Version, level0: Bool = true) -> (score: Double, level: Int) {
        var best = (score: 0.0, level: -1)
        if level0 { best = (Double(version.levels[0].count) / Double(options.level0CompactionTrigger), 0) }
        for level in 1..<(Version.levelCount - 1) {
            let score = Double(version.bytes(atLevel: level)) / Double(maxBytes(level: level))
            if score > best.score { best = (score, level) }
        }
        return best
    }

    /// The inputs of a compaction of `level` into the next, or into itself (a manual
    /// compaction of the bottom level). `rotate` (background compactions) takes one table
    /// of a deeper level, the one with the least overlap below for its size; otherwise every table of the
    /// level that meets [lower, upper].
    func plan(
        level: Int, version: Version, lower: [UInt8]?, upper: [UInt8]?, rotate: Bool = false, intoItself: Bool = false
    ) -> CompactionPlan? {
        var inputs: [TableFile]
        if level > 0 && rotate {
            // The table whose overlap with the next level is smallest for its size: the
            // least rewriting per byte moved down (ties: round robin from the pointer).
            let pointer = compactPointers.withLock { $0[level] }
            let tables = version.levels[level]
            var best: (table: TableFile, ratio: Double, after: Bool)? = nil
            for table in tables {
                let overlap = version.overlapping(
                    level: level + 1, lower: Array(table.meta.smallestUserKey), upper: Array(table.meta.largestUserKey))
                let ratio = Double(overlap.reduce(0) { $0 + $1.meta.fileBytes }) / Double(max(1, table.meta.fileBytes))
                let after = pointer.map { $0.lexicographicallyPrecedes(table.meta.largestUserKey) } ?? true
                if best == nil || ratio < best!.ratio || (ratio == best!.ratio && after && !best!.after) {
                    best = (table, ratio, after)
                }
            }
            inputs = best.map { [$0.table] } ?? []
        } else {
            inputs = version.overlapping(level: level, lower: lower, upper: upper)
        }
        guard !inputs.isEmpty else { return nil }
        func range(_ tables: [TableFile]) -> ([UInt8], [UInt8]) {
            var smallest = Array(tables[0].meta.smallestUserKey)
            var largest = Array(tables[0].meta.largestUserKey)
            for table in tables {
                if table.meta.smallestUserKey.lexicographicallyPrecedes(smallest) { smallest = Array(table.meta.smallestUserKey) }
                if largest.lexicographicallyPrecedes(table.meta.largestUserKey) { largest = Array(table.meta.largestUserKey) }
            }
            return (smallest, largest)
        }
        var (smallest, largest) = range(inputs)
        if level == 0 {
            // Level-0 tables overlap one another: every one meeting the inputs' range goes
            // too, until none is left that does (each one taken may widen the range). A
            // level-0 table left behind that shares a key with the inputs would hold an
            // older version above the newer one moved down, hiding it, or would outlive a
            // tombstone dropped below it and bring a deleted value back.
            while true {
                let widened = version.overlapping(level: 0, lower: smallest, upper: largest)
                if widened.count == inputs.count { break }
                inputs = widened
                (smallest, largest) = range(inputs)
            }
            assert(version.levels[0].allSatisfy { table in
                inputs.contains { $0 === table } || !table.meta.overlaps(lower: smallest, upper: largest)
            }, "a level-0 table outside the compaction overlaps its inputs")
        }
        let outputLevel = intoItself ? level : level + 1
        let below = intoItself ? [] : version.overlapping(level: outputLevel, lower: smallest, upper: largest)
        var trivial = below.isEmpty && !intoItself
        if trivial && inputs.count > 1 {
            // Several level-0 tables move down whole only when they do not overlap.
            let sorted = inputs.sorted { $0.meta.smallestUserKey.lexicographicallyPrecedes($1.meta.smallestUserKey) }
            for index in sorted.indices.dropFirst()
            where !sorted[index - 1].meta.largestUserKey.lexicographicallyPrecedes(sorted[index].meta.smallestUserKey) {
                trivial = false
            }
        }
        if rotate && level > 0 { compactPointers.withLock { $0[level] = largest } }
        return CompactionPlan(level: level, outputLevel: outputLevel, inputs: inputs, below: below, trivial: trivial)
    }

    /// Carries out a compaction: a trivial move re-records the tables one level down;
    /// otherwise the inputs are merged into new tables of the output level.
    func run(_ plan: CompactionPlan) throws(KVError) {
        var edit = VersionEdit()
        for table in plan.inputs { edit.deleted.append(.init(level: plan.level, number: table.number)) }
        for table in plan.below { edit.deleted.append(.init(level: plan.outputLevel, number: table.number)) }
        if plan.trivial {
            for table in plan.inputs { edit.added.append(.init(level: plan.outputLevel, meta: table.meta)) }
            try apply(edit, while: "compaction of level \(plan.level)") { version in view.withLock { $0 = $0.with(version: version) } }
            counters.trivialMoves.wrappingIncrement(ordering: .relaxed)
            return
        }
        let outputs = try merge(plan)
        try io("sync directory \(path)") { try storage.syncDirectory(atPath: path) }
        for meta in outputs { edit.added.append(.init(level: plan.outputLevel, meta: meta)) }
        try apply(edit, adding: outputs, while: "compaction of level \(plan.level)")
        counters.compactions.wrappingIncrement(ordering: .relaxed)
        let read = (plan.inputs + plan.below).reduce(0) { $0 + Int($1.meta.fileBytes) }
        counters.compactionReadBytes.wrappingIncrement(by: read, ordering: .relaxed)
        counters.compactionWriteBytes.wrappingIncrement(by: outputs.reduce(0) { $0 + Int($1.fileBytes) }, ordering: .relaxed)
    }

    /// Merges the plan's inputs into tables of about `tableTargetBytes`, dropping what no
    /// reader can see: a version shadowed by a newer one that every snapshot sees, and a
    /// tombstone every snapshot sees when no deeper level holds its key.
    private func merge(_ plan: CompactionPlan) throws(KVError) -> [TableMeta] {
        let pages = TableBuilder.chunkPages
        var children: [any InternalIterator] = []
        if plan.level == 0 {
            for table in plan.inputs { children.append(LevelIterator(tables: [table], readaheadPages: pages, alwaysReadAhead: true)) }
        } else {
            children.append(LevelIterator(tables: plan.inputs, readaheadPages: pages, alwaysReadAhead: true))
        }
        if !plan.below.isEmpty {
            children.append(LevelIterator(tables: plan.below, readaheadPages: pages, alwaysReadAhead: true))
        }
        let merged = MergingIterator(children)
        let view = currentView
        let smallestSnapshot = min(snapshots.oldest ?? .max, view.visibleSequence)
        let deeper = (plan.outputLevel + 1..<Version.levelCount).map { view.version.levels[$0] }
        var outputs: [TableMeta] = []
        var builder: TableBuilder? = nil
        var currentKey: [UInt8] = []
        var hasCurrentKey = false
        var lastSequenceForKey = UInt64.max
        do throws(KVError) {
            merged.seekToFirst()
            var checked = 0
            while merged.isValid {
                checked += 1
                if checked & 0xFFF == 0 && (backgroundThreads?.isStopping ?? false) {
                    throw KVError(.closed, "compaction abandoned: the database is closing")
                }
                let key = merged.key
                let tag = merged.tag
                let newKey = !hasCurrentKey || currentKey.withUnsafeBytes { SkipList.compareKeys($0, key) } != 0
                if newKey {
                    if let open = builder, open.fileBytes >= Int64(options.tableTargetBytes) {
                        outputs.append(try open.finish())
                        builder = nil
                    }
                    currentKey.removeAll(keepingCapacity: true)
                    currentKey.append(contentsOf: key)
                    hasCurrentKey = true
                    lastSequenceForKey = .max
                }
                let sequence = tag >> 8
                var drop = false
                if lastSequenceForKey <= smallestSnapshot {
                    drop = true
                } else if tag & 0xFF == UInt64(EntryType.delete.rawValue) && sequence <= smallestSnapshot
                    && !deeper.contains(where: { level in level.contains { $0.meta.contains(key) } })
                {
                    drop = true
                }
                lastSequenceForKey = sequence
                if !drop {
                    if builder == nil {
                        builder = try TableBuilder(
                            storage: storage, directory: path, number: versions.newFileNumber(),
                            expectedBytes: Int64(options.tableTargetBytes) + (1 << 20))
                    }
                    try builder!.add(key, tag: tag, value: merged.value)
                }
                merged.next()
            }
            if let error = merged.error { throw error }
            if let open = builder {
                outputs.append(try open.finish())
                builder = nil
            }
        } catch {
            builder?.abandon()
            removeTables(outputs)
            throw error
        }
        return outputs
    }

    /// Background compaction: runs compactions while one is due.
    func compactWhileDue(stopping: () -> Bool) {
        while !stopping() && !compactionPaused.load(ordering: .acquiring) && backgroundError.withLock({ $0 == nil }) {
            let ran = compacting.withLock { _ -> Bool in
                // While a flush is under way (it is about to add a level-0 table), level 0
                // waits to be compacted after it, with it (the flush wakes this thread),
                // rather than leave that table alone in level 0, where every read and
                // seek would meet it; deeper levels go on.
                let view = currentView
                guard let plan = pickCompaction(view.version, level0: view.immutables.isEmpty) else { return false }
                do throws(KVError) {
                    try run(plan)
                } catch {
                    // Tables that readers hold past the table cache's ceiling: later, not a stop.
                    if error.code != .closed && !TableCache.isBusy(error) { fail(error, while: "compaction of level \(plan.level)") }
                    return false
                }
                return true
            }
            if !ran { return }
        }
    }
}

/// What a compaction reads and where it writes.
struct CompactionPlan {
    let level: Int
    let outputLevel: Int
    let inputs: [TableFile]
    /// The output level's tables that overlap the inputs.
    let below: [TableFile]
    /// Moves the inputs down without rewriting them.
    var trivial: Bool
}
