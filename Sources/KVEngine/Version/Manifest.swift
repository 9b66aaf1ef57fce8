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

    static func fileName(_ number: UInt64) -> String {
        let digits = String(number)
        return "MANIFEST-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
    }

    static func number(ofFileName name: String) -> UInt64? {
        guard name.hasPrefix("MANIFEST-") else { return nil }
        let stem = name.dropFirst(9)
        guard !stem.isEmpty, stem.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return UInt64(stem)
    }

    /// Creates manifest `number` holding `snapshot` as its first record, durable (file and
    /// directory entry) when this returns. CURRENT is not switched here.
    init(storage: any Storage, directory: String, number: UInt64, snapshot: VersionEdit) throws(KVError) {
        self.storage = storage
        self.directory = directory
        self.number = number
        path = directory + "/" + ManifestWriter.fileName(number)
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
                    let page = UnsafeMutableRawBufferPointer(
                        rebasing: buffer.bytes[(pageIndex * LogFormat.pageBytes)..<((pageIndex + 1) * LogFormat.pageBytes)])
                    let length = min(payload, record.count - offset)
                    let isFirst = offset == 0
                    let isLast = offset + length == record.count
                    let type: LogFormat.FragmentType = isFirst ? (isLast ? .full : .first) : (isLast ? .last : .middle)
                    if length > 0 {
                        UnsafeMutableRawBufferPointer(rebasing: page[LogFormat.fragmentHeaderBytes..<(LogFormat.fragmentHeaderBytes + length)])
                            .copyMemory(from: UnsafeRawBufferPointer(rebasing: record[offset..<(offset + length)]))
                    }
                    let fileOffset = start + Int64(pageIndex * LogFormat.pageBytes)
                    LogFormat.sealFragment(
                        page, at: 0, type: type, length: length, durableBytes: durable,
                        seed: LogFormat.seed(logNumber: number, offset: fileOffset))
                    offset += length
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
    static let name = "CURRENT"

    static func write(manifest number: UInt64, directory: String, storage: any Storage) throws(KVError) {
        let temp = directory + "/" + name + ".tmp"
        let target = directory + "/" + name
        let text = Array((ManifestWriter.fileName(number) + "\n").utf8)
        try io("switch \(target) to manifest \(number)") {
            if storage.fileExists(atPath: temp) { try storage.removeFile(atPath: temp) }
            let file = try storage.openFile(atPath: temp, mode: .createNew)
            defer { try? storage.closeFile(file) }
            let page = try storage.allocator.allocate()
            defer { storage.allocator.free(page) }
            page.bytes.initializeMemory(as: UInt8.self, repeating: 0)
            text.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: page.bytes[0..<text.count]).copyMemory(from: $0) }
            try storage.write(file, offsetBytes: 0, from: page)
            try storage.truncateFile(file, toBytes: Int64(text.count))
            try storage.performBlocking(.sync(file, dataOnly: false))
            try storage.renameFile(atPath: temp, toPath: target)
            try storage.syncDirectory(atPath: directory)
        }
    }

    /// The manifest number CURRENT names; nil when there is no CURRENT.
    static func read(directory: String, storage: any Storage) throws(KVError) -> UInt64? {
        let path = directory + "/" + name
        guard storage.fileExists(atPath: path) else { return nil }
        let bytes = try io("read \(path)") { () throws -> [UInt8] in
            let file = try storage.openFile(atPath: path, mode: .readOnly)
            defer { try? storage.closeFile(file) }
            let page = try storage.allocator.allocate()
            defer { storage.allocator.free(page) }
            let count = try storage.read(file, offsetBytes: 0, into: page)
            return Array(page.bytes[0..<count])
        }
        guard bytes.last == 0x0A, case let text = String(decoding: bytes.dropLast(), as: UTF8.self),
            let number = ManifestWriter.number(ofFileName: text)
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
        let path = directory + "/" + ManifestWriter.fileName(number)
        guard storage.fileExists(atPath: path) else {
            throw KVError(.corruption, "CURRENT names \(ManifestWriter.fileName(number)), which is missing", path: path)
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
