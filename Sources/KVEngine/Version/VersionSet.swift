import Atomics
import PageStore
import Synchronization

/// The live version and its manifest: applies edits (each durable in the manifest before
/// its version is installed), hands out file numbers, and rolls the manifest over to a
/// new one, switching CURRENT, when it grows large.
///
/// Fail-stop: after any manifest I/O error (a write, an fdatasync, the CURRENT switch) it
/// is unknown what the disk holds: the edit may or may not be durable, and CURRENT may name
/// either manifest. From then on every edit is refused (`failure`), so nothing is written
/// over the failed record and no file an edit might name is marked obsolete; the database
/// refuses writes until it is reopened, and the reopen recovers exactly what is durable.
final class VersionSet: Sendable {
    /// A manifest is rewritten as a fresh snapshot once it holds this many bytes (by
    /// default; `Options.manifestRollBytes`).
    static let defaultManifestRollBytes: Int64 = 4 << 20

    let manifestRollBytes: Int64

    let directory: String
    let storage: any Storage
    let tables: TableCache
    let nextFileNumber: ManagedAtomic<UInt64>
    private let state: Mutex<State>

    private struct State: ~Copyable {
        var manifest: ManifestWriter?
        var version: Version
        var logNumber: UInt64
        var lastSequence: UInt64
        var manifestSwitches = 0
        /// The manifest I/O error that stopped the version set.
        var failure: KVError?
        /// Logs recorded as created and not yet in tables (see `VersionEdit.createdLogs`).
        var liveLogs: Set<UInt64> = []
        /// Whether the manifest records its logs (format version 3 on; every manifest this
        /// build writes does).
        var tracksLogs = false
    }

    /// A version set over `recovered` (its tables reached through `tables`); no manifest
    /// is open until `startManifest`.
    init(directory: String, storage: any Storage, tables: TableCache, version: Version, logNumber: UInt64,
         lastSequence: UInt64, nextFileNumber: UInt64, manifestRollBytes: Int64 = VersionSet.defaultManifestRollBytes) {
        self.directory = directory
        self.manifestRollBytes = manifestRollBytes
        self.storage = storage
        self.tables = tables
        self.nextFileNumber = ManagedAtomic(nextFileNumber)
        state = Mutex(State(manifest: nil, version: version, logNumber: logNumber, lastSequence: lastSequence))
    }

    func newFileNumber() -> UInt64 {
        nextFileNumber.loadThenWrappingIncrement(ordering: .relaxed)
    }

    var current: Version { state.withLock { $0.version } }
    var logNumber: UInt64 { state.withLock { $0.logNumber } }
    /// The last sequence number the tables hold, as the manifest records it.
    var lastSequence: UInt64 { state.withLock { $0.lastSequence } }
    var manifestNumber: UInt64? { state.withLock { $0.manifest?.number } }
    var manifestSwitches: Int { state.withLock { $0.manifestSwitches } }
    /// Logs recorded as created and not yet in tables.
    var liveLogs: Set<UInt64> { state.withLock { $0.liveLogs } }
    /// Whether the manifest records the logs it needs (see `State.tracksLogs`).
    var tracksLogs: Bool { state.withLock { $0.tracksLogs } }
    /// The manifest I/O error after which no edit is accepted, if one happened.
    var failure: KVError? { state.withLock { $0.failure } }

    /// The whole recorded state at one instant, as a manifest's first record would hold it
    /// (tables, log number, last sequence in tables, live logs), and the version, whose
    /// tables stay on disk while it is held: what a checkpoint copies.
    func recordedState() -> (version: Version, edit: VersionEdit) {
        state.withLock { state in
            var edit = state.version.snapshotEdit()
            edit.logNumber = state.logNumber
            edit.lastSequence = state.lastSequence
            edit.createdLogs = state.liveLogs.sorted()
            return (state.version, edit)
        }
    }

    /// Writes a new manifest holding the whole current state, switches CURRENT to it and
    /// removes the one before. `logNumber`, `lastSequence` and `liveLogs`, when given,
    /// replace the recorded ones.
    func startManifest(logNumber: UInt64? = nil, lastSequence: UInt64? = nil, liveLogs: Set<UInt64>? = nil) throws(KVError) {
        try state.withLock { (state: inout State) throws(KVError) in
            if let failure = state.failure { throw VersionSet.refusal(failure) }
            if let logNumber { state.logNumber = logNumber }
            if let lastSequence { state.lastSequence = lastSequence }
            if let liveLogs { state.liveLogs = liveLogs }
            state.tracksLogs = true
            try roll(&state)
        }
    }

    /// After a manifest write that found no room (the only manifest failure this takes
    /// back): writes a new manifest of the state in memory and switches CURRENT to it.
    /// That state never took the failed edit (an edit is installed only once durable, and
    /// one that failed while rolling over is undone), so whatever of the edit reached the
    /// old manifest is superseded, and the files it named are left for the next open to
    /// remove. Fails, and stays stopped, when there is still no room.
    func restartAfterFullDisk() throws(KVError) {
        try state.withLock { (state: inout State) throws(KVError) in
            guard let failure = state.failure else { return }
            guard failure.isFull else { throw VersionSet.refusal(failure) }
            state.failure = nil
            try roll(&state)
        }
    }

    private static func refusal(_ failure: KVError) -> KVError {
        KVError(failure.code, "the manifest is stopped after an earlier failure (reopen the database): \(failure.message)",
                path: failure.path, offsetBytes: failure.offsetBytes)
    }

    /// Writes a new manifest and switches CURRENT to it; on any failure the version set
    /// stops (see the type's comment). The old manifest goes only once CURRENT names the
    /// new one durably.
    private func roll(_ state: inout State) throws(KVError) {
        do throws(KVError) {
            try rollOnce(&state)
        } catch {
            state.failure = error
            throw error
        }
    }

    private func rollOnce(_ state: inout State) throws(KVError) {
        var snapshot = state.version.snapshotEdit()
        snapshot.logNumber = state.logNumber
        snapshot.lastSequence = state.lastSequence
        snapshot.createdLogs = state.liveLogs.sorted()
        let number = newFileNumber()
        snapshot.nextFileNumber = nextFileNumber.load(ordering: .relaxed)
        let manifest = try ManifestWriter(storage: storage, directory: directory, number: number, snapshot: snapshot)
        do {
            try CurrentFile.write(manifest: number, directory: directory, storage: storage)
        } catch {
            // CURRENT may name either manifest now: both stay.
            manifest.close()
            throw error
        }
        if let old = state.manifest {
            old.close()
            try? storage.removeFile(atPath: old.path)
        }
        state.manifest = manifest
        state.manifestSwitches += 1
    }

    /// Makes `edit` durable in the manifest and installs the version it makes: `install`
    /// runs with it before anyone else can apply an edit. Tables the edit adds are opened
    /// first (their footer, index and filter verified, and left in the table cache);
    /// tables it removes are marked obsolete (their files go with their last reader).
    func apply(_ edit: VersionEdit, install: (Version) -> Void) throws(KVError) {
        // A table moved between levels stays the same `TableFile`.
        var live: [UInt64: TableFile] = [:]
        for table in current.levels.joined() { live[table.number] = table }
        var added: [UInt64: TableFile] = [:]
        for file in edit.added {
            if let table = live[file.meta.number] {
                added[file.meta.number] = table
            } else {
                let table = TableFile(meta: file.meta, tables: tables)
                _ = try tables.table(file.meta, admitting: true)
                added[file.meta.number] = table
            }
        }
        let moved = Set(edit.added.map(\.meta.number))
        let removed = try state.withLock { (state: inout State) throws(KVError) -> [TableFile] in
            var edit = edit
            edit.nextFileNumber = nextFileNumber.load(ordering: .relaxed)
            let version = state.version.applying(edit, added: added)
            if let failure = state.failure { throw VersionSet.refusal(failure) }
            guard let manifest = state.manifest else {
                throw KVError(.readOnly, "no manifest is open (read-only)")
            }
            let previous = (
                version: state.version, logNumber: state.logNumber, lastSequence: state.lastSequence, liveLogs: state.liveLogs)
            let liveLogs = ManifestState.liveLogs(state.liveLogs, after: edit, logNumber: edit.logNumber ?? state.logNumber)
            if manifest.end >= manifestRollBytes {
                state.version = version
                if let logNumber = edit.logNumber { state.logNumber = logNumber }
                if let lastSequence = edit.lastSequence { state.lastSequence = lastSequence }
                state.liveLogs = liveLogs
                do throws(KVError) {
                    try roll(&state)
                } catch {
                    (state.version, state.logNumber, state.lastSequence, state.liveLogs) = previous
                    throw error
                }
            } else {
                do throws(KVError) {
                    try manifest.append(edit)
                } catch {
                    state.failure = error
                    throw error
                }
                state.version = version
                if let logNumber = edit.logNumber { state.logNumber = logNumber }
                if let lastSequence = edit.lastSequence { state.lastSequence = lastSequence }
                state.liveLogs = liveLogs
            }
            install(version)
            let deleted = Set(edit.deleted.map(\.number)).subtracting(moved)
            return previous.version.levels.flatMap { $0 }.filter { deleted.contains($0.number) }
        }
        for table in removed { table.markObsolete() }
    }

    /// Closes the manifest and lets go of the tables (files of tables a cursor still
    /// holds close when it goes).
    func close() {
        let released = state.withLock { state -> Version in
            state.manifest?.close()
            state.manifest = nil
            let version = state.version
            state.version = Version()
            return version
        }
        withExtendedLifetime(released) {}  // its tables close here, outside the lock
    }

    // MARK: recovery

    /// Reads CURRENT and its manifest and checks that every live table's file is there
    /// (tables are opened when first read, so a damaged one is reported then, naming its
    /// file and offset).
    static func recover(
        directory: String, storage: any Storage, tables: TableCache, names: [String],
        manifestRollBytes: Int64 = VersionSet.defaultManifestRollBytes, keepingWhatPrecedesDamage: Bool = false
    ) throws(KVError) -> (VersionSet, ManifestState) {
        var recovered = ManifestState()
        if let number = try CurrentFile.read(directory: directory, storage: storage) {
            recovered = try ManifestState.replay(
                directory: directory, number: number, storage: storage, keepingWhatPrecedesDamage: keepingWhatPrecedesDamage)
        } else if let table = names.first(where: { FileNames.tableNumber($0) != nil }) {
            throw KVError(
                .corruption, "\(directory) holds table \(table) but no CURRENT file naming a manifest",
                path: directory + "/" + FileNames.current)
        }
        var snapshot = VersionEdit()
        var added: [UInt64: TableFile] = [:]
        let present = Set(names)
        for (level, metas) in recovered.levels.enumerated() {
            for (number, meta) in metas.sorted(by: { $0.key < $1.key }) {
                let name = FileNames.table(number)
                guard present.contains(name) else {
                    let before = recovered.damage.map { " (as of the last edit before the damage: \($0.message))" } ?? ""
                    throw KVError(.corruption, "table \(directory)/\(name) named by the manifest is missing\(before)", path: directory + "/" + name)
                }
                added[number] = TableFile(meta: meta, tables: tables)
                snapshot.added.append(VersionEdit.AddedFile(level: level, meta: meta))
            }
        }
        snapshot.addedRangeDeletes = Array(recovered.rangeDeletes)
        let version = Version().applying(snapshot, added: added)
        if let problem = version.orderingProblem() {
            throw KVError(.corruption, "manifest describes an impossible version: \(problem)", path: directory + "/" + FileNames.current)
        }
        var highest: UInt64 = 0
        for name in names {
            if let number = FileNames.kind(of: name)?.number { highest = max(highest, number) }
        }
        let set = VersionSet(
            directory: directory, storage: storage, tables: tables, version: version, logNumber: recovered.logNumber,
            lastSequence: recovered.lastSequence, nextFileNumber: max(recovered.nextFileNumber, highest + 1),
            manifestRollBytes: manifestRollBytes)
        // (A writable open records its own when it starts its manifest; a read-only one
        // keeps these, for a checkpoint of it.)
        if recovered.tracksLogs {
            set.state.withLock { state in
                state.liveLogs = recovered.liveLogs
                state.tracksLogs = true
            }
        }
        return (set, recovered)
    }
}
