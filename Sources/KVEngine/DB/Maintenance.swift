import Atomics
import Dispatch
import Foundation
import PageStore
import Synchronization

extension Database {
    // MARK: rotation

    /// Freezes the memtable of `old` and starts a new log and memtable: the old log is
    /// made wholly durable and closed first, so the next log's records always follow a
    /// complete one (recovery requires sequence numbers without gaps across logs).
    /// Waits while `maxFrozenMemtables` memtables already wait for their flush.
    func rotate(from old: LogWriter) throws(KVError) {
        try rotation.withLock { (_: inout Int) throws(KVError) in
            guard currentView.log === old else { return }
            // After a failure (a log that could not be recorded, say) no new log is started.
            if let error = backgroundError.withLock({ $0 }) { throw error }
            var stallStarted: UInt64? = nil
            defer { if let stallStarted { countStall(since: stallStarted) } }
            if options.inlineBackgroundWork { runInlineWork() }
            while currentView.immutables.count >= options.maxFrozenMemtables {
                try checkOpen()
                if let error = backgroundError.withLock({ $0 }) { throw error }
                if stallStarted == nil {
                    stallStarted = DispatchTime.now().uptimeNanoseconds
                    counters.stalls.wrappingIncrement(ordering: .relaxed)
                }
                backgroundThreads?.wakeFlush()
                usleep(200)
            }
            try checkOpen()
            try retire(old)
            let number = versions.newFileNumber()
            let frozen = FrozenMemtable(memtable: old.memtable, nextLogNumber: number, lastSequence: old.lastSequence)
            try startLog(number, lastSequence: old.lastSequence, freezing: frozen)
            backgroundThreads?.wakeFlush()
            if options.inlineBackgroundWork { runInlineWork() }
        }
    }

    /// Seals `old` (appends turn to the next log), makes it wholly durable and closes it.
    /// Called with `rotation` held.
    func retire(_ old: LogWriter) throws(KVError) {
        old.seal()
        try makeDurable(old)
        old.beginClose()
        do throws(KVError) {
            try old.close()
        } catch {
            // The sealed log stays current and takes nothing more: writes fail with this.
            fail(error, while: "close log \(old.number)")
            throw error
        }
    }

    /// Starts log `number` and a fresh memtable after a retired log whose records end at
    /// `lastSequence`, records the log in the manifest and installs both (with `frozen`
    /// joining the memtables that wait for their flush). Called with `rotation` held.
    func startLog(_ number: UInt64, lastSequence: UInt64, freezing frozen: FrozenMemtable?) throws(KVError) {
        let memtable = Memtable()
        let log: LogWriter
        do throws(KVError) {
            log = try LogWriter.create(
                directory: path, number: number, storage: storage, memtable: memtable,
                lastSequence: lastSequence, options: options, metrics: metrics)
        } catch {
            // Recorded nowhere yet: what was made of it goes (a later try starts it again).
            try? storage.removeFile(atPath: path + "/" + LogFormat.fileName(number))
            fail(error, while: "start log \(number)")
            throw error
        }
        // Recorded before any write in it is acknowledged: from then on recovery
        // requires the log, and treats a header that does not verify as damage.
        do throws(KVError) {
            var edit = VersionEdit()
            edit.createdLogs = [number]
            try apply(edit, while: "record log \(number)") { _ in }
        } catch {
            // `apply` has stopped writes: an edit that adds no table fails only in the manifest.
            log.beginClose()
            try? log.close()
            throw error
        }
        view.withLock { $0 = $0.with(log: log, memtable: memtable, immutables: (frozen.map { [$0] } ?? []) + $0.immutables) }
    }

    /// Waits until no frozen memtable waits for its flush (the flush thread writes them;
    /// with `inlineBackgroundWork`, this thread).
    func waitForFlushes() throws(KVError) {
        while !currentView.immutables.isEmpty {
            try checkOpen()
            if let error = backgroundError.withLock({ $0 }) { throw error }
            backgroundThreads?.wakeFlush()
            if options.inlineBackgroundWork { runInlineWork() }
            usleep(500)
        }
    }

    /// With `inlineBackgroundWork`: the flushes and compactions due, on this thread.
    func runInlineWork() {
        flushWhileDue(stopping: { false })
        compactWhileDue(stopping: { false })
    }

    /// Applies `edit` to the version set; a manifest failure stops the database's writes
    /// (`fail`): the version set accepts no edit after one, so nor may anything else.
    func apply(_ edit: VersionEdit, while action: String, install: (Version) -> Void) throws(KVError) {
        do throws(KVError) {
            try versions.apply(edit, install: install)
        } catch {
            if versions.failure != nil { fail(error, while: action) }
            throw error
        }
    }

    /// Records the first background failure: writes fail with it until reopened (or, for
    /// a full disk, until a write finds room again: `resumeAfterFullDisk`).
    func fail(_ error: KVError, while action: String) {
        let first = backgroundError.withLock { current -> Bool in
            guard current == nil else { return false }
            let until = error.isFull ? "there is room again"
                : error.code == .corruption ? "the damage is repaired (kvctl check names it; kvctl salvage rebuilds what verifies)"
                : "the database is reopened"
            current = KVError(error.code, "\(action) failed, writes are refused until \(until): \(error.message)",
                              path: error.path, offsetBytes: error.offsetBytes)
            return true
        }
        if first { engineLogger.error("\(path): \(action) failed: \(error)") }
    }

    private func countStall(since started: UInt64) {
        let micros = Int((DispatchTime.now().uptimeNanoseconds - started) / 1000)
        counters.stallMicros.wrappingIncrement(by: micros, ordering: .relaxed)
    }

    /// Delays a write (once, by a millisecond) or holds it while level 0 or the compaction
    /// backlog is too far ahead.
    func makeRoomForWrite() throws(KVError) {
        var slowed = false
        var stallStarted: UInt64? = nil
        defer { if let stallStarted { countStall(since: stallStarted) } }
        while true {
            let version = currentView.version
            let level0 = version.levels[0].count
            let pending = pendingCompactionBytes(version)
            if level0 >= options.level0StopTrigger || pending >= options.pendingCompactionStopBytes {
                try checkOpen()
                if let error = backgroundError.withLock({ $0 }) { throw error }
                if stallStarted == nil {
                    stallStarted = DispatchTime.now().uptimeNanoseconds
                    counters.stalls.wrappingIncrement(ordering: .relaxed)
                }
                backgroundThreads?.wakeCompaction()
                if options.inlineBackgroundWork { runInlineWork() }
                usleep(500)
                continue
            }
            if !slowed && (level0 >= options.level0SlowdownTrigger || pending >= options.pendingCompactionSlowdownBytes) {
                slowed = true
                counters.slowdowns.wrappingIncrement(ordering: .relaxed)
                if stallStarted == nil { stallStarted = DispatchTime.now().uptimeNanoseconds }
                usleep(1000)
                continue
            }
            return
        }
    }

    /// Target size of `level` (1...).
    func maxBytes(level: Int) -> Int64 {
        var bytes = options.levelBaseBytes
        for _ in 1..<max(1, level) { bytes = bytes.multipliedReportingOverflow(by: Int64(options.levelMultiplier)).overflow ? .max : bytes * Int64(options.levelMultiplier) }
        return bytes
    }

    /// Bytes compaction is estimated to be behind: level 0 when it is due, and every level's
    /// excess over its target.
    func pendingCompactionBytes(_ version: Version) -> Int64 {
        var pending: Int64 = 0
        if version.levels[0].count >= options.level0CompactionTrigger { pending += version.bytes(atLevel: 0) }
        for level in 1..<(Version.levelCount - 1) {
            pending += max(0, version.bytes(atLevel: level) - maxBytes(level: level))
        }
        return pending
    }

    // MARK: flush

    /// Writes the oldest frozen memtable to a level-0 table and records it (with the log
    /// number after it) in the manifest; then its logs go. Returns false when none waits.
    func flushOldest() throws(KVError) -> Bool {
        guard let frozen = currentView.immutables.last else { return false }
        var edit = VersionEdit()
        edit.logNumber = frozen.nextLogNumber
        edit.lastSequence = frozen.lastSequence
        if frozen.memtable.count > 0 {
            let number = versions.newFileNumber()
            let builder = try TableBuilder(
                storage: storage, directory: path, number: number, expectedBytes: Int64(frozen.memtable.approximateBytes))
            let meta: TableMeta
            do throws(KVError) {
                let walk = frozen.memtable.makeIterator()
                walk.seekToFirst()
                while walk.isValid {
                    try builder.add(walk.key, tag: walk.tag, value: walk.value)
                    walk.next()
                }
                meta = try builder.finish()
            } catch {
                builder.abandon()
                throw error
            }
            try io("sync directory \(path)") { try storage.syncDirectory(atPath: path) }
            edit.added = [VersionEdit.AddedFile(level: 0, meta: meta)]
            counters.flushBytes.wrappingIncrement(by: Int(meta.fileBytes), ordering: .relaxed)
        }
        try apply(edit, while: "flush") { version in
            view.withLock { $0 = $0.with(immutables: Array($0.immutables.dropLast()), version: version) }
        }
        counters.flushes.wrappingIncrement(ordering: .relaxed)
        removeObsoleteLogs(below: frozen.nextLogNumber)
        return true
    }

    private func removeObsoleteLogs(below number: UInt64) {
        guard let names = try? storage.contentsOfDirectory(atPath: path) else { return }
        for name in names {
            if let log = LogFormat.number(ofFileName: name), log < number {
                try? storage.removeFile(atPath: path + "/" + name)
            }
        }
    }

    /// At open: removes logs already in tables, tables no version names (a flush or
    /// compaction cut short), manifests other than the live one and leftover temp files.
    func removeObsoleteFiles() {
        // After a manifest failure an edit may name any of them.
        guard versions.failure == nil, let names = try? storage.contentsOfDirectory(atPath: path) else { return }
        let live = Set(versions.current.levels.joined().map(\.number))
        let logNumber = versions.logNumber
        let manifest = versions.manifestNumber
        for name in names {
            var obsolete = false
            if let number = LogFormat.number(ofFileName: name) {
                obsolete = number < logNumber && number != currentView.log?.number
            } else if let number = TableFormat.number(ofFileName: name) {
                obsolete = !live.contains(number)
            } else if let number = ManifestWriter.number(ofFileName: name) {
                obsolete = number != manifest
            } else if name == CurrentFile.name + ".tmp" {
                obsolete = true
            }
            if obsolete {
                engineLogger.debug("removing obsolete \(path)/\(name)")
                try? storage.removeFile(atPath: path + "/" + name)
            }
        }
    }

    // MARK: compaction

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
        do throws(KVError) {
            try apply(edit, while: "compaction of level \(plan.level)") { version in view.withLock { $0 = $0.with(version: version) } }
        } catch {
            // After a manifest failure the outputs stay: the edit naming them may be
            // durable although its write or fdatasync failed (the next open removes them if
            // no version names them). Otherwise the edit was never written.
            if versions.failure == nil {
                for meta in outputs { try? storage.removeFile(atPath: path + "/" + TableFormat.fileName(meta.number)) }
            }
            throw error
        }
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
            for meta in outputs { try? storage.removeFile(atPath: path + "/" + TableFormat.fileName(meta.number)) }
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

    /// Background flushing: flushes while frozen memtables wait.
    func flushWhileDue(stopping: () -> Bool) {
        while !stopping() && backgroundError.withLock({ $0 == nil }) {
            do throws(KVError) {
                guard try flushOldest() else { return }
                backgroundThreads?.wakeCompaction()
            } catch {
                fail(error, while: "flush")
                return
            }
        }
    }

    // MARK: stats

    /// Counters of the engine, its levels, cache and page store.
    public var stats: DatabaseStats {
        let view = currentView
        let cacheCounters = cache.counters
        let tableCounters = versions.tables.counters
        var levels: [LevelStats] = []
        for (level, tables) in view.version.levels.enumerated() {
            levels.append(LevelStats(
                level: level, tables: tables.count, bytes: tables.reduce(0) { $0 + $1.meta.fileBytes },
                entries: tables.reduce(0) { $0 + Int($1.meta.properties.entries) }))
        }
        let flushBytes = counters.flushBytes.load(ordering: .relaxed)
        let compactionWrite = counters.compactionWriteBytes.load(ordering: .relaxed)
        return DatabaseStats(
            memtableBytes: view.memtable.approximateBytes, memtableEntries: view.memtable.count,
            frozenMemtables: view.immutables.count,
            lastSequence: view.log?.lastSequence ?? view.visibleSequence, visibleSequence: view.visibleSequence,
            logChains: view.log?.chainsCompleted ?? 0, levels: levels,
            userBytes: Int64(counters.userBytes.load(ordering: .relaxed)),
            flushes: counters.flushes.load(ordering: .relaxed), bytesFlushed: Int64(flushBytes),
            compactions: counters.compactions.load(ordering: .relaxed),
            trivialMoves: counters.trivialMoves.load(ordering: .relaxed),
            bytesCompactedRead: Int64(counters.compactionReadBytes.load(ordering: .relaxed)),
            bytesCompactedWritten: Int64(compactionWrite),
            writeAmplification: flushBytes > 0 ? Double(flushBytes + compactionWrite) / Double(flushBytes) : 0,
            cacheBytes: cacheCounters.usage, cacheHits: cacheCounters.hits, cacheMisses: cacheCounters.misses,
            indexAndFilterBytes: versions.tables.memoryBytes,
            openTables: tableCounters.open, tableOpens: tableCounters.opens,
            stalls: counters.stalls.load(ordering: .relaxed), slowdowns: counters.slowdowns.load(ordering: .relaxed),
            stallMicroseconds: Int64(counters.stallMicros.load(ordering: .relaxed)),
            liveSnapshots: snapshots.count, manifestNumber: versions.manifestNumber ?? 0,
            pageStore: ownedStoreStats)
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

/// One level's tables.
public struct LevelStats: Sendable, Equatable {
    /// 0 for flushed memtables, 1... for compaction's levels.
    public var level: Int
    /// Tables in the level.
    public var tables: Int
    /// Bytes of those tables' files.
    public var bytes: Int64
    /// Entries (versions and tombstones) in the level's tables.
    public var entries: Int
}

/// A snapshot of engine counters.
public struct DatabaseStats: Sendable {
    /// Approximate bytes in the memtable taking writes.
    public var memtableBytes: Int
    /// Entries (versions and tombstones) in that memtable.
    public var memtableEntries: Int
    /// Full memtables waiting for their flush.
    public var frozenMemtables: Int
    /// Highest sequence number written.
    public var lastSequence: UInt64
    /// Highest sequence number readers see.
    public var visibleSequence: UInt64
    /// Log commit chains of the current log completed.
    public var logChains: Int
    /// Tables and bytes per level.
    public var levels: [LevelStats]
    /// Bytes of write batches acknowledged since open (what the user wrote).
    public var userBytes: Int64
    /// Memtables flushed since open.
    public var flushes: Int
    /// Table bytes those flushes wrote.
    public var bytesFlushed: Int64
    /// Compactions since open that rewrote tables.
    public var compactions: Int
    /// Tables moved one level down whole (a manifest edit, no rewrite).
    public var trivialMoves: Int
    /// Table bytes compactions read.
    public var bytesCompactedRead: Int64
    /// Table bytes compactions wrote.
    public var bytesCompactedWritten: Int64
    /// (bytes flushed + bytes compacted) / bytes flushed since open: table bytes written
    /// per byte that reached level 0, as RocksDB's compaction stats count it.
    public var writeAmplification: Double
    /// Bytes the block cache holds.
    public var cacheBytes: Int
    /// Block lookups the cache answered since open.
    public var cacheHits: Int
    /// Block lookups that went to the disk since open.
    public var cacheMisses: Int
    /// Memory held by the open tables' indexes and bloom filters.
    public var indexAndFilterBytes: Int
    /// Tables open now: those the table cache holds (at most ``Options/maxOpenTables``)
    /// and those cursors and compactions still read after the cache let them go.
    public var openTables: Int
    /// Tables opened since the database was (a count that grows while reads reach more
    /// tables than ``Options/maxOpenTables``).
    public var tableOpens: Int
    /// Writes held until background work caught up (level 0 or the compaction backlog at
    /// its stop trigger, or no room for another frozen memtable).
    public var stalls: Int
    /// Writes delayed by a millisecond (level 0 or the backlog at its slowdown trigger).
    public var slowdowns: Int
    /// Time writers spent in stalls and slowdowns.
    public var stallMicroseconds: Int64
    /// Snapshots not yet released.
    public var liveSnapshots: Int
    /// Number of the live manifest.
    public var manifestNumber: UInt64
    /// The page store's counters, when the database owns its page store.
    public var pageStore: PageStoreStats?

    /// Hits / (hits + misses), or 0 before any lookup reached a table.
    public var cacheHitRate: Double {
        cacheHits + cacheMisses == 0 ? 0 : Double(cacheHits) / Double(cacheHits + cacheMisses)
    }

    /// Bytes in all tables.
    public var tableBytes: Int64 { levels.reduce(0) { $0 + $1.bytes } }
}

/// The flush and compaction threads. They hold the database weakly: dropping the last
/// handle closes it (from whichever thread drops it, one of these included).
final class BackgroundThreads: Sendable {
    private let flushWakeup = DispatchSemaphore(value: 0)
    private let compactionWakeup = DispatchSemaphore(value: 0)
    private let stopping = ManagedAtomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let threads = ThreadList()

    private final class ThreadList: Sendable {
        let ids = Mutex<[pthread_t]>([])
    }

    func start(_ database: Database) {
        for (name, wakeup, work) in [
            ("KVEngine.flush-tables", flushWakeup, { @Sendable (db: Database, stop: () -> Bool) in db.flushWhileDue(stopping: stop) }),
            ("KVEngine.compact", compactionWakeup, { @Sendable (db: Database, stop: () -> Bool) in db.compactWhileDue(stopping: stop) }),
        ] as [(String, DispatchSemaphore, @Sendable (Database, () -> Bool) -> Void)] {
            let thread = Thread { [weak database, stopping, finished, threads] in
                threads.ids.withLock { $0.append(pthread_self()) }
                while !stopping.load(ordering: .acquiring) {
                    _ = wakeup.wait(timeout: .now() + .milliseconds(100))
                    if stopping.load(ordering: .acquiring) { break }
                    guard let db = database else { break }
                    work(db) { stopping.load(ordering: .acquiring) }
                }
                finished.signal()
            }
            thread.name = name
            thread.start()
        }
    }

    var isStopping: Bool { stopping.load(ordering: .acquiring) }

    func wakeFlush() { flushWakeup.signal() }
    func wakeCompaction() { compactionWakeup.signal() }

    /// Stops both threads and waits for them (work under way finishes or is abandoned),
    /// except the calling thread when it is one of them.
    func stop() {
        stopping.store(true, ordering: .releasing)
        flushWakeup.signal()
        compactionWakeup.signal()
        let me = pthread_self()
        let waits = 2 - threads.ids.withLock { $0.filter { pthread_equal($0, me) != 0 }.count }
        for _ in 0..<waits { finished.wait() }
    }
}
