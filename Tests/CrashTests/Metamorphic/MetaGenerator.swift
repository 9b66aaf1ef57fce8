@testable import KVEngine

/// Writes a random, weighted sequence of operations from a seed.
///
/// Keys come from a small pool per seed, so that they collide: short strings over an
/// alphabet with 0x00 and 0xFF (the empty key included now and then), sharing prefixes so
/// that prefix scans and range bounds cut between them. Values are empty, small, or large
/// enough to span log pages and table blocks. Snapshots and cursors are held open across
/// the operations that follow until released, closed, or dropped by a reopen or crash.
///
/// Most keys come from a window of neighbouring pool keys that moves now and then, so
/// that memtables flush into tables with narrow, partly overlapping ranges (level 0 then
/// holds chains of tables that overlap one another, as real workloads with locality make).
struct MetaGenerator {
    private var random: SplitMix
    private let keys: [[UInt8]]
    private var window: Range<Int>
    private var nextStamp = 1
    private var liveSnapshots: [Int] = []
    private var nextSnapshot = 1
    private var liveCursors: [Int] = []
    private var nextCursor = 1

    private static let alphabet: [UInt8] = [0x00, 0x01, 0x61, 0x62, 0x7F, 0xFE, 0xFF]

    init(seed: UInt64) {
        random = SplitMix(seed: seed)
        var pool = Set<[UInt8]>()
        let size = 4 + random.below(36)
        if random.chance(0.2) { pool.insert([]) }
        while pool.count < size {
            pool.insert(MetaGenerator.word(&random, length: 1 + random.below(4)))
        }
        keys = pool.sorted { $0.lexicographicallyPrecedes($1) }
        window = 0..<keys.count
        moveWindow()
    }

    /// Mostly a drift by a few keys (successive memtables then cover chained, partly
    /// overlapping ranges), sometimes a jump anywhere, with a new width.
    private mutating func moveWindow() {
        let width = 1 + random.below(max(1, keys.count / 3))
        var start: Int
        if random.chance(0.7) {
            let step = 1 + random.below(max(1, window.count / 2 + 1))
            start = window.lowerBound + (random.chance(0.5) ? step : -step)
        } else {
            start = random.below(keys.count)
        }
        start = max(0, min(start, keys.count - width))
        window = start..<(start + width)
    }

    private static func word(_ random: inout SplitMix, length: Int) -> [UInt8] {
        (0..<length).map { _ in alphabet[random.below(alphabet.count)] }
    }

    /// The operation kinds and their weights.
    private enum Kind: CaseIterable {
        case put, delete, deleteRange, batch, get, getMany, takeSnapshot, releaseSnapshot, openCursor, next, closeCursor, scan, count
        case flush, compactAll, compactRange, sync, reopen, reopenWithOptions, reopenReadOnly, salvage, crash, ingest, noRoom, transaction
        case checkpoint, backup, follow

        var weight: Int {
            switch self {
            case .put: return 220
            case .delete: return 80
            case .deleteRange: return 25
            case .batch: return 80
            case .get: return 140
            case .getMany: return 40
            case .takeSnapshot: return 30
            case .releaseSnapshot: return 20
            case .openCursor: return 40
            case .next: return 100
            case .closeCursor: return 20
            case .scan: return 50
            case .count: return 15
            case .flush: return 60
            case .compactAll: return 10
            case .compactRange: return 70
            case .sync: return 20
            case .reopen: return 15
            case .reopenWithOptions: return 15
            case .reopenReadOnly: return 8
            case .salvage: return 4
            case .crash: return 20
            case .ingest: return 12
            case .noRoom: return 10
            case .transaction: return 40
            case .checkpoint: return 6
            case .backup: return 6
            case .follow: return 10
            }
        }
    }

    /// `count` operations.
    mutating func generate(count: Int) -> [MetaOp] {
        let total = Kind.allCases.reduce(0) { $0 + $1.weight }
        var operations: [MetaOp] = []
        while operations.count < count {
            var draw = random.below(total)
            let kind = Kind.allCases.first { kind in
                defer { draw -= kind.weight }
                return draw < kind.weight
            }!
            if random.chance(0.15) { moveWindow() }
            if let operation = make(kind) { operations.append(operation) }
        }
        return operations
    }

    private mutating func make(_ kind: Kind) -> MetaOp? {
        switch kind {
        case .put: return .put(key: key(), value: value(), sync: durability())
        case .delete: return .delete(key: key(), sync: durability())
        case .deleteRange:
            let (start, end) = range()
            return .deleteRange(start: start, end: end, sync: durability())
        case .batch:
            var entries: [MetaBatchEntry] = []
            for _ in 0..<(1 + random.below(8)) {
                // Now and then the same key again within the batch: the later entry wins.
                let key = !entries.isEmpty && random.chance(0.3) ? entries[random.below(entries.count)].key : key()
                if random.chance(0.08) {
                    let (start, end) = range()
                    entries.append(.deleteRange(start, end))
                } else {
                    entries.append(random.chance(0.3) ? .delete(key) : .put(key, value()))
                }
            }
            return .batch(entries, sync: durability())
        case .get: return .get(key: key(), snapshot: snapshot())
        case .getMany: return .getMany(keys: (0..<(1 + random.below(12))).map { _ in key() }, snapshot: snapshot())
        case .takeSnapshot:
            let id = nextSnapshot
            nextSnapshot += 1
            liveSnapshots.append(id)
            return .takeSnapshot(id)
        case .releaseSnapshot:
            guard !liveSnapshots.isEmpty else { return nil }
            return .releaseSnapshot(liveSnapshots.remove(at: random.below(liveSnapshots.count)))
        case .openCursor:
            let id = nextCursor
            nextCursor += 1
            liveCursors.append(id)
            return .openCursor(id: id, scan: scan(), snapshot: snapshot())
        case .next:
            guard !liveCursors.isEmpty else { return nil }
            return .next(cursor: liveCursors[random.below(liveCursors.count)], count: 1 + random.below(random.chance(0.2) ? 40 : 4))
        case .closeCursor:
            guard !liveCursors.isEmpty else { return nil }
            return .closeCursor(liveCursors.remove(at: random.below(liveCursors.count)))
        case .scan: return .scan(scan(), snapshot: snapshot())
        case .count: return .count(snapshot: snapshot())
        case .flush: return .flush
        case .compactAll: return .compact(start: nil, end: nil)
        case .compactRange:
            // Mostly a narrow range in order (one key, or two near each other); sometimes
            // open on one side, or any two bounds (perhaps reversed: an empty range).
            if random.chance(0.2) { return .compact(start: bound(), end: bound()) }
            let first = key()
            let second = random.chance(0.3) ? first : key()
            let (low, high) = first.lexicographicallyPrecedes(second) ? (first, second) : (second, first)
            return .compact(start: random.chance(0.1) ? nil : low, end: random.chance(0.1) ? nil : high)
        case .sync: return .sync
        case .reopen:
            dropHandles()
            return .reopen(options: nil)
        case .reopenWithOptions:
            dropHandles()
            return .reopen(options: MetaOptionSet.all[random.below(MetaOptionSet.all.count)].name)
        case .reopenReadOnly:
            dropHandles()
            return .reopenReadOnly
        case .salvage:
            dropHandles()
            return .salvage
        case .crash:
            dropHandles()
            return .crash
        case .ingest:
            // Sorted keys, distinct; now and then two swapped, which must add nothing.
            var keys = Set((0..<(1 + random.below(12))).map { _ in key() }).sorted { $0.lexicographicallyPrecedes($1) }
            if keys.count > 1 && random.chance(0.1) {
                let at = random.below(keys.count - 1)
                keys.swapAt(at, at + 1)
            }
            return .ingest(keys.map { .put($0, value()) })
        case .noRoom: return .noRoom(key: key(), value: value(), sync: durability())
        case .transaction:
            // Keys the engine takes (no empty key): a read, write or meanwhile of one
            // would fail the whole transaction, which tells nothing about conflicts.
            let reads = (0..<random.below(4)).map { _ in nonEmptyKey() }
            var writes: [MetaBatchEntry] = []
            for _ in 0..<random.below(4) {
                let key = !reads.isEmpty && random.chance(0.4) ? reads[random.below(reads.count)] : nonEmptyKey()
                if random.chance(0.08) {
                    // A valid one: a refused write would fail the whole transaction.
                    let (start, end) = range()
                    writes.append(start.lexicographicallyPrecedes(end) ? .deleteRange(start, end) : .deleteRange(start, start + [0x00]))
                } else {
                    writes.append(random.chance(0.25) ? .delete(key) : .put(key, value()))
                }
            }
            let scan = random.chance(0.4) ? scan() : nil
            var meanwhile: MetaBatchEntry? = nil
            if random.chance(0.6) {
                // Often a key the transaction touches, so that conflicts are common.
                let touched = reads + writes.map(\.key)
                let key = !touched.isEmpty && random.chance(0.5) ? touched[random.below(touched.count)] : nonEmptyKey()
                meanwhile = random.chance(0.3) ? .delete(key) : .put(key, value())
            }
            return .transaction(MetaTransaction(sync: durability(), reads: reads, scan: scan, writes: writes, meanwhile: meanwhile))
        case .checkpoint: return .checkpoint
        case .backup: return .backup
        case .follow: return .follow
        }
    }

    private mutating func dropHandles() {
        liveSnapshots.removeAll()
        liveCursors.removeAll()
    }

    /// A range to delete: mostly two keys of the pool in order (a narrow run of them),
    /// sometimes bounds that are not keys, now and then empty or reversed (refused).
    private mutating func range() -> ([UInt8], [UInt8]) {
        let first = nonEmptyKey()
        let second = random.chance(0.7) ? key() : MetaGenerator.word(&random, length: 1 + random.below(4))
        if random.chance(0.05) { return (first, first) }
        if random.chance(0.05) { return (first.lexicographicallyPrecedes(second) ? second : first, first) }
        return first.lexicographicallyPrecedes(second) ? (first, second) : (second.isEmpty ? [0x00] : second, first + [0xFF])
    }

    private mutating func nonEmptyKey() -> [UInt8] {
        let key = key()
        return key.isEmpty ? [0x61] : key
    }

    private mutating func key() -> [UInt8] {
        random.chance(0.97) ? keys[window.lowerBound + random.below(window.count)] : keys[random.below(keys.count)]
    }

    /// A range bound: a pool key, some other string over the alphabet, or none.
    private mutating func bound() -> [UInt8]? {
        let draw = random.below(10)
        if draw < 5 { return key() }
        if draw < 8 { return MetaGenerator.word(&random, length: random.below(4)) }
        return nil
    }

    private mutating func value() -> MetaValue {
        let stamp = nextStamp
        nextStamp += 1
        let draw = random.below(100)
        let length: Int
        switch draw {
        case 0..<8: length = 0
        case 8..<70: length = 1 + random.below(24)
        case 70..<90: length = 100 + random.below(900)
        case 90..<98: length = 3000 + random.below(6000)
        default:
            // Now and then a value the log streams (longer than one goes into pages whole).
            length = random.chance(0.02) ? LogWriter.streamThresholdBytes + random.below(256 << 10) : 20_000 + random.below(50_000)
        }
        return MetaValue(stamp: stamp, length: length)
    }

    private mutating func durability() -> Bool { random.chance(0.7) }

    private mutating func snapshot() -> Int? {
        guard !liveSnapshots.isEmpty, random.chance(0.35) else { return nil }
        return liveSnapshots[random.below(liveSnapshots.count)]
    }

    private mutating func scan() -> MetaScan {
        var scan = MetaScan()
        if random.chance(0.4) { scan.start = bound() }
        if random.chance(0.4) { scan.end = bound() }
        if random.chance(0.3) { scan.prefix = MetaGenerator.word(&random, length: random.below(3)) }
        scan.reverse = random.chance(0.4)
        if random.chance(0.25) { scan.limit = random.below(8) }
        return scan
    }
}
