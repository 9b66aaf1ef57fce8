import Foundation
import PageStore
import XCTest
import TestSupport

@testable import KVEngine

/// Golden bytes of the table, manifest and CURRENT formats in docs/FORMAT.md, and a table
/// written and read back through the page store.
final class TableFormatTests: XCTestCase {
    private func le64(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        bytes.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    func testBlockEntriesSharePrefixesAndRestartEvery16() {
        var builder = BlockBuilder()
        let keyA = InternalKey.encode(Array("apple".utf8).withUnsafeBytes { $0 }, tag: 5 << 8 | 1)
        let keyB = InternalKey.encode(Array("apply".utf8).withUnsafeBytes { $0 }, tag: 6 << 8 | 0)
        keyA.withUnsafeBytes { key in [UInt8]([9]).withUnsafeBytes { builder.add(key, $0) } }
        keyB.withUnsafeBytes { key in [UInt8]().withUnsafeBytes { builder.add(key, $0) } }
        let block = builder.finish()
        // Entry 1: shared 0, unshared 13, value 1, key, value.
        XCTAssertEqual(Array(block[0..<3]), [0, 13, 1])
        XCTAssertEqual(Array(block[3..<8]), Array("apple".utf8))
        XCTAssertEqual(Array(block[8..<16]), [1, 5, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(block[16], 9)
        // Entry 2 shares "appl": shared 4, unshared 9, value 0.
        XCTAssertEqual(Array(block[17..<20]), [4, 9, 0])
        XCTAssertEqual(block[20], UInt8(ascii: "y"))
        XCTAssertEqual(Array(block[21..<29]), [0, 6, 0, 0, 0, 0, 0, 0])
        // Restart array: one restart at 0, count 1.
        XCTAssertEqual(Array(block[29...]), [0, 0, 0, 0, 1, 0, 0, 0])
        var many = BlockBuilder()
        for index in 0..<17 {
            let key = InternalKey.encode(Array(String(format: "k%02d", index).utf8).withUnsafeBytes { $0 }, tag: 1)
            key.withUnsafeBytes { key in [UInt8]().withUnsafeBytes { many.add(key, $0) } }
        }
        let restarts = many.finish()
        XCTAssertEqual(le64(restarts[(restarts.count - 4)...]), 2, "a restart every 16 entries")
    }

    /// The point search (in place, no cursor) finds what a cursor's seek finds, for
    /// targets before, between, on and after the entries, at every snapshot.
    func testPointSearchAgreesWithTheCursor() throws {
        let seed = testSeed()
        var random = SplitMix(seed: seed)
        for round in 0..<20 {
            // Sorted user keys with up to three versions each, newest first.
            var entries: [([UInt8], UInt64, [UInt8])] = []
            var keys = Set<[UInt8]>()
            let wanted = 1 + Int(random.next() % 80)
            while keys.count < wanted { keys.insert((0..<(1 + Int(random.next() % 12))).map { _ in UInt8(97 + random.next() % 4) }) }
            for key in keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
                let versions = 1 + Int(random.next() % 3)
                var sequence = UInt64(1000)
                for _ in 0..<versions {
                    sequence -= 1 + random.next() % 300
                    let type: EntryType = random.next() % 4 == 0 ? .delete : .put
                    entries.append((key, Tag.make(sequence, type), (0..<Int(random.next() % 20)).map { _ in UInt8(truncatingIfNeeded: random.next()) }))
                }
            }
            var builder = BlockBuilder()
            for (key, tag, value) in entries {
                key.withUnsafeBytes { InternalKey.encode($0, tag: tag) }.withUnsafeBytes { k in value.withUnsafeBytes { builder.add(k, $0) } }
            }
            let contents = builder.finish()
            let block = try XCTUnwrap(contents.withUnsafeBytes { Block(copying: $0) })
            for _ in 0..<200 {
                let target: [UInt8] = random.next() % 2 == 0
                    ? entries[Int(random.next() % UInt64(entries.count))].0
                    : (0..<(1 + Int(random.next() % 12))).map { _ in UInt8(97 + random.next() % 4) }
                let snapshot = random.next() % 1100
                let tag = Tag.seeking(snapshot)
                let cursor = BlockCursor(block)
                target.withUnsafeBytes { cursor.seek($0, tag: tag) }
                let found = target.withUnsafeBytes { block.pointSearch($0, tag: tag) }
                switch found {
                case .corrupt:
                    XCTFail("seed \(seed) round \(round): a well-formed block searched as corrupt")
                case .none:
                    XCTAssertFalse(cursor.isValid, "seed \(seed) round \(round): the cursor found an entry the search did not")
                case .entry(let same, let foundTag, let value):
                    XCTAssertTrue(cursor.isValid, "seed \(seed) round \(round)")
                    guard cursor.isValid else { continue }
                    XCTAssertEqual(foundTag, InternalKey.tag(cursor.key.bytes), "seed \(seed) round \(round)")
                    XCTAssertEqual(same, Array(InternalKey.userKey(cursor.key.bytes)) == target, "seed \(seed) round \(round)")
                    XCTAssertEqual(Array(UnsafeRawBufferPointer(rebasing: block.bytes[value])), Array(cursor.value), "seed \(seed) round \(round)")
                }
            }
        }
    }

    /// A block whose checksum holds but whose entries do not (a bug or a crafted file) is
    /// corrupt, never a trap: here an entry's varints run into the restart array, another
    /// claims lengths far past the block, and a third a shared prefix of over 2^63 bytes
    /// (which converted to `Int` trapped).
    func testMalformedEntriesAreCorruptNotATrap() throws {
        let restartArray: [UInt8] = [0, 0, 0, 0, 1, 0, 0, 0]
        let overrun = try XCTUnwrap(([0x80, 0x80, 0x80] + restartArray).withUnsafeBytes { Block(copying: $0) })
        let huge: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]
        let lengths = try XCTUnwrap(([0x00] + huge + huge + [0x00] + restartArray).withUnsafeBytes { Block(copying: $0) })
        let shared = try XCTUnwrap((huge + [0x00, 0x00] + restartArray).withUnsafeBytes { Block(copying: $0) })
        for block in [overrun, lengths, shared] {
            guard case .corrupt = Array("k".utf8).withUnsafeBytes({ block.pointSearch($0, tag: Tag.make(1, .put)) }) else {
                return XCTFail("a malformed entry must read as corrupt")
            }
            let cursor = BlockCursor(block)
            cursor.seekToFirst()
            XCTAssertFalse(cursor.isValid)
            XCTAssertTrue(cursor.corrupt)
            XCTAssertNil(block.restartKey(0))
        }
    }

    func testFooterBytes() {
        let footer = TableFormat.Footer(
            index: .init(offset: 8192, length: 100), filter: .init(offset: 12288, length: 30),
            properties: .init(offset: 16384, length: 50))
        var page = [UInt8](repeating: 0xEE, count: 4096)
        page.withUnsafeMutableBytes { footer.encode(table: 9, into: $0) }
        XCTAssertEqual(Array(page[0..<8]), Array("KTABLES1".utf8))
        XCTAssertEqual(Array(page[8..<16]), [3, 0, 0, 0, 0, 16, 0, 0], "table format version 3, page size 4096")
        XCTAssertEqual(le64(page[16..<24]), 8192)
        XCTAssertEqual(le64(page[24..<28]), 100)
        XCTAssertEqual(le64(page[28..<32]), 30)
        XCTAssertEqual(le64(page[32..<40]), 12288)
        XCTAssertEqual(le64(page[40..<48]), 16384)
        XCTAssertEqual(le64(page[48..<52]), 50)
        let checksum = page.withUnsafeBytes { Checksum.xxh3(UnsafeRawBufferPointer(rebasing: $0[0..<56]), seed: 9) }
        XCTAssertEqual(le64(page[56..<64]), checksum)
        XCTAssertTrue(page[64...].allSatisfy { $0 == 0 })
        let decoded = page.withUnsafeBytes { TableFormat.Footer.decode($0, table: 9, fileBytes: 6 * 4096) }
        XCTAssertEqual(try decoded.get(), footer)
        XCTAssertEqual(try decoded.get().filterLayout, .local)
        let wrongTable = page.withUnsafeBytes { TableFormat.Footer.decode($0, table: 10, fileBytes: 6 * 4096) }
        XCTAssertThrowsError(try wrongTable.get())
        // Version 2 and 1 footers (tables written before the properties counted user keys,
        // and before cache-local filters) still read, version 1 with the whole-array
        // filter; a version 4 one is refused.
        for (version, readable) in [(UInt32(2), true), (1, true), (4, false)] {
            var old = footer
            old.version = version
            page.withUnsafeMutableBytes { old.encode(table: 9, into: $0) }
            let result = page.withUnsafeBytes { TableFormat.Footer.decode($0, table: 9, fileBytes: 6 * 4096) }
            if readable {
                XCTAssertEqual(try result.get().filterLayout, version == 1 ? .whole : .local)
            } else {
                XCTAssertThrowsError(try result.get())
            }
        }
    }

    func testVersionEditBytes() {
        var edit = VersionEdit()
        edit.logNumber = 3
        edit.nextFileNumber = 300
        edit.lastSequence = 7
        edit.deleted = [.init(level: 1, number: 4)]
        XCTAssertEqual(edit.encode(), [1, 3, 2, 0xAC, 0x02, 3, 7, 4, 1, 4])
        var properties = TableProperties()
        properties.entries = 2
        properties.deletions = 1
        properties.dataBytes = 40
        properties.smallestSequence = 1
        properties.largestSequence = 2
        properties.smallest = Array("a".utf8) + [1, 1, 0, 0, 0, 0, 0, 0]
        properties.largest = Array("b".utf8) + [0, 2, 0, 0, 0, 0, 0, 0]
        XCTAssertEqual(properties.encode(), [2, 1, 40, 1, 2, 9] + properties.smallest + [9] + properties.largest)
        // Table format 3: the count of distinct user keys follows.
        var counted = properties
        counted.userKeys = 2
        XCTAssertEqual(counted.encode(), properties.encode() + [2])
        XCTAssertEqual(counted.encode().withUnsafeBytes { TableProperties.decode($0) }, counted)
        XCTAssertEqual(properties.encode().withUnsafeBytes { TableProperties.decode($0) }, properties, "format 2: no count")
        counted.userKeys = 3
        XCTAssertNil(counted.encode().withUnsafeBytes { TableProperties.decode($0) }, "more user keys than entries")
        edit.added = [.init(level: 0, meta: TableMeta(number: 5, fileBytes: 16384, properties: properties))]
        let encoded = edit.encode()
        XCTAssertEqual(Array(encoded[10..<16]), [5, 0, 5, 0x80, 0x80, 0x01])
        XCTAssertEqual(encoded.withUnsafeBytes { VersionEdit.decode($0) }, edit)
        // Format version 3: the logs an edit records as created, field 6 each.
        var logs = VersionEdit()
        logs.createdLogs = [9, 300]
        XCTAssertEqual(logs.encode(), [6, 9, 6, 0xAC, 0x02])
        XCTAssertEqual(logs.encode().withUnsafeBytes { VersionEdit.decode($0) }, logs)
        var state = ManifestState()
        _ = state.apply(logs)
        XCTAssertTrue(state.tracksLogs)
        XCTAssertEqual(state.liveLogs, [9, 300])
        var flushed = VersionEdit()
        flushed.logNumber = 300
        _ = state.apply(flushed)
        XCTAssertEqual(state.liveLogs, [300], "a log below the log number is in tables")
        XCTAssertNil([UInt8]([4, 9, 1]).withUnsafeBytes { VersionEdit.decode($0) }, "level 9 does not exist")
        XCTAssertNil([UInt8]([77]).withUnsafeBytes { VersionEdit.decode($0) }, "unknown tag")
    }

    /// Table format 1's filter: probes over the whole bit array.
    func testBloomFilterLayout() {
        let hashes = (0..<100).map { index in Array("key\(index)".utf8).withUnsafeBytes { BloomFilter.hash($0) } }
        let filter = BloomFilter.build(hashes: hashes, layout: .whole)
        XCTAssertEqual(filter.count, 1000 / 8 + 1)
        XCTAssertEqual(filter.last, 6)
        for hash in hashes { XCTAssertTrue(filter.withUnsafeBytes { BloomFilter.mayContain($0, hash: hash, layout: .whole) }) }
        let falsePositives = (0..<10_000).filter { index in
            let hash = Array("absent\(index)".utf8).withUnsafeBytes { BloomFilter.hash($0) }
            return filter.withUnsafeBytes { BloomFilter.mayContain($0, hash: hash, layout: .whole) }
        }.count
        XCTAssertLessThan(falsePositives, 300, "about 1% false positives at 10 bits per key")
    }

    /// Table format 2's filter: a key's probes in one 64-byte line (docs/FORMAT.md).
    func testCacheLocalBloomFilterLayout() {
        // One key: one line, and exactly the six bits the formula names.
        let hash: UInt64 = 0x0123_4567_89AB_CDEF
        let single = BloomFilter.build(hashes: [hash])
        XCTAssertEqual(single.count, 64 + 1)
        XCTAssertEqual(single.last, 6)
        var set: [Int] = []
        for bit in 0..<512 where single[bit >> 3] & UInt8(1 << (bit & 7)) != 0 { set.append(bit) }
        XCTAssertEqual(set, [119, 132, 191, 262, 419, 499])
        // Three lines: this hash's low 32 bits scaled to 3 pick line 1 (bytes 64..<128).
        let three = BloomFilter.build(hashes: [hash] + [UInt64](repeating: 0, count: 150))
        XCTAssertEqual(three.count, 3 * 64 + 1)
        XCTAssertEqual(three[64 + 119 / 8] & UInt8(1 << (119 % 8)), UInt8(1 << (119 % 8)))

        let hashes = (0..<1000).map { index in Array("key\(index)".utf8).withUnsafeBytes { BloomFilter.hash($0) } }
        let filter = BloomFilter.build(hashes: hashes)
        XCTAssertEqual(filter.count, 20 * 64 + 1, "10,000 bits in 512-bit lines")
        for hash in hashes { XCTAssertTrue(filter.withUnsafeBytes { BloomFilter.mayContain($0, hash: hash) }) }
        let falsePositives = (0..<100_000).filter { index in
            let hash = Array("absent\(index)".utf8).withUnsafeBytes { BloomFilter.hash($0) }
            return filter.withUnsafeBytes { BloomFilter.mayContain($0, hash: hash) }
        }.count
        XCTAssertLessThan(falsePositives, 2_000, "about 1.2% false positives at 10 bits per key")
    }

    /// A table written and read back, in the format written now and in table format 1
    /// (whose filter layout differs: a lookup there must use that layout or miss keys).
    func testTableRoundTripThroughThePageStore() throws {
        for version in [TableFormat.version, 2, 1] { try roundTrip(formatVersion: version) }
        for codec in [Compression.lz4, .zstd(), .zstd(level: 19)] {
            let bytes = try roundTrip(formatVersion: TableFormat.version, compression: codec)
            let raw = try roundTrip(formatVersion: TableFormat.version, compression: .none)
            XCTAssertLessThan(bytes, raw * 3 / 4, "\(codec): \(bytes) bytes against \(raw) uncompressed")
        }
    }

    /// Returns the table's size in bytes.
    @discardableResult
    private func roundTrip(formatVersion: UInt32, compression: Compression = .none) throws -> Int64 {
        let dir = TestPath()
        try FileManager.default.createDirectory(atPath: dir.path, withIntermediateDirectories: true)
        let store = try PageStore(options: testOptions().pageStore)
        defer { store.shutdown() }
        let builder = try TableBuilder(
            storage: store, directory: dir.path, number: 12, expectedBytes: 1 << 20, formatVersion: formatVersion, compression: compression)
        var expected: [([UInt8], UInt64, [UInt8])] = []
        for index in 0..<5000 {
            let key = Array(String(format: "user%05d", index).utf8)
            // Two versions of every third key, and a large value now and then.
            if index % 3 == 0 {
                expected.append((key, UInt64(index + 10_000) << 8 | 1, Array("newer".utf8)))
            }
            let value = index % 997 == 0 ? [UInt8](repeating: 0x42, count: 9000) : Array("value\(index)".utf8)
            expected.append((key, UInt64(index + 1) << 8 | (index % 7 == 0 ? 0 : 1), index % 7 == 0 ? [] : value))
        }
        for (key, tag, value) in expected {
            try key.withUnsafeBytes { key in try value.withUnsafeBytes { try builder.add(key, tag: tag, value: $0) } }
        }
        let meta = try builder.finish()
        XCTAssertEqual(meta.fileBytes % 4096, 0)
        XCTAssertEqual(meta.properties.entries, UInt64(expected.count))
        XCTAssertEqual(meta.properties.userKeys, formatVersion >= 3 ? UInt64(Set(expected.map(\.0)).count) : nil,
                       "table format \(formatVersion): distinct user keys")
        let table = try Table.open(storage: store, directory: dir.path, meta: meta, cache: BlockCache(capacityBytes: 1 << 20))
        XCTAssertEqual(try table.verifyBlocks(), table.blockCount)
        let walk = TableIterator(table: table)
        walk.seekToFirst()
        var forward: [([UInt8], UInt64)] = []
        while walk.isValid {
            forward.append((Array(walk.key), walk.tag))
            walk.next()
        }
        XCTAssertEqual(forward.map(\.0), expected.map(\.0))
        XCTAssertEqual(forward.map(\.1), expected.map(\.1))
        walk.seekToLast()
        var backward: [[UInt8]] = []
        while walk.isValid {
            backward.append(Array(walk.key))
            walk.prev()
        }
        XCTAssertEqual(backward, expected.map(\.0).reversed())
        // Point lookups at the newest version and at an older snapshot.
        for index in stride(from: 0, to: 5000, by: 37) {
            let key = Array(String(format: "user%05d", index).utf8)
            let found = try key.withUnsafeBytes { try table.get($0, hash: BloomFilter.hash($0), snapshot: .max >> 8) }
            if index % 3 == 0 {
                XCTAssertEqual(found, .value(Array("newer".utf8)))
            } else if index % 7 == 0 {
                XCTAssertEqual(found, .deleted)
            } else {
                XCTAssertEqual(found, .value(index % 997 == 0 ? [UInt8](repeating: 0x42, count: 9000) : Array("value\(index)".utf8)))
            }
            let old = try key.withUnsafeBytes { try table.get($0, hash: BloomFilter.hash($0), snapshot: UInt64(index + 1)) }
            XCTAssertEqual(old, index % 7 == 0 ? .deleted : .value(index % 997 == 0 ? [UInt8](repeating: 0x42, count: 9000) : Array("value\(index)".utf8)))
            let before = try key.withUnsafeBytes { try table.get($0, hash: BloomFilter.hash($0), snapshot: UInt64(index)) }
            XCTAssertEqual(before, .missing)
        }
        let absent = try Array("zzz".utf8).withUnsafeBytes { try table.get($0, hash: BloomFilter.hash($0), snapshot: .max >> 8) }
        XCTAssertEqual(absent, .missing)
        // Every key present passes the filter of its layout.
        for index in 0..<5000 {
            let hash = Array(String(format: "user%05d", index).utf8).withUnsafeBytes { BloomFilter.hash($0) }
            XCTAssertTrue(table.mayContain(hash: hash), "table format \(formatVersion): key \(index) filtered out")
        }
        return meta.fileBytes
    }

    /// Table format 3's data block trailer, byte for byte: raw blocks end with 0; a block
    /// that shrinks is the compressed bytes, its raw length (u32) and the codec (1 LZ4,
    /// 2 Zstd), and reads back to the same block; one that does not shrink is stored raw;
    /// a trailer that lies (a codec unknown, a length wrong, bytes that do not decompress)
    /// is corruption, never a trap.
    func testDataBlockTrailer() throws {
        var builder = BlockBuilder()
        for index in 0..<60 {
            let key = Array(String(format: "key%04d", index).utf8) + [1, 0, 0, 0, 0, 0, 0, 0]
            let value = Array(String(repeating: "value \(index % 3) ", count: 4).utf8)
            key.withUnsafeBytes { k in value.withUnsafeBytes { builder.add(k, $0) } }
        }
        let raw = builder.finish()
        XCTAssertEqual(TableFormat.encodeDataBlock(raw, compression: .none), raw + [0])
        for codec in [Compression.lz4, .zstd()] {
            let stored = TableFormat.encodeDataBlock(raw, compression: codec)
            XCTAssertLessThan(stored.count, raw.count / 2, "\(codec)")
            XCTAssertEqual(stored.last, codec.kind)
            XCTAssertEqual(Array(stored[(stored.count - 5)..<(stored.count - 1)]), withUnsafeBytes(of: UInt32(raw.count).littleEndian) { Array($0) })
            let block = try stored.withUnsafeBytes { try TableFormat.dataBlock($0, hasTrailer: true).get() }
            XCTAssertEqual(Array(block.bytes), raw, "\(codec)")
            var lying = stored
            lying[lying.count - 5] ^= 1  // the raw length
            XCTAssertThrowsError(try lying.withUnsafeBytes { try TableFormat.dataBlock($0, hasTrailer: true).get() })
            lying = stored
            lying[0] ^= 0xFF
            lying[1] ^= 0xFF
            if let decoded = try? lying.withUnsafeBytes({ try TableFormat.dataBlock($0, hasTrailer: true).get() }) {
                XCTAssertNotEqual(Array(decoded.bytes), raw, "damage that decompresses must not pass for the block")
            }
        }
        var unknown = raw + [9]
        XCTAssertThrowsError(try unknown.withUnsafeBytes { try TableFormat.dataBlock($0, hasTrailer: true).get() }) { error in
            XCTAssertTrue("\(error)".contains("unknown compression kind 9"), "\(error)")
        }
        unknown = [UInt8](repeating: 7, count: 3) + [1]
        XCTAssertThrowsError(try unknown.withUnsafeBytes { try TableFormat.dataBlock($0, hasTrailer: true).get() })
        // Bytes that do not compress are stored raw.
        var random = SplitMix(seed: 5)
        let noise = (0..<4000).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        XCTAssertEqual(TableFormat.encodeDataBlock(noise, compression: .zstd()), noise + [0])
    }

    /// `findBlock` narrows on 8-byte prefixes after the keys' shared prefix: it must agree
    /// with a plain walk of the index for keys that share long runs past the shared prefix,
    /// keys that end inside it, and targets before, inside and after the table.
    func testFindBlockAgreesWithAWalkOfTheIndex() throws {
        let seed = testSeed()
        var random = SplitMix(seed: seed)
        let dir = TestPath()
        try FileManager.default.createDirectory(atPath: dir.path, withIntermediateDirectories: true)
        let store = try PageStore(options: testOptions().pageStore)
        defer { store.shutdown() }
        let builder = try TableBuilder(storage: store, directory: dir.path, number: 3, expectedBytes: 1 << 20)
        var keys = Set<[UInt8]>()
        let alphabet: [UInt8] = [0, 1, 0x61, 0x62, 0xFF]
        let stems: [[UInt8]] = [[], Array("aaaaaaaaaa".utf8), Array("aaaaaaaaab".utf8), [0, 0, 0, 0, 0, 0, 0, 0, 0]]
        while keys.count < 12000 {
            // "tenant/", a stem, then 0-12 bytes from a small alphabet: runs of blocks whose
            // keys agree on the 8 bytes after the shared prefix; some keys end right after it.
            keys.insert(Array("tenant/".utf8) + stems[random.below(stems.count)] + (0..<random.below(13)).map { _ in alphabet[random.below(alphabet.count)] })
        }
        let sorted = keys.sorted { $0.lexicographicallyPrecedes($1) }
        let value = [UInt8](repeating: 0x33, count: 60)
        for (index, key) in sorted.enumerated() {
            try key.withUnsafeBytes { key in try value.withUnsafeBytes { try builder.add(key, tag: UInt64(index + 1) << 8 | 1, value: $0) } }
        }
        let table = try Table.open(storage: store, directory: dir.path, meta: try builder.finish(), cache: BlockCache(capacityBytes: 1 << 20))
        XCTAssertGreaterThan(table.blockCount, 3 * TableIndex.sampleStride, "several strides of the sampled search")
        func walk(_ key: [UInt8], _ tag: UInt64) -> Int {
            key.withUnsafeBytes { key in
                (0..<table.blockCount).first { InternalKey.compare(table.index.key($0), key, tag) >= 0 } ?? table.blockCount
            }
        }
        var probes = sorted + [[], Array("tenant".utf8), Array("tenant/".utf8), Array("tenant0".utf8), Array("tenan".utf8), Array("zzz".utf8), [0]]
        for _ in 0..<2000 {
            probes.append(Array("tenant/".utf8) + stems[random.below(stems.count)] + (0..<random.below(14)).map { _ in alphabet[random.below(alphabet.count)] })
        }
        for probe in probes {
            let tags: [UInt64] = [.max, 1 << 8 | 1, UInt64(random.below(4000)) << 8 | 0xFF]
            for tag in tags {
                let found = probe.withUnsafeBytes { table.index.findBlock($0, tag: tag) }
                XCTAssertEqual(found, walk(probe, tag), "probe \(probe) tag \(tag), seed \(seed)")
            }
        }
    }
}
