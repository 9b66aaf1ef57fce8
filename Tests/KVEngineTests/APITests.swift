import Foundation
import Synchronization
import XCTest

@testable import KVEngine

private struct Profile: Codable, Equatable {
    var name: String
    var visits: Int
}

/// The public API's forms: key and value types, Codable, async scans, errors by code,
/// the state after close.
final class APITests: XCTestCase {
    func testKeysAndValuesOfEveryByteType() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        let data = Data([0, 1, 2, 0xFF])
        try db.put("data", data)
        try db.put(Data("k2".utf8), "text value")
        try db.put("slice"[...], [UInt8]([9, 8, 7])[1...])
        try db.put(ContiguousArray<UInt8>([1]), ContiguousArray<UInt8>([2]))
        XCTAssertEqual(try db.get("data", as: Data.self), data)
        XCTAssertEqual(try db.get(Data("k2".utf8), as: String.self), "text value")
        XCTAssertEqual(try db.get("k2"), "text value")
        XCTAssertEqual(try db.get(Substring("slice")), [8, 7])
        XCTAssertEqual(try db.get([UInt8]([1]), as: ContiguousArray<UInt8>.self), [2])
        // Bytes that are not UTF-8 asked for as a String: an error, not nil.
        XCTAssertThrowsError(try db.get("data") as String?) { XCTAssertEqual(($0 as? KVError)?.code, .decoding) }
        let borrowed = try db.withValue(forKey: "data") { $0.map { Array($0) } }
        XCTAssertEqual(borrowed, [0, 1, 2, 0xFF])
        try db.delete(Data("data".utf8))
        XCTAssertNil(try db.get("data", as: Data.self))
        var batch = WriteBatch()
        batch.put("b1", data)
        batch.put(Data("b2".utf8), "two")
        batch.delete("k2")
        try db.write(batch)
        XCTAssertEqual(try db.get("b2"), "two")
        XCTAssertNil(try db.get("k2"))
    }

    func testCodableValuesWithTheDefaultAndAChosenCoder() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        let alice = Profile(name: "Alice", visits: 3)
        try db.put("user:alice", encoding: alice)
        XCTAssertEqual(try db.get("user:alice", decoding: Profile.self), alice)
        XCTAssertTrue(try db.get("user:alice")!.contains("\"name\":\"Alice\""), "JSON by default")
        try db.put("user:bob", encoding: Profile(name: "Bob", visits: 1), using: PropertyListEncoder())
        XCTAssertEqual(try db.get("user:bob", decoding: Profile.self, using: PropertyListDecoder()), Profile(name: "Bob", visits: 1))
        XCTAssertNil(try db.get("user:carol", decoding: Profile.self))
        var refused = false
        do {
            _ = try db.get("user:bob", decoding: Profile.self)  // a plist read as JSON
        } catch KVError.decoding {
            refused = true
        } catch {
            // Swift 6.3 crashes compiling a non-exhaustive catch of a typed throw in an
            // untyped throwing function (when the catch sets a local); a last catch avoids it.
            throw error
        }
        XCTAssertTrue(refused, "expected a decoding error")
    }

    func testErrorsAreCaughtByCode() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        var caught = false
        do {
            _ = try Database(path: dir.path, options: testOptions())
        } catch KVError.locked {
            caught = true
        } catch {
            XCTFail("unexpected \(error)")
        }
        XCTAssertTrue(caught, "a second open should fail with .locked")
        caught = false
        do {
            try db.put([], [1])
        } catch KVError.invalidArgument {
            caught = true
        } catch {
            XCTFail("unexpected \(error)")
        }
        XCTAssertTrue(caught)
    }

    /// After close every call throws `.closed`: scans and snapshots too, where an empty
    /// answer would look like an empty database.
    func testEveryCallAfterCloseThrowsClosed() async throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        try await db.put("k", "v")
        let early = db.scan()
        XCTAssertEqual(try early.collect().count, 1)
        try await db.close()
        expectClosed("get") { _ = try db.get("k") as String? }
        expectClosed("put") { try db.put("k", "v") }
        expectClosed("delete") { try db.delete("k") }
        expectClosed("snapshot") { _ = try db.snapshot() }
        expectClosed("scan") { _ = try db.scan().next() }
        expectClosed("forEach") { try db.forEach { _, _ in true } }
        expectClosed("transaction") { try db.transaction { _ in } }
        expectClosed("sync") { try db.sync() }
        early.restart()
        XCTAssertThrowsError(try early.next()) { XCTAssertEqual(($0 as? KVError)?.code, .closed, "a walk begun after close") }
        var refused = 0
        do {
            for try await _ in db.scan() {}
        } catch KVError.closed {
            refused += 1
        } catch {
            throw error
        }
        do {
            _ = try await db.get("k")
        } catch KVError.closed {
            refused += 1
        } catch {
            throw error
        }
        XCTAssertEqual(refused, 2, "an async scan and get of a closed database")
    }

    private func expectClosed(_ what: String, _ body: () throws -> Void) {
        XCTAssertThrowsError(try body(), what) { XCTAssertEqual(($0 as? KVError)?.code, .closed, what) }
    }

    /// An async scan yields what the sync one does, in batches across tables and
    /// memtables; each loop is a walk of its own; `restart` walks the sync form again.
    func testAsyncScansAndWalkingAgain() async throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions { $0.memtableBytes = 1 << 16 })
        for index in 0..<3_000 { try await db.put(String(format: "key%05d", index), "value\(index)", durability: .buffered) }
        try await db.compactRange()
        for index in 3_000..<3_100 { try await db.put(String(format: "key%05d", index), "value\(index)", durability: .buffered) }
        let cursor = db.scan(ScanOptions(prefix: "key00"))
        var keys: [String] = []
        for try await (key, _) in cursor { keys.append(String(decoding: key, as: UTF8.self)) }
        XCTAssertEqual(keys.count, 1000)
        XCTAssertTrue(keys == (0..<1000).map { String(format: "key%05d", $0) }, "the keys of the prefix, in order")
        var again = 0
        for try await _ in cursor { again += 1 }
        XCTAssertEqual(again, 1000, "a second loop walks again")
        let all = db.scan()
        XCTAssertEqual(try all.collect().count, 3_100)
        XCTAssertNil(try all.next(), "used up")
        all.restart()
        XCTAssertEqual(try all.collect().count, 3_100)
        let visited = Mutex(0)
        try await db.forEach(ScanOptions(prefix: "key01")) { _, _ in
            visited.withLock { $0 += 1 }
            return true
        }
        XCTAssertEqual(visited.withLock { $0 }, 1000)
        let report = try await db.ingest(sorted: [(key: bytes("zz1"), value: bytes("a")), (key: bytes("zz2"), value: bytes("b"))])
        XCTAssertEqual(report.entries, 2)
        let ingested = try await db.get("zz2")
        XCTAssertEqual(ingested, "b")
        let length = try await db.withValue(forKey: "zz2") { $0?.count ?? -1 }
        XCTAssertEqual(length, 1, "the async borrowing read")
        var reversed: [[UInt8]] = []
        for try await (key, _) in db.scan(ScanOptions(reverse: true, limit: 3)) { reversed.append(key) }
        XCTAssertEqual(reversed.map { String(decoding: $0, as: UTF8.self) }, ["zz2", "zz1", "key03099"])
        try await db.close()
    }

    /// Paging with `after`: each page starts just past the last key of the one before.
    func testPagingWithAfter() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        for index in 0..<25 { try db.put(String(format: "p%02d", index), "v") }
        try db.put("p05\u{0}", "zero-suffixed")  // the smallest key after "p05"
        var pages: [[String]] = []
        var last: [UInt8]? = nil
        while true {
            let page = try db.scan(ScanOptions(after: last, prefix: "p", limit: 10)).collect()
            if page.isEmpty { break }
            pages.append(page.map { String(decoding: $0.key, as: UTF8.self) })
            last = page.last!.key
        }
        XCTAssertEqual(pages.map(\.count), [10, 10, 6])
        XCTAssertEqual(pages.joined().count, Set(pages.joined()).count, "a key on two pages")
        XCTAssertTrue(pages[0].contains("p05\u{0}"))
        XCTAssertEqual(ScanOptions(start: "b", after: "a").start, [UInt8]("b".utf8), "the later bound applies")
        XCTAssertEqual(ScanOptions(start: "a", after: "a").start, [UInt8]("a".utf8) + [0])
    }

    /// Options can be built with labelled arguments.
    func testOptionsWithLabelledArguments() {
        let options = Options(createIfMissing: false, readOnly: true, defaultDurability: .buffered, cacheBytes: 1 << 20)
        XCTAssertFalse(options.createIfMissing)
        XCTAssertTrue(options.readOnly)
        XCTAssertEqual(options.defaultDurability, .buffered)
        XCTAssertEqual(options.cacheBytes, 1 << 20)
        XCTAssertEqual(options.memtableBytes, Options().memtableBytes)
    }
}
