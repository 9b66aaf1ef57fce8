import Foundation
import XCTest

@testable import PageStore

/// Each fallback forced through its option, and O_DIRECT refused by a real file system.
final class FallbackTests: XCTestCase {
    /// Writes, commits and reads back one file; the same checks for every mode.
    private func exercise(_ store: PageStore, at path: String) throws {
        let file = try store.openFile(atPath: path, mode: .createNew)
        let buffer = try store.allocator.allocate(pages: 2)
        fillPattern(buffer, seed: 5)
        try store.commit(file, [IOSegment(offsetBytes: 4096, buffer: buffer)])
        memset(buffer.base, 0, buffer.count)
        XCTAssertEqual(try store.read(file, offsetBytes: 4096, into: buffer), buffer.count)
        XCTAssertTrue(matchesPattern(buffer, seed: 5))
        XCTAssertEqual(try store.read(file, offsetBytes: 4096 + Int64(buffer.count), into: buffer), 0)
        store.allocator.free(buffer)
        try store.closeFile(file)
        let stats = store.stats
        XCTAssertEqual(stats.commitChains, 1)
        XCTAssertEqual(stats.fdatasyncs, 1)
    }

    func testPosixBackendWhenIOUringIsDisabled() throws {
        let directory = TestDirectory()
        let store = try PageStore(options: smallOptions { $0.ioUring = .disabled })
        defer { store.shutdown() }
        XCTAssertEqual(store.stats.ioMode, .posix)
        XCTAssertFalse(store.stats.fixedBuffers)
        try exercise(store, at: directory.file("posix"))
        XCTAssertGreaterThan(store.stats.enterCalls, 0)
    }

    func testIOUringRequiredOpensHere() throws {
        let store = try PageStore(options: smallOptions { $0.ioUring = .required })
        defer { store.shutdown() }
        XCTAssertEqual(store.stats.ioMode, .ioUring)
        print("ring flags: \(store.stats.ringFlags)")
    }

    func testFixedBuffersDisabledUsesPlainReadsAndWrites() throws {
        let directory = TestDirectory()
        let store = try PageStore(options: smallOptions { $0.fixedBuffers = .disabled })
        defer { store.shutdown() }
        XCTAssertEqual(store.stats.ioMode, .ioUring)
        XCTAssertFalse(store.stats.fixedBuffers)
        XCTAssertEqual(try store.allocator.allocate().bufferIndex, -1)
        try exercise(store, at: directory.file("nofixed"))
    }

    func testFixedBuffersWithoutIOUringIsAContradiction() {
        XCTAssertThrowsError(try PageStore(options: smallOptions {
            $0.ioUring = .disabled
            $0.fixedBuffers = .required
        })) { error in
            XCTAssertTrue("\(error)".contains("fixed buffers are required but io_uring is disabled"), "\(error)")
        }
    }

    func testDirectIODisabledOpensBuffered() throws {
        let directory = TestDirectory()
        let store = try PageStore(options: smallOptions { $0.directIO = .disabled })
        defer { store.shutdown() }
        try exercise(store, at: directory.file("buffered"))
        XCTAssertEqual(store.stats.bufferedFiles, 1)
    }

    func testTmpfs() throws {
        guard FileManager.default.fileExists(atPath: "/dev/shm") else {
            throw XCTSkip("no tmpfs at /dev/shm on this machine")
        }
        let directory = TestDirectory(under: "/dev/shm")
        let store = try PageStore(options: smallOptions())
        defer { store.shutdown() }
        try exercise(store, at: directory.file("tmpfs"))
        // Linux 6.6 and later give tmpfs O_DIRECT; older kernels refuse it (buffered fallback).
        print("tmpfs: \(store.stats.bufferedFiles == 0 ? "O_DIRECT accepted" : "O_DIRECT refused, buffered fallback used")")
    }

    /// ramfs refuses O_DIRECT with EINVAL: the real refusal, where this process may mount one.
    func testFileSystemThatRefusesODirect() throws {
        let directory = TestDirectory()
        let mountPoint = directory.file("ramfs")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        guard mount("ramfs", mountPoint, "ramfs", 0, nil) == 0 else {
            throw XCTSkip("cannot mount ramfs here (\(String(cString: strerror(errno)))): O_DIRECT refusal not exercised on a real file system")
        }
        defer { umount(mountPoint) }

        let required = try PageStore(options: smallOptions { $0.directIO = .required })
        XCTAssertThrowsError(try required.openFile(atPath: mountPoint + "/strict", mode: .createNew)) { error in
            let error = error as! PageStoreError
            XCTAssertEqual(error.kind, .unsupported)
            XCTAssertTrue(error.description.contains("O_DIRECT refused"), error.description)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: mountPoint + "/strict"), "the refused create left nothing")
        required.shutdown()

        let store = try PageStore(options: smallOptions())
        defer { store.shutdown() }
        try exercise(store, at: mountPoint + "/fallback")
        XCTAssertEqual(store.stats.bufferedFiles, 1)
    }
}
