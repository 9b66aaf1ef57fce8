import PageStore

/// Opening's replay of the logs the manifest still needs (numbered at or above its log
/// number) into the memtable, oldest first.
///
/// Every record must carry the sequence number right after the previous record's last
/// one, across logs too; a gap or overlap is corruption. A torn tail is cut off (the file
/// is truncated and synced, so a second recovery finds the same end); damage before the
/// tail refuses the open, or opens read-only when asked to.
///
/// What the logs hold goes into memtables of at most `memtableBytes` each, as writes fill
/// them: the open flushes them, oldest first, each into its own table. The logs to replay
/// are those whose memtables the last session had not flushed, so recovery holds no more
/// than that session's memtables did. A flush of one of them (at an earlier open that then
/// crashed) moves the manifest's log number to the log holding its successor's first
/// record, and the records of that log already in tables are skipped (`replayed`).
///
/// A log the manifest records as created (`liveLogs`) was whole and durable before any
/// write in it was acknowledged: if it is missing, or its header does not verify, that is
/// damage too, never a log whose creation was cut short.
struct Recovery {
    let directory: String
    let storage: any Storage
    let options: Options
    /// Logs below this number are in tables already.
    let minimumLog: UInt64
    /// The last sequence number in tables: the first record replayed follows it.
    let tableSequence: UInt64
    /// Logs the manifest records as created and not yet in tables; nil when the manifest
    /// does not record its logs (written before format version 3).
    let liveLogs: Set<UInt64>?
    /// Already read-only (the manifest is damaged): nothing is truncated or removed.
    var readOnly = false

    struct Outcome {
        var lastSequence: UInt64 = 0
        var readOnly = false
        var tornTails = 0
        var logsReplayed = 0
        /// Logs replayed, oldest first (all may go once the memtables are in tables).
        var logs: [UInt64] = []
        /// Memtables the replay filled, oldest first, each with its last sequence number
        /// and the log holding the record after it (`FrozenMemtable.nextLogNumber`).
        var filled: [FrozenMemtable] = []
        /// The memtable the replay was filling when it ended (maybe empty).
        var memtable = Memtable()

        /// Every memtable the replay filled, newest first (as a view holds its frozen
        /// memtables), the last one's next log being `nextLog`.
        func frozen(nextLog: UInt64) -> [FrozenMemtable] {
            let last = memtable.count > 0 ? [FrozenMemtable(memtable: memtable, nextLogNumber: nextLog, lastSequence: lastSequence)] : []
            return (filled + last).reversed()
        }
    }

    func run() throws(KVError) -> Outcome {
        var outcome = Outcome()
        outcome.readOnly = readOnly
        outcome.lastSequence = tableSequence
        let names = try io("list \(directory)") { try storage.contentsOfDirectory(atPath: directory) }
        var present = Set(names.compactMap(FileNames.logNumber).filter { $0 >= minimumLog })
        if let liveLogs {
            // A log the manifest does not record holds no acknowledged write (a log is
            // recorded before any write in it is acknowledged): one whose creation a crash
            // cut short, or one a backup copied for a state it never switched to. It goes.
            for number in present.subtracting(liveLogs).sorted() {
                let path = directory + "/" + FileNames.log(number)
                present.remove(number)
                engineLogger.warning("log \(path) is not recorded in the manifest (its creation, or a backup's copy of it, was cut short); \(readOnly ? "ignoring" : "removing") it")
                if readOnly { continue }
                try io("remove \(path)") {
                    try storage.removeFile(atPath: path)
                    try storage.syncDirectory(atPath: directory)
                }
            }
        }
        let logs = present.union(liveLogs?.filter { $0 >= minimumLog } ?? []).sorted()
        /// Damage: refuses the open, or (`.openReadOnly`) ends the replay here, read-only.
        func damaged(_ message: String, path: String, offset: Int64) throws(KVError) {
            guard options.onLogCorruption == .openReadOnly else {
                throw KVError(.corruption, message + "; refusing to open (Options.onLogCorruption = .openReadOnly opens what precedes it)", path: path, offsetBytes: offset)
            }
            engineLogger.error("\(message); opening read-only with sequences 1...\(outcome.lastSequence)")
            outcome.readOnly = true
        }
        for number in logs {
            let path = directory + "/" + FileNames.log(number)
            let live = liveLogs?.contains(number) ?? false
            guard present.contains(number) else {
                try damaged("log \(path) is missing, but the manifest records it as holding writes not yet in tables", path: path, offset: 0)
                return outcome
            }
            outcome.logsReplayed += 1
            outcome.logs.append(number)
            var lastSequence = outcome.lastSequence
            let reader = LogReader(storage: storage, path: path, number: number)
            let result = try reader.replay { record, offset in
                // Validate the whole batch before applying any of it: all or nothing.
                switch Recovery.replayed(record, at: offset, after: lastSequence, tables: tableSequence) {
                case .failure(let problem):
                    return problem.reason
                case .success(nil):
                    return nil
                case .success(let last?):
                    if outcome.memtable.count > 0 && outcome.memtable.approximateBytes + record.count > options.memtableBytes {
                        outcome.filled.append(FrozenMemtable(memtable: outcome.memtable, nextLogNumber: number, lastSequence: lastSequence))
                        outcome.memtable = Memtable()
                    }
                    outcome.memtable.apply(batch: record)
                    lastSequence = last
                    return nil
                }
            }
            outcome.lastSequence = lastSequence
            switch result.verdict(live: live) {
            case .clean:
                break
            case .unfinished(let reason):
                outcome.logs.removeLast()
                engineLogger.warning("log \(path) was never finished being created (\(reason)); removing it")
                if outcome.readOnly { continue }
                try io("remove \(path)") {
                    try storage.removeFile(atPath: path)
                    try storage.syncDirectory(atPath: directory)
                }
            case .tornTail(let offset, let reason, let dropped):
                outcome.tornTails += 1
                engineLogger.warning(
                    "log \(path): torn tail at offset \(offset) (\(reason)); \(dropped) unsynced fragments after it dropped; recovered through sequence \(lastSequence)")
                if !outcome.readOnly { try truncate(path, to: result.truncateAt) }
            case .damaged(let offset, let reason):
                try damaged("log \(path) is corrupt at offset \(offset): \(reason)", path: path, offset: offset)
                return outcome
            }
        }
        return outcome
    }

    /// Why a record cannot be replayed.
    struct RecordProblem: Error {
        let reason: String
    }

    /// Checks a log record before anything of it is applied: a well-formed batch whose
    /// sequence numbers follow `lastSequence` (nil: a first record, which may start at any
    /// sequence number but 0). Returns the record's last sequence number.
    static func validate(_ record: UnsafeRawBufferPointer, at offset: Int64, after lastSequence: UInt64?) -> Result<UInt64, RecordProblem> {
        guard record.count >= WriteBatch.headerBytes else {
            return .failure(RecordProblem(reason: "record at offset \(offset) is \(record.count) bytes, too short"))
        }
        let first = Coding.fixed64(record, at: 0)
        let count = UInt64(Coding.fixed32(record, at: 8))
        let expected = lastSequence.map { $0 &+ 1 }
        guard first == expected ?? max(first, 1) else {
            return .failure(RecordProblem(reason: "record at offset \(offset) starts at sequence \(first), expected \(expected ?? 1)"))
        }
        guard count > 0, first <= UInt64.max - count, WriteBatch.forEachEntry(in: record, { _, _, _, _ in }) else {
            return .failure(RecordProblem(reason: "record at offset \(offset) is not a well-formed write batch"))
        }
        return .success(first + count - 1)
    }

    /// `validate`, except that before any record follows the tables (`lastSequence` is
    /// still `tableSequence`) a record wholly at or below `tableSequence` is one the
    /// tables hold already (part of a log flushed by an open that crashed before the rest
    /// was): success(nil), skip it.
    static func replayed(
        _ record: UnsafeRawBufferPointer, at offset: Int64, after lastSequence: UInt64, tables tableSequence: UInt64
    ) -> Result<UInt64?, RecordProblem> {
        if lastSequence == tableSequence, record.count >= WriteBatch.headerBytes {
            let first = Coding.fixed64(record, at: 0)
            let count = UInt64(Coding.fixed32(record, at: 8))
            if count > 0, first > 0, first <= tableSequence, count <= tableSequence - first + 1 { return .success(nil) }
        }
        return validate(record, at: offset, after: lastSequence).map { $0 }
    }

    private func truncate(_ path: String, to size: Int64) throws(KVError) {
        try io("truncate torn log \(path) to \(size) bytes") {
            let file = try storage.openFile(atPath: path, mode: .existing)
            defer { try? storage.closeFile(file) }
            if try storage.fileSize(file) > size {
                try storage.truncateFile(file, toBytes: size)
                try storage.performBlocking(.sync(file, dataOnly: false))
            }
        }
    }
}
