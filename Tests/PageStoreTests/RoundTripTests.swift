import Foundation
import XCTest

@testable import PageStore

final class RoundTripTests: XCTestCase {
    func testFixedBufferRoundTrip() throws {
        let directory = TestDirectory()
        let store = try PageStore(options: smallOptions())
        defer { store.shutdown() }
        XCTAssertEqual(store.stats.ioMode, .ioUring)
        XCTAssertTrue(store.stats.fixedBuffers, "the arena should register as fixed buffers here")
        let file = try store.openFile(atPath: directory.file("data"), mode: .createNew)
        XCTAssertTrue(try store.fileInfo(file).directIO)
        let source = try store.allocator.allocate(pages: 4)
        let target = try store.allocator.allocate(pages: 4)
        XCTAssertGreaterThanOrEqual(source.bufferIndex, 0)
        fillPattern(source, seed: 42)
        try store.write(file, offsetBytes: 8192, from: source)
        try store.sync(file)
        XCTAssertEqual(try store.read(file, offsetBytes: 8192, into: target), source.count)
        XCTAssertTrue(matchesPattern(target, seed: 42))
        XCTAssertEqual(try store.fileSize(file), 8192 + Int64(source.count))
        let stats = store.stats
        XCTAssertEqual(stats.bytesWritten, source.count)
        XCTAssertEqual(stats.bytesRead, source.count)
        XCTAssertEqual(stats.fdatasyncs, 1)
        store.allocator.free(source)
        store.allocator.free(target)
        try store.closeFile(file)
    }

    func testCommitChainCompletesWriteAndFdatasync() throws {
        let directory = TestDirectory()
        let store = try PageStore(options: smallOptions())
        defer { store.shutdown() }
        let file = try store.openFile(atPath: directory.file("log"), mode: .createNew)
        let pages = try store.allocator.allocate(pages: 3)
        fillPattern(pages, seed: 7)
        let before = store.stats
        let page = store.allocator.pageSizeBytes
        let segments = (0..<3).map {
            IOSegment(offsetBytes: Int64($0 * page), buffer: pages.slice(offset: $0 * page, count: page))
        }
        XCTAssertEqual(try store.performBlocking(.commit(file, segments)), 3 * page)
        let after = store.stats
        // Three write CQEs and the fdatasync's: every link of the chain completed.
        XCTAssertEqual(after.completions - before.completions, 4)
        XCTAssertEqual(after.sqesSubmitted - before.sqesSubmitted, 4)
        XCTAssertEqual(after.fdatasyncs - before.fdatasyncs, 1)
        XCTAssertEqual(after.commitChains - before.commitChains, 1)
        XCTAssertEqual(after.bytesWritten - before.bytesWritten, 3 * page)
        let back = try store.allocator.allocate(pages: 3)
        XCTAssertEqual(try store.read(file, offsetBytes: 0, into: back), 3 * page)
        XCTAssertTrue(matchesPattern(back, seed: 7))
    }

    func testGatheredWriteFromScatteredBuffers() throws {
        let directory = TestDirectory()
        let store = try PageStore(options: smallOptions())
        defer { store.shutdown() }
        let file = try store.openFile(atPath: directory.file("table"), mode: .createNew)
        let page = store.allocator.pageSizeBytes
        // Buffers allocated apart, written to consecutive offsets in one request.
        let buffers = try (0..<5).map { _ -> PageBuffer in
            _ = try store.allocator.allocate(pages: 1)
            return try store.allocator.allocate(pages: 1)
        }
        for (index, buffer) in buffers.enumerated() { fillPattern(buffer, seed: UInt64(100 + index)) }
        let segments = buffers.enumerated().map { IOSegment(offsetBytes: Int64($0.offset * page), buffer: $0.element) }
        XCTAssertEqual(try store.performBlocking(.write(file, segments)), 5 * page)
        let back = try store.allocator.allocate(pages: 5)
        XCTAssertEqual(try store.read(file, offsetBytes: 0, into: back), 5 * page)
        for index in 0..<5 {
            XCTAssertTrue(matchesPattern(back.slice(offset: index * page, count: page), seed: UInt64(100 + index)))
        }
    }

    func testShortReadAtEndOfFile() throws {
        let directory = TestDirectory()
        let path = directory.file("short")
        // 6000 bytes: not a whole number of sectors, written without O_DIRECT.
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data((0..<6000).map { UInt8($0 % 251) })))
        let store = try PageStore(options: smallOptions())
        defer { store.shutdown() }
        let file = try store.openFile(atPath: path, mode: .readOnly)
        let buffer = try store.allocator.allocate(pages: 2)
        XCTAssertEqual(try store.read(file, offsetBytes: 4096, into: buffer), 6000 - 4096)
        for index in 0..<(6000 - 4096) {
            XCTAssertEqual(buffer.bytes[index], UInt8((4096 + index) % 251), "byte \(index)")
        }
        XCTAssertEqual(try store.read(file, offsetBytes: 8192, into: buffer), 0, "a read past the end reads nothing")
    }

    func testAsyncPerformAndAllocate() async throws {
        let directory = TestDirectory()
        let store = try PageStore(options: smallOptions())
        defer { store.shutdown() }
        let file = try store.openFile(atPath: directory.file("async"), mode: .createNew)
        let buffer = try await store.allocator.allocateAsync(pages: 1)
        fillPattern(buffer, seed: 99)
        let written = try await store.perform(.commit(file, [IOSegment(offsetBytes: 0, buffer: buffer)]))
        XCTAssertEqual(written, buffer.count)
        memset(buffer.base, 0, buffer.count)
        let read = try await store.perform(.read(file, IOSegment(offsetBytes: 0, buffer: buffer)))
        XCTAssertEqual(read, buffer.count)
        XCTAssertTrue(matchesPattern(buffer, seed: 99))
    }

    func testFallocateReservesSpace() throws {
        let directory = TestDirectory()
        let store = try PageStore(options: smallOptions())
        defer { store.shutdown() }
        let file = try store.openFile(atPath: directory.file("prealloc"), mode: .createNew)
        try store.performBlocking(.allocate(file, offsetBytes: 0, lengthBytes: 1 << 20))
        XCTAssertEqual(try store.fileSize(file), 1 << 20)
        try store.performBlocking(.sync(file, dataOnly: false))
        try store.truncateFile(file, toBytes: 4096)
        XCTAssertEqual(try store.fileSize(file), 4096)
    }

    func testDirectoryOperations() throws {
        let directory = TestDirectory()
        let store = try PageStore(options: smallOptions())
        defer { store.shutdown() }
        let sub = directory.file("sub")
        try store.createDirectory(atPath: sub)
        try store.createDirectory(atPath: sub)
        let file = try store.openFile(atPath: sub + "/a.tmp", mode: .createNew)
        try store.closeFile(file)
        try store.syncDirectory(atPath: sub)
        try store.renameFile(atPath: sub + "/a.tmp", toPath: sub + "/a")
        XCTAssertEqual(try store.contentsOfDirectory(atPath: sub), ["a"])
        XCTAssertTrue(store.fileExists(atPath: sub + "/a"))
        try store.removeFile(atPath: sub + "/a")
        XCTAssertFalse(store.fileExists(atPath: sub + "/a"))
        XCTAssertThrowsError(try store.removeFile(atPath: sub + "/a")) { error in
            XCTAssertTrue("\(error)".contains("unlink failed on \(sub)/a"), "\(error)")
        }
        XCTAssertThrowsError(try store.openFile(atPath: sub + "/missing", mode: .existing)) { error in
            XCTAssertEqual((error as? PageStoreError)?.errno, ENOENT)
        }
    }
}
