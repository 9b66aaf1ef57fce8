/// Every name the engine gives a file in a database directory, and the parse back from a
/// name (docs/FORMAT.md, "Files"; LevelDB's `filename.h`). Numbered files take their
/// number from the manifest's file counter, zero-padded to at least six digits.
enum FileNames {
    /// What a directory entry is, by its name.
    enum Kind: Equatable {
        case log(UInt64)
        case table(UInt64)
        case manifest(UInt64)
        case current
        case lock
        case identity
        /// A small file being written, renamed over the file it names once complete.
        case temporary(of: String)
        /// The folder salvage sets damaged files aside in.
        case lost

        /// A numbered file's number (logs, tables, manifests share one counter).
        var number: UInt64? {
            switch self {
            case .log(let number), .table(let number), .manifest(let number): number
            default: nil
            }
        }
    }

    /// The live manifest's name and a newline.
    static let current = "CURRENT"
    /// The file whose `flock` a handle holds.
    static let lock = "LOCK"
    /// The identity file: marks the directory a database and names its format version.
    static let identity = "KVENGINE"
    /// Salvage's folder for what did not verify.
    static let lost = "lost"

    static func log(_ number: UInt64) -> String { numbered(number) + ".log" }
    static func table(_ number: UInt64) -> String { numbered(number) + ".sst" }
    static func manifest(_ number: UInt64) -> String { "MANIFEST-" + numbered(number) }
    static func temporary(_ name: String) -> String { name + ".tmp" }

    static func logNumber(_ name: String) -> UInt64? { number(name, suffix: ".log") }
    static func tableNumber(_ name: String) -> UInt64? { number(name, suffix: ".sst") }
    static func manifestNumber(_ name: String) -> UInt64? {
        guard name.hasPrefix("MANIFEST-") else { return nil }
        return number(String(name.dropFirst("MANIFEST-".count)), suffix: "")
    }

    /// What `name` is, or nil for a name the engine never gives.
    static func kind(of name: String) -> Kind? {
        if let number = logNumber(name) { return .log(number) }
        if let number = tableNumber(name) { return .table(number) }
        if let number = manifestNumber(name) { return .manifest(number) }
        switch name {
        case current: return .current
        case lock: return .lock
        case identity: return .identity
        case lost: return .lost
        default:
            guard name.hasSuffix(".tmp"), case let target = String(name.dropLast(4)), !target.isEmpty else { return nil }
            return .temporary(of: target)
        }
    }

    private static func numbered(_ number: UInt64) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, 6 - digits.count)) + digits
    }

    private static func number(_ name: String, suffix: String) -> UInt64? {
        guard name.hasSuffix(suffix) else { return nil }
        let stem = name.dropLast(suffix.count)
        guard !stem.isEmpty, stem.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return UInt64(stem)
    }
}
