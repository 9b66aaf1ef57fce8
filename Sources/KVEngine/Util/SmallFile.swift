import PageStore

/// The engine's small whole files (the identity file, CURRENT): at most one page each,
/// replaced atomically (LevelDB's `SetCurrentFile`), so a crash leaves the old file or
/// the new one, never a mix.
enum SmallFile {
    /// Replaces `directory/name` with `bytes` (at most a page): written to a temporary
    /// file, truncated to its length, fsynced, renamed over the target, and the directory
    /// fsynced. A temporary file left by an earlier crash is replaced.
    static func replace(_ name: String, in directory: String, with bytes: [UInt8], storage: any Storage, while action: String)
        throws(KVError)
    {
        let temp = directory + "/" + FileNames.temporary(name)
        let target = directory + "/" + name
        try io(action) {
            if storage.fileExists(atPath: temp) { try storage.removeFile(atPath: temp) }
            let file = try storage.openFile(atPath: temp, mode: .createNew)
            defer { try? storage.closeFile(file) }
            let page = try storage.allocator.allocate()
            defer { storage.allocator.free(page) }
            precondition(bytes.count <= page.bytes.count, "a small file holds at most a page")
            page.bytes.initializeMemory(as: UInt8.self, repeating: 0)
            bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: page.bytes[0..<bytes.count]).copyMemory(from: $0) }
            try storage.write(file, offsetBytes: 0, from: page)
            if bytes.count < page.bytes.count { try storage.truncateFile(file, toBytes: Int64(bytes.count)) }
            try storage.performBlocking(.sync(file, dataOnly: false))
            try storage.renameFile(atPath: temp, toPath: target)
            try storage.syncDirectory(atPath: directory)
        }
    }

    /// The bytes of `path` (its first page; these files hold no more).
    static func read(_ path: String, storage: any Storage) throws(KVError) -> [UInt8] {
        try io("read \(path)") { () throws -> [UInt8] in
            let file = try storage.openFile(atPath: path, mode: .readOnly)
            defer { try? storage.closeFile(file) }
            let page = try storage.allocator.allocate()
            defer { storage.allocator.free(page) }
            let count = try storage.read(file, offsetBytes: 0, into: page)
            return Array(page.bytes[0..<count])
        }
    }
}
