import ArgumentParser
import Histogram
import Dispatch
import Foundation
import KVEngine
import Synchronization

/// `kvctl bench`: RocksDB db_bench's workloads, flags and output lines, so the two can be
/// compared line by line (`scripts/compare-rocksdb.sh` runs both).
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Run db_bench's workloads on a KVEngine database and print db_bench's report lines.",
        discussion: """
            Flags use db_bench's names and --flag=value syntax. Keys are the key index as
            zero-padded decimal of --key_size bytes; values are --value_size incompressible
            random bytes. --num, --reads and --writes count per thread. fill* benchmarks start
            from an empty database; the others use what the previous benchmarks left.
            """)

    @Option(name: .customLong("db"), help: "Database directory (removed and recreated by fill benchmarks).")
    var db = "/tmp/kvctl-bench"

    @Option(name: .customLong("benchmarks"), help: "Comma-separated: fillseq,fillrandom,overwrite,fillsync,readrandom,multireadrandom,readseq,readtocache,seekrandom,compact,stats; and deleterange (one range delete of every key of --num), scandeleted and scanempty (--reads scans of the deleted range and of an empty range as wide).")
    var benchmarks = "fillseq,fillrandom,overwrite,readrandom,readseq,seekrandom"

    @Option(name: .customLong("num"), help: "Keys per thread.")
    var num = 1_000_000

    @Option(name: .customLong("reads"), help: "Reads per thread (default: --num).")
    var reads = -1

    @Option(name: .customLong("writes"), help: "Writes per thread for fillsync (default: --num / 1000, as db_bench).")
    var writes = -1

    @Option(name: .customLong("value_size"), help: "Value bytes.")
    var valueSize = 100

    @Option(name: .customLong("key_size"), help: "Key bytes.")
    var keySize = 16

    @Option(name: .customLong("threads"), help: "Concurrent threads.")
    var threads = 1

    @Option(name: .customLong("sync"), help: "1: every write is acknowledged only when durable (.sync); 0: .buffered.")
    var sync = 0

    @Option(name: .customLong("cache_size"), help: "Block cache bytes (default: the library's, Options.defaultCacheBytes).")
    var cacheSize = Options.defaultCacheBytes

    @Option(name: .customLong("write_buffer_size"), help: "Memtable bytes (default: the library's, Options.memtableBytes).")
    var writeBufferSize = -1

    @Option(name: .customLong("target_file_size_base"), help: "Bytes at which compaction cuts its output tables (Options.tableTargetBytes; default 8 MiB).")
    var targetFileSizeBase = -1

    @Option(name: .customLong("max_bytes_for_level_base"), help: "Bytes of level 1 (Options.levelBaseBytes; default 32 MiB).")
    var maxBytesForLevelBase: Int64 = -1

    @Option(name: .customLong("block_restart_interval"), help: "Entries between a data block's restart points (Options.blockRestartInterval; default: the library's).")
    var blockRestartInterval = -1

    @Option(name: .customLong("read_compaction_bytes"), help: "Options.readCompactionBytesPerLookup: file bytes per wasted lookup before reads ask for a table's compaction; 0: off (default: the library's; not a db_bench flag).")
    var readCompactionBytes = -1

    @Option(name: .customLong("open_files"), help: "Tables held open at once (Options.maxOpenTables; default: the engine's, see Tuning).")
    var openFiles = -1

    @Option(name: .customLong("batch_size"), help: "Keys per batched lookup (multireadrandom).")
    var batchSize = 32

    @Option(name: .customLong("read_depth"), help: "Block reads a batched lookup keeps in flight (Options.batchReadDepth; not a db_bench flag).")
    var readDepth = Options().batchReadDepth

    @Option(name: .customLong("use_existing_db"), help: "1: keep the database (reads only); accepted for db_bench compatibility.")
    var useExistingDB = 0

    @Option(name: .customLong("use_direct_reads"), help: "Accepted for db_bench compatibility: reads are always O_DIRECT.")
    var useDirectReads = "true"

    @Option(name: .customLong("compression_type"), help: "Data block compression: none, lz4 (the library's default), zstd (level 3).")
    var compressionType: CompressionName = .lz4

    @Option(name: .customLong("ring_mode"), help: ArgumentHelp(RingMode.help + " Not a db_bench flag."))
    var ringMode: RingMode = .default

    @Option(name: .customLong("seed"), help: "Seed of the key sequences.")
    var seed: UInt64 = 301

    func validate() throws {
        guard keySize >= 8, keySize <= 1024 else { throw ValidationError("--key_size must be between 8 and 1024") }
        guard num > 0, threads > 0, valueSize >= 0 else { throw ValidationError("--num and --threads must be positive") }
        let known: Set = ["fillseq", "fillrandom", "overwrite", "fillsync", "readrandom", "multireadrandom", "readseq", "readtocache", "seekrandom", "compact", "stats", "deleterange", "scandeleted", "scanempty"]
        for name in benchmarks.split(separator: ",") where !known.contains(String(name)) {
            throw ValidationError("unknown benchmark '\(name)'; known: \(known.sorted().joined(separator: ","))")
        }
    }

    func run() throws {
        var options = Options()
        options.cacheBytes = cacheSize
        options.batchReadDepth = readDepth
        if writeBufferSize > 0 { options.memtableBytes = writeBufferSize }
        options.defaultDurability = sync == 1 ? .sync : .buffered
        if targetFileSizeBase > 0 { options.tableTargetBytes = targetFileSizeBase }
        if openFiles > 0 { options.maxOpenTables = openFiles }
        if blockRestartInterval > 0 { options.blockRestartInterval = blockRestartInterval }
        if readCompactionBytes >= 0 { options.readCompactionBytesPerLookup = readCompactionBytes }
        if maxBytesForLevelBase > 0 { options.levelBaseBytes = maxBytesForLevelBase }
        ringMode.apply(to: &options.pageStore)
        options.compression = compressionType.compression
        print("kvctl bench: keys \(keySize) bytes, values \(valueSize) bytes, \(num) keys x \(threads) threads, db \(db), ring mode \(ringMode.rawValue), compression \(compressionType.rawValue)")
        var database: Database? = nil
        for (ordinal, name) in benchmarks.split(separator: ",").map(String.init).enumerated() {
            if name.hasPrefix("fill") || database == nil {
                try database?.close()
                database = nil
                if name.hasPrefix("fill") { try? FileManager.default.removeItem(atPath: db) }
                database = try Database(path: db, options: options)
            }
            if name == "stats" {
                printStats(database!.stats)
                continue
            }
            if name == "compact" {
                let started = DispatchTime.now().uptimeNanoseconds
                try database!.compactRange()
                print("compact      : \(Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6) ms")
                continue
            }
            let db = database!
            let first = db.stats.lastSequence
            let ticker = name.hasPrefix("fill") || name == "overwrite"
                ? Ticker("\(name) (entries written)") { Int(db.stats.lastSequence - first) }
                : Ticker("\(name) (seconds)") { [started = DispatchTime.now().uptimeNanoseconds] in
                    Int((DispatchTime.now().uptimeNanoseconds - started) / 1_000_000_000)
                }
            let result = try runBenchmark(name, db, stream: streamSeed(name, ordinal))
            ticker.stop()
            print(result.line(name))
        }
        try database?.close()
    }

    /// Memtables at most: the active one and one frozen.
    private var memtableBudget: Int { 2 * (writeBufferSize > 0 ? writeBufferSize : Options().memtableBytes) }

    /// The process's peak resident set (getrusage), in bytes.
    private func peakResidentBytes() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss * 1024
    }

    /// The engine's own figures after a run: levels, write amplification, cache.
    private func printStats(_ stats: DatabaseStats) {
        let levels = stats.levels.filter { $0.tables > 0 }.map { "L\($0.level)=\($0.tables)/\($0.bytes >> 20)MiB" }
        print("kvengine stats: levels \(levels.joined(separator: " ")); flushed \(stats.bytesFlushed >> 20) MiB in \(stats.flushes) flushes; compacted read \(stats.bytesCompactedRead >> 20) MiB, written \(stats.bytesCompactedWritten >> 20) MiB in \(stats.compactions) compactions (+\(stats.trivialMoves) moves; \(stats.readCompactions) read-triggered); write-amp \(String(format: "%.2f", stats.writeAmplification)); cache hit rate \(String(format: "%.3f", stats.cacheHitRate)); stalls \(stats.stalls) (\(stats.stallMicroseconds / 1000) ms), slowdowns \(stats.slowdowns); memtable budget \(memtableBudget >> 20) MiB, cache \(cacheSize >> 20) MiB, index+filters \(stats.indexAndFilterBytes >> 20) MiB; tables open \(stats.openTables), opened \(stats.tableOpens) times; peak RSS \(peakResidentBytes() >> 20) MiB; ring modes \(stats.pageStore?.ringModeLine ?? "-")")
    }

    // MARK: workloads

    /// The seed of one benchmark's key and value streams: `--seed`, the benchmark's name and
    /// its place in `--benchmarks`. Every benchmark draws its own keys, as db_bench's do (so
    /// `overwrite` does not rewrite `fillrandom`'s keys in the same order, and reads do not
    /// replay a fill's sequence).
    private func streamSeed(_ name: String, _ ordinal: Int) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325  // FNV-1a of the name
        for byte in name.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return seed ^ hash ^ (UInt64(ordinal) &* 0xD1B5_4A32_D192_ED03)
    }

    private func runBenchmark(_ name: String, _ db: Database, stream: UInt64) throws -> BenchResult {
        // Plain copies of the options: reading a parsed option goes through its property
        // wrapper, too slow for a loop that times microsecond operations.
        let (num, keySize, batchSize) = (self.num, self.keySize, self.batchSize)
        let readCount = reads < 0 ? num : reads
        switch name {
        case "fillseq":
            return try parallel(stream) { thread, random in try write(db, count: num, sequential: true, random: &random, durability: nil) }
        case "fillrandom", "overwrite":
            return try parallel(stream) { thread, random in try write(db, count: num, sequential: false, random: &random, durability: nil) }
        case "fillsync":
            let count = writes < 0 ? max(1, num / 1000) : writes
            let before = db.stats
            var result = try parallel(stream) { thread, random in try write(db, count: count, sequential: false, random: &random, durability: .sync) }
            let after = db.stats
            result.chains = after.logChains - before.logChains
            result.chainMicros = after.logChainMicroseconds - before.logChainMicroseconds
            return result
        case "readrandom":
            return try parallel(stream) { _, random in
                var found = 0
                var bytes = 0
                var key = [UInt8](repeating: 0, count: keySize)
                for _ in 0..<readCount {
                    let index = Int(random.next() % UInt64(num))
                    key.withUnsafeMutableBytes { BenchKeys.write(index, into: $0) }
                    if let value = try db.get(key) {
                        found += 1
                        bytes += keySize + value.count
                    }
                }
                return ThreadResult(operations: readCount, bytes: bytes, found: found)
            }
        case "readseq", "readtocache":
            // As db_bench's: readseq walks --reads entries (--num when unset), readtocache
            // --num entries on one thread (to fill the cache before timed reads).
            let limit = name == "readtocache" || reads < 0 ? num : reads
            let body: @Sendable (Int, inout SplitMix) throws -> ThreadResult = { _, _ in
                var count = 0
                var bytes = 0
                try db.forEach { key, value in
                    count += 1
                    bytes += key.count + value.count
                    return count < limit
                }
                return ThreadResult(operations: count, bytes: bytes, found: nil)
            }
            return try name == "readtocache" ? parallel(stream, threads: 1, body) : parallel(stream, body)
        case "multireadrandom":
            return try parallel(stream) { _, random in
                var found = 0
                var bytes = 0
                var done = 0
                while done < readCount {
                    let keys = (0..<min(batchSize, readCount - done)).map { _ in BenchKeys.key(Int(random.next() % UInt64(num)), size: keySize) }
                    for value in try db.get(keys: keys) {
                        if let value {
                            found += 1
                            bytes += keySize + value.count
                        }
                    }
                    done += keys.count
                }
                return ThreadResult(operations: readCount, bytes: bytes, found: found)
            }
        case "seekrandom":
            return try parallel(stream) { _, random in
                var found = 0
                var target = [UInt8](repeating: 0, count: keySize)
                for _ in 0..<readCount {
                    let index = Int(random.next() % UInt64(num))
                    target.withUnsafeMutableBytes { BenchKeys.write(index, into: $0) }
                    // Looked at where it lies, as the peers' drivers look at an iterator's key.
                    try db.forEach(ScanOptions(start: target, limit: 1)) { key, _ in
                        if target.withUnsafeBytes({ $0.elementsEqual(key) }) { found += 1 }
                        return false
                    }
                }
                return ThreadResult(operations: readCount, bytes: 0, found: found)
            }
        case "deleterange":
            return try parallel(stream, threads: 1) { _, _ in
                try db.deleteRange(BenchKeys.key(0, size: keySize), BenchKeys.key(num, size: keySize))
                return ThreadResult(operations: 1, bytes: 0, found: nil)
            }
        case "scandeleted", "scanempty":
            // The range of every --num key, or the empty one after it, as wide.
            let (low, high) = name == "scandeleted" ? (0, num) : (num, 2 * num)
            let options = ScanOptions(start: BenchKeys.key(low, size: keySize), end: BenchKeys.key(high, size: keySize))
            return try parallel(stream, threads: 1) { _, _ in
                var found = 0
                for _ in 0..<readCount {
                    try db.forEach(options) { _, _ in
                        found += 1
                        return true
                    }
                }
                return ThreadResult(operations: readCount, bytes: 0, found: found)
            }
        default:
            throw ValidationError("unknown benchmark \(name)")
        }
    }

    private func write(
        _ db: Database, count: Int, sequential: Bool, random: inout SplitMix, durability: Durability?
    ) throws -> ThreadResult {
        let (num, keySize) = (self.num, self.keySize)
        var value = [UInt8](repeating: 0, count: valueSize)
        var key = [UInt8](repeating: 0, count: keySize)
        // Durable writes are timed one by one: their latency is what a caller waits.
        // Sized for latencies up to a minute at once: a histogram that grows as it meets
        // larger values reallocates on the timed path (5% of a 64-writer run's samples).
        var latencies: Histogram<UInt64>? = durability == .sync ? Bench.latencyHistogram() : nil
        for index in 0..<count {
            let keyIndex = sequential ? index : Int(random.next() % UInt64(num))
            random.fill(&value)
            key.withUnsafeMutableBytes { BenchKeys.write(keyIndex, into: $0) }
            if latencies != nil {
                let began = DispatchTime.now().uptimeNanoseconds
                try db.put(key, value, durability: durability)
                _ = latencies!.record(min(Bench.latencyCeilingMicros, (DispatchTime.now().uptimeNanoseconds - began + 500) / 1000))
            } else {
                try db.put(key, value, durability: durability)
            }
        }
        return ThreadResult(operations: count, bytes: count * (keySize + valueSize), found: nil, latencies: latencies)
    }

    /// The largest latency recorded (microseconds): longer ones count as this.
    static let latencyCeilingMicros: UInt64 = 60_000_000

    /// A latency histogram (microseconds, three significant digits) that never grows.
    static func latencyHistogram() -> Histogram<UInt64> {
        Histogram(highestTrackableValue: latencyCeilingMicros, numberOfSignificantValueDigits: .three)
    }

    /// Runs `body` on `threads` threads at once and merges their results.
    private func parallel(
        _ stream: UInt64, threads: Int? = nil, _ body: @escaping @Sendable (Int, inout SplitMix) throws -> ThreadResult
    ) throws -> BenchResult {
        let threads = threads ?? self.threads
        let results = Mutex<[Result<(ThreadResult, Double), any Error>]>([])
        let group = DispatchGroup()
        let start = DispatchTime.now().uptimeNanoseconds
        for thread in 0..<threads {
            group.enter()
            let threadSeed = stream &+ UInt64(thread) &* 0x9E37_79B9
            Thread {
                var random = SplitMix(seed: threadSeed)
                let began = DispatchTime.now().uptimeNanoseconds
                let outcome = Result { try body(thread, &random) }
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - began) / 1e9
                results.withLock { $0.append(outcome.map { ($0, seconds) }) }
                group.leave()
            }.start()
        }
        group.wait()
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        var merged = BenchResult(elapsedSeconds: elapsed)
        for result in results.withLock({ $0 }) {
            let (thread, seconds) = try result.get()
            merged.threadSeconds += seconds
            merged.operations += thread.operations
            merged.bytes += thread.bytes
            if let found = thread.found { merged.found = (merged.found ?? 0) + found }
            if let latencies = thread.latencies {
                if merged.latencies == nil { merged.latencies = Bench.latencyHistogram() }
                merged.latencies!.add(latencies)
            }
        }
        return merged
    }
}

/// Benchmark keys, written digit by digit into one allocation (the key of every operation
/// is made in the timed loop, so it must cost little next to the operation).
enum BenchKeys {
    /// `index` as zero-padded decimal of `size` bytes (its last `size` digits if longer).
    static func key(_ index: Int, size: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            write(index, into: UnsafeMutableRawBufferPointer(buffer))
            count = size
        }
    }

    /// Writes the key of `index` over `key` in place, as long as `key` is (a loop's
    /// buffer: no allocation per operation, as db_bench reuses its key buffer).
    static func write(_ index: Int, into key: UnsafeMutableRawBufferPointer) {
        var rest = index
        for position in stride(from: key.count - 1, through: 0, by: -1) {
            key[position] = UInt8(ascii: "0") + UInt8(rest % 10)
            rest /= 10
        }
    }
}

/// What one thread of a benchmark did.
struct ThreadResult: Sendable {
    var operations: Int
    var bytes: Int
    var found: Int?
    /// Microseconds each operation took (durable writes only).
    var latencies: Histogram<UInt64>? = nil
}

/// A benchmark's merged result, printed as db_bench prints it.
struct BenchResult {
    var elapsedSeconds: Double
    var threadSeconds = 0.0
    var operations = 0
    var bytes = 0
    var found: Int?
    var latencies: Histogram<UInt64>?
    /// Log chains (write + fdatasync) the run's commits took, for durable writes.
    var chains: Int?
    /// Microseconds those chains took, submission to completion, summed.
    var chainMicros: Int64 = 0

    /// `name : X micros/op N ops/sec S seconds N operations; M MB/s (F of R found)`, and
    /// for durable writes `; latency us p50 A p99 B p99.9 C max D; commits per chain E,
    /// chain us F of G` (F: a chain's mean time from submission to completion; G: the
    /// run's time per chain).
    func line(_ name: String) -> String {
        let micros = operations == 0 ? 0 : threadSeconds * 1e6 / Double(operations)
        let perSecond = elapsedSeconds > 0 ? Int(Double(operations) / elapsedSeconds) : 0
        let padded = name.count >= 12 ? name : name + String(repeating: " ", count: 12 - name.count)
        var text = padded + String(format: " : %11.3f micros/op %ld ops/sec %.3f seconds %ld operations;",
                                   micros, perSecond, elapsedSeconds, operations)
        if bytes > 0 { text += String(format: " %6.1f MB/s", Double(bytes) / 1_048_576 / elapsedSeconds) }
        if let found { text += " (\(found) of \(operations) found)" }
        if let latencies, latencies.totalCount > 0 {
            text += "; latency us p50 \(latencies.valueAtPercentile(50)) p99 \(latencies.valueAtPercentile(99))"
                + " p99.9 \(latencies.valueAtPercentile(99.9)) max \(latencies.max)"
        }
        if let chains, chains > 0 {
            // A chain's time against the time per chain: the rest is spent between chains.
            text += String(format: "; commits per chain %.1f, chain us %.0f of %.0f", Double(operations) / Double(chains),
                           Double(chainMicros) / Double(chains), elapsedSeconds * 1e6 / Double(chains))
        }
        return text
    }
}
