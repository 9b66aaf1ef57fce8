import Foundation
import XCTest

@testable import PageStore

final class AlignmentTests: XCTestCase {
    private var directory: TestDirectory!
    private var store: PageStore!
    private var file: FileID!
    private var alignment: FileAlignment!

    override func setUpWithError() throws {
        directory = TestDirectory()
        store = try PageStore(options: smallOptions())
        file = try store.openFile(atPath: directory.file("aligned"), mode: .createNew)
        alignment = try store.fileInfo(file).alignment
    }

    override func tearDown() {
        store.shutdown()
        store = nil
        directory = nil
    }

    func testAlignmentIsDiscovered() {
        XCTAssertGreaterThanOrEqual(alignment.offsetBytes, 512)
        XCTAssertEqual(alignment.offsetBytes & (alignment.offsetBytes - 1), 0, "a power of two")
        print("discovered alignment: \(alignment!)")
    }

    func testMisalignedOffsetIsRejected() throws {
        let buffer = try store.allocator.allocate()
        let offset = Int64(alignment.offsetBytes / 2)
        XCTAssertThrowsError(try store.write(file, offsetBytes: offset, from: buffer)) { error in
            let error = error as! PageStoreError
            XCTAssertEqual(error.kind, .misaligned)
            XCTAssertEqual(
                error.description,
                "write failed on \(directory.file("aligned")) at offset \(offset): offset \(offset) is not a multiple of \(alignment.offsetBytes)")
        }
        XCTAssertEqual(store.stats.sqesSubmitted, 0, "nothing reached the kernel")
    }

    func testMisalignedLengthIsRejected() throws {
        let buffer = try store.allocator.allocate().slice(offset: 0, count: alignment.offsetBytes - 1)
        XCTAssertThrowsError(try store.read(file, offsetBytes: 0, into: buffer)) { error in
            let error = error as! PageStoreError
            XCTAssertEqual(error.kind, .misaligned)
            XCTAssertTrue(error.description.contains("length \(alignment.offsetBytes - 1) is not a multiple of \(alignment.offsetBytes)"), error.description)
        }
    }

    func testMisalignedBufferIsRejected() throws {
        let page = try store.allocator.allocate(pages: 2)
        let shifted = page.slice(offset: 8, count: alignment.offsetBytes)
        XCTAssertThrowsError(try store.commit(file, [IOSegment(offsetBytes: 0, buffer: shifted)])) { error in
            let error = error as! PageStoreError
            XCTAssertEqual(error.kind, .misaligned)
            XCTAssertTrue(error.description.contains("buffer address 0x"), error.description)
            XCTAssertTrue(error.description.contains("is not a multiple of \(alignment.memoryBytes)"), error.description)
        }
        XCTAssertEqual(try store.fileSize(file), 0, "a rejected commit writes nothing")
    }

    func testEmptyCommitIsRejected() {
        XCTAssertThrowsError(try store.commit(file, [])) { error in
            XCTAssertEqual((error as! PageStoreError).kind, .invalidArgument)
        }
    }

    func testChainLongerThanTheRingIsRejected() throws {
        let buffer = try store.allocator.allocate()
        let segments = (0..<store.options.ringEntries).map {
            IOSegment(offsetBytes: Int64($0 * buffer.count), buffer: buffer)
        }
        XCTAssertThrowsError(try store.commit(file, segments)) { error in
            let error = error as! PageStoreError
            XCTAssertEqual(error.kind, .invalidArgument)
            XCTAssertTrue(error.description.contains("raise ringEntries"), error.description)
        }
    }

    func testBadOptionsAreRejected() {
        XCTAssertThrowsError(try PageStore(options: smallOptions { $0.ringEntries = 100 })) { error in
            XCTAssertTrue("\(error)".contains("ringEntries 100 must be a power of two"), "\(error)")
        }
        XCTAssertThrowsError(try PageStore(options: smallOptions { $0.pageSizeBytes = 3000 })) { error in
            XCTAssertTrue("\(error)".contains("page size 3000 must be a power of two"), "\(error)")
        }
    }
}
