import CLZ4
import CZstd

/// How a table's data blocks are compressed (docs/FORMAT.md, "Data blocks"): chosen per
/// database (`Options.compression`) and per level (`Options.compressionByLevel`). A block
/// that does not shrink by more than an eighth is stored as it is; the block cache holds
/// blocks uncompressed; index, filter and properties blocks are never compressed.
public enum Compression: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// Stored as built.
    case none
    /// LZ4 (liblz4's default, fast mode): cheap to compress and to read back.
    case lz4
    /// Zstandard at `level` (1 to 19; 3 is zstd's default): smaller, dearer to write.
    case zstd(level: Int = 3)

    /// The byte that names the codec in a block's trailer.
    var kind: UInt8 {
        switch self {
        case .none: 0
        case .lz4: 1
        case .zstd: 2
        }
    }

    public var description: String {
        switch self {
        case .none: "none"
        case .lz4: "lz4"
        case .zstd(let level): "zstd(\(level))"
        }
    }
}

/// Compressing and decompressing one data block's contents.
enum BlockCodec {
    /// Blocks larger than this (a block holding a very large value) are stored raw: their
    /// reads go a piece at a time into ordinary memory, and a compressed block is read whole.
    static let maxCompressedRawBytes = 1 << 20
    /// Codec byte, and the raw length before it when compressed.
    static let rawLengthBytes = 4

    /// `raw` compressed with `compression`, when that saves more than an eighth; nil when
    /// it should be stored raw.
    static func compress(_ raw: UnsafeRawBufferPointer, with compression: Compression, context: ZstdContext? = nil) -> [UInt8]? {
        guard compression != .none, raw.count >= 64, raw.count <= maxCompressedRawBytes else { return nil }
        let limit = raw.count - raw.count / 8
        var output = [UInt8](repeating: 0, count: limit)
        let written = output.withUnsafeMutableBytes { out -> Int in
            switch compression {
            case .none: return 0
            case .lz4:
                // 0 when the result would not fit in `limit` bytes.
                return Int(LZ4_compress_default(
                    raw.baseAddress!.assumingMemoryBound(to: CChar.self), out.baseAddress!.assumingMemoryBound(to: CChar.self),
                    Int32(raw.count), Int32(out.count)))
            case .zstd(let level):
                // A context of the caller's saves setting one up (a megabyte and more) per block.
                let result = context.map { ZSTD_compressCCtx($0.pointer, out.baseAddress, out.count, raw.baseAddress, raw.count, Int32(level)) }
                    ?? ZSTD_compress(out.baseAddress, out.count, raw.baseAddress, raw.count, Int32(level))
                return ZSTD_isError(result) != 0 ? 0 : result
            }
        }
        guard written > 0, written < limit else { return nil }
        output.removeSubrange(written...)
        return output
    }

    /// Decompresses `payload` (codec `kind`) into `output`, which holds exactly the raw
    /// length; false when the payload does not decompress to exactly that.
    static func decompress(kind: UInt8, _ payload: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Bool {
        guard payload.count > 0, output.count > 0 else { return false }
        switch kind {
        case Compression.lz4.kind:
            let got = LZ4_decompress_safe(
                payload.baseAddress!.assumingMemoryBound(to: CChar.self), output.baseAddress!.assumingMemoryBound(to: CChar.self),
                Int32(payload.count), Int32(output.count))
            return got == Int32(output.count)
        case Compression.zstd().kind:
            let got = ZSTD_decompress(output.baseAddress, output.count, payload.baseAddress, payload.count)
            return ZSTD_isError(got) == 0 && got == output.count
        default:
            return false
        }
    }
}

/// A Zstandard compression context, for one table builder's blocks (not shared between
/// threads).
final class ZstdContext {
    let pointer: OpaquePointer

    init?() {
        guard let context = ZSTD_createCCtx() else { return nil }
        pointer = context
    }

    deinit { ZSTD_freeCCtx(pointer) }
}
