import Foundation
import XCTest

@testable import KVEngine
import TestSupport

/// Cursors reuse the iterator stacks earlier cursors over the same view gave back
/// (`View.park`): a reused stack must answer as a new one would, whatever the cursor
/// before it did (stopped early, walked backwards, crossed tables, ran to the end).
final class CursorReuseTests: XCTestCase {
    private func key(_ index: Int) -> [UInt8] { bytes(String(format: "k%05d", index)) }

    /// Random scans (forward, backward, bounded, limited, a prefix) over a memtable, level
    /// 0 and deeper levels, checked against a model, with some cursors held half-read
    /// across other scans and across writes (range deletes among them) that install new
    /// views, then finished.
    func testReusedStacksAnswerAsNewOnes() throws {
        let seed = testSeed()
        var random = SplitMix(seed: seed)
        let dir = TestPath()
        let db = try Database(
            path: dir.path,
            options: testOptions {
                $0.allowTinySizes = true
                $0.memtableBytes = 32 << 10
                $0.tableTargetBytes = 8 << 10
                $0.levelBaseBytes = 64 << 10
            })
        var model: [[UInt8]: [UInt8]] = [:]
        let keySpace = 3_000
        /// A cursor read in part: what it must still hand out, at its snapshot.
        var held: [(cursor: Cursor, rest: ArraySlice<(key: [UInt8], value: [UInt8])>)] = []

        /// The model in key order, made again after each round's writes.
        var sorted: [(key: [UInt8], value: [UInt8])] = []
        /// The first position of `sorted` whose key is not before `key`.
        func position(_ key: [UInt8]) -> Int {
            var (low, high) = (0, sorted.count)
            while low < high {
                let mid = (low + high) / 2
                if sorted[mid].key.lexicographicallyPrecedes(key) { low = mid + 1 } else { high = mid }
            }
            return low
        }
        func expected(_ options: ScanOptions) -> [(key: [UInt8], value: [UInt8])] {
            let lower = options.start.map(position) ?? 0
            let upper = max(lower, options.end.map(position) ?? sorted.count)
            var entries = sorted[lower..<upper].filter { entry in options.prefix.map { entry.key.starts(with: $0) } ?? true }
            if options.reverse { entries.reverse() }
            if let limit = options.limit { entries = Array(entries.prefix(max(0, limit))) }
            return entries
        }

        func randomOptions() -> ScanOptions {
            let a = Int(random.next() % UInt64(keySpace))
            let b = a + 1 + Int(random.next() % 200)
            switch random.next() % 5 {
            case 0: return ScanOptions(start: key(a), limit: 1)
            case 1: return ScanOptions(start: key(a), end: key(b))
            case 2: return ScanOptions(end: key(b), reverse: true, limit: 1 + Int(random.next() % 20))
            case 3: return ScanOptions(prefix: Array(key(a).prefix(4)), reverse: random.next() % 2 == 0)
            default: return ScanOptions(start: key(a), end: key(b), reverse: true)
            }
        }

        for round in 0..<8 {
            if round > 0 {
                // From the second round on, range deletes too: a cursor held from before
                // the first one (when no source had any) must still see what they delete.
                for _ in 0..<3 {
                    let low = Int(random.next() % UInt64(keySpace))
                    let high = low + 1 + Int(random.next() % 40)
                    try db.deleteRange(key(low), key(high))
                    for index in low..<high { model[key(index)] = nil }
                }
            }
            for _ in 0..<1_500 {
                let index = Int(random.next() % UInt64(keySpace))
                if random.next() % 5 == 0 {
                    try db.delete(key(index))
                    model[key(index)] = nil
                } else {
                    let value = bytes("v\(index)-\(round)-" + String(repeating: "x", count: Int(random.next() % 60)))
                    try db.put(key(index), value)
                    model[key(index)] = value
                }
            }
            sorted = model.map { (key: $0.key, value: $0.value) }.sorted { $0.key.lexicographicallyPrecedes($1.key) }
            for step in 0..<200 {
                let options = randomOptions()
                let want = expected(options)
                let cursor = db.scan(options)
                if step % 50 == 0 && held.count < 3 {
                    // Read part of it now, the rest later (its stack stays out of the pool).
                    let first = Int(random.next() % 4)
                    var got: [(key: [UInt8], value: [UInt8])] = []
                    while got.count < first, let entry = try cursor.next() { got.append(entry) }
                    XCTAssertEqual(got.map(\.key), want.prefix(first).map(\.key), "seed \(seed) round \(round) held \(options)")
                    held.append((cursor, want.dropFirst(got.count)))
                    continue
                }
                let got = try cursor.collect()
                XCTAssertEqual(got.map(\.key), want.map(\.key), "seed \(seed) round \(round) step \(step) \(options)")
                XCTAssertEqual(got.map(\.value), want.map(\.value), "seed \(seed) round \(round) step \(step) values \(options)")
            }
            // Finish the oldest held cursor: it still reads its snapshot.
            if !held.isEmpty {
                let (cursor, rest) = held.removeFirst()
                let got = try cursor.collect()
                XCTAssertEqual(got.map(\.key), rest.map(\.key), "seed \(seed) round \(round): a held cursor")
                XCTAssertEqual(got.map(\.value), rest.map(\.value), "seed \(seed) round \(round): a held cursor's values")
            }
        }
        for (cursor, rest) in held { XCTAssertEqual(try cursor.collect().map(\.key), rest.map(\.key), "seed \(seed): a held cursor at the end") }
        XCTAssertGreaterThan(db.stats.levels.reduce(0) { $0 + $1.tables }, 3, "the scans should cross tables")
        try db.close()
    }
}
