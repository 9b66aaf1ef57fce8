#if canImport(Glibc)
import Glibc
#endif
import DequeModule
import Synchronization

/// A bounded arena of page-aligned memory handing out runs of page frames for I/O.
///
/// The arena is one anonymous `mmap` (never Swift arrays, whose storage may move), split
/// into fixed-buffer regions of at most 1 GiB that a ring registers once with
/// `io_uring_register_buffers`. A run never crosses a region, so each ``PageBuffer`` has a
/// single fixed-buffer index.
///
/// Thread safety: every method may be called from any thread. When the arena is
/// exhausted, ``allocate(pages:)`` blocks and ``allocateAsync(pages:)`` suspends until
/// enough pages are freed (back-pressure); waiters are served first come, first served,
/// so a large request is not starved by small ones.
public final class PageAllocator: @unchecked Sendable {
    // @unchecked: `arena` is written only by the kernel and by owners of disjoint page
    // runs; all bookkeeping lives in the Mutex below.

    /// Size of one page frame in bytes.
    public let pageSizeBytes: Int
    /// Number of page frames in the arena.
    public let pageCount: Int
    /// First byte of the arena.
    let arena: UnsafeMutableRawPointer
    /// Pages per fixed-buffer region.
    let pagesPerRegion: Int
    /// Whether buffers carry a fixed-buffer index (set once a ring registered the arena).
    private let registered = Atomic<Bool>(false)

    private struct Waiter {
        let pages: Int
        let deliver: @Sendable (PageBuffer) -> Void
    }

    private struct State {
        var bitmap: [UInt64]
        var freePages: Int
        var hint = 0
        var waiters: Deque<Waiter> = []
        var exhaustedWaits = 0
        /// Pages the kernel may still write into (an I/O on them was in flight when its
        /// ring failed): never handed out again, and a `free` leaves them in use.
        var quarantined: Set<Int> = []
    }

    private let state: Mutex<State>

    /// Largest size of a single registered buffer the kernel accepts.
    static let maxRegionBytes = 1 << 30

    /// Maps an arena of `arenaBytes` (rounded up to whole pages) of `pageSizeBytes` frames.
    public init(arenaBytes: Int, pageSizeBytes: Int = 4096) throws {
        guard pageSizeBytes >= 512, pageSizeBytes <= 1 << 20, pageSizeBytes & (pageSizeBytes - 1) == 0 else {
            throw PageStoreError(
                kind: .invalidArgument, operation: "create page allocator",
                detail: "page size \(pageSizeBytes) must be a power of two between 512 and 1048576")
        }
        guard arenaBytes >= pageSizeBytes else {
            throw PageStoreError(
                kind: .invalidArgument, operation: "create page allocator",
                detail: "arena of \(arenaBytes) bytes is smaller than one \(pageSizeBytes)-byte page")
        }
        let pages = (arenaBytes + pageSizeBytes - 1) / pageSizeBytes
        let bytes = pages * pageSizeBytes
        // Mapped 2 MiB aligned and advised as huge pages (when the kernel has them): the
        // registration as fixed buffers pins every page of the arena, and pinning (and
        // faulting in) 2 MiB pages costs a small fraction of pinning 4 KiB ones; a
        // short-lived open (one kvctl get) spent half its time there.
        let huge = PageAllocator.hugePageBytes
        let mapped = (bytes + 4095) & ~4095  // what the kernel maps: whole 4 KiB pages
        let reserved = mapped + huge
        let mapping = mmap(nil, reserved, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let mapping, mapping != MAP_FAILED else {
            throw PageStoreError.io("mmap page arena of \(bytes) bytes", path: nil, errno: Glibc.errno)
        }
        let start = (Int(bitPattern: mapping) + huge - 1) & ~(huge - 1)
        let lead = start - Int(bitPattern: mapping)
        if lead > 0 { munmap(mapping, lead) }
        let trail = reserved - lead - mapped
        if trail > 0 { munmap(mapping + lead + mapped, trail) }
        let arena = mapping + lead
        _ = madvise(arena, bytes, MADV_HUGEPAGE)  // advice only: without huge pages, 4 KiB ones
        self.arena = arena
        self.pageSizeBytes = pageSizeBytes
        self.pageCount = pages
        self.pagesPerRegion = max(1, Self.maxRegionBytes / pageSizeBytes)
        var bitmap = [UInt64](repeating: 0, count: (pages + 63) / 64)
        // Mark the bits past the last page as used so searches never return them.
        let tail = pages % 64
        if tail != 0 { bitmap[bitmap.count - 1] = ~UInt64(0) << UInt64(tail) }
        self.state = Mutex(State(bitmap: bitmap, freePages: pages))
    }

    deinit {
        munmap(arena, pageCount * pageSizeBytes)
    }

    /// Bytes in the arena.
    public var arenaBytes: Int { pageCount * pageSizeBytes }

    /// The alignment of the arena: x86-64's and arm64's (4 KiB granule) huge page.
    static let hugePageBytes = 2 << 20

    /// Pages not handed out right now.
    public var freePages: Int { state.withLock { $0.freePages } }

    /// How many allocations had to wait for pages to be freed.
    public var exhaustedWaits: Int { state.withLock { $0.exhaustedWaits } }

    /// Whether buffers are registered with a ring as fixed buffers.
    public var isRegistered: Bool { registered.load(ordering: .acquiring) }

    /// The arena as iovecs of at most 1 GiB each, in fixed-buffer index order.
    var regions: [iovec] {
        var result: [iovec] = []
        var page = 0
        while page < pageCount {
            let pages = min(pagesPerRegion, pageCount - page)
            result.append(iovec(iov_base: arena + page * pageSizeBytes, iov_len: pages * pageSizeBytes))
            page += pages
        }
        return result
    }

    /// Records that a ring registered `regions` as fixed buffers 0..<regions.count.
    func markRegistered() { registered.store(true, ordering: .releasing) }

    /// Allocates `pages` contiguous frames without waiting; nil when they are not free now
    /// or when earlier callers are already waiting.
    public func tryAllocate(pages: Int = 1) throws -> PageBuffer? {
        try validate(pages)
        return state.withLock { state -> PageBuffer? in
            guard state.waiters.isEmpty else { return nil }
            return take(pages, &state)
        }
    }

    /// Allocates `pages` contiguous frames, blocking the calling thread until they are free.
    /// Do not call from Swift's cooperative pool; use ``allocateAsync(pages:)`` there.
    public func allocate(pages: Int = 1) throws -> PageBuffer {
        try validate(pages)
        let handoff = OneShot<PageBuffer>()
        let immediate = state.withLock { state -> PageBuffer? in
            if state.waiters.isEmpty, let run = take(pages, &state) { return run }
            state.exhaustedWaits += 1
            state.waiters.append(Waiter(pages: pages, deliver: { handoff.fulfil($0) }))
            return nil
        }
        return immediate ?? handoff.wait()
    }

    /// Allocates `pages` contiguous frames, suspending (not blocking) until they are free.
    public func allocateAsync(pages: Int = 1) async throws -> PageBuffer {
        try validate(pages)
        return await withCheckedContinuation { continuation in
            let immediate = state.withLock { state -> PageBuffer? in
                if state.waiters.isEmpty, let run = take(pages, &state) { return run }
                state.exhaustedWaits += 1
                state.waiters.append(Waiter(pages: pages, deliver: { continuation.resume(returning: $0) }))
                return nil
            }
            if let immediate { continuation.resume(returning: immediate) }
        }
    }

    /// Returns a buffer obtained from this allocator. Every I/O on it must have completed.
    public func free(_ buffer: PageBuffer) {
        precondition(buffer.pageCount > 0, "free of a slice; free the buffer it was sliced from")
        precondition(
            buffer.base == arena + buffer.firstPage * pageSizeBytes
                && buffer.firstPage + buffer.pageCount <= pageCount,
            "free of a buffer that did not come from this allocator")
        var served: [(Waiter, PageBuffer)] = []
        state.withLock { state in
            var freed = 0
            for page in buffer.firstPage..<(buffer.firstPage + buffer.pageCount) {
                let (word, bit) = page.quotientAndRemainder(dividingBy: 64)
                precondition(state.bitmap[word] & (1 << UInt64(bit)) != 0, "double free of page \(page)")
                if state.quarantined.contains(page) { continue }
                state.bitmap[word] &= ~(1 << UInt64(bit))
                freed += 1
            }
            state.freePages += freed
            state.hint = min(state.hint, buffer.firstPage)
            while let first = state.waiters.first, let run = take(first.pages, &state) {
                state.waiters.removeFirst()
                served.append((first, run))
            }
        }
        for (waiter, run) in served { waiter.deliver(run) }
    }

    /// Takes the pages under `buffer` (a whole buffer or a slice) out of use for good: an
    /// I/O on them may still be in the kernel's hands (its ring failed before it completed),
    /// so the memory must never be given to anyone else. Their owner's `free` leaves them
    /// allocated. The pages are lost to the arena; ``quarantinedPages`` counts them.
    public func quarantine(_ buffer: PageBuffer) {
        guard buffer.count > 0 else { return }
        let offset = buffer.base - arena
        precondition(offset >= 0 && offset + buffer.count <= pageCount * pageSizeBytes, "quarantine of memory outside the arena")
        state.withLock { state in
            for page in (offset / pageSizeBytes)...((offset + buffer.count - 1) / pageSizeBytes) {
                state.quarantined.insert(page)
            }
        }
    }

    /// Pages taken out of use by ``quarantine(_:)``.
    public var quarantinedPages: Int { state.withLock { $0.quarantined.count } }

    private func validate(_ pages: Int) throws {
        guard pages >= 1, pages <= min(pageCount, pagesPerRegion) else {
            throw PageStoreError(
                kind: pages < 1 ? .invalidArgument : .exhausted, operation: "allocate pages",
                detail: "\(pages) pages requested; a run holds 1 to \(min(pageCount, pagesPerRegion)) pages")
        }
    }

    /// First-fit search for `pages` clear bits that do not cross a region; marks them used.
    private func take(_ pages: Int, _ state: inout State) -> PageBuffer? {
        guard state.freePages >= pages else { return nil }
        for start in [state.hint, 0] {
            if let first = findRun(pages, from: start, state.bitmap) {
                for page in first..<(first + pages) {
                    state.bitmap[page / 64] |= 1 << UInt64(page % 64)
                }
                state.freePages -= pages
                if first == state.hint { state.hint = first + pages }
                let region = first / pagesPerRegion
                return PageBuffer(
                    base: arena + first * pageSizeBytes, count: pages * pageSizeBytes,
                    bufferIndex: isRegistered ? Int32(region) : -1, firstPage: first, pageCount: pages)
            }
            if start == 0 { break }
        }
        return nil
    }

    private func findRun(_ pages: Int, from start: Int, _ bitmap: [UInt64]) -> Int? {
        var page = start
        var runStart = start
        var runLength = 0
        while page < pageCount {
            let word = bitmap[page / 64]
            if page % 64 == 0 && word == ~UInt64(0) {
                page += 64
                runLength = 0
                runStart = page
                continue
            }
            if page % pagesPerRegion == 0 {
                runLength = 0
                runStart = page
            }
            if word & (1 << UInt64(page % 64)) == 0 {
                runLength += 1
                if runLength == pages { return runStart }
            } else {
                runLength = 0
                runStart = page + 1
            }
            page += 1
        }
        return nil
    }
}
