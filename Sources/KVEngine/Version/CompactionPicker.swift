/// What a compaction reads and where it writes.
struct CompactionPlan {
    let level: Int
    let outputLevel: Int
    let inputs: [TableFile]
    /// The output level's tables that overlap the inputs.
    let below: [TableFile]
    /// Moves the inputs down without rewriting them.
    var trivial: Bool
    /// For a background compaction of a deeper level: the largest user key it takes, where
    /// that level's next pick starts (its compaction pointer).
    var pointer: [UInt8]? = nil
}

/// Decides what to compact. A pure function of a version, the level shape the options give
/// and the compaction pointers: it reads no file, takes no lock and changes nothing, so it
/// is tested on hand-built versions (as LevelDB's `version_set_test`).
///
/// Level 0 is scored by its table count against `level0CompactionTrigger`, each deeper
/// level by its bytes against its target (`levelBaseBytes` times `levelMultiplier` per
/// level below 1). The bottom level has no target: nothing lies below it.
struct CompactionPicker {
    let level0Trigger: Int
    let levelBaseBytes: Int64
    let levelMultiplier: Int

    init(level0Trigger: Int, levelBaseBytes: Int64, levelMultiplier: Int) {
        self.level0Trigger = level0Trigger
        self.levelBaseBytes = levelBaseBytes
        self.levelMultiplier = levelMultiplier
    }

    init(options: Options) {
        self.init(
            level0Trigger: options.level0CompactionTrigger, levelBaseBytes: options.levelBaseBytes,
            levelMultiplier: options.levelMultiplier)
    }

    /// Target size of `level` (1...), saturating at `Int64.max`.
    func maxBytes(level: Int) -> Int64 {
        var bytes = levelBaseBytes
        for _ in 1..<max(1, level) {
            let (product, overflow) = bytes.multipliedReportingOverflow(by: Int64(levelMultiplier))
            bytes = overflow ? .max : product
        }
        return bytes
    }

    /// The level most in need of compaction and its score (due at 1 or more); level 0
    /// only when `level0`. Level -1 when no level scores above 0.
    func score(_ version: Version, level0: Bool = true) -> (score: Double, level: Int) {
        var best = (score: 0.0, level: -1)
        if level0 { best = (Double(version.levels[0].count) / Double(level0Trigger), 0) }
        for level in 1..<(Version.levelCount - 1) {
            let score = Double(version.bytes(atLevel: level)) / Double(maxBytes(level: level))
            if score > best.score { best = (score, level) }
        }
        return best
    }

    /// Bytes compaction is estimated to be behind: level 0 when it is due, and every level's
    /// excess over its target.
    func pendingBytes(_ version: Version) -> Int64 {
        var pending: Int64 = 0
        if version.levels[0].count >= level0Trigger { pending += version.bytes(atLevel: 0) }
        for level in 1..<(Version.levelCount - 1) {
            pending += max(0, version.bytes(atLevel: level) - maxBytes(level: level))
        }
        return pending
    }

    /// A background compaction, when one is due: of level 0, every table (with whatever
    /// level 1 holds under them); of a deeper level, the one table whose overlap with the
    /// next level is smallest for its size, the least rewriting per byte moved down (ties:
    /// the first after that level's pointer). The plan's `pointer` is the level's new one.
    func pick(_ version: Version, pointers: [[UInt8]?], level0: Bool = true) -> CompactionPlan? {
        let best = score(version, level0: level0)
        guard best.score >= 1 else { return nil }
        let level = best.level
        guard level > 0 else { return plan(level: 0, inputs: version.levels[0], version: version) }
        let pointer = pointers[level]
        var chosen: (table: TableFile, ratio: Double, after: Bool)? = nil
        for table in version.levels[level] {
            let overlap = version.overlapping(
                level: level + 1, lower: Array(table.meta.smallestUserKey), upper: Array(table.meta.largestUserKey))
            let ratio = Double(overlap.reduce(0) { $0 + $1.meta.fileBytes }) / Double(max(1, table.meta.fileBytes))
            let after = pointer.map { $0.lexicographicallyPrecedes(table.meta.largestUserKey) } ?? true
            if chosen == nil || ratio < chosen!.ratio || (ratio == chosen!.ratio && after && !chosen!.after) {
                chosen = (table, ratio, after)
            }
        }
        guard let chosen, var plan = plan(level: level, inputs: [chosen.table], version: version) else { return nil }
        plan.pointer = plan.inputs.isEmpty ? nil : Self.range(plan.inputs).largest
        return plan
    }

    /// A manual compaction's step for `level`, given `deepest`, the deepest level holding
    /// data: every table of `level` that meets [lower, upper] (nil: unbounded) into the
    /// next level, down to the bottom (`deepest`, and at least level 1). Tables reaching
    /// the bottom are rewritten, not moved: that is where tombstones are dropped. A bottom
    /// level that already held data compacts into itself, when it holds tombstones.
    func manual(level: Int, deepest: Int, version: Version, lower: [UInt8]?, upper: [UInt8]?) -> CompactionPlan? {
        let bottom = max(1, deepest)
        let inputs = version.overlapping(level: level, lower: lower, upper: upper)
        if level == bottom {
            // Rewritten in place only for what that drops: deletions, and what a range
            // delete covers.
            guard deepest == bottom, let plan = plan(level: level, inputs: inputs, version: version, intoItself: true),
                plan.inputs.contains(where: { table in
                    table.meta.properties.deletions > 0 || version.rangeDeleteList.contains { $0.mayCover(table.meta) }
                })
            else { return nil }
            return plan
        }
        guard level < bottom, var plan = plan(level: level, inputs: inputs, version: version) else { return nil }
        if plan.outputLevel == bottom { plan.trivial = false }
        return plan
    }

    /// The plan that compacts `inputs` of `level` into the next level (or into itself):
    /// level-0 inputs widened to every level-0 table they overlap, the output level's
    /// overlapping tables, and whether the inputs can move down whole.
    func plan(level: Int, inputs chosen: [TableFile], version: Version, intoItself: Bool = false) -> CompactionPlan? {
        var inputs = chosen
        guard !inputs.isEmpty else { return nil }
        var (smallest, largest) = Self.range(inputs)
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
                (smallest, largest) = Self.range(inputs)
            }
            precondition(
                version.levels[0].allSatisfy { table in
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
        return CompactionPlan(level: level, outputLevel: outputLevel, inputs: inputs, below: below, trivial: trivial)
    }

    /// The smallest and largest user keys of `tables` (not empty).
    static func range(_ tables: [TableFile]) -> (smallest: [UInt8], largest: [UInt8]) {
        var smallest = Array(tables[0].meta.smallestUserKey)
        var largest = Array(tables[0].meta.largestUserKey)
        for table in tables {
            if table.meta.smallestUserKey.lexicographicallyPrecedes(smallest) { smallest = Array(table.meta.smallestUserKey) }
            if largest.lexicographicallyPrecedes(table.meta.largestUserKey) { largest = Array(table.meta.largestUserKey) }
        }
        return (smallest, largest)
    }
}
