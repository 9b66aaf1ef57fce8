import PageStore

/// Reads a log back at open: hands every complete record to the caller in order, and
/// says how the log ended.
///
/// Parsing stops at the first position X that is not a valid continuation: a fragment
/// failing its checks, a page that begins with padding (every written page begins with a
/// fragment), a fragment out of order, or the end of the file. Then the reader looks at
/// every later page for fragments that still verify:
///
/// - none, and X is an empty page or the end of the file: the log ended cleanly at X (a
///   record whose last fragment never arrived is dropped as torn);
/// - a later fragment says the log was durable past X (`durableBytes > X`): X was covered
///   by a completed fdatasync, so the damage is **corruption**;
/// - the check that failed at X read only bytes of sectors that were written (each holds
///   a non-zero byte): a power cut leaves every sector of a write in flight either as it
///   was, zero, or as written (`LogFormat.atomicSectorBytes`), so what failed there is
///   what the engine wrote, changed afterwards: **corruption**;
/// - otherwise X lies in the part of the log that was never synced: a **torn tail**. The
///   records from X on were never acknowledged (an acknowledgement needs the fdatasync of
///   a chain, which covers X), so they are dropped.
struct LogReader {
    /// How a log ended.
    enum End: Equatable {
        case clean(offset: Int64)
        case tornTail(offset: Int64, reason: String, droppedFragments: Int)
        case corruption(offset: Int64, reason: String)
        /// The header page never became valid and no fragment in the file verifies: a
        /// crash while the log was being created, before it could hold any record.
        case unfinishedCreation(reason: String)
    }

    /// What a log's end means to whoever replays it (an open, `check`, `salvage`): the
    /// one place that says which endings are damage. `live`: the manifest records the log
    /// as created whole before any write in it was acknowledged, so even an unfinished
    /// header is damage.
    enum Verdict: Equatable {
        case clean
        /// Never acknowledged: cut off (an open), reported (check) or set aside (salvage).
        case tornTail(offset: Int64, reason: String, droppedFragments: Int)
        /// A crash while creating it, before it held any record: removed.
        case unfinished(reason: String)
        case damaged(offset: Int64, reason: String)
    }

    struct Result {
        var end: End

        func verdict(live: Bool) -> Verdict {
            switch end {
            case .clean: .clean
            case .tornTail(let offset, let reason, let dropped): .tornTail(offset: offset, reason: reason, droppedFragments: dropped)
            case .corruption(let offset, let reason): .damaged(offset: offset, reason: reason)
            case .unfinishedCreation(let reason) where live:
                .damaged(offset: 0, reason: "damaged header (\(reason)), but the manifest records it as created whole before any write in it was acknowledged")
            case .unfinishedCreation(let reason): .unfinished(reason: reason)
            }
        }
        var records = 0
        /// Where the file should be cut after a torn tail: X, or the end of X's page when
        /// X is inside a page whose first part holds good records.
        var truncateAt: Int64 = 0
    }

    let storage: any Storage
    let path: String
    let number: UInt64

    /// Pages read per request.
    static let chunkPages = 64

    /// Replays the log. `deliver` gets each complete record and returns a problem when the
    /// record itself is malformed (then parsing stops there, as at a bad fragment).
    ///
    /// `from`, when not 0, is the offset of a record a replay delivered before: parsing
    /// starts on its page, skipping the fragments before it (the change feed reads on
    /// where it stopped). `limit` ends the file there (a live log's durable end: every page
    /// before it is written whole and never again).
    func replay(from: Int64 = 0, limit: Int64? = nil, _ deliver: @escaping (UnsafeRawBufferPointer, Int64) -> String?) throws(KVError) -> Result {
        let file = try io("open log \(path)") { try storage.openFile(atPath: path, mode: .readOnly) }
        defer { try? storage.closeFile(file) }
        let fileSize = try io("size of \(path)") { try storage.fileSize(file) }
        let size = min(fileSize, limit ?? fileSize)
        let pageBytes = LogFormat.pageBytes
        let buffer = try io("allocate recovery buffer") {
            try storage.allocator.allocate(pages: LogReader.chunkPages)
        }
        defer { storage.allocator.free(buffer) }

        // The header.
        let headerRead = try io("read log header of \(path)") {
            try storage.read(file, offsetBytes: 0, into: buffer.slice(offset: 0, count: pageBytes))
        }
        var parser = Parser(number: number, deliver: deliver)
        parser.skipBefore = from
        var headerProblem: String? = nil
        if let problem = headerRead < LogFormat.headerBytes
            ? "file shorter than its header"
            : LogFormat.headerProblem(UnsafeRawBufferPointer(buffer.bytes), logNumber: number)
        {
            // Nothing is parsed after a bad header; only look for fragments that verify.
            headerProblem = problem
            parser.halt(at: 0, 0, "bad log header: \(problem)")
        }
        var offset = max(Int64(pageBytes), from / Int64(pageBytes) * Int64(pageBytes))
        while offset < size {
            let want = min(Int64(buffer.count), size - offset)
            let wantAligned = Int((want + Int64(pageBytes) - 1) / Int64(pageBytes)) * pageBytes
            let got = try io("read \(path)") {
                try storage.read(file, offsetBytes: offset, into: buffer.slice(offset: 0, count: wantAligned))
            }
            let wholePages = got / pageBytes
            for index in 0..<wholePages {
                let page = UnsafeRawBufferPointer(rebasing: buffer.bytes[(index * pageBytes)..<((index + 1) * pageBytes)])
                parser.consume(page: page, at: offset + Int64(index * pageBytes))
            }
            if wholePages == 0 { break }
            offset += Int64(wholePages * pageBytes)
        }
        if let headerProblem {
            if parser.laterValid == 0 { return Result(end: .unfinishedCreation(reason: headerProblem)) }
            return Result(end: .corruption(offset: 0, reason: "bad log header: \(headerProblem)"))
        }
        return parser.finish(endOfFile: offset)
    }

    /// The sequence number of the log's first record, from its first page of records
    /// alone (whose first fragment starts that record); nil when it holds none.
    func firstSequence() throws(KVError) -> UInt64? {
        try io("read the first record of \(path)") { () throws -> UInt64? in
            let file = try storage.openFile(atPath: path, mode: .readOnly)
            defer { try? storage.closeFile(file) }
            let page = try storage.allocator.allocate()
            defer { storage.allocator.free(page) }
            let pageBytes = LogFormat.pageBytes
            guard try storage.read(file, offsetBytes: Int64(pageBytes), into: page.slice(offset: 0, count: pageBytes)) == pageBytes,
                case .fragment(let fragment) = LogFormat.readFragment(
                    UnsafeRawBufferPointer(page.bytes), at: 0, pageOffset: Int64(pageBytes), logNumber: number),
                fragment.type == .full || fragment.type == .first, fragment.payload.count >= WriteBatch.headerBytes
            else { return nil }
            return Coding.fixed64(UnsafeRawBufferPointer(rebasing: page.bytes[fragment.payload]), at: 0)
        }
    }

    /// The page-by-page state machine of `replay`.
    private struct Parser {
        let number: UInt64
        let deliver: (UnsafeRawBufferPointer, Int64) -> String?
        var assembling: [UInt8]? = nil
        var assemblingStart: Int64 = 0
        /// Fragments before this offset are passed over (`replay(from:)`).
        var skipBefore: Int64 = 0
        var records = 0
        /// Where parsing stopped, why, and whether it was at an empty page.
        var stop: (offset: Int64, reason: String, empty: Bool)? = nil
        var stopPageHasRecords = false
        var laterValid = 0
        var laterDurable: Int64 = -1
        /// Parsing stopped at a fragment that verified but cannot follow what came before.
        var verifiedButWrong = false
        /// Parsing stopped at a check that failed on bytes whose sectors were all written.
        var writtenButBad = false
        /// Where the last page's padding began, when it ran to the end of the page and no
        /// record has been completed since.
        var paddingAt: Int64?
        /// The most `durableBytes` of the fragments read since `paddingAt`.
        var durableSincePadding: Int64 = -1

        init(number: UInt64, deliver: @escaping (UnsafeRawBufferPointer, Int64) -> String?) {
            self.number = number
            self.deliver = deliver
        }

        mutating func consume(page: UnsafeRawBufferPointer, at pageOffset: Int64) {
            if stop != nil {
                probe(page: page, at: pageOffset)
                return
            }
            var position = 0
            while position < LogFormat.pageBytes {
                switch LogFormat.readFragment(page, at: position, pageOffset: pageOffset, logNumber: number) {
                case .padding:
                    if position == 0 {
                        stop = (pageOffset, "empty page", true)
                        return
                    }
                    // Padding is zero to the end of the page, and never follows a record's
                    // first or middle fragment (those fill their page): otherwise the zeros
                    // are a sector that never arrived.
                    if assembling != nil || !page[position...].allSatisfy({ $0 == 0 }) {
                        halt(at: pageOffset, position, "zero bytes where a fragment should start")
                        return
                    }
                    // It may still be sectors that never arrived, up to the end of the page:
                    // the next page tells (see `accept`'s caller below).
                    paddingAt = pageOffset + Int64(position)
                    return
                case .bad(let reason, let evidence):
                    halt(at: pageOffset, position, reason)
                    writtenButBad = LogFormat.isWritten(page, sectorsOf: evidence)
                    return
                case .fragment(let fragment):
                    if pageOffset + Int64(position) < skipBefore {
                        position = fragment.end
                        continue
                    }
                    if let problem = accept(fragment, page, at: pageOffset + Int64(position)) {
                        if let paddingAt, paddingAt % Int64(LogFormat.atomicSectorBytes) == 0 {
                            // The zeros that ended a page from a sector boundary on were not
                            // padding but sectors holding records that never arrived (what
                            // follows cannot follow what came before them): a torn write,
                            // ended there, unless a fragment since says the log was durable
                            // past them.
                            let durable = max(durableSincePadding, fragment.durableBytes)
                            stop = (paddingAt, "zeros from here to the end of the page, then \(problem)", false)
                            stopPageHasRecords = true
                            if durable > paddingAt {
                                stop = (paddingAt, "zeros from here to the end of the page, then \(problem); a later fragment says the log was durable up to offset \(durable)", false)
                                verifiedButWrong = true
                            }
                            probe(page: page, at: pageOffset)
                            return
                        }
                        // The fragment verified: no torn write makes it; its content is wrong.
                        halt(at: pageOffset, position, problem)
                        verifiedButWrong = true
                        return
                    }
                    if paddingAt != nil {
                        // Until the first record after the zeros is whole, its sequence
                        // numbers are not known to follow.
                        durableSincePadding = max(durableSincePadding, fragment.durableBytes)
                        if fragment.type == .full || fragment.type == .last {
                            paddingAt = nil
                            durableSincePadding = -1
                        }
                    }
                    position = fragment.end
                }
            }
        }

        mutating func halt(at pageOffset: Int64, _ position: Int, _ reason: String) {
            stop = (pageOffset + Int64(position), reason, false)
            stopPageHasRecords = position > 0
        }

        /// Takes a verified fragment; returns a problem when it cannot follow what came before.
        private mutating func accept(_ fragment: LogFormat.Fragment, _ page: UnsafeRawBufferPointer, at offset: Int64) -> String? {
            let payload = UnsafeRawBufferPointer(rebasing: page[fragment.payload])
            switch fragment.type {
            case .full:
                guard assembling == nil else { return "full fragment inside an unfinished record" }
                if let problem = deliver(payload, offset) { return problem }
                records += 1
            case .first:
                guard assembling == nil else { return "first fragment inside an unfinished record" }
                assembling = Array(payload)
                assemblingStart = offset
            case .middle:
                guard assembling != nil else { return "middle fragment without a first" }
                assembling!.append(contentsOf: payload)
            case .last:
                guard var record = assembling else { return "last fragment without a first" }
                record.append(contentsOf: payload)
                assembling = nil
                if let problem = record.withUnsafeBytes({ deliver($0, assemblingStart) }) {
                    return problem
                }
                records += 1
            }
            return nil
        }

        /// After the stop: counts later fragments that verify and the durability they claim.
        private mutating func probe(page: UnsafeRawBufferPointer, at pageOffset: Int64) {
            var position = 0
            while position < LogFormat.pageBytes,
                case .fragment(let fragment) = LogFormat.readFragment(page, at: position, pageOffset: pageOffset, logNumber: number)
            {
                laterValid += 1
                laterDurable = max(laterDurable, fragment.durableBytes)
                position = fragment.end
            }
        }

        func finish(endOfFile: Int64) -> Result {
            let stop = self.stop ?? (endOfFile, "end of file", true)
            var result = Result(end: .clean(offset: stop.offset), records: records)
            if verifiedButWrong {
                result.end = .corruption(offset: stop.offset, reason: stop.reason)
                return result
            }
            if writtenButBad {
                result.end = .corruption(
                    offset: stop.offset,
                    reason: "\(stop.reason), in sectors that were all written (a write cut short leaves each sector as it was: zero)")
                return result
            }
            if laterDurable > stop.offset {
                result.end = .corruption(
                    offset: stop.offset,
                    reason: "\(stop.reason), but a later fragment says the log was durable up to offset \(laterDurable)")
                return result
            }
            let pageBytes = Int64(LogFormat.pageBytes)
            result.truncateAt = stopPageHasRecords ? (stop.offset / pageBytes + 1) * pageBytes : stop.offset
            if stop.empty && laterValid == 0 {
                if assembling != nil {
                    result.end = .tornTail(
                        offset: assemblingStart, reason: "record starting here has no last fragment", droppedFragments: 0)
                }
                return result
            }
            result.end = .tornTail(offset: stop.offset, reason: stop.reason, droppedFragments: laterValid)
            return result
        }
    }
}
