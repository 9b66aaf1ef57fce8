/// SplitMix64: a small, fast, seeded generator (skip list heights; kvctl's benchmarks and
/// stress commits; the tests' workloads). `package`: shared inside this package, not part
/// of KVEngine's public API.
package struct SplitMix: Sendable {
    private var state: UInt64

    package init(seed: UInt64) { state = seed }

    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A number in `0..<bound` (0 when `bound` is not positive).
    package mutating func below(_ bound: Int) -> Int { bound <= 0 ? 0 : Int(next() % UInt64(bound)) }

    /// True with probability `probability`.
    package mutating func chance(_ probability: Double) -> Bool { Double(next() >> 11) / Double(1 << 53) < probability }

    /// Fills `bytes` with random (incompressible) bytes.
    package mutating func fill(_ bytes: inout [UInt8]) {
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
