import Foundation
import XCTest

@testable import PageStore

/// Real short writes from the kernel: RLIMIT_FSIZE makes a write that crosses the limit
/// stop at it, and the next write past it fail with EFBIG.
final class ShortWriteTests: XCTestCase {
    private func withFileSizeLimit<T>(_ bytes: rlim_t, _ body: () throws -> T) throws -> T {
        var saved = rlimit()
        getrlimit(RLIMIT_FSIZE_VALUE, &saved)
        var limited = saved
        limited.rlim_cur = bytes
        let previous = signal(SIGXFSZ, SIG_IGN)
        guard setrlimit(RLIMIT_FSIZE_VALUE, &limited) == 0 else {
            throw XCTSkip("cannot lower RLIMIT_FSIZE here: short writes not exercised")
        }
        defer {
            setrlimit(RLIMIT_FSIZE_VALUE, &saved)
            signal(SIGXFSZ, previous)
        }
        return try body()
    }

    private func checkCommitPastLimitFails(_ options: PageStoreOptions) throws {
        let directory = TestDirectory()
        let store = try PageStore(options: options)
        defer { store.shutdown() }
        let file = try store.openFile(atPath: directory.file("limited"), mode: .createNew)
        let buffer = try store.allocator.allocate(pages: 2)
        fillPattern(buffer, seed: 11)
        let result = try withFileSizeLimit(6144) {
            Result { try store.commit(file, [IOSegment(offsetBytes: 0, buffer: buffer)]) }
        }
        XCTAssertThrowsError(try result.get()) { error in
            let error = error as! PageStoreError
            XCTAssertEqual(error.errno, EFBIG, error.description)
            XCTAssertEqual(error.offsetBytes, 6144, "the failure names where the write stopped")
            XCTAssertTrue(error.description.hasPrefix("commit failed on \(directory.file("limited")) at offset 6144"), error.description)
        }
        let stats = store.stats
        XCTAssertGreaterThanOrEqual(stats.retries, 1, "the short write was resubmitted")
        XCTAssertEqual(stats.commitChains, 0, "a failed commit is never counted as durable")
        XCTAssertEqual(try store.fileSize(file), 6144)
        let back = try store.allocator.allocate(pages: 2)
        XCTAssertEqual(try store.read(file, offsetBytes: 0, into: back), 6144)
        XCTAssertTrue(matchesPattern(back, seed: 11, count: 6144), "the bytes before the limit were written intact")
    }

    func testShortWriteInACommitChainOnTheRing() throws {
        try checkCommitPastLimitFails(smallOptions())
    }

    func testShortWriteOnThePosixBackend() throws {
        try checkCommitPastLimitFails(smallOptions { $0.ioUring = .disabled })
    }
}

#if canImport(Glibc)
let RLIMIT_FSIZE_VALUE = __rlimit_resource_t(RLIMIT_FSIZE.rawValue)
#endif
