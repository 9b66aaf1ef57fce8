import Foundation
import XCTest

@testable import PageStore

final class IOQueueTests: XCTestCase {
    /// Writes `pages` patterned pages, then reads them back in a random order through an
    /// `IOQueue` that keeps `depth` reads in flight, each completion starting the next.
    /// Returns the `io_uring_enter` calls the reads took.
    private func readBackThroughQueue(options: PageStoreOptions, pages: Int, depth: Int) throws -> Int {
        let seed = testSeed()
        let directory = TestDirectory()
        let store = try PageStore(options: options)
        defer { store.shutdown() }
        let file = try store.openFile(atPath: directory.file("queue"), mode: .createNew)
        let page = store.allocator.pageSizeBytes
        let source = try store.allocator.allocate()
        for index in 0..<pages {
            fillPattern(source, seed: seed &+ UInt64(index))
            try store.write(file, offsetBytes: Int64(index * page), from: source)
        }
        store.allocator.free(source)

        var order = Array(0..<pages)
        var random = SystemRandomNumberGenerator()
        order.shuffle(using: &random)
        let before = store.stats
        var verified = Set<Int>()
        var mismatches: [Int] = []
        try store.withIOQueue { queue in
            var buffers: [Int: PageBuffer] = [:]
            var next = 0
            var maxInFlight = 0
            while next < order.count || queue.inFlight > 0 {
                while next < order.count && queue.inFlight < depth {
                    let index = order[next]
                    next += 1
                    let buffer = try store.allocator.allocate()
                    buffers[index] = buffer
                    queue.submit(.read(file, IOSegment(offsetBytes: Int64(index * page), buffer: buffer)), tag: index)
                }
                maxInFlight = max(maxInFlight, queue.inFlight)
                let landed = queue.wait()
                XCTAssertFalse(landed.isEmpty, "wait returned nothing with \(queue.inFlight) in flight")
                for (index, result) in landed {
                    XCTAssertEqual(try result.get(), page)
                    let buffer = buffers.removeValue(forKey: index)!
                    if !matchesPattern(buffer, seed: seed &+ UInt64(index)) { mismatches.append(index) }
                    XCTAssertTrue(verified.insert(index).inserted, "page \(index) completed twice")
                    store.allocator.free(buffer)
                }
            }
            XCTAssertEqual(maxInFlight, min(depth, pages))
            XCTAssertEqual(queue.wait().count, 0, "nothing in flight: wait returns at once, empty")
        }
        XCTAssertEqual(mismatches, [], "seed \(seed)")
        XCTAssertEqual(verified.count, pages)
        XCTAssertEqual(store.allocator.freePages, store.allocator.pageCount)
        let after = store.stats
        XCTAssertEqual(after.bytesRead - before.bytesRead, pages * page)
        return after.enterCalls - before.enterCalls
    }

    func testQueueOnAnInlineRingKeepsItsDepthAndReturnsEveryRead() throws {
        let enterCalls = try readBackThroughQueue(options: smallOptions(), pages: 300, depth: 32)
        // On this thread's ring: SQEs handed over a few at a time, completions waited for
        // in the same calls, so fewer io_uring_enter calls than reads.
        XCTAssertGreaterThan(enterCalls, 0)
        XCTAssertLessThan(enterCalls, 300)
    }

    func testQueueThroughTheRingThreadWhenNoInlineRingCanBeHad() throws {
        _ = try readBackThroughQueue(options: smallOptions { $0.inlineRings = 0 }, pages: 200, depth: 16)
    }

    func testQueueOnThePosixBackend() throws {
        _ = try readBackThroughQueue(options: smallOptions { $0.ioUring = .disabled }, pages: 100, depth: 8)
    }

    /// A request the store refuses (misaligned) completes with its error under its tag;
    /// the others in flight are unaffected.
    func testRefusedRequestCompletesWithItsError() throws {
        let directory = TestDirectory()
        let store = try PageStore(options: smallOptions())
        defer { store.shutdown() }
        let file = try store.openFile(atPath: directory.file("refused"), mode: .createNew)
        let buffer = try store.allocator.allocate()
        try store.write(file, offsetBytes: 0, from: buffer)
        var results: [Int: IOResult] = [:]
        store.withIOQueue { queue in
            queue.submit(.read(file, IOSegment(offsetBytes: 0, buffer: buffer)), tag: 1)
            queue.submit(.read(file, IOSegment(offsetBytes: 100, buffer: buffer)), tag: 2)
            while queue.inFlight > 0 {
                for (tag, result) in queue.wait() { results[tag] = result }
            }
        }
        XCTAssertEqual(try results[1]?.get(), 4096)
        guard case .failure(let error)? = results[2] else { return XCTFail("misaligned read did not fail: \(String(describing: results[2]))") }
        XCTAssertEqual(error.kind, .misaligned, "\(error)")
        store.allocator.free(buffer)
    }

    /// Reads left in flight when the body returns are waited for before `withIOQueue`
    /// returns, so their buffers can be freed right after.
    func testReadsLeftInFlightAreWaitedFor() throws {
        let directory = TestDirectory()
        let store = try PageStore(options: smallOptions())
        defer { store.shutdown() }
        let file = try store.openFile(atPath: directory.file("left"), mode: .createNew)
        let buffers = try (0..<8).map { _ in try store.allocator.allocate() }
        for (index, buffer) in buffers.enumerated() { try store.write(file, offsetBytes: Int64(index * 4096), from: buffer) }
        let readsBefore = store.stats.bytesRead
        store.withIOQueue { queue in
            for (index, buffer) in buffers.enumerated() {
                queue.submit(.read(file, IOSegment(offsetBytes: Int64(index * 4096), buffer: buffer)), tag: index)
            }
        }
        XCTAssertEqual(store.stats.bytesRead - readsBefore, 8 * 4096)
        for buffer in buffers { store.allocator.free(buffer) }
    }
}
