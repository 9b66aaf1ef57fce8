import PageStore

/// The `KVENGINE` file that marks a directory as a database, names its format version
/// and identifies it (docs/FORMAT.md, "Identity file"). One 4096-byte page:
///
///     0   8  magic "KVENGINE"
///     8   4  format version (6)
///     12  4  zero
///     16  8  XXH3-64 of bytes 0..<16, seed 0
///     24  16 database id (random; zero in a file written before ids)
///     40  1  role: 0 a database, 1 a backup that `Database.backup(to:)` keeps up to date
///     41  7  zero
///     48  8  XXH3-64 of bytes 24..<48, seed 0 (zero when the id is)
///     56  -  zero
enum Identity {
    static let magic: [UInt8] = Array("KVENGINE".utf8)
    /// 6: logs and manifests may hold range deletes (batch entry type 2, version edit
    /// tags 7 and 8), which earlier builds cannot read; 5: tables may be table format 3
    /// (properties that count user keys); 4: tables may be table format 2 (cache-local
    /// bloom filters); 3: manifests record the logs they need (`VersionEdit.createdLogs`).
    static let formatVersion: UInt32 = 6

    /// What the file says.
    struct Info: Equatable {
        var version: UInt32
        /// Nil in a file written before ids (or whose id does not verify).
        var id: [UInt8]?
        /// A backup kept by `backup(to:)`: its id is the id of the database it backs up.
        var isBackup = false
    }

    /// A new random id.
    static func newID() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// Writes the file atomically (`SmallFile.replace`), of this format version.
    static func create(in directory: String, storage: any Storage, id: [UInt8] = newID(), isBackup: Bool = false) throws(KVError) {
        precondition(id.count == 16, "a database id is 16 bytes")
        var page = [UInt8](repeating: 0, count: LogFormat.pageBytes)
        page.replaceSubrange(0..<8, with: magic)
        page.replaceSubrange(24..<40, with: id)
        page[40] = isBackup ? 1 : 0
        page.withUnsafeMutableBytes { raw in
            Coding.storeFixed32(formatVersion, raw, at: 8)
            Coding.storeFixed64(Checksum.xxh3(UnsafeRawBufferPointer(rebasing: raw[0..<16]), seed: 0), raw, at: 16)
            Coding.storeFixed64(Checksum.xxh3(UnsafeRawBufferPointer(rebasing: raw[24..<48]), seed: 0), raw, at: 48)
        }
        try SmallFile.replace(FileNames.identity, in: directory, with: page, storage: storage, while: "create \(directory)/\(FileNames.identity)")
    }

    /// Checks the file: a database of a version this build reads. Returns its version
    /// (1: logs only, from before sorted tables; opening writes a manifest and upgrades it).
    @discardableResult
    static func verify(in directory: String, storage: any Storage) throws(KVError) -> UInt32 {
        try read(in: directory, storage: storage).version
    }

    /// Checks the file (as `verify`) and reads its id and role.
    static func read(in directory: String, storage: any Storage) throws(KVError) -> Info {
        let path = directory + "/" + FileNames.identity
        let bytes = try SmallFile.read(path, storage: storage)
        let count = bytes.count
        // Only the engine makes a file of this name (written whole, synced, then renamed
        // into place): whatever does not verify in it is damage, not a foreign directory.
        let result = bytes.withUnsafeBytes { raw -> Result<Info, KVError> in
            guard count >= 24 else {
                return .failure(KVError(.corruption, "\(path) is damaged: \(count) bytes, an identity file holds 4096", path: path, offsetBytes: Int64(count)))
            }
            guard raw[0..<8].elementsEqual(magic) else {
                return .failure(KVError(.corruption, "\(path) is damaged: bad magic", path: path, offsetBytes: 0))
            }
            let checksum = Checksum.xxh3(UnsafeRawBufferPointer(rebasing: raw[0..<16]), seed: 0)
            guard checksum == Coding.fixed64(raw, at: 16) else {
                return .failure(KVError(.corruption, "\(path) is damaged: checksum mismatch", path: path, offsetBytes: 16))
            }
            let version = Coding.fixed32(raw, at: 8)
            guard version <= formatVersion else {
                return .failure(KVError(
                    .newerFormat,
                    "database at \(directory) has format version \(version); this build reads up to \(formatVersion)",
                    path: path, offsetBytes: 8))
            }
            var info = Info(version: version)
            if count >= 56, Checksum.xxh3(UnsafeRawBufferPointer(rebasing: raw[24..<48]), seed: 0) == Coding.fixed64(raw, at: 48),
                raw[24..<40].contains(where: { $0 != 0 })
            {
                info.id = Array(raw[24..<40])
                info.isBackup = raw[40] == 1
            }
            return .success(info)
        }
        return try result.get()
    }
}
