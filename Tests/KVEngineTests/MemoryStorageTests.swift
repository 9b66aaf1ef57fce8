import Foundation
import PageStore
import XCTest

@testable import KVEngine

/// A database on `MemoryStorage` (`Options.storage`): the whole engine, no disk.
final class MemoryStorageTests: XCTestCase {
    private func options(_ storage: MemoryStorage, _ change: (inout Options) -> Void = { _ in }) -> Options {
        testOptions { options in
            options.storage = storage
            change(&options)
        }
    }

    func testADatabaseInMemoryWritesFlushesCompactsAndReopens() throws {
        _ = quietEngineLogs
        let storage = try MemoryStorage()
        let path = "/kvengine-in-memory-\(getpid())/db"
        let db = try Database(path: path, options: options(storage) { $0.memtableBytes = 64 << 10 })
        for index in 0..<3000 { try db.put(bytes("key\(index)"), [UInt8](repeating: UInt8(index & 0xFF), count: 100)) }
        try db.delete("key7")
        try db.compactRange()
        XCTAssertGreaterThan(db.stats.levels.reduce(0) { $0 + $1.tables }, 0, "tables were written")
        try db.close()
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "nothing reached the real file system")
        let names = try storage.contentsOfDirectory(atPath: path)
        XCTAssertTrue(names.contains("KVENGINE") && names.contains("CURRENT") && names.contains { $0.hasSuffix(".sst") }, "\(names)")

        let again = try Database(path: path, options: options(storage))
        XCTAssertEqual(try again.get(bytes("key2999")), [UInt8](repeating: UInt8(2999 & 0xFF), count: 100))
        XCTAssertNil(try again.get("key7"))
        var count = 0
        try again.forEach(ScanOptions()) { _, _ in
            count += 1
            return true
        }
        XCTAssertEqual(count, 2999)
        try again.close()
        let report = try Database.check(path: path, options: options(storage))
        XCTAssertTrue(report.findings.isEmpty, "\(report.findings)")
        XCTAssertGreaterThan(report.tables, 0)
    }

    func testAStorageTheEngineCannotRunOnIsRefused() throws {
        let small = try MemoryStorage(arenaBytes: 2 << 20)
        XCTAssertThrowsError(try Database(path: "/db", options: options(small))) { error in
            XCTAssertEqual((error as! KVError).code, .invalidArgument)
            XCTAssertTrue((error as! KVError).message.contains("minimumArenaBytes"), "\(error)")
        }
        XCTAssertFalse(small.fileExists(atPath: "/db"), "nothing was created")
    }

    func testTheLockGoesThroughTheStorage() throws {
        let storage = try MemoryStorage()
        let path = "/memory/db"
        let writer = try Database(path: path, options: options(storage))
        XCTAssertThrowsError(try Database(path: path, options: options(storage))) { error in
            XCTAssertEqual((error as! KVError).code, .locked, "\(error)")
            XCTAssertTrue((error as! KVError).message.contains("another handle in this process"), "\(error)")
        }
        XCTAssertThrowsError(try Database(path: path, options: options(storage) { $0.readOnly = true })) { error in
            XCTAssertEqual((error as! KVError).code, .locked, "a reader waits for the writer to go")
        }
        try writer.put("k", "v")
        try writer.close()
        let first = try Database(path: path, options: options(storage) { $0.readOnly = true })
        let second = try Database(path: path, options: options(storage) { $0.readOnly = true })
        XCTAssertEqual(try first.get("k"), "v")
        XCTAssertEqual(try second.get("k"), "v")
        XCTAssertThrowsError(try Database(path: path, options: options(storage))) { error in
            XCTAssertEqual((error as! KVError).code, .locked, "a writer waits for the readers")
        }
        try first.close()
        try second.close()
        try Database(path: path, options: options(storage)).close()
        // Another storage is another world: the same path is a new, empty database there.
        let elsewhere = try Database(path: path, options: options(try MemoryStorage()))
        XCTAssertNil(try elsewhere.get("k"))
        try elsewhere.close()
    }

    func testFilesBehaveAsOnADisk() throws {
        let storage = try MemoryStorage(arenaBytes: 1 << 20)
        XCTAssertThrowsError(try storage.openFile(atPath: "/missing/file", mode: .createNew), "no such directory")
        try storage.createDirectory(atPath: "/a/b")
        let file = try storage.openFile(atPath: "/a/b/f", mode: .createNew)
        XCTAssertThrowsError(try storage.openFile(atPath: "/a/b/f", mode: .createNew), "exists")
        let page = try storage.allocator.allocate()
        defer { storage.allocator.free(page) }
        page.bytes.initializeMemory(as: UInt8.self, repeating: 7)
        try storage.commit(file, [IOSegment(offsetBytes: 4096, buffer: page)])
        XCTAssertEqual(try storage.fileSize(file), 8192)
        XCTAssertEqual(try storage.read(file, offsetBytes: 6144, into: page), 2048, "a read past the end is short")
        XCTAssertThrowsError(try storage.write(file, offsetBytes: 100, from: page), "misaligned, as O_DIRECT")
        let reader = try storage.openFile(atPath: "/a/b/f", mode: .readOnly)
        XCTAssertThrowsError(try storage.write(reader, offsetBytes: 0, from: page), "a read-only handle writes nothing")
        XCTAssertEqual(try storage.read(reader, offsetBytes: 4096, into: page), 4096)
        try storage.closeFile(reader)
        try storage.truncateFile(file, toBytes: 10)
        XCTAssertEqual(try storage.fileSize(file), 10)
        try storage.closeFile(file)
        try storage.renameFile(atPath: "/a/b/f", toPath: "/a/g")
        XCTAssertEqual(try storage.contentsOfDirectory(atPath: "/a"), ["b", "g"])
        XCTAssertThrowsError(try storage.removeFile(atPath: "/a"), "not empty")
        try storage.removeFile(atPath: "/a/g")
        try storage.removeFile(atPath: "/a/b")
        XCTAssertEqual(try storage.contentsOfDirectory(atPath: "/a"), [])
    }
}
