import Foundation
import XCTest

@testable import KVEngine

/// Golden bytes of the formats in docs/FORMAT.md: a change here is a format change.
final class FormatTests: XCTestCase {
    func testLogHeaderBytes() {
        var page = [UInt8](repeating: 0xEE, count: 4096)
        page.withUnsafeMutableBytes { LogFormat.encodeHeader(logNumber: 7, into: $0) }
        XCTAssertEqual(Array(page[0..<8]), Array("KVENGLOG".utf8))
        XCTAssertEqual(Array(page[8..<24]), [1, 0, 0, 0, 0, 16, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0])
        let checksum = page.withUnsafeBytes { Checksum.xxh3(UnsafeRawBufferPointer(rebasing: $0[0..<24]), seed: 0) }
        XCTAssertEqual(page[24..<32].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }, checksum)
        XCTAssertTrue(page[32...].allSatisfy { $0 == 0 })
        XCTAssertNil(page.withUnsafeBytes { LogFormat.headerProblem($0, logNumber: 7) })
        XCTAssertEqual(page.withUnsafeBytes { LogFormat.headerProblem($0, logNumber: 8) }, "header names log 7")
    }

    func testFragmentLayoutAndSeedBinding() {
        var page = [UInt8](repeating: 0, count: 4096)
        let payload: [UInt8] = [1, 2, 3]
        page.withUnsafeMutableBytes { raw in
            raw[24 + 0] = 1; raw[24 + 1] = 2; raw[24 + 2] = 3
            LogFormat.sealFragment(raw, at: 0, type: .full, length: 3, durableBytes: 8192,
                                   seed: LogFormat.seed(logNumber: 1, offset: 4096))
        }
        XCTAssertEqual(Array(page[8..<24]), [0, 0x20, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0])
        XCTAssertEqual(Array(page[24..<27]), payload)
        page.withUnsafeBytes { raw in
            guard case .fragment(let fragment) = LogFormat.readFragment(raw, at: 0, pageOffset: 4096, logNumber: 1) else {
                return XCTFail("fragment did not verify")
            }
            XCTAssertEqual(fragment.durableBytes, 8192)
            XCTAssertEqual(fragment.payload, 24..<27)
            // The same bytes at another offset, or in another log, do not verify.
            guard case .bad = LogFormat.readFragment(raw, at: 0, pageOffset: 8192, logNumber: 1) else {
                return XCTFail("a fragment moved to another offset verified")
            }
            guard case .bad = LogFormat.readFragment(raw, at: 0, pageOffset: 4096, logNumber: 2) else {
                return XCTFail("a fragment of another log verified")
            }
            guard case .padding = LogFormat.readFragment(raw, at: 27, pageOffset: 4096, logNumber: 1) else {
                return XCTFail("zeros after the fragment are padding")
            }
        }
    }

    func testWriteBatchEncoding() {
        var batch = WriteBatch()
        batch.put([0x61], [0x62, 0x63])
        batch.delete([0x64])
        batch.seal(firstSequence: 0x0102)
        XCTAssertEqual(batch.encoded, [
            0x02, 0x01, 0, 0, 0, 0, 0, 0,  // first sequence
            2, 0, 0, 0,  // count
            1, 1, 0x61, 2, 0x62, 0x63,  // put "a" = "bc"
            0, 1, 0x64,  // delete "d"
        ])
        var seen: [(UInt64, EntryType, [UInt8], [UInt8])] = []
        XCTAssertTrue(batch.encoded.withUnsafeBytes { raw in
            WriteBatch.forEachEntry(in: raw) { seen.append(($0, $1, Array($2), Array($3))) }
        })
        XCTAssertEqual(seen.map(\.0), [0x0102, 0x0103])
        XCTAssertEqual(seen.map(\.1), [.put, .delete])
        // Truncated, or a count that does not match: rejected.
        XCTAssertFalse(Array(batch.encoded.dropLast()).withUnsafeBytes { WriteBatch.forEachEntry(in: $0) { _, _, _, _ in } })
        var wrongCount = batch.encoded
        wrongCount[8] = 3
        XCTAssertFalse(wrongCount.withUnsafeBytes { WriteBatch.forEachEntry(in: $0) { _, _, _, _ in } })
    }

    func testLogFileNames() {
        XCTAssertEqual(FileNames.log(1), "000001.log")
        XCTAssertEqual(FileNames.log(12_345_678), "12345678.log")
        XCTAssertEqual(FileNames.logNumber("000042.log"), 42)
        XCTAssertNil(FileNames.logNumber("x42.log"))
        XCTAssertNil(FileNames.logNumber("000042.log.tmp"))
    }

    func testEveryFileNameParsesBackToWhatItNames() {
        let named: [(String, FileNames.Kind)] = [
            (FileNames.log(7), .log(7)), (FileNames.table(1_234_567), .table(1_234_567)),
            (FileNames.manifest(3), .manifest(3)), (FileNames.current, .current), (FileNames.lock, .lock),
            (FileNames.identity, .identity), (FileNames.lost, .lost),
            (FileNames.temporary(FileNames.current), .temporary(of: "CURRENT")),
        ]
        for (name, kind) in named { XCTAssertEqual(FileNames.kind(of: name), kind, name) }
        XCTAssertEqual(["000007.log", "1234567.sst", "MANIFEST-000003", "CURRENT", "LOCK", "KVENGINE", "lost", "CURRENT.tmp"], named.map(\.0))
        XCTAssertEqual(FileNames.kind(of: "MANIFEST-000003")?.number, 3)
        XCTAssertNil(FileNames.kind(of: "CURRENT")?.number)
        for foreign in ["notes.txt", "MANIFEST-", "MANIFEST-12a", ".log", "12.sst.bak", ".tmp", "current"] {
            XCTAssertNil(FileNames.kind(of: foreign), foreign)
        }
    }

    /// The identity file a new database gets, byte for byte (docs/FORMAT.md, "Identity file").
    func testIdentityFileGolden() throws {
        let dir = TestPath()
        try Database(path: dir.path, options: testOptions()).close()
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir.path + "/KVENGINE")))
        XCTAssertEqual(bytes.count, 4096)
        let head = bytes[0..<24].map { String(format: "%02x", $0) }.joined()
        XCTAssertEqual(head, "4b56454e47494e45" + "06000000" + "00000000" + "9f1b041405044e7a", "magic, version 6, zero, XXH3-64 of bytes 0..<16 (little-endian)")
        XCTAssertTrue(bytes[24..<40].contains { $0 != 0 }, "a random database id")
        XCTAssertEqual(bytes[40], 0, "role: a database")
        XCTAssertTrue(bytes[41..<48].allSatisfy { $0 == 0 })
        let idChecksum = bytes[24..<48].withUnsafeBytes { Checksum.xxh3($0, seed: 0) }
        XCTAssertEqual(bytes[48..<56].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }, idChecksum, "XXH3-64 of bytes 24..<48")
        XCTAssertTrue(bytes[56...].allSatisfy { $0 == 0 })
        // A file without an id (written before ids) still opens, and a writable open gives it one.
        var old = bytes
        old.replaceSubrange(24..<4096, with: [UInt8](repeating: 0, count: 4096 - 24))
        try Data(old).write(to: URL(fileURLWithPath: dir.path + "/KVENGINE"))
        try Database(path: dir.path, options: testOptions { $0.readOnly = true }).close()
        XCTAssertEqual([UInt8](try Data(contentsOf: URL(fileURLWithPath: dir.path + "/KVENGINE"))), old, "a read-only open writes nothing")
        try Database(path: dir.path, options: testOptions()).close()
        let given = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir.path + "/KVENGINE")))
        XCTAssertTrue(given[24..<40].contains { $0 != 0 })
        XCTAssertEqual(Array(given[0..<24]), Array(bytes[0..<24]))
    }
}
