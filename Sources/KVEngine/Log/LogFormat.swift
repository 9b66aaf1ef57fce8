/// The write-ahead log's byte grammar, format version 1 (docs/FORMAT.md, "Log files").
///
/// A log file is a sequence of 4096-byte pages. Page 0 is the file header:
///
///     0   8  magic "KVENGLOG"
///     8   4  format version (1)
///     12  4  page size (4096)
///     16  8  log number (the NNNNNN of NNNNNN.log)
///     24  8  XXH3-64 of bytes 0..<24, seed 0
///     32  -  zero
///
/// Pages 1... hold fragments. A fragment never crosses a page; a page always begins
/// with a fragment header, and a zero type byte where a header would start (or fewer
/// than `fragmentHeaderBytes + 1` bytes left in the page) means the rest of the page is
/// padding. A fragment header is 24 bytes:
///
///     0   8  XXH3-64 of bytes 8..<(24 + length) of the fragment,
///            seed = logNumber &* 0x9E3779B97F4A7C15 ^ (file offset of the fragment)
///     8   8  durable bytes: the file offset up to which the log was durable when the
///            fragment was written (recovery uses it to tell a torn tail from corruption)
///     16  4  payload length
///     20  1  type: 1 full, 2 first, 3 middle, 4 last
///     21  3  zero
///     24  -  payload
///
/// The seed binds every fragment to its log and its position: a page of an older log, a
/// page written at the wrong offset, or a zeroed page never verifies.
enum LogFormat {
    static let magic: [UInt8] = Array("KVENGLOG".utf8)
    static let version: UInt32 = 1
    static let pageBytes = 4096
    static let headerBytes = 32
    static let fragmentHeaderBytes = 24
    /// Payload bytes one page can carry in a single fragment.
    static let maxFragmentPayload = pageBytes - fragmentHeaderBytes

    enum FragmentType: UInt8 {
        case full = 1
        case first = 2
        case middle = 3
        case last = 4
    }

    static func seed(logNumber: UInt64, offset: Int64) -> UInt64 {
        (logNumber &* 0x9E37_79B9_7F4A_7C15) ^ UInt64(bitPattern: offset)
    }

    /// Writes the header page (the whole page: the rest is zeroed).
    static func encodeHeader(logNumber: UInt64, into page: UnsafeMutableRawBufferPointer) {
        precondition(page.count >= pageBytes)
        page.initializeMemory(as: UInt8.self, repeating: 0)
        for (index, byte) in magic.enumerated() { page[index] = byte }
        Coding.storeFixed32(version, page, at: 8)
        Coding.storeFixed32(UInt32(pageBytes), page, at: 12)
        Coding.storeFixed64(logNumber, page, at: 16)
        let checksum = Checksum.xxh3(UnsafeRawBufferPointer(rebasing: page[0..<24]), seed: 0)
        Coding.storeFixed64(checksum, page, at: 24)
    }

    /// What is wrong with a header page, or nil when it is a valid header of `logNumber`.
    static func headerProblem(_ page: UnsafeRawBufferPointer, logNumber: UInt64) -> String? {
        guard page.count >= headerBytes else { return "file shorter than its header" }
        if page[0..<8].elementsEqual(magic) == false { return "bad magic (not a log file)" }
        let checksum = Checksum.xxh3(UnsafeRawBufferPointer(rebasing: page[0..<24]), seed: 0)
        if checksum != Coding.fixed64(page, at: 24) { return "header checksum mismatch" }
        let version = Coding.fixed32(page, at: 8)
        if version > LogFormat.version { return "log format version \(version) is newer than this build's \(LogFormat.version)" }
        if Coding.fixed32(page, at: 12) != UInt32(pageBytes) { return "unsupported page size \(Coding.fixed32(page, at: 12))" }
        let number = Coding.fixed64(page, at: 16)
        if number != logNumber { return "header names log \(number)" }
        return nil
    }

    /// Writes a fragment header and its checksum over header tail + payload already in place.
    static func sealFragment(
        _ page: UnsafeMutableRawBufferPointer, at position: Int, type: FragmentType, length: Int,
        durableBytes: Int64, seed: UInt64
    ) {
        Coding.storeFixed64(UInt64(bitPattern: durableBytes), page, at: position + 8)
        Coding.storeFixed32(UInt32(length), page, at: position + 16)
        page[position + 20] = type.rawValue
        page[position + 21] = 0
        page[position + 22] = 0
        page[position + 23] = 0
        let covered = UnsafeRawBufferPointer(rebasing: page[(position + 8)..<(position + fragmentHeaderBytes + length)])
        Coding.storeFixed64(Checksum.xxh3(covered, seed: seed), page, at: position)
    }

    /// Writes the fragment of `record` that starts at `offset` into `page` at `position`:
    /// as much of the rest as the page holds, typed by where it falls in the record
    /// (`full`, `first`, `middle`, `last`), then sealed. Returns the payload bytes it took
    /// (the record is done when `offset` plus them reaches its end; an empty record is one
    /// empty `full` fragment). The log and the manifest both fragment records this way.
    static func putFragment(
        of record: UnsafeRawBufferPointer, from offset: Int, into page: UnsafeMutableRawBufferPointer, at position: Int,
        durableBytes: Int64, seed: UInt64
    ) -> Int {
        precondition(pageBytes - position > fragmentHeaderBytes, "no room for a fragment at \(position)")
        let length = min(pageBytes - position - fragmentHeaderBytes, record.count - offset)
        let isFirst = offset == 0
        let isLast = offset + length == record.count
        let type: FragmentType = isFirst ? (isLast ? .full : .first) : (isLast ? .last : .middle)
        if length > 0 {
            let payload = position + fragmentHeaderBytes
            UnsafeMutableRawBufferPointer(rebasing: page[payload..<(payload + length)])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: record[offset..<(offset + length)]))
        }
        sealFragment(page, at: position, type: type, length: length, durableBytes: durableBytes, seed: seed)
        return length
    }

    /// A fragment that parsed and verified.
    struct Fragment {
        let type: FragmentType
        let payload: Range<Int>
        let durableBytes: Int64
        /// Position just past the fragment.
        let end: Int
    }

    /// How one fragment position in a page reads.
    enum FragmentRead {
        case fragment(Fragment)
        /// Zero type byte, or no room for a fragment: the rest of the page is padding.
        case padding
        /// Present but fails a check (checksum, length, type). `evidence` is the byte
        /// range of the page the check read: when every sector it touches holds a non-zero
        /// byte, no torn write explains the failure (see `isWritten(_:sectorsOf:)`).
        case bad(String, evidence: Range<Int>)
    }

    /// The unit a device writes atomically at a power cut: each such sector of an
    /// in-flight write is found whole, either as it was (zero: the engine writes every log
    /// page once, into space that reads as zero) or as written.
    static let atomicSectorBytes = 512

    /// Whether every atomic sector that `range` of `page` touches holds a non-zero byte:
    /// then, by the sector rule, each of them was written, and what a check read there is
    /// exactly what the engine wrote.
    static func isWritten(_ page: UnsafeRawBufferPointer, sectorsOf range: Range<Int>) -> Bool {
        guard !range.isEmpty else { return false }
        var sector = range.lowerBound / atomicSectorBytes * atomicSectorBytes
        while sector < range.upperBound {
            let end = min(sector + atomicSectorBytes, page.count)
            if page[sector..<end].allSatisfy({ $0 == 0 }) { return false }
            sector = end
        }
        return true
    }

    /// Reads the fragment at `position` of a page that starts at `pageOffset` in the file.
    static func readFragment(
        _ page: UnsafeRawBufferPointer, at position: Int, pageOffset: Int64, logNumber: UInt64
    ) -> FragmentRead {
        if pageBytes - position <= fragmentHeaderBytes { return .padding }
        if page[position + 20] == 0 {
            // Padding must be all zero: anything else is damage.
            let header = page[position..<(position + fragmentHeaderBytes)]
            // (If the type byte's sector was written, the engine wrote padding here.)
            return header.allSatisfy { $0 == 0 }
                ? .padding : .bad("non-zero bytes in padding", evidence: (position + 20)..<(position + 21))
        }
        // A written type byte is one the engine wrote: never an unknown type. A length
        // whose bytes were partly never written reads smaller than the one written, never
        // larger: a length past the page is damage whatever was written.
        guard let type = FragmentType(rawValue: page[position + 20]) else {
            return .bad("unknown fragment type \(page[position + 20])", evidence: (position + 20)..<(position + 21))
        }
        let length = Int(Coding.fixed32(page, at: position + 16))
        guard length <= pageBytes - position - fragmentHeaderBytes else {
            return .bad("fragment length \(length) runs past the page", evidence: (position + 20)..<(position + 21))
        }
        let seed = seed(logNumber: logNumber, offset: pageOffset + Int64(position))
        let covered = UnsafeRawBufferPointer(rebasing: page[(position + 8)..<(position + fragmentHeaderBytes + length)])
        guard Checksum.xxh3(covered, seed: seed) == Coding.fixed64(page, at: position) else {
            return .bad("checksum mismatch", evidence: position..<(position + fragmentHeaderBytes + length))
        }
        let start = position + fragmentHeaderBytes
        return .fragment(Fragment(
            type: type, payload: start..<(start + length),
            durableBytes: Int64(bitPattern: Coding.fixed64(page, at: position + 8)), end: start + length))
    }
}
