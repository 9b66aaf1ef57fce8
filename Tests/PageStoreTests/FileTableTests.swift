import Foundation
import XCTest

@testable import PageStore

final class FileTableTests: XCTestCase {
    func testSlotsAreReusedAndStaleHandlesRefused() throws {
        let directory = TestDirectory()
        let store = try PageStore(options: smallOptions())
        defer { store.shutdown() }
        let first = try store.openFile(atPath: directory.file("a"), mode: .createNew)
        try store.closeFile(first)
        let second = try store.openFile(atPath: directory.file("b"), mode: .createNew)
        XCTAssertEqual(second.slot, first.slot, "the freed slot is reused")
        XCTAssertNotEqual(second.generation, first.generation)
        let buffer = try store.allocator.allocate()
        XCTAssertThrowsError(try store.write(first, offsetBytes: 0, from: buffer)) { error in
            XCTAssertEqual((error as! PageStoreError).kind, .invalidArgument)
            XCTAssertTrue("\(error)".contains("is not open"), "\(error)")
        }
        XCTAssertEqual(try store.fileSize(second), 0, "the stale handle did not reach the new file")
        XCTAssertThrowsError(try store.closeFile(first))
    }

    func testTableFullIsAClearError() throws {
        let directory = TestDirectory()
        let store = try PageStore(options: smallOptions { $0.maxOpenFiles = 3 })
        defer { store.shutdown() }
        let handles = try (0..<3).map { try store.openFile(atPath: directory.file("f\($0)"), mode: .createNew) }
        XCTAssertThrowsError(try store.openFile(atPath: directory.file("f3"), mode: .createNew)) { error in
            XCTAssertTrue("\(error)".contains("all 3 registered file slots are in use"), "\(error)")
        }
        try store.closeFile(handles[1])
        XCTAssertEqual(try store.openFile(atPath: directory.file("f3"), mode: .createNew).slot, handles[1].slot)
    }

    func testNoDescriptorLeakAcrossOpenCloseCycles() throws {
        let directory = TestDirectory()
        let before = openDescriptorCount()
        do {
            let store = try PageStore(options: smallOptions { $0.maxOpenFiles = 8 })
            let buffer = try store.allocator.allocate()
            for cycle in 0..<500 {
                let file = try store.openFile(atPath: directory.file("cycle\(cycle % 5)"), mode: .createIfMissing)
                try store.write(file, offsetBytes: 0, from: buffer)
                try store.closeFile(file)
            }
            XCTAssertEqual(store.openFileCount, 0)
            store.shutdown()
        }
        XCTAssertEqual(openDescriptorCount(), before, "every descriptor, the ring's included, is closed")
    }

    func testShutdownFailsLaterCallsClearly() throws {
        let directory = TestDirectory()
        let store = try PageStore(options: smallOptions())
        let file = try store.openFile(atPath: directory.file("x"), mode: .createNew)
        let buffer = try store.allocator.allocate()
        store.shutdown()
        XCTAssertThrowsError(try store.write(file, offsetBytes: 0, from: buffer)) { error in
            XCTAssertEqual((error as! PageStoreError).kind, .closed)
        }
        XCTAssertThrowsError(try store.openFile(atPath: directory.file("y"), mode: .createNew))
    }
}
