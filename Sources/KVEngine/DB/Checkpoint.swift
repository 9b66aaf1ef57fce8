import Foundation
import PageStore

#if canImport(Glibc)
import Glibc
#endif

/// What ``Database/checkpoint(to:)-7vyka`` or ``Database/backup(to:)-4i68m`` made.
public struct CheckpointReport: Sendable, Equatable, CustomStringConvertible {
    /// The copy holds every write through this sequence number and none after it: every
    /// write acknowledged before the call, and maybe some made while it ran.
    public let sequence: UInt64
    /// Tables in the copy.
    public let tables: Int
    /// Logs in the copy (what the database had not yet put in tables).
    public let logs: Int
    /// Files given as hard links to the database's own (a checkpoint on the same file system).
    public let linkedFiles: Int
    /// Files copied, and their bytes.
    public let copiedFiles: Int
    public let copiedBytes: Int64
    /// Files a backup already held and kept (an incremental backup copies only the rest).
    public let keptFiles: Int
    /// Files of a backup's earlier state that it removed.
    public let removedFiles: Int

    public var description: String {
        var parts = ["through sequence \(sequence)", "\(tables) tables", "\(logs) logs"]
        if linkedFiles > 0 { parts.append("\(linkedFiles) linked") }
        parts.append("\(copiedFiles) copied (\(copiedBytes) bytes)")
        if keptFiles > 0 { parts.append("\(keptFiles) kept") }
        if removedFiles > 0 { parts.append("\(removedFiles) removed") }
        return parts.joined(separator: ", ")
    }
}

extension Database {
    /// Makes a consistent copy of the database in `directory`, while writes go on: a
    /// database of its own, which ``Database/init(path:options:)`` opens (restore is
    /// "open the copy"), holding every write acknowledged before the call.
    ///
    /// The copy's tables are hard links to this database's (they never change once
    /// written), copies where the directory is on another file system. What the memtable
    /// holds is first put in a log of its own (the current log is retired and a new one
    /// started, as when the memtable fills), so that the copy's logs are closed files,
    /// linked or copied whole. The copy gets a manifest of its own naming exactly those
    /// files, then `CURRENT`, and its identity file last: a copy cut short by a crash is not
    /// a database (an open says the directory has no identity file) and may be removed.
    ///
    /// `directory` must not exist, or be empty; its parent must exist. Blocks while the
    /// files are linked or copied (no lock is held meanwhile: writers, flushes and
    /// compactions go on). Works on a read-only handle too (nothing is rotated then).
    @discardableResult
    public func checkpoint(to directory: String) throws(KVError) -> CheckpointReport {
        try prepareEmptyDirectory(directory, for: "checkpoint")
        return try withCopySource { (source) throws(KVError) -> CheckpointReport in
            var linked = 0
            var copied = 0
            var copiedBytes: Int64 = 0
            let logNames = Set(source.edit.createdLogs.map(FileNames.log))
            for name in source.files {
                let from = path + "/" + name
                let to = directory + "/" + name
                // A read-only handle's logs are as a crash left them: the copy's open may cut a
                // torn tail, which must not cut the source's file. Copied, then.
                if !(source.readOnly && logNames.contains(name)), try link(from, to) {
                    linked += 1
                } else {
                    copiedBytes += try copyFile(from, to)
                    copied += 1
                }
            }
            try finishCopy(source, in: directory, identity: (Identity.newID(), isBackup: false))
            engineLogger.debug("checkpoint of \(path) in \(directory): through \(source.sequence), \(linked) linked, \(copied) copied")
            return CheckpointReport(
                sequence: source.sequence, tables: source.edit.added.count, logs: source.edit.createdLogs.count,
                linkedFiles: linked, copiedFiles: copied, copiedBytes: copiedBytes, keptFiles: 0, removedFiles: 0)
        }
    }

    /// Brings the backup in `directory` up to date with this database: the first call makes
    /// a full copy, later calls copy only the tables the backup lacks (and the logs), then
    /// switch the backup to the new state and remove what it no longer needs. The backup is
    /// a database of its own: restore is "open it" (or a ``checkpoint(to:)-7vyka`` of it, to keep
    /// the backup as it is). Always copies, never links, so the backup shares no file with
    /// the database and may sit on another disk.
    ///
    /// A crash during a backup leaves the backup as it was before the call (what was copied
    /// for the new state is left over and is replaced by the next backup). The backup is
    /// locked while it is brought up to date (`.locked` if it is open). Its identity file
    /// carries this database's id and marks it a backup; a writable open of it (a
    /// restore) gives it an id of its own. So a directory that is a backup of another
    /// database, a database, or a backup opened for writing since, is refused with
    /// `.invalidArgument` and nothing changed (back up to a new directory then); so is a
    /// backup holding a file under one of this database's numbers with other contents.
    @discardableResult
    public func backup(to directory: String) throws(KVError) -> CheckpointReport {
        guard let sourceID = try Identity.read(in: path, storage: storage).id else {
            throw KVError(
                .invalidArgument,
                "backup of \(path): the database has no id yet (an older build made it, and only a writable open gives it one); open it for writing once, then back it up",
                path: path + "/" + FileNames.identity)
        }
        if !storage.fileExists(atPath: directory) { try prepareEmptyDirectory(directory, for: "backup") }
        let lock = try DirectoryLock(directory: directory, storage: storage)
        defer { lock.release() }
        // Decided under the lock: two first backups into one directory do not both start fresh.
        let fresh = !storage.fileExists(atPath: directory + "/" + FileNames.identity)
        if fresh { try prepareEmptyDirectory(directory, for: "backup", allowingLeftovers: true) }
        var held = ManifestState()
        if !fresh {
            let identity = try Identity.read(in: directory, storage: storage)
            guard identity.isBackup, identity.id == sourceID else {
                let what = identity.isBackup ? "a backup of another database" : "a database (or a backup opened for writing since), not a backup"
                throw KVError(
                    .invalidArgument, "backup into \(directory): it is \(what); back up to a new directory",
                    path: directory + "/" + FileNames.identity)
            }
            if let number = try CurrentFile.read(directory: directory, storage: storage) {
                held = try ManifestState.replay(directory: directory, number: number, storage: storage)
            }
        }
        var heldTables: [UInt64: TableMeta] = [:]
        for level in held.levels { for (number, meta) in level { heldTables[number] = meta } }
        return try withCopySource { (source) throws(KVError) -> CheckpointReport in
            // What the backup can keep, checked whole before anything is written.
            var keep = Set<String>()
            for file in source.edit.added {
                guard let had = heldTables[file.meta.number] else { continue }
                guard had == file.meta else { throw foreign(FileNames.table(file.meta.number), in: directory) }
                keep.insert(FileNames.table(file.meta.number))
            }
            for number in source.edit.createdLogs where held.liveLogs.contains(number) {
                let name = FileNames.log(number)
                guard try sameContents(directory + "/" + name, path + "/" + name) else { throw foreign(name, in: directory) }
                keep.insert(name)
            }
            var copied = 0
            var copiedBytes: Int64 = 0
            for name in source.files where !keep.contains(name) {
                copiedBytes += try copyFile(path + "/" + name, directory + "/" + name)
                copied += 1
            }
            let identity: (id: [UInt8], isBackup: Bool)? = fresh ? (id: sourceID, isBackup: true) : nil
            try finishCopy(source, in: directory, identity: identity)
            // The backup is in its new state: what only the old one needed goes.
            let needed = Set(source.files).union([FileNames.manifest(source.manifest), FileNames.current, FileNames.identity, FileNames.lock])
            var removed = 0
            let names = try io("list \(directory)") { try storage.contentsOfDirectory(atPath: directory) }
            for name in names where !needed.contains(name) {
                switch FileNames.kind(of: name) {
                case .table, .log, .manifest, .temporary:
                    try io("remove \(directory)/\(name)") { try storage.removeFile(atPath: directory + "/" + name) }
                    removed += 1
                default:
                    break
                }
            }
            if removed > 0 { try io("sync directory \(directory)") { try storage.syncDirectory(atPath: directory) } }
            engineLogger.debug("backup of \(path) in \(directory): through \(source.sequence), \(copied) copied, \(keep.count) kept, \(removed) removed")
            return CheckpointReport(
                sequence: source.sequence, tables: source.edit.added.count, logs: source.edit.createdLogs.count,
                linkedFiles: 0, copiedFiles: copied, copiedBytes: copiedBytes, keptFiles: keep.count, removedFiles: removed)
        }
    }

    /// `checkpoint(to:)`, suspending while it runs on one of the database's threads.
    @discardableResult
    public func checkpoint(to directory: String) async throws(KVError) -> CheckpointReport {
        try await blocking.run { () throws(KVError) -> CheckpointReport in try self.checkpoint(to: directory) }
    }

    /// `backup(to:)`, suspending while it runs on one of the database's threads.
    @discardableResult
    public func backup(to directory: String) async throws(KVError) -> CheckpointReport {
        try await blocking.run { () throws(KVError) -> CheckpointReport in try self.backup(to: directory) }
    }

    /// A backup's file under one of this database's names, with other contents.
    private func foreign(_ name: String, in directory: String) -> KVError {
        KVError(
            .invalidArgument,
            "backup at \(directory) holds a file \(name) that is not this database's (a backup of another database, or opened and written since); back up to a new directory",
            path: directory + "/" + name)
    }

    // MARK: the state a copy takes

    /// Runs `body` with the state a copy takes (`captureForCopy`); its logs stay pinned and
    /// its tables on disk until `body` returns.
    private func withCopySource<R>(_ body: (CopySource) throws(KVError) -> R) throws(KVError) -> R {
        let source = try captureForCopy()
        defer {
            releaseLogs(source.pin)
            withExtendedLifetime(source.version) {}
        }
        return try body(source)
    }

    /// What a copy holds: the manifest record of a whole version (tables, the log number,
    /// the last sequence in tables, and as its logs the closed logs to copy), the version
    /// (held so its tables stay on disk) and the log pin (so its logs do).
    struct CopySource {
        let version: Version
        var edit: VersionEdit
        /// Through which sequence number the copy holds the writes.
        let sequence: UInt64
        let pin: UInt64
        /// The copy's manifest number (from this database's counter: no file it copies has it).
        let manifest: UInt64
        /// Taken from a read-only handle (its logs were not closed by this handle).
        var readOnly = false

        /// The names of the files to copy: tables, then logs.
        var files: [String] {
            edit.added.map { FileNames.table($0.meta.number) } + edit.createdLogs.map { FileNames.log($0) }
        }
    }

    /// Puts what the memtable holds in a closed log (a rotation, when it holds anything),
    /// then takes, under the rotation lock, the recorded state and the closed logs after
    /// it, pinning them.
    func captureForCopy() throws(KVError) -> CopySource {
        try checkOpen()
        if let log = currentView.log {
            if log.lastSequence > log.baseSequence || currentView.memtable.count > 0 { try rotate(from: log) }
        } else if !options.readOnly {
            throw KVError(
                .readOnly,
                "database at \(path) went read-only at open (\(fullAtOpen?.message ?? "its logs or manifest are damaged")); a copy of it is refused",
                path: path)
        }
        return try rotation.withLock { (_: inout Void) throws(KVError) -> CopySource in
            try checkOpen()
            let current = currentView
            let (version, recorded, pin) = pinLogs()
            var edit = recorded
            let sequence: UInt64
            if let log = current.log {
                // Every log before the current one is closed, and holds the records up to
                // its first.
                edit.createdLogs = recorded.createdLogs.filter { $0 >= pin && $0 < log.number }
                sequence = log.baseSequence
            } else {
                // Read-only: no log is written; the logs the open replayed are all there is
                // (those the manifest records, when it records them: see `Recovery`).
                let names = try io("list \(path)") { try storage.contentsOfDirectory(atPath: path) }
                let present = names.compactMap(FileNames.logNumber).filter { $0 >= pin }
                edit.createdLogs = (versions.tracksLogs ? present.filter(Set(recorded.createdLogs).contains) : present).sorted()
                sequence = current.visibleSequence
            }
            let manifest = versions.newFileNumber()
            edit.nextFileNumber = versions.nextFileNumber.load(ordering: .relaxed)
            return CopySource(version: version, edit: edit, sequence: sequence, pin: pin, manifest: manifest, readOnly: current.log == nil)
        }
    }

    /// The recorded state, and a pin on the logs from its log number up, taken together
    /// under the pins' lock (a flush removes logs under it, after its edit).
    private func pinLogs() -> (Version, VersionEdit, UInt64) {
        logPins.withLock { pins in
            let (version, edit) = versions.recordedState()
            let floor = edit.logNumber ?? 0
            pins[floor, default: 0] += 1
            return (version, edit, floor)
        }
    }

    /// Lets go of a pin; the logs it kept that are in tables go now unless another pins them.
    func releaseLogs(_ pin: UInt64) {
        let unpinned = logPins.withLock { pins -> Bool in
            pins[pin, default: 1] -= 1
            if pins[pin] == 0 { pins[pin] = nil }
            return pins.isEmpty
        }
        // (A read-only handle removes nothing.)
        if unpinned && currentView.log != nil && !closed.load(ordering: .acquiring) && versions.failure == nil {
            removeObsoleteLogs(below: versions.logNumber)
        }
    }

    // MARK: files

    /// Makes `directory` a new, empty directory (or checks that it is one), durable in its
    /// parent. With `allowingLeftovers`, it may also hold what a first backup cut short
    /// left: files named as the engine names them, without an identity file.
    private func prepareEmptyDirectory(_ directory: String, for action: String, allowingLeftovers: Bool = false) throws(KVError) {
        let parent = Database.parentDirectory(of: directory)
        try io("\(action): create directory \(directory)") {
            if storage.fileExists(atPath: directory) {
                let entries = try storage.contentsOfDirectory(atPath: directory).filter { name in
                    switch FileNames.kind(of: name) {
                    case .lock: return false
                    case .table, .log, .manifest, .current, .temporary: return !allowingLeftovers
                    default: return true
                    }
                }
                guard entries.isEmpty else {
                    throw KVError(
                        .alreadyExists,
                        "\(action) into \(directory): the directory is not empty (\(entries.prefix(3).joined(separator: ", "))\(entries.count > 3 ? ", ..." : ""))",
                        path: directory)
                }
            } else {
                guard storage.fileExists(atPath: parent) else {
                    throw KVError(.invalidArgument, "\(action) into \(directory): \(parent) does not exist", path: parent)
                }
                try storage.createDirectory(atPath: directory)
            }
            try storage.syncDirectory(atPath: parent)
        }
    }

    /// Writes the copy's manifest and CURRENT (and its identity file, last, when it has
    /// none: `identity`), once every file it names is durable.
    private func finishCopy(_ source: CopySource, in directory: String, identity: (id: [UInt8], isBackup: Bool)?) throws(KVError) {
        try io("sync directory \(directory)") { try storage.syncDirectory(atPath: directory) }
        var snapshot = source.edit
        if snapshot.createdLogs.isEmpty, let logNumber = snapshot.logNumber, logNumber > 0 {
            // No log of its own: the manifest names the log below its log number (in tables
            // already, so not live), which marks it as one that records its logs, so that
            // an open ignores a log no manifest of the copy names (one a later backup
            // copied before it was cut short).
            snapshot.createdLogs = [logNumber - 1]
        }
        let manifest = try ManifestWriter(storage: storage, directory: directory, number: source.manifest, snapshot: snapshot)
        manifest.close()
        try CurrentFile.write(manifest: source.manifest, directory: directory, storage: storage)
        if let identity { try Identity.create(in: directory, storage: storage, id: identity.id, isBackup: identity.isBackup) }
    }

    /// Links `source` to `target`; false when the file system cannot (another file system,
    /// or none that keeps links): then the caller copies.
    private func link(_ source: String, _ target: String) throws(KVError) -> Bool {
        do {
            try storage.linkFile(atPath: source, toPath: target)
            return true
        } catch let error as PageStoreError where [EXDEV, EPERM, EMLINK, EOPNOTSUPP, ENOSYS].contains(error.errno ?? 0) {
            return false
        } catch {
            throw KVError.io(error, while: "link \(source) to \(target)")
        }
    }

    /// Whether two files hold the same bytes (logs a backup holds: small, and two logs of
    /// one size can differ).
    private func sameContents(_ first: String, _ second: String) throws(KVError) -> Bool {
        try io("compare \(first) with \(second)") { () throws -> Bool in
            let one = try storage.openFile(atPath: first, mode: .readOnly)
            defer { try? storage.closeFile(one) }
            let two = try storage.openFile(atPath: second, mode: .readOnly)
            defer { try? storage.closeFile(two) }
            guard try storage.fileSize(one) == storage.fileSize(two) else { return false }
            let left = try storage.allocator.allocate(pages: 64)
            defer { storage.allocator.free(left) }
            let right = try storage.allocator.allocate(pages: 64)
            defer { storage.allocator.free(right) }
            var offset: Int64 = 0
            while true {
                let got = try storage.read(one, offsetBytes: offset, into: left)
                guard try storage.read(two, offsetBytes: offset, into: right) == got else { return false }
                guard memcmp(left.base, right.base, got) == 0 else { return false }
                if got < left.count { return true }
                offset += Int64(got)
            }
        }
    }

    /// Copies `source` (a closed log or a table: neither changes) to `target`, replacing
    /// what is there, durable when this returns (but for its directory entry). Returns
    /// the bytes copied.
    private func copyFile(_ source: String, _ target: String) throws(KVError) -> Int64 {
        try io("copy \(source) to \(target)") { () throws -> Int64 in
            let input = try storage.openFile(atPath: source, mode: .readOnly)
            defer { try? storage.closeFile(input) }
            // What is there goes first, never written over: it may be another name of the
            // source (a link an unfinished checkpoint left).
            if storage.fileExists(atPath: target) { try storage.removeFile(atPath: target) }
            let output = try storage.openFile(atPath: target, mode: .createNew)
            defer { try? storage.closeFile(output) }
            let size = try storage.fileSize(input)
            let piece = try storage.allocator.allocate(pages: 64)
            defer { storage.allocator.free(piece) }
            let alignment = Int64(max(try storage.fileInfo(output).alignment.offsetBytes, 1))
            var offset: Int64 = 0
            while offset < size {
                let got = try storage.read(input, offsetBytes: offset, into: piece)
                guard got > 0 else {
                    throw PageStoreError(kind: .io, operation: "read", path: source, offsetBytes: offset, detail: "the file ended before its \(size) bytes")
                }
                // Whole sectors out (O_DIRECT), the size set after.
                let bytes = min(Int64(got), size - offset)
                let padded = Int((bytes + alignment - 1) / alignment * alignment)
                if padded > Int(bytes) {
                    UnsafeMutableRawBufferPointer(rebasing: piece.bytes[Int(bytes)..<padded]).initializeMemory(as: UInt8.self, repeating: 0)
                }
                try storage.write(output, offsetBytes: offset, from: piece.slice(offset: 0, count: padded))
                offset += bytes
            }
            try storage.truncateFile(output, toBytes: size)
            try storage.performBlocking(.sync(output, dataOnly: false))
            return size
        }
    }
}
