import PageStore
import XCTest

@testable import KVEngine

/// The log's in-memory tail on its own: records into fragments in pages, pages into chains.
final class LogPagesTests: XCTestCase {
    nonisolated(unsafe) static var allocator: PageAllocator? = nil
    var allocator: PageAllocator { Self.allocator! }

    override func setUpWithError() throws {
        if Self.allocator == nil { Self.allocator = try PageAllocator(arenaBytes: 16 << 20) }
    }

    private func pages(blocks: Int) throws -> LogPages {
        var pages = LogPages(lastSequence: 10)
        pages.addSpare(try (0..<blocks).map { _ in try allocator.allocate(pages: LogPages.blockPages) })
        return pages
    }

    /// Reads back every record of `segments` (contiguous, from the page after the header).
    private func records(in segments: [IOSegment], logNumber: UInt64) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var partial: [UInt8] = []
        for segment in segments {
            for pageIndex in 0..<(segment.buffer.count / LogFormat.pageBytes) {
                let page = UnsafeRawBufferPointer(segment.buffer.slice(offset: pageIndex * LogFormat.pageBytes, count: LogFormat.pageBytes).bytes)
                let pageOffset = segment.offsetBytes + Int64(pageIndex * LogFormat.pageBytes)
                var position = 0
                readPage: while true {
                    switch LogFormat.readFragment(page, at: position, pageOffset: pageOffset, logNumber: logNumber) {
                    case .padding: break readPage
                    case .bad(let reason, _): XCTFail("page at \(pageOffset), position \(position): \(reason)"); return out
                    case .fragment(let fragment):
                        partial += page[fragment.payload]
                        if fragment.type == .full || fragment.type == .last {
                            out.append(partial)
                            partial = []
                        }
                        position = fragment.end
                    }
                }
            }
        }
        XCTAssertTrue(partial.isEmpty, "a record was cut off")
        return out
    }

    func testRecordsComeBackInOrderAcrossPagesAndBlocks() throws {
        var tail = try pages(blocks: 3)
        var written: [[UInt8]] = []
        var sequence: UInt64 = 10
        for index in 0..<60 {
            // From empty to over three pages: fragments of every type.
            let record = [UInt8](repeating: UInt8(index), count: (index * 977) % 14_000)
            XCTAssertEqual(tail.missingBlocks(forRecordBytes: record.count), 0)
            sequence += 1
            record.withUnsafeBytes { tail.append($0, lastSequence: sequence, durableBytes: 4096, logNumber: 7) }
            written.append(record)
        }
        let taken = try XCTUnwrap(tail.takePages(includePartialPage: true, maxSegments: 16))
        XCTAssertEqual(taken.segments.first?.offsetBytes, 4096, "the first block follows the header page")
        XCTAssertGreaterThan(taken.segments.count, 1, "the records fill more than one block")
        XCTAssertEqual(records(in: taken.segments, logNumber: 7), written)
        XCTAssertEqual(tail.sealedSequence, sequence, "taking the partly filled page seals it")
        XCTAssertNil(tail.takePages(includePartialPage: true, maxSegments: 16), "nothing is taken twice")
    }

    func testAChainWithoutThePartialPageCoversOnlySealedRecords() throws {
        var tail = try pages(blocks: 1)
        // Two records in the first page, then one that ends in the second page.
        for (sequence, count) in [(11, 100), (12, 100), (13, 5000)] as [(UInt64, Int)] {
            [UInt8](repeating: 1, count: count).withUnsafeBytes { tail.append($0, lastSequence: sequence, durableBytes: 4096, logNumber: 1) }
        }
        XCTAssertEqual(tail.fullPagesPending, 1)
        let first = try XCTUnwrap(tail.takePages(includePartialPage: false, maxSegments: 16))
        XCTAssertEqual(first.end, 8192, "the header page and one full page")
        XCTAssertEqual(tail.sealedSequence, 12, "record 13 ends in the page still filling")
        XCTAssertEqual(tail.pendingEnd(includePartialPage: true), 12288)
        let second = try XCTUnwrap(tail.takePages(includePartialPage: true, maxSegments: 16))
        XCTAssertEqual(second.segments.map(\.offsetBytes), [8192])
        XCTAssertEqual(tail.sealedSequence, 13)
        // The next record starts on a fresh page: the one just taken is never written again.
        [UInt8](repeating: 2, count: 10).withUnsafeBytes { tail.append($0, lastSequence: 14, durableBytes: 12288, logNumber: 1) }
        let third = try XCTUnwrap(tail.takePages(includePartialPage: true, maxSegments: 16))
        XCTAssertEqual(third.segments.map(\.offsetBytes), [12288])
        XCTAssertEqual(records(in: third.segments, logNumber: 1), [[UInt8](repeating: 2, count: 10)])
    }

    func testRoomIsCountedInBlocksAndDurableBlocksAreReleased() throws {
        var tail = LogPages(lastSequence: 0)
        XCTAssertEqual(tail.missingBlocks(forRecordBytes: 10), 1)
        XCTAssertEqual(tail.missingBlocks(forRecordBytes: LogPages.blockBytes * 2), 3)
        tail.addSpare(try (0..<3).map { _ in try allocator.allocate(pages: LogPages.blockPages) })
        let big = [UInt8](repeating: 9, count: LogPages.blockBytes * 2)
        big.withUnsafeBytes { tail.append($0, lastSequence: 1, durableBytes: 4096, logNumber: 3) }
        let taken = try XCTUnwrap(tail.takePages(includePartialPage: true, maxSegments: 2))
        XCTAssertEqual(taken.segments.count, 2, "at most maxSegments blocks a chain")
        let rest = try XCTUnwrap(tail.takePages(includePartialPage: true, maxSegments: 2))
        XCTAssertEqual(rest.segments.first?.offsetBytes, taken.end, "the next chain starts where the last ended")
        var freed = 0
        tail.releaseWritten(durable: taken.end) { _ in freed += 1 }
        XCTAssertEqual(freed, 0, "released blocks become spares first")
        let buffers = tail.removeAllBuffers()
        XCTAssertEqual(buffers.count, 3)
        for buffer in buffers { allocator.free(buffer) }
    }
}
