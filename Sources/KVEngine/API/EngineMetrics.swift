import Metrics

/// The engine's counters and timers, reported through swift-metrics: a server that
/// bootstraps a metrics backend (swift-prometheus, for example) sees them without glue.
///
/// Labels (all prefixed `kvengine_`):
///
/// | label | kind | what it counts |
/// | --- | --- | --- |
/// | `kvengine_writes_total` | counter, dimension `durability` | batches (puts and deletes are batches of one) acknowledged |
/// | `kvengine_write_entries_total` | counter | entries in those batches |
/// | `kvengine_write_errors_total` | counter | writes refused or failed |
/// | `kvengine_gets_total` | counter | point lookups |
/// | `kvengine_scans_total` | counter | cursors opened |
/// | `kvengine_log_chains_total` | counter | log commit chains completed (each ends in an fdatasync) |
/// | `kvengine_log_bytes_total` | counter | log bytes written by those chains |
/// | `kvengine_commit_duration` | timer | time from a sync write's call to its acknowledgement |
struct EngineMetrics: Sendable {
    let syncWrites = Counter(label: "kvengine_writes_total", dimensions: [("durability", "sync")])
    let bufferedWrites = Counter(label: "kvengine_writes_total", dimensions: [("durability", "buffered")])
    let writeEntries = Counter(label: "kvengine_write_entries_total")
    let writeErrors = Counter(label: "kvengine_write_errors_total")
    let gets = Counter(label: "kvengine_gets_total")
    let scans = Counter(label: "kvengine_scans_total")
    let logChains = Counter(label: "kvengine_log_chains_total")
    let logBytes = Counter(label: "kvengine_log_bytes_total")
    let commitDuration = Metrics.Timer(label: "kvengine_commit_duration")
}
