/// SplitMix64: a small, fast, seeded generator for benchmark keys, offsets and values,
/// and for the stress command's commits.
struct SplitMix: Sendable {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Fills `bytes` with random (incompressible) bytes.
    mutating func fill(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { raw in
            var offset = 0
            while offset < raw.count {
                var word = next()
                let count = min(8, raw.count - offset)
                withUnsafeBytes(of: &word) { raw.baseAddress!.advanced(by: offset).copyMemory(from: $0.baseAddress!, byteCount: count) }
                offset += count
            }
        }
    }
}
