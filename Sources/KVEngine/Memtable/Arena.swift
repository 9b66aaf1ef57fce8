#if canImport(Glibc)
import Glibc
#endif

/// Bump allocator for the memtable: chunks of raw memory that live as long as the
/// memtable and are never moved, so readers may hold pointers into them without locks.
///
/// Not thread-safe: only the memtable's single writer allocates.
final class Arena {
    private var chunks: [UnsafeMutableRawPointer] = []
    private var cursor: UnsafeMutableRawPointer?
    private var remaining = 0
    /// Bytes of all chunks.
    private(set) var allocatedBytes = 0

    static let chunkBytes = 1 << 20

    deinit {
        for chunk in chunks { free(chunk) }
    }

    /// `count` bytes aligned to 8.
    func allocate(_ count: Int) -> UnsafeMutableRawPointer {
        let rounded = (count + 7) & ~7
        if rounded > remaining {
            if rounded > Arena.chunkBytes / 4 {
                // Large entries get a chunk of their own, so the current one is not wasted.
                return newChunk(rounded)
            }
            cursor = newChunk(Arena.chunkBytes)
            remaining = Arena.chunkBytes
        }
        let result = cursor!
        cursor = result + rounded
        remaining -= rounded
        return result
    }

    private func newChunk(_ bytes: Int) -> UnsafeMutableRawPointer {
        guard let chunk = malloc(bytes) else { fatalError("memtable arena: out of memory for \(bytes) bytes") }
        chunks.append(chunk)
        allocatedBytes += bytes
        return chunk
    }
}
