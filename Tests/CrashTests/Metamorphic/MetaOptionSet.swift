@testable import KVEngine

/// A named set of options a metamorphic run can open the database with. The same
/// operations run under several of them must give the same answers.
struct MetaOptionSet: Sendable {
    let name: String
    let options: Options
    /// Writes, reads and syncs go through the async API (`await db.write`, `get`, `sync`).
    var asyncAPI = false
    /// A run that starts under this set keeps its database in a ``MemoryStorage`` instead
    /// of on the simulated disk: a crash there loses nothing and the memory never fills.
    var inMemory = false

    /// What every set shares: no timer (every flush of buffered pages comes from the
    /// operations), small log reservations, and flushes and compactions on the calling
    /// thread so that a run replays exactly (except `background`).
    private static func base(_ change: (inout Options) -> Void) -> Options {
        var options = Options()
        options.bufferedFlushIntervalMs = 60_000
        options.logPreallocateBytes = 64 << 10
        options.inlineBackgroundWork = true
        options.allowTinySizes = true
        change(&options)
        return options
    }

    /// Tiny memtables, tables and levels: a short run flushes and compacts many times.
    private static func tiny(_ change: (inout Options) -> Void = { _ in }) -> Options {
        base { options in
            options.memtableBytes = 4 << 10
            options.tableTargetBytes = 4 << 10
            options.levelBaseBytes = 8 << 10
            options.levelMultiplier = 2
            options.level0CompactionTrigger = 2
            options.level0SlowdownTrigger = 1000
            options.level0StopTrigger = 1000
            change(&options)
        }
    }

    static let all: [MetaOptionSet] = [
        // The defaults, but for the shared changes above and smaller compaction outputs
        // (each output reserves its target size, which the simulated disk holds in memory).
        MetaOptionSet(name: "default", options: base { $0.tableTargetBytes = 2 << 20 }),
        MetaOptionSet(name: "tiny", options: tiny()),
        // No block cache, and one open table: every read that moves to another table
        // closes one and opens it.
        MetaOptionSet(name: "tiny-nocache", options: tiny { $0.cacheBytes = 0; $0.maxOpenTables = 1 }),
        MetaOptionSet(name: "l0-1", options: tiny { $0.level0CompactionTrigger = 1; $0.memtableBytes = 8 << 10 }),
        MetaOptionSet(name: "l0-3", options: tiny { $0.level0CompactionTrigger = 3; $0.tableTargetBytes = 16 << 10; $0.flushOnClose = false }),
        // Logs kept for the change feed: everything (huge-cache), the newest 32 KiB (l0-8).
        MetaOptionSet(name: "l0-8", options: tiny { $0.level0CompactionTrigger = 8; $0.memtableBytes = 16 << 10; $0.logRetention = LogRetention(maxBytes: 32 << 10) }),
        // Everything stays in level 0 and level 1.
        MetaOptionSet(name: "few-levels", options: tiny { $0.levelBaseBytes = 1 << 30; $0.level0CompactionTrigger = 4 }),
        // Many small levels: data reaches the bottom level quickly.
        MetaOptionSet(name: "deep", options: tiny { $0.levelBaseBytes = 4 << 10; $0.tableTargetBytes = 4 << 10; $0.level0CompactionTrigger = 1 }),
        MetaOptionSet(name: "tiny-cache", options: tiny { $0.cacheBytes = 4 << 10; $0.memtableBytes = 12 << 10 }),
        MetaOptionSet(name: "huge-cache", options: tiny { $0.cacheBytes = 1 << 30; $0.memtableBytes = 8 << 10; $0.logRetention = LogRetention() }),
        // Buffered chains start at every full page, up to four in flight; several frozen
        // memtables wait.
        MetaOptionSet(name: "chains", options: tiny { $0.bufferedChainPages = 1; $0.logChainsInFlight = 4; $0.maxFrozenMemtables = 3; $0.batchReadDepth = 1; $0.flushOnClose = false }),
        // Real flush and compaction threads: answers must not depend on their timing (nor
        // on which of a few open tables the cache closes while they run).
        MetaOptionSet(name: "background", options: tiny { $0.inlineBackgroundWork = false; $0.memtableBytes = 8 << 10; $0.maxOpenTables = 4 }),
        // The async API: commits suspend on their acknowledgement, and rotations, stalls
        // and table reads run on the database's blocking pool.
        MetaOptionSet(name: "async", options: tiny { $0.memtableBytes = 8 << 10 }, asyncAPI: true),
        // Tables in table format 1 (the whole-array bloom filter): what databases written
        // before table format 2 hold, and must still answer from.
        MetaOptionSet(name: "table-format-1", options: tiny { $0.tableFormatVersion = 1; $0.memtableBytes = 8 << 10 }),
        // In memory (`Options.storage`, a `MemoryStorage`): the engine as a cache or a
        // test double runs it. (Added 2026-12-03: seeds drawn before then picked their
        // option sets from one set fewer, so they now run under others.)
        MetaOptionSet(name: "memory", options: tiny { $0.memtableBytes = 8 << 10 }, inMemory: true),
        // Tables in table format 2 (no count of user keys in their properties): what
        // databases written before table format 3 hold; `count` must walk them.
        MetaOptionSet(name: "table-format-2", options: tiny { $0.tableFormatVersion = 2; $0.memtableBytes = 8 << 10 }),
        // Data blocks stored raw (every other set writes LZ4, the default), and Zstd at the
        // bottom level with none at level 0: a compaction reads one codec and writes another.
        MetaOptionSet(name: "uncompressed", options: tiny { $0.compression = .none; $0.memtableBytes = 8 << 10 }),
        MetaOptionSet(name: "zstd-bottom", options: tiny {
            $0.compressionByLevel = [0: .none, Version.levelCount - 1: .zstd()]
            $0.memtableBytes = 8 << 10
        }),
        // Read-triggered compaction at its most eager (a table's first wasted lookup asks
        // for its compaction), over blocks with a restart point at every entry.
        MetaOptionSet(name: "read-compaction", options: tiny {
            $0.readCompactionBytesPerLookup = 4 << 10
            $0.readCompactionMinimumLookups = 1
            $0.blockRestartInterval = 1
            $0.memtableBytes = 8 << 10
        }),
        // The same beside real flush and compaction threads, with restart points every
        // third entry.
        MetaOptionSet(name: "read-compaction-background", options: tiny {
            $0.inlineBackgroundWork = false
            $0.readCompactionBytesPerLookup = 4 << 10
            $0.readCompactionMinimumLookups = 2
            $0.blockRestartInterval = 3
            $0.memtableBytes = 8 << 10
        }),
    ]

    static func named(_ name: String) -> MetaOptionSet? { all.first { $0.name == name } }

    /// Whether runs under this set replay exactly (background threads do not, nor does
    /// the async API, whose completions the runner delivers while it waits).
    var isDeterministic: Bool { options.inlineBackgroundWork && !asyncAPI }
}
