/// Names an open file of a ``Storage``: a registered-file slot and the generation of that
/// slot, so a handle kept after its file was closed is rejected instead of reaching
/// whichever file reuses the slot.
public struct FileID: Hashable, Sendable, CustomStringConvertible {
    /// Slot in the registered file table.
    public let slot: UInt32
    /// Bumped every time the slot is released.
    public let generation: UInt32

    /// Creates a handle; storages make these, callers only pass them back.
    public init(slot: UInt32, generation: UInt32) {
        self.slot = slot
        self.generation = generation
    }

    public var description: String { "file#\(slot).\(generation)" }
}

/// One contiguous transfer: `buffer.count` bytes at `offsetBytes` in the file.
public struct IOSegment: Sendable, Equatable {
    /// Byte offset in the file.
    public var offsetBytes: Int64
    /// Memory to read into or write from.
    public var buffer: PageBuffer

    /// A transfer of the whole of `buffer` at `offsetBytes`.
    public init(offsetBytes: Int64, buffer: PageBuffer) {
        self.offsetBytes = offsetBytes
        self.buffer = buffer
    }
}

/// An I/O a ``Storage`` carries out asynchronously.
///
/// Every offset, length and buffer address must be a multiple of the file's
/// ``FileAlignment``; a request that is not fails with a `.misaligned` error naming the
/// value and the alignment, before anything reaches the disk.
public enum IORequest: Sendable {
    /// Reads into the segment's buffer. Succeeds with the bytes read, fewer than asked
    /// only at end of file.
    case read(FileID, IOSegment)
    /// Writes every segment (a gathered write); they may complete in any order.
    /// Succeeds with the total bytes written, always the total asked.
    case write(FileID, [IOSegment])
    /// A commit: the segments are written and then the file is fdatasynced, as one linked
    /// chain. Succeeds only when every byte is written and the fdatasync that covers them
    /// has completed; the result is the bytes written.
    case commit(FileID, [IOSegment])
    /// fdatasync (`dataOnly`) or fsync of the file. Succeeds with 0.
    case sync(FileID, dataOnly: Bool)
    /// Reserves disk space for `lengthBytes` at `offsetBytes` (fallocate(2), mode 0; a file
    /// system without it fails with EOPNOTSUPP, never an emulation that writes).
    case allocate(FileID, offsetBytes: Int64, lengthBytes: Int64)

    /// The file the request is for.
    public var file: FileID {
        switch self {
        case .read(let file, _), .write(let file, _), .commit(let file, _),
            .sync(let file, _), .allocate(let file, _, _):
            return file
        }
    }

    /// The request's name in errors and stats.
    public var operationName: String {
        switch self {
        case .read: "read"
        case .write: "write"
        case .commit: "commit"
        case .sync(_, let dataOnly): dataOnly ? "fdatasync" : "fsync"
        case .allocate: "fallocate"
        }
    }

    /// The transfers of the request, empty for sync and allocate.
    public var segments: [IOSegment] {
        switch self {
        case .read(_, let segment): [segment]
        case .write(_, let segments), .commit(_, let segments): segments
        case .sync, .allocate: []
        }
    }

    /// Checks every offset, length and address against `alignment`; throws a
    /// `.misaligned` error that names the offending value, or `.invalidArgument` for an
    /// empty transfer.
    public func validate(alignment: FileAlignment, path: String) throws {
        if case .write(_, let segments) = self, segments.isEmpty {
            throw PageStoreError(kind: .invalidArgument, operation: operationName, path: path, detail: "no segments")
        }
        if case .commit(_, let segments) = self, segments.isEmpty {
            throw PageStoreError(kind: .invalidArgument, operation: operationName, path: path, detail: "no segments")
        }
        if case .allocate(_, let offset, let length) = self, offset < 0 || length <= 0 {
            throw PageStoreError(
                kind: .invalidArgument, operation: operationName, path: path, offsetBytes: offset,
                detail: "length \(length) must be positive and offset non-negative")
        }
        for segment in segments {
            let name = operationName
            guard segment.offsetBytes >= 0, segment.buffer.count > 0 else {
                throw PageStoreError(
                    kind: .invalidArgument, operation: name, path: path, offsetBytes: segment.offsetBytes,
                    detail: "length \(segment.buffer.count) must be positive and offset non-negative")
            }
            if segment.offsetBytes % Int64(alignment.offsetBytes) != 0 {
                throw PageStoreError(
                    kind: .misaligned, operation: name, path: path, offsetBytes: segment.offsetBytes,
                    detail: "offset \(segment.offsetBytes) is not a multiple of \(alignment.offsetBytes)")
            }
            if segment.buffer.count % alignment.offsetBytes != 0 {
                throw PageStoreError(
                    kind: .misaligned, operation: name, path: path, offsetBytes: segment.offsetBytes,
                    detail: "length \(segment.buffer.count) is not a multiple of \(alignment.offsetBytes)")
            }
            let address = UInt(bitPattern: segment.buffer.base)
            if address % UInt(alignment.memoryBytes) != 0 {
                throw PageStoreError(
                    kind: .misaligned, operation: name, path: path, offsetBytes: segment.offsetBytes,
                    detail: "buffer address 0x\(String(address, radix: 16)) is not a multiple of \(alignment.memoryBytes)")
            }
        }
    }
}

/// How an I/O ended: the bytes transferred, or why it failed.
public typealias IOResult = Result<Int, PageStoreError>
