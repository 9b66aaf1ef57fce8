import Synchronization
import TestSupport
import XCTest

@testable import KVEngine

/// The CLOCK cache's open-addressing shards against a model: what a lookup returns is what
/// was inserted under that key, removals and evictions leave no key unreachable, and the
/// charge stays within capacity.
final class ClockCacheTests: XCTestCase {
    private final class Item: CacheCharged, @unchecked Sendable {
        let id: Int
        let charge: Int
        init(id: Int, charge: Int) {
            self.id = id
            self.charge = charge
        }
    }

    func testNothingIsEvictedWhileEverythingFits() {
        let cache = ClockCache<UInt64, Item>(capacity: 1 << 30, shardCount: 4)
        for key in 0..<UInt64(5000) { cache.insert(key, Item(id: Int(key), charge: 10)) }
        for key in 0..<UInt64(5000) { XCTAssertEqual(cache.lookup(key)?.id, Int(key)) }
        XCTAssertEqual(cache.counters.usage, 50_000)
        // Remove every third: the rest stay reachable across the holes the removals shift.
        for key in stride(from: UInt64(0), to: 5000, by: 3) { cache.remove(key) }
        for key in 0..<UInt64(5000) { XCTAssertEqual(cache.lookup(key)?.id, key % 3 == 0 ? nil : Int(key), "key \(key)") }
        XCTAssertEqual(cache.values.count, 5000 - 1667)
    }

    func testInsertIfRoomEvictsNothing() {
        let cache = ClockCache<UInt64, Item>(capacity: 100, shardCount: 1)
        XCTAssertTrue(cache.insertIfRoom(1, Item(id: 1, charge: 60)))
        XCTAssertFalse(cache.insertIfRoom(2, Item(id: 2, charge: 50)), "no room without evicting")
        XCTAssertFalse(cache.insertIfRoom(1, Item(id: 3, charge: 10)), "the resident value stays")
        XCTAssertEqual(cache.lookup(1)?.id, 1)
        XCTAssertNil(cache.lookup(2))
        XCTAssertTrue(cache.insertIfRoom(3, Item(id: 3, charge: 40)))
        XCTAssertEqual(cache.counters.usage, 100)
    }

    /// A flush's blocks enter the cache as they are written: reading them back right after
    /// costs no block read.
    func testFlushedBlocksAreReadFromTheCache() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions { $0.cacheBytes = 64 << 20 })
        for index in 0..<2000 { try db.put(Array("key\(index)".utf8), Array(repeating: UInt8(index & 0xFF), count: 100)) }
        try db.compactRange()
        let before = db.stats
        XCTAssertGreaterThan(before.cacheBytes, 0, "the flush filled the cache")
        for index in stride(from: 0, to: 2000, by: 7) {
            XCTAssertEqual(try db.get(Array("key\(index)".utf8)), Array(repeating: UInt8(index & 0xFF), count: 100))
        }
        XCTAssertEqual(db.stats.cacheMisses, before.cacheMisses, "every block read was a cache hit")
        try db.close()
    }

    func testRandomOperationsAgainstAModel() {
        let seed = testSeed()
        var random = SplitMix(seed: seed)
        let capacity = 4 * 2000
        let cache = ClockCache<BlockKey, Item>(capacity: capacity, shardCount: 4)
        var inserted: [BlockKey: Int] = [:]
        var nextID = 0
        for step in 0..<60_000 {
            let key = BlockKey(table: random.next() % 8, offset: Int64(random.next() % 600) * 4096)
            switch random.next() % 10 {
            case 0..<4:
                nextID += 1
                let kept = cache.insert(key, Item(id: nextID, charge: 1 + Int(random.next() % 8)))
                if kept.id == nextID { inserted[key] = nextID }
                XCTAssertEqual(kept.id, inserted[key] ?? nextID, "seed \(seed) step \(step): insert keeps the resident value")
            case 4:
                cache.remove(key)
                inserted[key] = nil
                XCTAssertNil(cache.lookup(key), "seed \(seed) step \(step): removed")
            default:
                if let found = cache.lookup(key) {
                    XCTAssertEqual(found.id, inserted[key], "seed \(seed) step \(step): a lookup returns what was inserted")
                }
            }
            if step % 5000 == 0 {
                let values = cache.values
                let usage = cache.counters.usage
                XCTAssertLessThanOrEqual(usage, capacity, "seed \(seed)")
                XCTAssertEqual(usage, values.reduce(0) { $0 + $1.charge }, "seed \(seed): usage is the charge held")
                // Every value held is reachable under the key it went in with.
                let held = Set(values.map(\.id))
                for (key, id) in inserted where held.contains(id) {
                    XCTAssertEqual(cache.lookup(key)?.id, id, "seed \(seed) step \(step): a held value is unreachable")
                }
            }
        }
    }
}
