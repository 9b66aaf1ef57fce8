import Foundation
import PageStore
import Synchronization
import XCTest
import TestSupport

@testable import KVEngine

/// A log's commit chains complete out of order; once one fails, no chain still in flight
/// beside it is acknowledged, earlier ones included.
final class LogChainFailureTests: XCTestCase {
    override func setUp() { CrashRun.quietLogs }

    /// Chain A (a sync write) is in flight when chain B (after it in the log) fails; A then
    /// completes. Through the page cache the kernel may have reported A's lost pages to B's
    /// fdatasync, so A's write must fail too, and the log with it.
    func testAFailedChainFailsAnEarlierChainStillInFlight() throws {
        let disk = try SimulatedDisk(seed: 1, plan: SimulatedDisk.FaultPlan(), directories: ["/sim"])
        let storage = HeldLogCommits(disk)
        var options = Options()
        options.bufferedFlushIntervalMs = 60_000
        options.logPreallocateBytes = 64 << 10
        options.bufferedChainPages = 1
        options.logChainsInFlight = 4
        options.inlineBackgroundWork = true
        let db = try Database(path: "/sim/db", options: options, storage: storage)
        try db.put(bytes("before"), bytes("x"))
        storage.hold()
        let syncWrite = OneShot<Result<Void, KVError>>()
        let a = bytes("a"), one = bytes("1"), b = bytes("b")
        Thread { syncWrite.fulfil(Result { () throws(KVError) in try db.put(a, one, durability: .sync) }) }.start()
        try storage.waitUntilHeld(1)
        // A buffered write that fills a page after it: its chain goes out beside A's.
        let bufferedWrite = OneShot<Result<Void, KVError>>()
        Thread {
            bufferedWrite.fulfil(Result { () throws(KVError) in
                try db.put(b, [UInt8](repeating: 7, count: 5000), durability: .buffered)
            })
        }.start()
        try storage.waitUntilHeld(2)
        storage.release(1, failing: EIO)
        storage.release(0, failing: nil)
        XCTAssertThrowsError(try syncWrite.wait().get(), "chain A completed after chain B failed: not trusted")
        XCTAssertThrowsError(try bufferedWrite.wait().get())
        XCTAssertThrowsError(try db.put(bytes("c"), bytes("3")), "the log failed")
        XCTAssertEqual(try db.get(bytes("before")), bytes("x"))
        XCTAssertNil(try db.get(bytes("a")), "a write that was not acknowledged is not visible")
        try? db.close()
    }

    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
}

/// A storage that passes everything to a simulated disk, but once `hold()` is called keeps
/// the commit chains of log files (led by a writer, or submitted) until the test releases
/// each, carried out or failed, in the order it chooses.
final class HeldLogCommits: Storage, @unchecked Sendable {
    // @unchecked: the mutable state is in `held` (a Mutex).
    private let inner: SimulatedDisk
    private let held = Mutex<(holding: Bool, requests: [(request: IORequest, deliver: @Sendable (IOResult) -> Void)])>((false, []))

    init(_ inner: SimulatedDisk) { self.inner = inner }

    func hold() { held.withLock { $0.holding = true } }

    func waitUntilHeld(_ count: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let deadline = Date().addingTimeInterval(10)
        while held.withLock({ $0.requests.count }) < count {
            guard Date() < deadline else { throw NeverHeld(count: count) }
            usleep(1000)
        }
    }

    /// Carries out held request `index` (nil) or fails it with `errno`, and delivers the result.
    func release(_ index: Int, failing errno: Int32?) {
        let entry = held.withLock { $0.requests[index] }
        if let errno {
            entry.deliver(.failure(PageStoreError.io("commit", path: "held log", errno: errno)))
        } else {
            entry.deliver(Result { try inner.performBlocking(entry.request) }.mapError { $0 as! PageStoreError })
        }
    }

    private func holds(_ request: IORequest) -> Bool {
        guard case .commit = request, held.withLock({ $0.holding }) else { return false }
        return (try? inner.fileInfo(request.file).path.hasSuffix(".log")) ?? false
    }

    struct NeverHeld: Error { let count: Int }

    var allocator: PageAllocator { inner.allocator }
    func lockFile(atPath path: String, shared: Bool, holder: String) throws -> (any FileLock)? {
        try inner.lockFile(atPath: path, shared: shared, holder: holder)
    }
    func openFile(atPath path: String, mode: FileOpenMode) throws -> FileID { try inner.openFile(atPath: path, mode: mode) }
    func closeFile(_ file: FileID) throws { try inner.closeFile(file) }
    func fileInfo(_ file: FileID) throws -> FileInfo { try inner.fileInfo(file) }
    func fileSize(_ file: FileID) throws -> Int64 { try inner.fileSize(file) }
    func truncateFile(_ file: FileID, toBytes size: Int64) throws { try inner.truncateFile(file, toBytes: size) }
    func syncDirectory(atPath path: String) throws { try inner.syncDirectory(atPath: path) }
    func renameFile(atPath source: String, toPath target: String) throws { try inner.renameFile(atPath: source, toPath: target) }
    func removeFile(atPath path: String) throws { try inner.removeFile(atPath: path) }
    func linkFile(atPath source: String, toPath target: String) throws { try inner.linkFile(atPath: source, toPath: target) }
    func createDirectory(atPath path: String) throws { try inner.createDirectory(atPath: path) }
    func contentsOfDirectory(atPath path: String) throws -> [String] { try inner.contentsOfDirectory(atPath: path) }
    func fileExists(atPath path: String) -> Bool { inner.fileExists(atPath: path) }

    func submit(_ request: IORequest, completion: @escaping @Sendable (IOResult) -> Void) {
        if holds(request) {
            held.withLock { $0.requests.append((request, completion)) }
            return
        }
        inner.submit(request, completion: completion)
    }

    func performBlocking(_ request: IORequest) throws -> Int {
        guard holds(request) else { return try inner.performBlocking(request) }
        let gate = OneShot<IOResult>()
        held.withLock { $0.requests.append((request, { gate.fulfil($0) })) }
        return try gate.wait().get()
    }
}
