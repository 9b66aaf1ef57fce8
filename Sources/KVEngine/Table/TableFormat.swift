/// The sorted table's byte grammar, table format version 3 (docs/FORMAT.md, "Table files";
/// version 2 differs only in its properties, which lack the count of user keys, and
/// version 1 also in its filter block; both are still read).
///
/// A table is a sequence of 4096-byte pages: data blocks, then the index block, the filter
/// block and the properties block, each starting on a page boundary and padded with zeros
/// to the next one, then one footer page. A block on disk is its contents followed by an
/// 8-byte XXH3-64 of the contents, seeded by the table number and the block's offset, so a
/// block read from the wrong place or the wrong table never verifies.
enum TableFormat {
    static let magic: UInt64 = 0x3153_454C_4241_544B  // "KTABLES1" little-endian
    /// 3: the properties count the table's distinct user keys; 2: cache-local bloom
    /// filters (`BloomFilter.Layout.local`); 1: the whole-array filter.
    static let version: UInt32 = 3
    static let pageBytes = LogFormat.pageBytes
    static let checksumBytes = 8
    static let footerBytes = 64
    /// Data block contents are cut at about this size (one page with its checksum; in
    /// table format 3 also its trailer byte, and when compressed at about this size
    /// after compression).
    static let blockTargetBytes = pageBytes - checksumBytes

    /// Where a block is: its page-aligned offset and its length with the checksum.
    struct Handle: Equatable, Sendable {
        var offset: Int64
        var length: Int
        /// Pages the block occupies (padding included).
        var pages: Int { (length + TableFormat.pageBytes - 1) / TableFormat.pageBytes }
    }

    static func seed(table: UInt64, offset: Int64) -> UInt64 {
        (table &* 0xC2B2_AE3D_27D4_EB4F) ^ UInt64(bitPattern: offset)
    }

    /// The footer: the first 64 bytes of the last page.
    struct Footer: Equatable {
        var index: Handle
        var filter: Handle
        var properties: Handle
        /// The table format version the footer names (a footer written now: the build's).
        var version: UInt32 = TableFormat.version

        /// How the filter block is laid out in a table of this version.
        var filterLayout: BloomFilter.Layout { version >= 2 ? .local : .whole }

        func encode(table: UInt64, into page: UnsafeMutableRawBufferPointer) {
            page.initializeMemory(as: UInt8.self, repeating: 0)
            Coding.storeFixed64(TableFormat.magic, page, at: 0)
            Coding.storeFixed32(version, page, at: 8)
            Coding.storeFixed32(UInt32(TableFormat.pageBytes), page, at: 12)
            Coding.storeFixed64(UInt64(index.offset), page, at: 16)
            Coding.storeFixed32(UInt32(index.length), page, at: 24)
            Coding.storeFixed32(UInt32(filter.length), page, at: 28)
            Coding.storeFixed64(UInt64(filter.offset), page, at: 32)
            Coding.storeFixed64(UInt64(properties.offset), page, at: 40)
            Coding.storeFixed32(UInt32(properties.length), page, at: 48)
            Coding.storeFixed32(0, page, at: 52)
            let checksum = Checksum.xxh3(UnsafeRawBufferPointer(rebasing: page[0..<56]), seed: table)
            Coding.storeFixed64(checksum, page, at: 56)
        }

        /// Parses and checks a footer page of table `table` whose file is `fileBytes` long.
        static func decode(_ page: UnsafeRawBufferPointer, table: UInt64, fileBytes: Int64) -> Result<Footer, TableProblem> {
            guard page.count >= footerBytes else { return .failure(TableProblem(offset: 0, reason: "file too short for a footer")) }
            guard Coding.fixed64(page, at: 0) == TableFormat.magic else {
                return .failure(TableProblem(offset: 0, reason: "bad footer magic (not a table, or truncated)"))
            }
            let checksum = Checksum.xxh3(UnsafeRawBufferPointer(rebasing: page[0..<56]), seed: table)
            guard checksum == Coding.fixed64(page, at: 56) else {
                return .failure(TableProblem(offset: 56, reason: "footer checksum mismatch"))
            }
            let version = Coding.fixed32(page, at: 8)
            guard version <= TableFormat.version else {
                return .failure(TableProblem(offset: 8, reason: "table format version \(version) is newer than this build's \(TableFormat.version)"))
            }
            guard Coding.fixed32(page, at: 12) == UInt32(TableFormat.pageBytes) else {
                return .failure(TableProblem(offset: 12, reason: "unsupported page size \(Coding.fixed32(page, at: 12))"))
            }
            let footer = Footer(
                index: Handle(offset: Int64(Coding.fixed64(page, at: 16)), length: Int(Coding.fixed32(page, at: 24))),
                filter: Handle(offset: Int64(Coding.fixed64(page, at: 32)), length: Int(Coding.fixed32(page, at: 28))),
                properties: Handle(offset: Int64(Coding.fixed64(page, at: 40)), length: Int(Coding.fixed32(page, at: 48))),
                version: version)
            let footerOffset = fileBytes - Int64(TableFormat.pageBytes)
            for (name, handle) in [("index", footer.index), ("filter", footer.filter), ("properties", footer.properties)] {
                guard handle.offset >= 0, handle.offset % Int64(TableFormat.pageBytes) == 0,
                    handle.length >= checksumBytes + 4, handle.offset + Int64(handle.length) <= footerOffset
                else {
                    return .failure(TableProblem(offset: 16, reason: "footer's \(name) handle (\(handle.offset), \(handle.length)) is out of bounds"))
                }
            }
            return .success(footer)
        }
    }

    /// Seals a block in place: `buffer[0..<contents]` holds its contents; the checksum goes
    /// after them and zeros to the end of the last page. Returns the block's handle length.
    static func seal(
        _ buffer: UnsafeMutableRawBufferPointer, contents: Int, table: UInt64, offset: Int64
    ) -> Int {
        let checksum = Checksum.xxh3(UnsafeRawBufferPointer(rebasing: buffer[0..<contents]), seed: seed(table: table, offset: offset))
        Coding.storeFixed64(checksum, buffer, at: contents)
        let length = contents + checksumBytes
        let padded = (length + pageBytes - 1) / pageBytes * pageBytes
        if padded > length {
            UnsafeMutableRawBufferPointer(rebasing: buffer[length..<padded]).initializeMemory(as: UInt8.self, repeating: 0)
        }
        return length
    }

    /// The contents of a block read at `handle.offset`, or why it does not verify.
    static func verify(_ bytes: UnsafeRawBufferPointer, handle: Handle, table: UInt64) -> Result<UnsafeRawBufferPointer, TableProblem> {
        guard bytes.count >= handle.length, handle.length >= checksumBytes else {
            return .failure(TableProblem(offset: handle.offset, reason: "block of \(handle.length) bytes is truncated"))
        }
        let contents = UnsafeRawBufferPointer(rebasing: bytes[0..<(handle.length - checksumBytes)])
        let stored = Coding.fixed64(bytes, at: handle.length - checksumBytes)
        guard Checksum.xxh3(contents, seed: seed(table: table, offset: handle.offset)) == stored else {
            return .failure(TableProblem(offset: handle.offset, reason: "block checksum mismatch"))
        }
        return .success(contents)
    }

    /// A data block from its verified contents: table format 3 ends them with a trailer
    /// (`0`: the block as built; `1` LZ4 or `2` Zstd: the compressed block, then its raw
    /// length as a u32, then that byte); formats 1 and 2 hold the block as built.
    static func dataBlock(_ contents: UnsafeRawBufferPointer, hasTrailer: Bool) -> Result<Block, BlockProblem> {
        guard hasTrailer else {
            return Block(copying: contents).map { .success($0) } ?? .failure(BlockProblem("malformed block"))
        }
        guard let kind = contents.last else { return .failure(BlockProblem("empty block")) }
        if kind == Compression.none.kind {
            let raw = UnsafeRawBufferPointer(rebasing: contents.dropLast())
            return Block(copying: raw).map { .success($0) } ?? .failure(BlockProblem("malformed block"))
        }
        guard kind == Compression.lz4.kind || kind == Compression.zstd().kind else {
            return .failure(BlockProblem("unknown compression kind \(kind)"))
        }
        guard contents.count > 1 + BlockCodec.rawLengthBytes else {
            return .failure(BlockProblem("compressed block of \(contents.count) bytes is too short"))
        }
        let rawLength = Int(Coding.fixed32(contents, at: contents.count - 1 - BlockCodec.rawLengthBytes))
        let payload = UnsafeRawBufferPointer(rebasing: contents[..<(contents.count - 1 - BlockCodec.rawLengthBytes)])
        guard payload.count < BlockCodec.maxCompressedRawBytes else {
            return .failure(BlockProblem("compressed block of \(payload.count) bytes is longer than any block compressed"))
        }
        guard let block = Block(decompressing: payload, kind: kind, rawLength: rawLength) else {
            return .failure(BlockProblem("\(kind == Compression.lz4.kind ? "LZ4" : "Zstd") block does not decompress to its \(rawLength) bytes"))
        }
        return .success(block)
    }

    /// Why a data block's verified contents are not a block.
    struct BlockProblem: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// A data block's stored contents (before the checksum) in table format 3: `raw`
    /// compressed with `compression` when that pays, else as it is, with the trailer.
    static func encodeDataBlock(_ raw: [UInt8], compression: Compression, context: ZstdContext? = nil) -> [UInt8] {
        if let compressed = raw.withUnsafeBytes({ BlockCodec.compress($0, with: compression, context: context) }) {
            var stored = compressed
            stored.reserveCapacity(compressed.count + 1 + BlockCodec.rawLengthBytes)
            withUnsafeBytes(of: UInt32(raw.count).littleEndian) { stored += $0 }
            stored.append(compression.kind)
            return stored
        }
        return raw + [Compression.none.kind]
    }

    static func encodeHandle(_ handle: Handle, into bytes: inout [UInt8]) {
        Coding.putVarint(UInt64(handle.offset), into: &bytes)
        Coding.putVarint(UInt64(handle.length), into: &bytes)
    }

    static func decodeHandle(_ bytes: UnsafeRawBufferPointer) -> Handle? {
        var position = 0
        guard let offset = Coding.varint(bytes, &position), let length = Coding.varint(bytes, &position),
            offset % UInt64(pageBytes) == 0, length >= UInt64(checksumBytes + 4), length < 1 << 31, offset < 1 << 62
        else { return nil }
        return Handle(offset: Int64(offset), length: Int(length))
    }
}

/// What is wrong with a table, and where.
struct TableProblem: Error {
    let offset: Int64
    let reason: String
}

/// What a table holds: written in its properties block and in the manifest.
struct TableProperties: Equatable, Sendable {
    var entries: UInt64 = 0
    var deletions: UInt64 = 0
    var dataBytes: UInt64 = 0
    var smallestSequence: UInt64 = .max
    var largestSequence: UInt64 = 0
    /// Smallest and largest internal keys.
    var smallest: [UInt8] = []
    var largest: [UInt8] = []
    /// Distinct user keys among the entries (table format 3; nil in older tables). Equal
    /// to `entries` when no key has two versions here, so that with no deletions each
    /// entry is one live key of the table.
    var userKeys: UInt64? = nil

    func encode() -> [UInt8] {
        var bytes: [UInt8] = []
        for value in [entries, deletions, dataBytes, smallestSequence, largestSequence] {
            Coding.putVarint(value, into: &bytes)
        }
        Coding.putVarint(UInt64(smallest.count), into: &bytes)
        bytes += smallest
        Coding.putVarint(UInt64(largest.count), into: &bytes)
        bytes += largest
        if let userKeys { Coding.putVarint(userKeys, into: &bytes) }
        return bytes
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) -> TableProperties? {
        var position = 0
        var properties = TableProperties()
        guard let entries = Coding.varint(bytes, &position), let deletions = Coding.varint(bytes, &position),
            let dataBytes = Coding.varint(bytes, &position), let smallestSequence = Coding.varint(bytes, &position),
            let largestSequence = Coding.varint(bytes, &position)
        else { return nil }
        properties.entries = entries
        properties.deletions = deletions
        properties.dataBytes = dataBytes
        properties.smallestSequence = smallestSequence
        properties.largestSequence = largestSequence
        for index in 0..<2 {
            guard let length = Coding.varint(bytes, &position), length >= UInt64(InternalKey.tagBytes),
                length <= UInt64(bytes.count - position)
            else { return nil }
            let key = Array(bytes[position..<(position + Int(length))])
            position += Int(length)
            if index == 0 { properties.smallest = key } else { properties.largest = key }
        }
        if position < bytes.count {
            guard let userKeys = Coding.varint(bytes, &position), userKeys >= 1, userKeys <= properties.entries else { return nil }
            properties.userKeys = userKeys
        }
        return position == bytes.count ? properties : nil
    }
}

/// A bloom filter over user keys, `bitsPerKey` bits per key, probed with one XXH3-64 hash.
///
/// Two layouts (docs/FORMAT.md, "Filter block"): `.local` (table formats 2 and 3, written now)
/// puts all of a key's probes in one 64-byte cache line, so a probe costs one memory
/// access, as RocksDB's cache-local filters; `.whole` (table format 1, still read) spreads
/// them over the whole bit array by double hashing. Either way the contents end with one
/// byte of probes.
enum BloomFilter {
    static let bitsPerKey = 10
    /// Probes per key: 10 bits per key times ln 2, rounded down.
    static let probes = 6
    static let lineBytes = 64

    enum Layout: Sendable {
        case local
        case whole
    }

    static func hash(_ key: UnsafeRawBufferPointer) -> UInt64 {
        Checksum.xxh3(key, seed: 0x6A09_E667_F3BC_C908)
    }

    static func build(hashes: [UInt64], layout: Layout = .local) -> [UInt8] {
        switch layout {
        case .local:
            let lines = max(1, (hashes.count * bitsPerKey + lineBytes * 8 - 1) / (lineBytes * 8))
            var filter = [UInt8](repeating: 0, count: lines * lineBytes + 1)
            filter.withUnsafeMutableBytes { bytes in
                for hash in hashes {
                    let line = localLine(hash, lines: lines)
                    var probe = localProbeSeed(hash)
                    for _ in 0..<probes {
                        probe = probe &* 0x9E37_79B9_7F4A_7C15
                        let bit = Int(probe >> 55)
                        bytes[line + (bit >> 3)] |= UInt8(1 << (bit & 7))
                    }
                }
                bytes[lines * lineBytes] = UInt8(probes)
            }
            return filter
        case .whole:
            let bits = max(64, hashes.count * bitsPerKey)
            let bytes = (bits + 7) / 8
            var filter = [UInt8](repeating: 0, count: bytes + 1)
            let bitCount = UInt64(bytes * 8)
            for hash in hashes {
                var h = hash
                let delta = (hash >> 33) | (hash << 31)
                for _ in 0..<probes {
                    let bit = Int(h % bitCount)
                    filter[bit >> 3] |= UInt8(1 << (bit & 7))
                    h &+= delta
                }
            }
            filter[bytes] = UInt8(probes)
            return filter
        }
    }

    /// Byte offset of the line that holds a key's probes: the low 32 bits of the hash
    /// scaled to the line count.
    @inline(__always)
    private static func localLine(_ hash: UInt64, lines: Int) -> Int {
        Int(((hash & 0xFFFF_FFFF) &* UInt64(lines)) >> 32) * lineBytes
    }

    /// The high 32 bits of the hash, from which each probe is drawn by multiplying again.
    @inline(__always)
    private static func localProbeSeed(_ hash: UInt64) -> UInt64 { hash >> 32 }

    /// False only when the key is certainly absent.
    static func mayContain(_ filter: UnsafeRawBufferPointer, hash: UInt64, layout: Layout = .local) -> Bool {
        guard filter.count >= 2 else { return true }
        let probes = Int(filter[filter.count - 1])
        switch layout {
        case .local:
            let lines = (filter.count - 1) / lineBytes
            guard lines > 0 else { return true }
            let line = localLine(hash, lines: lines)
            var probe = localProbeSeed(hash)
            for _ in 0..<probes {
                probe = probe &* 0x9E37_79B9_7F4A_7C15
                let bit = Int(probe >> 55)
                if filter[line + (bit >> 3)] & UInt8(1 << (bit & 7)) == 0 { return false }
            }
            return true
        case .whole:
            let bitCount = UInt64((filter.count - 1) * 8)
            var h = hash
            let delta = (hash >> 33) | (hash << 31)
            for _ in 0..<probes {
                let bit = Int(h % bitCount)
                if filter[bit >> 3] & UInt8(1 << (bit & 7)) == 0 { return false }
                h &+= delta
            }
            return true
        }
    }
}
