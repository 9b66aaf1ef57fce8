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
        try compacting.withLock { (_: inout Void) throws(KVError) in
            guard let deepest = (0..<Version.levelCount).last(where: { !currentView.version.levels[$0].isEmpty }) else { return }
            // Each step plans on the version the previous one left.
            for level in 0...max(1, deepest) {
                if let plan = picker.manual(level: level, deepest: deepest, version: currentView.version, lower: start, upper: end) {
                    try run(plan)
                }
            }
        }
        backgroundThreads?.wakeCompaction()
    }

    /// What decides compactions, from the options' level shape.
    var picker: CompactionPicker { CompactionPicker(options: options) }

    /// Carries out a compaction: a trivial move re-records the tables one level down;
    /// otherwise the inputs are merged into new tables of the output level.
    func run(_ plan: CompactionPlan) throws(KVError) {
        var edit = VersionEdit()
        for table in plan.inputs { edit.deleted.append(.init(level: plan.level, number: table.number)) }
        for table in plan.below { edit.deleted.append(.init(level: plan.outputLevel, number: table.number)) }
        if plan.trivial {
            for table in plan.inputs { edit.added.append(.init(level: plan.outputLevel, meta: table.meta)) }
            try apply(edit, while: "compaction of level \(plan.level)") { version in view.withLock { $0 = $0.with(version: version) } }
            counters.trivialMoves.add()
            return
        }
        let (outputs, known, needed) = try merge(plan)
        try io("sync directory \(path)") { try storage.syncDirectory(atPath: path) }
        for meta in outputs { edit.added.append(.init(level: plan.outputLevel, meta: meta)) }
        // Range deletes that cover nothing left in any table go with the edit: of those the
        // merge knew (one a flush added meanwhile may cover what the outputs kept).
        edit.droppedRangeDeletes = currentView.version.unneededRangeDeletes(
            removing: Set((plan.inputs + plan.below).map(\.number)), added: outputs, exact: needed
        ).filter { known.contains($0) }
        try apply(edit, adding: outputs, while: "compaction of level \(plan.level)")
        counters.compactions.add()
        let read = (plan.inputs + plan.below).reduce(0) { $0 + Int($1.meta.fileBytes) }
        counters.compactionReadBytes.add(read)
        counters.compactionWriteBytes.add(outputs.reduce(0) { $0 + Int($1.fileBytes) })
    }

    /// Merges the plan's inputs into tables of about `tableTargetBytes`, dropping what no
    /// reader can see: a version shadowed by a newer one that every snapshot sees, and a
    /// tombstone every snapshot sees when no deeper level holds its key.
    /// Also returns the range deletes (by sequence number) that cover an entry the outputs
    /// keep (a snapshot still sees it).
    private func merge(_ plan: CompactionPlan) throws(KVError) -> (outputs: [TableMeta], known: Set<RangeTombstone>, needed: Set<UInt64>) {
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
        // Range deletes in the version are durable (a flush recorded them): what they cover
        // that every snapshot sees them delete goes.
        let rangeDeletes = view.version.rangeDeletes
        var outputs: [TableMeta] = []
        var builder: TableBuilder? = nil
        var currentKey: [UInt8] = []
        var hasCurrentKey = false
        var lastSequenceForKey = UInt64.max
        var needed = Set<UInt64>()
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
                let sequence = Tag.sequence(tag)
                var drop = false
                if lastSequenceForKey <= smallestSnapshot {
                    drop = true
                } else if Tag.isDelete(tag) && sequence <= smallestSnapshot
                    && !deeper.contains(where: { level in level.contains { $0.meta.contains(key) } })
                {
                    drop = true
                } else if !rangeDeletes.isEmpty, let cover = rangeDeletes.cover(key, snapshot: smallestSnapshot), cover.sequence > sequence {
                    drop = true
                }
                lastSequenceForKey = sequence
                if !drop {
                    if builder == nil {
                        builder = try TableBuilder(
                            storage: storage, directory: path, number: versions.newFileNumber(),
                            expectedBytes: Int64(options.tableTargetBytes) + (1 << 20), formatVersion: options.tableFormatVersion,
                            compression: options.compression(forLevel: plan.outputLevel), restartInterval: options.blockRestartInterval, cacheFill: (cache, .ifRoom))
                    }
                    try builder!.add(key, tag: tag, value: merged.value)
                    if !rangeDeletes.isEmpty, let fragment = rangeDeletes.fragment(key) {
                        for covering in fragment.sequences where covering > sequence { needed.insert(covering) }
                    }
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
        return (outputs, view.version.rangeDeleteList, needed)
    }

    /// Background compaction: runs compactions while one is due.
    /// A compaction reads asked for, when none is due by size: of the oldest table still
    /// live whose allowance of wasted lookups ran out, into the next level (a level-0
    /// table takes every level-0 table it overlaps along, as any level-0 compaction
    /// does), with that table's number. A level-0 table waits while a flush is under way,
    /// as the size-driven pick does; a table already in the bottom level, or gone, is
    /// forgotten.
    func readTriggeredPlan(_ view: View) -> (plan: CompactionPlan, table: UInt64)? {
        var found: (plan: CompactionPlan, table: UInt64)? = nil
        versions.tables.takeReadExhausted { number -> Bool? in
            for level in 0..<(Version.levelCount - 1) {
                guard let table = view.version.levels[level].first(where: { $0.number == number }) else { continue }
                if level == 0 && !view.immutables.isEmpty { return nil }
                guard let plan = picker.plan(level: level, inputs: [table], version: view.version) else { return false }
                found = (plan, number)
                return true
            }
            return false
        }
        return found
    }

    func compactWhileDue(stopping: () -> Bool) {
        while !stopping() && !compactionPaused.load(ordering: .acquiring) && backgroundError.withLock({ $0 == nil }) {
            let ran = compacting.withLock { _ -> Bool in
                // While a flush is under way (it is about to add a level-0 table), level 0
                // waits to be compacted after it, with it (the flush wakes this thread),
                // rather than leave that table alone in level 0, where every read and
                // seek would meet it; deeper levels go on.
                let view = currentView
                let pointers = compactPointers.withLock { $0 }
                var readTriggered: UInt64? = nil
                var plan = picker.pick(view.version, pointers: pointers, level0: view.immutables.isEmpty)
                if plan == nil, let asked = readTriggeredPlan(view) {
                    plan = asked.plan
                    readTriggered = asked.table
                    engineLogger.debug("read-triggered compaction of level \(asked.plan.level): \(asked.plan.inputs.count) tables")
                }
                guard let plan else { return false }
                if let pointer = plan.pointer { compactPointers.withLock { $0[plan.level] = pointer } }
                do throws(KVError) {
                    try run(plan)
                } catch {
                    // Tables that readers hold past the table cache's ceiling: later, not a stop
                    // (a table reads asked to compact stays asked).
                    if let readTriggered { versions.tables.noteReadExhausted(readTriggered) }
                    if error.code != .closed && !TableCache.isBusy(error) { fail(error, while: "compaction of level \(plan.level)") }
                    return false
                }
                if readTriggered != nil { counters.readCompactions.add() }
                return true
            }
            if !ran { return }
        }
    }
}
