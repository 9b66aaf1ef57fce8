/// A run of page frames from a ``PageAllocator``: page-aligned memory the kernel reads
/// into and writes from directly.
///
/// A buffer is a plain descriptor: copying it does not copy memory, and it must be given
/// back with ``PageAllocator/free(_:)`` exactly once, after every I/O that uses it has
/// completed. `bufferIndex` names the registered fixed buffer that holds the memory, or is
/// negative when the arena is not registered (then plain reads and writes are used).
public struct PageBuffer: @unchecked Sendable, Equatable {
    // @unchecked: this is a descriptor of arena memory, not the memory itself. The arena
    // lives as long as its allocator; who may touch the bytes when is the caller's
    // contract (one owner at a time, no access while an I/O on it is in flight).

    /// First byte of the buffer; aligned to the allocator's page size.
    public let base: UnsafeMutableRawPointer
    /// Length of the buffer in bytes.
    public let count: Int
    /// Index of the registered fixed buffer holding this memory, or -1.
    public let bufferIndex: Int32
    /// First page of the run inside the arena.
    let firstPage: Int
    /// Pages in the run.
    let pageCount: Int

    init(base: UnsafeMutableRawPointer, count: Int, bufferIndex: Int32, firstPage: Int, pageCount: Int) {
        self.base = base
        self.count = count
        self.bufferIndex = bufferIndex
        self.firstPage = firstPage
        self.pageCount = pageCount
    }

    /// The bytes as a buffer pointer, for filling and reading.
    public var bytes: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base, count: count)
    }

    /// A view of `count` bytes starting `offset` bytes in, sharing the same memory and
    /// fixed-buffer index. Free the original, never a slice.
    public func slice(offset: Int, count: Int) -> PageBuffer {
        precondition(offset >= 0 && count >= 0 && offset + count <= self.count, "slice out of bounds")
        return PageBuffer(
            base: base + offset, count: count, bufferIndex: bufferIndex,
            firstPage: firstPage, pageCount: 0)
    }
}
