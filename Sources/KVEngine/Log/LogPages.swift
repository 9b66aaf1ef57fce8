import DequeModule
import PageStore

/// A log's tail in memory: records cut into fragments in 4 KiB pages (`LogFormat`), in
/// blocks of `blockPages` pages from the page arena, and which of those pages chains have
/// taken. A value owned by its `LogWriter`, changed only under the writer's lock; it does
/// no I/O (the commit pipeline in `LogWriter` writes what `takePages` hands it).
///
/// Invariants (checked with `precondition`, since breaking one would corrupt the log):
/// - Pages are filled in file order, and a page a chain has taken is never written again:
///   when a chain takes the partly filled page, filling moves on to the next page.
/// - `sealedSequence` is the last sequence number of the records that end before the fill
///   page, `pageSequence` of those that end in it: what a chain without (or with) the
///   partly filled page makes durable.
struct LogPages {
    static let blockPages = 64
    static let blockBytes = blockPages * LogFormat.pageBytes

    struct Block {
        let buffer: PageBuffer
        let fileOffset: Int64
        /// Pages handed to a chain (written or being written).
        var writtenPages = 0
    }

    private(set) var blocks: Deque<Block> = []
    /// Page of the last block being filled, and the position in it (0: page empty).
    private(set) var page = 0
    private(set) var position = 0
    private(set) var sealedSequence: UInt64
    private(set) var pageSequence: UInt64
    /// Blocks allocated ahead for the next records.
    private var spare: [PageBuffer] = []

    /// An empty tail after the header page, following records up to `lastSequence`.
    init(lastSequence: UInt64) {
        sealedSequence = lastSequence
        pageSequence = lastSequence
    }

    /// Blocks to allocate before a record of `bytes` fits (0: it fits now).
    func missingBlocks(forRecordBytes bytes: Int) -> Int {
        let pagesNeeded = bytes / LogFormat.maxFragmentPayload + 2
        let inCurrent = blocks.isEmpty ? 0 : LogPages.blockPages - page
        let available = inCurrent + spare.count * LogPages.blockPages
        guard available < pagesNeeded else { return 0 }
        return (pagesNeeded - available + LogPages.blockPages - 1) / LogPages.blockPages
    }

    /// Blocks for later records (from `missingBlocks`).
    mutating func addSpare(_ buffers: [PageBuffer]) {
        for buffer in buffers { precondition(buffer.count == LogPages.blockBytes, "a log block is \(LogPages.blockBytes) bytes") }
        spare.append(contentsOf: buffers)
    }

    /// Cuts `record` (whose last sequence number is `lastSequence`) into fragments in the
    /// fill pages of log `logNumber`, each recording `durableBytes`. The room must be
    /// there (`missingBlocks` is 0).
    mutating func append(_ record: UnsafeRawBufferPointer, lastSequence: UInt64, durableBytes: Int64, logNumber: UInt64) {
        let end = append(record, from: 0, lastSequence: lastSequence, durableBytes: durableBytes, logNumber: logNumber)
        precondition(end == record.count, "a record was appended without room for it")
    }

    /// Cuts `record` from byte `start` on into fragments while the blocks in hand have
    /// room, and returns where it stopped (`record.count`: the record is in). It stops
    /// only at the end of a block, so every fragment before the stop fills its page (a
    /// first or middle fragment always does): the pages written so far are whole, and a
    /// chain may take them before the rest of the record is cut (a streamed record).
    mutating func append(
        _ record: UnsafeRawBufferPointer, from start: Int, lastSequence: UInt64, durableBytes: Int64, logNumber: UInt64
    ) -> Int {
        var offset = start
        while true {
            if LogFormat.pageBytes - position <= LogFormat.fragmentHeaderBytes { advancePage() }
            if blocks.isEmpty || page == LogPages.blockPages {
                if spare.isEmpty { return offset }
                let buffer = spare.removeLast()
                buffer.bytes.initializeMemory(as: UInt8.self, repeating: 0)
                let fileOffset = blocks.last.map { $0.fileOffset + Int64(LogPages.blockBytes) } ?? Int64(LogFormat.pageBytes)
                blocks.append(Block(buffer: buffer, fileOffset: fileOffset))
                page = 0
                position = 0
            }
            let block = blocks[blocks.count - 1]
            precondition(block.writtenPages <= page, "filling a page a chain has taken")
            let bytes = block.buffer.slice(offset: page * LogFormat.pageBytes, count: LogFormat.pageBytes).bytes
            let fileOffset = block.fileOffset + Int64(page * LogFormat.pageBytes + position)
            let length = LogFormat.putFragment(
                of: record, from: offset, into: bytes, at: position, durableBytes: durableBytes,
                seed: LogFormat.seed(logNumber: logNumber, offset: fileOffset))
            position += LogFormat.fragmentHeaderBytes + length
            offset += length
            if offset == record.count {
                pageSequence = lastSequence
                return offset
            }
        }
    }

    /// Blocks held: those being filled or written, and the spares.
    var heldBlocks: Int { blocks.count + spare.count }

    /// Moves filling to the next page: what is in the fill page is sealed.
    private mutating func advancePage() {
        page += 1
        position = 0
        sealedSequence = pageSequence
    }

    /// Full pages no chain has taken.
    var fullPagesPending: Int {
        var pages = 0
        for (index, block) in blocks.enumerated() {
            let end = index == blocks.count - 1 ? page : LogPages.blockPages
            pages += max(0, end - block.writtenPages)
        }
        return pages
    }

    /// Where the pages a chain would take now end (the file offset), nil when none is filled.
    func pendingEnd(includePartialPage: Bool) -> Int64? {
        blocks.last.map { $0.fileOffset + Int64((page + (includePartialPage && position > 0 ? 1 : 0)) * LogFormat.pageBytes) }
    }

    /// Hands the filled pages no chain has taken (the partly filled one too with
    /// `includePartialPage`; filling then moves on to a fresh page) as at most
    /// `maxSegments` segments, one per block, and the file offset where they end; nil
    /// when there are none. They cover the records up to `sealedSequence`.
    mutating func takePages(includePartialPage: Bool, maxSegments: Int) -> (segments: [IOSegment], end: Int64)? {
        var segments: [IOSegment] = []
        var endOffset: Int64 = 0
        let last = blocks.count - 1
        for index in blocks.indices where segments.count < maxSegments {
            let block = blocks[index]
            let end = index == last ? page + (includePartialPage && position > 0 ? 1 : 0) : LogPages.blockPages
            guard block.writtenPages < end else { continue }
            precondition(endOffset == 0 || endOffset == block.fileOffset + Int64(block.writtenPages * LogFormat.pageBytes),
                         "a chain's pages must follow one another")
            let first = block.writtenPages
            segments.append(IOSegment(
                offsetBytes: block.fileOffset + Int64(first * LogFormat.pageBytes),
                buffer: block.buffer.slice(offset: first * LogFormat.pageBytes, count: (end - first) * LogFormat.pageBytes)))
            blocks[index].writtenPages = end
            endOffset = block.fileOffset + Int64(end * LogFormat.pageBytes)
            if index == last && end > page { advancePage() }
        }
        return segments.isEmpty ? nil : (segments, endOffset)
    }

    /// Lets go of blocks whose pages are all durable (`durable`: where the durable part of
    /// the file ends), keeping up to two as spares and passing the rest to `free`. The
    /// fill block stays.
    mutating func releaseWritten(durable: Int64, free: (PageBuffer) -> Void) {
        while blocks.count > 1, let first = blocks.first, first.writtenPages == LogPages.blockPages,
            first.fileOffset + Int64(LogPages.blockBytes) <= durable
        {
            blocks.removeFirst()
            if spare.count < 2 { spare.append(first.buffer) } else { free(first.buffer) }
        }
    }

    /// Every buffer held, to give back to the arena; the tail is empty afterwards.
    mutating func removeAllBuffers() -> [PageBuffer] {
        let buffers = blocks.map(\.buffer) + spare
        blocks.removeAll()
        spare.removeAll()
        return buffers
    }
}
