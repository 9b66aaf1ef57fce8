import PageStore

/// The manifest: a log of version edits in the log file format (same header, pages and
/// fragments; docs/FORMAT.md, "Manifest"), named `MANIFEST-NNNNNN`. Every record starts on
/// a fresh page, so appending an edit never rewrites a page that holds an earlier one,
/// and each append is one commit chain (write -> fdatasync).
final class ManifestWriter {
    let storage: any Storage
    let directory: String
    let number: UInt64
    let path: String
    private let file: FileID
    /// Where the next record's first page goes; everything before it is durable.
    private(set) var end: Int64

    /// Creates manifest `number` holding `snapshot` as its first record, durable (file and
    /// directory entry) when this returns. CURRENT is not switched here.
    init(storage: any Storage, directory: String, number: UInt64, snapshot: VersionEdit) throws(KVError) {
        self.storage = storage
        self.directory = directory
        self.number = number
        path = directory + "/" + FileNames.manifest(number)
        let path = path
        file = try io("create manifest \(path)") { try storage.openFile(atPath: path, mode: .createNew) }
        end = Int64(LogFormat.pageBytes)
        do {
            try write(snapshot.encode(), withHeader: true)
            try io("sync directory \(directory)") { try storage.syncDirectory(atPath: directory) }
        } catch {
            try? storage.closeFile(file)
            try? storage.removeFile(atPath: path)
            throw error
        }
    }

    /// Appends `edit`; durable when this returns.
    func append(_ edit: VersionEdit) throws(KVError) {
        try write(edit.encode(), withHeader: false)
    }

    private func write(_ record: [UInt8], withHeader: Bool) throws(KVError) {
        let payload = LogFormat.maxFragmentPayload
        let pages = max(1, (record.count + payload - 1) / payload) + (withHeader ? 1 : 0)
        let start = withHeader ? 0 : end
        let durable = end
        let number = number
        try io("append to manifest \(path)") {
            let buffer = try storage.allocator.allocate(pages: pages)
            defer { storage.allocator.free(buffer) }
            buffer.bytes.initializeMemory(as: UInt8.self, repeating: 0)
            var pageIndex = 0
            if withHeader {
                LogFormat.encodeHeader(logNumber: number, into: UnsafeMutableRawBufferPointer(rebasing: buffer.bytes[0..<LogFormat.pageBytes]))
                pageIndex = 1
            }
            var offset = 0
            record.withUnsafeBytes { record in
                repeat {
                    // One fragment a page, each at its start: a record never shares a page.
                    let page = UnsafeMutableRawBufferPointer(
                        rebasing: buffer.bytes[(pageIndex * LogFormat.pageBytes)..<((pageIndex + 1) * LogFormat.pageBytes)])
                    let fileOffset = start + Int64(pageIndex * LogFormat.pageBytes)
                    offset += LogFormat.putFragment(
                        of: record, from: offset, into: page, at: 0, durableBytes: durable,
                        seed: LogFormat.seed(logNumber: number, offset: fileOffset))
                    pageIndex += 1
                } while offset < record.count
            }
            try storage.commit(file, [IOSegment(offsetBytes: start, buffer: buffer)])
        }
        end = start + Int64(pages * LogFormat.pageBytes)
    }

    func close() {
        try? storage.closeFile(file)
    }
}

/// `CURRENT`: the name of the live manifest and a newline, switched atomically (temp file,
/// fsync, rename, directory fsync).
enum CurrentFile {
    static func write(manifest number: UInt64, directory: String, storage: any Storage) throws(KVError) {
        try SmallFile.replace(
            FileNames.current, in: directory, with: Array((FileNames.manifest(number) + "\n").utf8), storage: storage,
            while: "switch \(directory)/\(FileNames.current) to manifest \(number)")
    }

    /// The manifest number CURRENT names; nil when there is no CURRENT.
    static func read(directory: String, storage: any Storage) throws(KVError) -> UInt64? {
        let path = directory + "/" + FileNames.current
        guard storage.fileExists(atPath: path) else { return nil }
        let bytes = try SmallFile.read(path, storage: storage)
        guard bytes.last == 0x0A, case let text = String(decoding: bytes.dropLast(), as: UTF8.self),
            let number = FileNames.manifestNumber(text)
        else {
            throw KVError(.corruption, "\(path) does not name a manifest (\(bytes.count) bytes)", path: path, offsetBytes: 0)
        }
        return number
    }
}

/// What replaying a manifest yields.
struct ManifestState {
    var logNumber: UInt64 = 0
    var nextFileNumber: UInt64 = 1
    var lastSequence: UInt64 = 0
    /// Live tables per level, by number.
    var levels: [[UInt64: TableMeta]] = Array(repeating: [:], count: Version.levelCount)
    /// Live range deletes.
    var rangeDeletes: Set<RangeTombstone> = []
    /// Logs recorded as created and not yet below the log number: each must be present
    /// and readable. Meaningful only when `tracksLogs`.
    var liveLogs: Set<UInt64> = []
    /// Whether the manifest records its logs (written by format version 3 and later).
    var tracksLogs = false
    /// Set when the manifest is damaged and the replay was asked to stop there
    /// (`keepingWhatPrecedesDamage`): what is wrong, and where. The state is then the
    /// version as of the last edit before the damage.
    var damage: KVError?

    mutating func apply(_ edit: VersionEdit) -> String? {
        if !edit.createdLogs.isEmpty { tracksLogs = true }
        liveLogs = ManifestState.liveLogs(liveLogs, after: edit, logNumber: edit.logNumber ?? logNumber)
        if let value = edit.logNumber { logNumber = value }
        if let value = edit.nextFileNumber { nextFileNumber = value }
        if let value = edit.lastSequence { lastSequence = value }
        for file in edit.deleted {
            guard levels[file.level].removeValue(forKey: file.number) != nil else {
                return "edit deletes table \(file.number) from level \(file.level), where it is not"
            }
        }
        for file in edit.added {
            levels[file.level][file.meta.number] = file.meta
        }
        for tombstone in edit.droppedRangeDeletes {
            guard rangeDeletes.remove(tombstone) != nil else { return "edit drops range delete #\(tombstone.sequence), which is not live" }
        }
        rangeDeletes.formUnion(edit.addedRangeDeletes)
        return nil
    }

    /// The live logs once `edit` is applied: those it creates join, and those below the
    /// log number (in tables now) leave.
    static func liveLogs(_ live: Set<UInt64>, after edit: VersionEdit, logNumber: UInt64) -> Set<UInt64> {
        live.union(edit.createdLogs).filter { $0 >= logNumber }
    }

    /// Reads manifest `number` in `directory`. Damage throws, unless
    /// `keepingWhatPrecedesDamage`: then the state is the version before it, with `damage`
    /// set (a database opened read-only under `onLogCorruption: .openReadOnly`).
    static func replay(
        directory: String, number: UInt64, storage: any Storage, keepingWhatPrecedesDamage: Bool = false,
        visit: ((VersionEdit, Int64) -> Void)? = nil
    ) throws(KVError) -> ManifestState {
        let path = directory + "/" + FileNames.manifest(number)
        guard storage.fileExists(atPath: path) else {
            throw KVError(.corruption, "CURRENT names \(FileNames.manifest(number)), which is missing", path: path)
        }
        var state = ManifestState()
        var records = 0
        let reader = LogReader(storage: storage, path: path, number: number)
        let result = try reader.replay { record, offset in
            guard let edit = VersionEdit.decode(record) else { return "malformed version edit at offset \(offset)" }
            records += 1
            visit?(edit, offset)
            // Applied to a copy: an edit that does not apply leaves the state before it whole.
            var next = state
            if let problem = next.apply(edit) { return "\(problem) (record at offset \(offset))" }
            state = next
            return nil
        }
        switch result.end {
        case .clean:
            break
        case .tornTail(let offset, let reason, _):
            // An edit whose commit never completed: the work it recorded is redone.
            engineLogger.warning("manifest \(path): torn tail at offset \(offset) (\(reason)); the unfinished edit is dropped")
        case .corruption(let offset, let reason):
            let damage = KVError(.corruption, "manifest \(path) is corrupt at offset \(offset): \(reason)", path: path, offsetBytes: offset)
            guard keepingWhatPrecedesDamage, records > 0 else { throw damage }
            state.damage = damage
        case .unfinishedCreation(let reason):
            throw KVError(.corruption, "manifest \(path) named by CURRENT is unfinished: \(reason)", path: path, offsetBytes: 0)
        }
        guard records > 0 else {
            throw KVError(.corruption, "manifest \(path) holds no version", path: path, offsetBytes: 0)
        }
        return state
    }
}
