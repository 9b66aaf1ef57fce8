import Atomics
import Dispatch
import Foundation
import PageStore
import Synchronization

extension Database {
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
        let flushBytes = counters.flushBytes.total
        let compactionWrite = counters.compactionWriteBytes.total
        return DatabaseStats(
            memtableBytes: view.memtable.approximateBytes, memtableEntries: view.memtable.count,
            frozenMemtables: view.immutables.count,
            lastSequence: view.log?.lastSequence ?? view.visibleSequence, visibleSequence: view.visibleSequence,
            logChains: counters.logChains.total, logChainMicroseconds: Int64(counters.logChainMicros.total), levels: levels,
            userBytes: Int64(counters.userBytes.total),
            flushes: counters.flushes.total, bytesFlushed: Int64(flushBytes),
            compactions: counters.compactions.total,
            trivialMoves: counters.trivialMoves.total,
            readCompactions: counters.readCompactions.total,
            bytesCompactedRead: Int64(counters.compactionReadBytes.total),
            bytesCompactedWritten: Int64(compactionWrite),
            writeAmplification: flushBytes > 0 ? Double(flushBytes + compactionWrite) / Double(flushBytes) : 0,
            cacheBytes: cacheCounters.usage, cacheHits: cacheCounters.hits, cacheMisses: cacheCounters.misses,
            indexAndFilterBytes: versions.tables.memoryBytes,
            openTables: tableCounters.open, tableOpens: tableCounters.opens,
            stalls: counters.stalls.total, slowdowns: counters.slowdowns.total,
            stallMicroseconds: Int64(counters.stallMicros.total),
            liveSnapshots: snapshots.count, manifestNumber: versions.manifestNumber ?? 0,
            pageStore: ownedStoreStats)
    }
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
    /// Log commit chains completed since open (each ends in an fdatasync).
    public var logChains: Int
    /// Microseconds those chains took from submission to completion, summed (the
    /// device's write and fdatasync, and the ring's delivery): against the time the
    /// chains covered, what group commit spends outside the device.
    public var logChainMicroseconds: Int64
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
    /// Of those compactions and moves, the ones reads asked for (read-triggered
    /// compaction, `Options.readCompactionBytesPerLookup`).
    public var readCompactions: Int
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
