import Foundation
import XCTest

@testable import PageStore

final class ConcurrencyTests: XCTestCase {
    /// Threads each own a region of one file: write with commits, read back, verify.
    private func hammer(options: PageStoreOptions, threads: Int, roundsPerThread: Int) throws {
        let seed = testSeed()
        let directory = TestDirectory()
        let store = try PageStore(options: options)
        defer { store.shutdown() }
        let file = try store.openFile(atPath: directory.file("shared"), mode: .createNew)
        let page = store.allocator.pageSizeBytes
        let pagesPerThread = 16
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            do {
                var random = seed &+ UInt64(thread) &* 0x9E37_79B9
                let source = try store.allocator.allocate(pages: 1)
                let target = try store.allocator.allocate(pages: 1)
                var written = [UInt64?](repeating: nil, count: pagesPerThread)
                for round in 0..<roundsPerThread {
                    random = random &* 6364136223846793005 &+ 1442695040888963407
                    let slot = Int(random >> 33) % pagesPerThread
                    let offset = Int64((thread * pagesPerThread + slot) * page)
                    if round % 3 == 2, let expected = written[slot] {
                        XCTAssertEqual(try store.read(file, offsetBytes: offset, into: target), page)
                        if !matchesPattern(target, seed: expected) { failures.add("thread \(thread) page \(slot)") }
                    } else {
                        let content = random | 1
                        fillPattern(source, seed: content)
                        if round % 2 == 0 {
                            try store.commit(file, [IOSegment(offsetBytes: offset, buffer: source)])
                        } else {
                            try store.write(file, offsetBytes: offset, from: source)
                        }
                        written[slot] = content
                    }
                }
                store.allocator.free(source)
                store.allocator.free(target)
            } catch {
                failures.add("thread \(thread): \(error)")
            }
        }
        XCTAssertEqual(failures.all, [], "seed \(seed)")
        XCTAssertEqual(store.allocator.freePages, store.allocator.pageCount)
    }

    func testManyThreadsOnTheRing() throws {
        try hammer(options: smallOptions(), threads: 8, roundsPerThread: 150)
    }

    func testManyThreadsThroughTheRingThreadOnly() throws {
        try hammer(options: smallOptions { $0.inlineRings = 0 }, threads: 8, roundsPerThread: 150)
    }

    func testBlockingCallsRunOnInlineRings() throws {
        let directory = TestDirectory()
        let store = try PageStore(options: smallOptions())
        defer { store.shutdown() }
        let buffer = try store.allocator.allocate()
        // A ring created before the file opens must see it: registration reaches every ring.
        let warmup = try store.openFile(atPath: directory.file("warmup"), mode: .createNew)
        try store.commit(warmup, [IOSegment(offsetBytes: 0, buffer: buffer)])
        let file = try store.openFile(atPath: directory.file("inline"), mode: .createNew)
        let before = store.stats
        for index in 0..<20 {
            try store.commit(file, [IOSegment(offsetBytes: Int64(index * 4096), buffer: buffer)])
        }
        let after = store.stats
        // One io_uring_enter per commit (write + fdatasync waited for together): no
        // wake-up round trip through the ring thread.
        XCTAssertEqual(after.enterCalls - before.enterCalls, 20)
        XCTAssertEqual(after.commitChains - before.commitChains, 20)
        XCTAssertEqual(try store.fileSize(file), 20 * 4096)
    }

    func testManyThreadsOnThePosixBackend() throws {
        try hammer(options: smallOptions { $0.ioUring = .disabled }, threads: 8, roundsPerThread: 60)
    }

    func testManyAsyncTasks() async throws {
        let directory = TestDirectory()
        let store = try PageStore(options: smallOptions())
        defer { store.shutdown() }
        let file = try store.openFile(atPath: directory.file("tasks"), mode: .createNew)
        let page = store.allocator.pageSizeBytes
        let verified = try await withThrowingTaskGroup(of: Bool.self) { group in
            for task in 0..<64 {
                group.addTask {
                    let buffer = try await store.allocator.allocateAsync(pages: 1)
                    defer { store.allocator.free(buffer) }
                    fillPattern(buffer, seed: UInt64(task + 1))
                    try await store.perform(.commit(file, [IOSegment(offsetBytes: Int64(task * page), buffer: buffer)]))
                    memset(buffer.base, 0, page)
                    try await store.perform(.read(file, IOSegment(offsetBytes: Int64(task * page), buffer: buffer)))
                    return matchesPattern(buffer, seed: UInt64(task + 1))
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        XCTAssertEqual(verified, 64)
        XCTAssertEqual(store.stats.commitChains, 64)
    }
}

/// Failure messages gathered from several threads.
final class Failures: @unchecked Sendable {
    // @unchecked: every access goes through `lock`.
    private let lock = NSLock()
    private var messages: [String] = []
    func add(_ message: String) { lock.withLock { messages.append(message) } }
    var all: [String] { lock.withLock { messages } }
}
