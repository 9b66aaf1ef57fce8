import PageStore

/// The `KVENGINE` file that marks a directory as a database and names its format version
/// (docs/FORMAT.md, "Identity file"). One 4096-byte page:
///
///     0   8  magic "KVENGINE"
///     8   4  format version (5)
///     12  4  zero
///     16  8  XXH3-64 of bytes 0..<16, seed 0
///     24  -  zero
enum Identity {
    static let magic: [UInt8] = Array("KVENGINE".utf8)
    /// 5: tables may be table format 3 (properties that count user keys), which earlier
    /// builds cannot read; 4: tables may be table format 2 (cache-local bloom filters);
    /// 3: manifests record the logs they need (`VersionEdit.createdLogs`).
    static let formatVersion: UInt32 = 5

    /// Writes the file atomically (`SmallFile.replace`).
    static func create(in directory: String, storage: any Storage) throws(KVError) {
        var page = [UInt8](repeating: 0, count: LogFormat.pageBytes)
        page.replaceSubrange(0..<8, with: magic)
        page.withUnsafeMutableBytes { raw in
            Coding.storeFixed32(formatVersion, raw, at: 8)
            Coding.storeFixed64(Checksum.xxh3(UnsafeRawBufferPointer(rebasing: raw[0..<16]), seed: 0), raw, at: 16)
        }
        try SmallFile.replace(FileNames.identity, in: directory, with: page, storage: storage, while: "create \(directory)/\(FileNames.identity)")
    }

    /// Checks the file: a database of a version this build reads. Returns its version
    /// (1: logs only, from before sorted tables; opening writes a manifest and upgrades it).
    @discardableResult
    static func verify(in directory: String, storage: any Storage) throws(KVError) -> UInt32 {
        let path = directory + "/" + FileNames.identity
        let bytes = try SmallFile.read(path, storage: storage)
        let count = bytes.count
        // Only the engine makes a file of this name (written whole, synced, then renamed
        // into place): whatever does not verify in it is damage, not a foreign directory.
        let problem = bytes.withUnsafeBytes { raw -> KVError? in
            guard count >= 24 else {
                return KVError(.corruption, "\(path) is damaged: \(count) bytes, an identity file holds 4096", path: path, offsetBytes: Int64(count))
            }
            guard raw[0..<8].elementsEqual(magic) else {
                return KVError(.corruption, "\(path) is damaged: bad magic", path: path, offsetBytes: 0)
            }
            let checksum = Checksum.xxh3(UnsafeRawBufferPointer(rebasing: raw[0..<16]), seed: 0)
            guard checksum == Coding.fixed64(raw, at: 16) else {
                return KVError(.corruption, "\(path) is damaged: checksum mismatch", path: path, offsetBytes: 16)
            }
            let version = Coding.fixed32(raw, at: 8)
            guard version <= formatVersion else {
                return KVError(
                    .newerFormat,
                    "database at \(directory) has format version \(version); this build reads up to \(formatVersion)",
                    path: path, offsetBytes: 8)
            }
            return nil
        }
        if let problem { throw problem }
        return bytes.withUnsafeBytes { Coding.fixed32($0, at: 8) }
    }
}
