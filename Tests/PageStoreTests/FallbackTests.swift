import Foundation
import Synchronization
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

/// The optional ring modes (SQPOLL, IOPOLL, a registered ring fd): each refused (by the
/// kernel, or as the tests make the store believe) falls back and says why in `stats`,
/// or fails the open when required; where this kernel and device accept one, a round
/// trip runs in it.
final class RingModeTests: XCTestCase {
    override func setUp() {
        // The refusals below are on purpose: their warnings stay out of the test output.
        if ProcessInfo.processInfo.environment["KVENGINE_TEST_LOGS"] == nil { pageStoreLogLevel.withLock { $0 = .critical } }
    }

    override func tearDown() { pageStoreLogLevel.withLock { $0 = nil } }

    private func exercise(_ store: PageStore, at path: String) throws {
        let file = try store.openFile(atPath: path, mode: .createNew)
        let buffer = try store.allocator.allocate(pages: 2)
        fillPattern(buffer, seed: 11)
        try store.commit(file, [IOSegment(offsetBytes: 8192, buffer: buffer)])
        try store.performBlocking(.write(file, [IOSegment(offsetBytes: 0, buffer: buffer)]))
        defer {
            store.allocator.free(buffer)
            try? store.closeFile(file)
        }
        for offset: Int64 in [0, 8192] {
            memset(buffer.base, 0, buffer.count)
            let got = try store.read(file, offsetBytes: offset, into: buffer)
            XCTAssertEqual(got, buffer.count)
            XCTAssertTrue(matchesPattern(buffer, seed: 11), "offset \(offset)")
        }
        // Through the ring thread too (where SQPOLL and the registered ring fd apply):
        // requests submitted with completions, many in a row.
        for round in 0..<50 {
            memset(buffer.base, 0, buffer.count)
            let done = DispatchSemaphore(value: 0)
            let result = Mutex<IOResult?>(nil)
            store.submit(.read(file, IOSegment(offsetBytes: round % 2 == 0 ? 0 : 8192, buffer: buffer))) { outcome in
                result.withLock { $0 = outcome }
                done.signal()
            }
            done.wait()
            XCTAssertEqual(try result.withLock { $0 }?.get(), buffer.count, "round \(round)")
            XCTAssertTrue(matchesPattern(buffer, seed: 11), "round \(round)")
        }
    }

    private static var modes: [(name: String, set: (inout PageStoreOptions, PageStoreOptions.Requirement) -> Void, state: (PageStoreStats) -> RingModeState)] {[
        ("sqpoll", { $0.submissionPolling = $1 }, \.submissionPolling),
        ("iopoll", { $0.completionPolling = $1 }, \.completionPolling),
        ("ringfd", { $0.registeredRingFD = $1 }, \.registeredRingFD),
    ]}

    func testEachRefusedModeFallsBackAndSaysWhy() throws {
        for mode in Self.modes {
            let directory = TestDirectory()
            let store = try PageStore(options: smallOptions {
                mode.set(&$0, .preferred)
                $0.refusedForTesting = [mode.name]
            })
            defer { store.shutdown() }
            try exercise(store, at: directory.file(mode.name))
            guard case .refused(let reason) = mode.state(store.stats) else {
                return XCTFail("\(mode.name): \(mode.state(store.stats)), expected refused")
            }
            XCTAssertTrue(reason.contains("simulated"), "\(mode.name): \(reason)")
            XCTAssertTrue(store.stats.description.contains("refused: "), store.stats.description)
        }
    }

    func testEachRefusedModeFailsTheOpenWhenRequired() throws {
        for mode in Self.modes {
            let directory = TestDirectory()
            let options = smallOptions {
                mode.set(&$0, .required)
                $0.refusedForTesting = [mode.name]
            }
            do {
                let store = try PageStore(options: options)
                defer { store.shutdown() }
                // IOPOLL's refusal comes with the first O_DIRECT file.
                XCTAssertThrowsError(try store.openFile(atPath: directory.file(mode.name), mode: .createNew), mode.name) { error in
                    XCTAssertEqual((error as? PageStoreError)?.kind, .unsupported, "\(mode.name): \(error)")
                }
                XCTAssertEqual(mode.name, "iopoll", "only IOPOLL is refused after the store opens")
                XCTAssertEqual(store.openFileCount, 0, "the refused file is closed again")
            } catch let error as PageStoreError {
                XCTAssertNotEqual(mode.name, "iopoll")
                XCTAssertEqual(error.kind, .unsupported, "\(mode.name): \(error)")
                XCTAssertTrue("\(error)".contains("simulated"), "\(mode.name): \(error)")
            }
        }
    }

    /// Without io_uring there is no ring to set up in any mode: required, the open fails;
    /// preferred, `stats` says why it is not in use.
    func testRingModesWithoutIOUring() throws {
        for mode in Self.modes {
            XCTAssertThrowsError(try PageStore(options: smallOptions {
                $0.ioUring = .disabled
                mode.set(&$0, .required)
            }), mode.name) { error in
                XCTAssertTrue("\(error)".contains("is required but io_uring is disabled"), "\(mode.name): \(error)")
            }
            let store = try PageStore(options: smallOptions {
                $0.ioUring = .disabled
                mode.set(&$0, .preferred)
            })
            defer { store.shutdown() }
            XCTAssertEqual(mode.state(store.stats), .refused(reason: "io_uring is not in use"), mode.name)
        }
    }

    /// A real refusal: SQPOLL pinned to a CPU that does not exist (`EINVAL` from the kernel).
    func testSubmissionPollingOnAMissingCPUIsRefusedByTheKernel() throws {
        let directory = TestDirectory()
        let store = try PageStore(options: smallOptions {
            $0.submissionPolling = .preferred
            $0.submissionPollingCPU = 4095
        })
        defer { store.shutdown() }
        guard case .refused(let reason) = store.stats.submissionPolling else {
            return XCTFail("\(store.stats.submissionPolling)")
        }
        XCTAssertTrue(reason.contains("SQPOLL"), reason)
        try exercise(store, at: directory.file("data"))
    }

    /// Each mode required: where the kernel (and, for IOPOLL, the file system and device)
    /// take it, a round trip in it; where they do not, the reason is printed.
    func testEachAcceptedModeRoundTrips() throws {
        for mode in Self.modes {
            let directory = TestDirectory()
            let store: PageStore
            do {
                store = try PageStore(options: smallOptions { mode.set(&$0, .required) })
            } catch {
                print("\(mode.name): skipped, refused here: \(error)")
                continue
            }
            defer { store.shutdown() }
            do {
                try exercise(store, at: directory.file(mode.name))
            } catch let error as PageStoreError where mode.name == "iopoll" && error.kind == .unsupported {
                print("\(mode.name): skipped, refused here: \(error)")
                continue
            }
            XCTAssertTrue(mode.state(store.stats).isOn, "\(mode.name): \(mode.state(store.stats))")
        }
    }
}
