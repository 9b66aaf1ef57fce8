import Atomics
import Metrics

/// One fact the engine counts, counted once: `Database.stats` reads its total, and a
/// program that bootstraps a swift-metrics backend (swift-prometheus, for example) sees
/// the same increments under its label without glue.
struct Tally: Sendable {
    private let value = ManagedAtomic<Int>(0)
    /// The swift-metrics counter the increments go to as well.
    let counter: Counter

    init(_ label: String, dimensions: [(String, String)] = []) {
        counter = Counter(label: label, dimensions: dimensions)
    }

    func add(_ amount: Int = 1) {
        value.wrappingIncrement(by: amount, ordering: .relaxed)
        counter.increment(by: Int64(amount))
    }

    /// Everything added since the database opened.
    var total: Int { value.load(ordering: .relaxed) }
}

/// The engine's counters and its commit timer: one set, read by `Database.stats` and
/// reported through swift-metrics.
///
/// Labels (all prefixed `kvengine_`):
///
/// | label | kind | what it counts |
/// | --- | --- | --- |
/// | `kvengine_writes_total` | counter, dimension `durability` | batches (puts and deletes are batches of one) acknowledged |
/// | `kvengine_write_entries_total` | counter | entries in those batches |
/// | `kvengine_write_bytes_total` | counter | encoded bytes of those batches (what the user wrote) |
/// | `kvengine_write_errors_total` | counter | writes refused or failed |
/// | `kvengine_gets_total` | counter | point lookups |
/// | `kvengine_scans_total` | counter | cursors opened |
/// | `kvengine_log_chains_total` | counter | log commit chains completed (each ends in an fdatasync) |
/// | `kvengine_log_bytes_total` | counter | log bytes written by those chains |
/// | `kvengine_log_chain_microseconds_total` | counter | time those chains took, submission to completion |
/// | `kvengine_flushes_total` | counter | memtables flushed to level 0 |
/// | `kvengine_flush_bytes_total` | counter | table bytes those flushes wrote |
/// | `kvengine_compactions_total` | counter | compactions that rewrote tables |
/// | `kvengine_trivial_moves_total` | counter | tables moved a level down whole |
/// | `kvengine_read_compactions_total` | counter | compactions and moves that reads asked for (`Options.readCompactionBytesPerLookup`) |
/// | `kvengine_compaction_read_bytes_total` | counter | table bytes compactions read |
/// | `kvengine_compaction_write_bytes_total` | counter | table bytes compactions wrote |
/// | `kvengine_stalls_total` | counter | writes held until background work caught up |
/// | `kvengine_slowdowns_total` | counter | writes delayed by a millisecond |
/// | `kvengine_stall_microseconds_total` | counter | time writers spent in stalls and slowdowns |
/// | `kvengine_transactions_total` | counter, dimension `outcome` | transaction commits that wrote (`committed`) and commit attempts refused by a conflict (`conflicted`) |
/// | `kvengine_transaction_retries_total` | counter | transaction bodies run again after a conflict |
/// | `kvengine_commit_duration` | timer | time from a sync write's call to its acknowledgement |
final class EngineCounters: Sendable {
    let syncWrites = Tally("kvengine_writes_total", dimensions: [("durability", "sync")])
    let bufferedWrites = Tally("kvengine_writes_total", dimensions: [("durability", "buffered")])
    let writeEntries = Tally("kvengine_write_entries_total")
    let userBytes = Tally("kvengine_write_bytes_total")
    let writeErrors = Tally("kvengine_write_errors_total")
    let gets = Tally("kvengine_gets_total")
    let scans = Tally("kvengine_scans_total")
    let logChains = Tally("kvengine_log_chains_total")
    let logBytes = Tally("kvengine_log_bytes_total")
    let logChainMicros = Tally("kvengine_log_chain_microseconds_total")
    let flushes = Tally("kvengine_flushes_total")
    let flushBytes = Tally("kvengine_flush_bytes_total")
    let compactions = Tally("kvengine_compactions_total")
    let trivialMoves = Tally("kvengine_trivial_moves_total")
    let readCompactions = Tally("kvengine_read_compactions_total")
    let compactionReadBytes = Tally("kvengine_compaction_read_bytes_total")
    let compactionWriteBytes = Tally("kvengine_compaction_write_bytes_total")
    let stalls = Tally("kvengine_stalls_total")
    let slowdowns = Tally("kvengine_slowdowns_total")
    let stallMicros = Tally("kvengine_stall_microseconds_total")
    let transactionsCommitted = Tally("kvengine_transactions_total", dimensions: [("outcome", "committed")])
    let transactionsConflicted = Tally("kvengine_transactions_total", dimensions: [("outcome", "conflicted")])
    let transactionRetries = Tally("kvengine_transaction_retries_total")
    let commitDuration = Metrics.Timer(label: "kvengine_commit_duration")
}
