import Foundation
import XCTest

@testable import PageStore

final class AllocatorTests: XCTestCase {
    func testBuffersArePageAlignedAndDistinct() throws {
        let allocator = try PageAllocator(arenaBytes: 64 * 4096)
        var seen = Set<UnsafeMutableRawPointer>()
        for _ in 0..<64 {
            let buffer = try allocator.allocate()
            XCTAssertEqual(UInt(bitPattern: buffer.base) % 4096, 0)
            XCTAssertTrue(seen.insert(buffer.base).inserted)
        }
        XCTAssertNil(try allocator.tryAllocate())
        XCTAssertEqual(allocator.freePages, 0)
    }

    func testRunsAreContiguousAndReused() throws {
        let allocator = try PageAllocator(arenaBytes: 8 * 4096)
        let a = try allocator.allocate(pages: 3)
        let b = try allocator.allocate(pages: 3)
        XCTAssertEqual(b.base, a.base + 3 * 4096)
        XCTAssertNil(try allocator.tryAllocate(pages: 3), "only 2 pages left")
        allocator.free(a)
        let c = try XCTUnwrap(try allocator.tryAllocate(pages: 3))
        XCTAssertEqual(c.base, a.base)
    }

    /// Memory an I/O may still hold (its ring failed) is never handed out again: a slice
    /// of a buffer quarantines the pages under it, and the owner's free keeps them in use.
    func testQuarantinedPagesAreNeverReused() throws {
        let allocator = try PageAllocator(arenaBytes: 4 * 4096)
        let buffer = try allocator.allocate(pages: 3)
        allocator.quarantine(buffer.slice(offset: 4096 + 100, count: 5000))  // pages 1 and 2
        XCTAssertEqual(allocator.quarantinedPages, 2)
        allocator.free(buffer)
        XCTAssertEqual(allocator.freePages, 2, "only page 0 came back, beside the one never taken")
        var handed: [PageBuffer] = []
        while let next = try allocator.tryAllocate() { handed.append(next) }
        XCTAssertEqual(handed.count, 2)
        for page in handed {
            XCTAssertFalse(page.base >= buffer.base + 4096 && page.base < buffer.base + 3 * 4096, "a quarantined page was handed out")
        }
        XCTAssertNil(try allocator.tryAllocate(pages: 2), "no run of two pages remains")
    }

    func testExhaustionBlocksUntilPagesAreFreed() throws {
        let allocator = try PageAllocator(arenaBytes: 4 * 4096)
        let held = try (0..<4).map { _ in try allocator.allocate() }
        let got = OneShot<PageBuffer>()
        let started = DispatchSemaphore(value: 0)
        Thread {
            started.signal()
            got.fulfil(try! allocator.allocate(pages: 2))
        }.start()
        started.wait()
        // The waiter cannot be served yet; give it time to park.
        while allocator.exhaustedWaits == 0 { usleep(1000) }
        allocator.free(held[0])
        XCTAssertNil(try allocator.tryAllocate(), "a waiter is queued first: no overtaking")
        allocator.free(held[2])
        // Pages 0 and 2 are free but not adjacent; freeing 1 makes a run of 3.
        allocator.free(held[1])
        let served = got.wait()
        XCTAssertEqual(served.count, 2 * 4096)
        XCTAssertEqual(allocator.exhaustedWaits, 1)
        XCTAssertEqual(allocator.freePages, 1)
    }

    func testAsyncWaitersAreServedInOrder() async throws {
        let allocator = try PageAllocator(arenaBytes: 2 * 4096)
        let first = try allocator.allocate(pages: 2)
        async let a = allocator.allocateAsync(pages: 1)
        while allocator.exhaustedWaits < 1 { try await Task.sleep(nanoseconds: 1_000_000) }
        async let b = allocator.allocateAsync(pages: 1)
        while allocator.exhaustedWaits < 2 { try await Task.sleep(nanoseconds: 1_000_000) }
        allocator.free(first)
        let (x, y) = try await (a, b)
        XCTAssertNotEqual(x.base, y.base)
        XCTAssertEqual(allocator.freePages, 0)
    }

    func testImpossibleRequestsFailAtOnce() throws {
        let allocator = try PageAllocator(arenaBytes: 4 * 4096)
        XCTAssertThrowsError(try allocator.allocate(pages: 5)) { error in
            XCTAssertEqual((error as! PageStoreError).kind, .exhausted)
            XCTAssertTrue("\(error)".contains("5 pages requested; a run holds 1 to 4 pages"), "\(error)")
        }
        XCTAssertThrowsError(try allocator.allocate(pages: 0))
        XCTAssertThrowsError(try PageAllocator(arenaBytes: 100))
    }
}
