#if canImport(Glibc)
import Glibc
#endif
import CPageStoreSupport

/// The direct-I/O alignment one file requires of buffer addresses, offsets and lengths.
public struct FileAlignment: Sendable, Equatable, CustomStringConvertible {
    /// Where the numbers came from.
    public enum Source: String, Sendable {
        /// `statx` with `STATX_DIOALIGN`.
        case statx
        /// The block device's `queue/logical_block_size` in sysfs.
        case sysfs
        /// Nothing reported it; 4096 is assumed.
        case assumed
    }

    /// Required alignment of buffer addresses, in bytes.
    public let memoryBytes: Int
    /// Required alignment of file offsets and lengths, in bytes.
    public let offsetBytes: Int
    /// Where the numbers came from.
    public let source: Source

    /// An alignment with the given numbers.
    public init(memoryBytes: Int, offsetBytes: Int, source: Source) {
        self.memoryBytes = memoryBytes
        self.offsetBytes = offsetBytes
        self.source = source
    }

    public var description: String { "memory \(memoryBytes), offset \(offsetBytes) (\(source.rawValue))" }

    /// Discovers the alignment of an open file: statx `STATX_DIOALIGN`, then the
    /// logical block size of the device that holds it, else 4096.
    static func discover(fd: Int32) -> FileAlignment {
        var memory: UInt32 = 0
        var offset: UInt32 = 0
        if ps_dio_alignment(fd, &memory, &offset) == 0, memory > 0, offset > 0 {
            return FileAlignment(memoryBytes: Int(memory), offsetBytes: Int(offset), source: .statx)
        }
        var info = stat()
        if fstat(fd, &info) == 0, let size = logicalBlockSize(device: info.st_dev) {
            return FileAlignment(memoryBytes: size, offsetBytes: size, source: .sysfs)
        }
        return FileAlignment(memoryBytes: 4096, offsetBytes: 4096, source: .assumed)
    }

    /// `queue/logical_block_size` of a block device, looking at the parent for a partition.
    private static func logicalBlockSize(device: dev_t) -> Int? {
        let major = (device >> 8) & 0xfff | ((device >> 32) & ~0xfff)
        let minor = (device & 0xff) | ((device >> 12) & ~0xff)
        let base = "/sys/dev/block/\(major):\(minor)"
        for path in [base + "/queue/logical_block_size", base + "/../queue/logical_block_size"] {
            if let text = readSmallFile(path), let value = Int(text), value >= 512, value & (value - 1) == 0 {
                return value
            }
        }
        return nil
    }

    private static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 64)
        let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        return String(decoding: bytes[0..<count], as: UTF8.self)
            .trimmingCharacters(in: " \n\t")
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var slice = Substring(self)
        while let first = slice.first, set.contains(first) { slice.removeFirst() }
        while let last = slice.last, set.contains(last) { slice.removeLast() }
        return String(slice)
    }
}
