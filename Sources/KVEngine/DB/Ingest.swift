import PageStore

/// What `ingest(sorted:)` added.
public struct IngestReport: Sendable, Equatable {
    /// Entries added.
    public var entries: Int
    /// Tables written.
    public var tables: Int
    /// Bytes of those tables.
    public var bytes: Int64
    /// The sequence number every ingested entry carries (0 when nothing was added).
    public var sequence: UInt64
}

extension Database {
    /// Adds `entries` (strictly ascending keys, as a scan or `kvctl export` yields them) in
    /// one step: they are written as new tables, and one manifest edit adds them all, so
    /// either every entry becomes visible at once or, on any error (keys out of order, a
    /// key or value over the limits, a full disk), none does and the tables written so far
    /// are removed. The fastest way to load data: no log, no memtable, no compaction of
    /// what is loaded (RocksDB's `IngestExternalFile`).
    ///
    /// Every entry gets one new sequence number, after every write before the call, so an
    /// ingested value replaces what the key held. Each table goes to the deepest level
    /// where nothing above it overlaps its key range (the bottom level of an empty
    /// database); those that can only go to level 0 are written again as one table there.
    /// What the memtables hold is flushed first, and other writes wait until the ingest is
    /// done. Blocks the calling thread.
    @discardableResult
    public func ingest<Entries: Sequence>(sorted entries: Entries) throws(KVError) -> IngestReport
    where Entries.Element == (key: [UInt8], value: [UInt8]) {
        var iterator = entries.makeIterator()
        return try ingestEntries { () throws(KVError) in iterator.next() }
    }

    /// `ingest(sorted:)` of the entries `next` returns, one at a time, until it returns
    /// nil: for a source too large to hold in memory (a file, a merge of sorted runs) that
    /// can fail while it is read. If `next` throws, nothing is added (the tables written so
    /// far are removed) and its error is rethrown; otherwise the errors are those of
    /// `ingest(sorted:)`, as `KVError`s. Memory stays that of one table being written.
    @discardableResult
    public func ingest(sortedFrom next: () throws -> (key: [UInt8], value: [UInt8])?) throws -> IngestReport {
        var sourceError: (any Error)? = nil
        var wrapped: KVError? = nil
        do {
            return try ingestEntries { () throws(KVError) -> (key: [UInt8], value: [UInt8])? in
                do {
                    return try next()
                } catch {
                    sourceError = error
                    wrapped = KVError(.invalidArgument, "the ingest's source failed: \(error)")
                    throw wrapped!
                }
            }
        } catch {
            // The source's own error, unless something after it (a log that could not be
            // started, which stops writes) is what the call ends with.
            if let sourceError, let wrapped, error.code == wrapped.code, error.message == wrapped.message { throw sourceError }
            throw error
        }
    }

    private func ingestEntries(_ next: () throws(KVError) -> (key: [UInt8], value: [UInt8])?) throws(KVError) -> IngestReport {
        try checkOpen()
        _ = try resumeAfterFullDisk()  // writes stopped on a full disk go on first, if there is room
        _ = try writableLog()
        return try rotation.withLock { (_: inout Void) throws(KVError) -> IngestReport in
            // Frozen memtables first, while the log still takes writes; then the memtable
            // itself, with its log retired so that no write lands until the ingest is done.
            try waitForFlushes()
            try checkOpen()
            if let error = backgroundError.withLock({ $0 }) { throw error }
            let old = try writableLog()
            try retire(old)
            let number = versions.newFileNumber()
            if old.memtable.count > 0 {
                let frozen = FrozenMemtable(memtable: old.memtable, nextLogNumber: number, lastSequence: old.lastSequence)
                view.withLock { $0 = $0.with(memtable: Memtable(), immutables: [frozen] + $0.immutables) }
                backgroundThreads?.wakeFlush()
            }
            var report = IngestReport(entries: 0, tables: 0, bytes: 0, sequence: 0)
            var failure: KVError? = nil
            do throws(KVError) {
                try waitForFlushes()
                report = try addTables(next, sequence: old.lastSequence + 1, logNumber: number)
            } catch {
                failure = error
            }
            // The next log follows the ingest's sequence (or, after a failure, the old
            // log's last): writes go on either way, unless the failure stopped them. (Once
            // the edit is in, the log starts even if a background failure came meanwhile:
            // without it the ingested entries would stay invisible to this handle.)
            if report.entries > 0 || backgroundError.withLock({ $0 == nil }) {
                do throws(KVError) {
                    try startLog(number, lastSequence: report.entries > 0 ? report.sequence : old.lastSequence, freezing: nil)
                } catch where report.entries > 0 {
                    throw KVError(
                        error.code,
                        "the ingested tables are in the manifest (a reopen shows them), but no log could be started after them, so writes stopped: \(error.message)",
                        path: error.path, offsetBytes: error.offsetBytes)
                }
            }
            if let failure { throw failure }
            backgroundThreads?.wakeCompaction()
            if options.inlineBackgroundWork { runInlineWork() }
            return report
        }
    }

    /// Writes the entries `next` returns as tables whose entries all carry `sequence` and adds them in one
    /// edit (with `sequence` as the last in tables, and `logNumber` as the first log still
    /// needed). Called with `rotation` held and nothing in the memtables.
    private func addTables(_ next: () throws(KVError) -> (key: [UInt8], value: [UInt8])?, sequence: UInt64, logNumber: UInt64) throws(KVError) -> IngestReport {
        var outputs: [TableMeta] = []
        var builder: TableBuilder? = nil
        var previous: [UInt8]? = nil
        var count = 0
        let tag = Tag.make(sequence, .put)
        do throws(KVError) {
            while let (key, value) = try next() {
                if key.isEmpty { throw KVError(.invalidArgument, "ingest entry \(count): empty key") }
                if key.count > Limits.maxKeyBytes {
                    throw KVError(.invalidArgument, "ingest entry \(count): key of \(key.count) bytes exceeds the limit of \(Limits.maxKeyBytes)")
                }
                if value.count > Limits.maxValueBytes {
                    throw KVError(.invalidArgument, "ingest entry \(count): value of \(value.count) bytes exceeds the limit of \(Limits.maxValueBytes)")
                }
                if let previous, !previous.lexicographicallyPrecedes(key) {
                    throw KVError(.invalidArgument, "ingest entry \(count): keys must be strictly ascending, and this one is not after the one before")
                }
                if let open = builder, open.fileBytes >= Int64(options.tableTargetBytes) {
                    outputs.append(try open.finish())
                    builder = nil
                }
                if builder == nil {
                    builder = try TableBuilder(
                        storage: storage, directory: path, number: versions.newFileNumber(),
                        expectedBytes: Int64(options.tableTargetBytes) + (1 << 20), formatVersion: options.tableFormatVersion,
                        compression: options.compression(forLevel: Version.levelCount - 1), restartInterval: options.blockRestartInterval)
                }
                let open = builder!
                try key.withUnsafeBytes { key in
                    value.withUnsafeBytes { value in
                        Result { () throws(KVError) in try open.add(key, tag: tag, value: value) }
                    }
                }.get()
                previous = key
                count += 1
            }
            if let open = builder {
                outputs.append(try open.finish())
                builder = nil
            }
            guard !outputs.isEmpty else { return IngestReport(entries: 0, tables: 0, bytes: 0, sequence: 0) }
            try io("sync directory \(path)") { try storage.syncDirectory(atPath: path) }
        } catch {
            builder?.abandon()
            removeTables(outputs)
            throw error
        }
        try compacting.withLock { (_: inout Void) throws(KVError) in
            if let stopped = backgroundError.withLock({ $0 }) {
                // Writes stopped while the tables were written (a background failure).
                removeTables(outputs)
                throw stopped
            }
            let version = currentView.version
            var placed = outputs.map { (meta: $0, level: Database.ingestLevel(for: $0, in: version)) }
            let toLevel0 = placed.filter { $0.level == 0 }.map(\.meta)
            if toLevel0.count > 1 {
                // Level 0 takes them as one table: cut small, they would each be a level-0
                // table that every read consults and that compaction must merge at once.
                let merged: TableMeta
                do throws(KVError) {
                    merged = try concatenate(toLevel0)
                } catch {
                    removeTables(outputs)
                    throw error
                }
                removeTables(toLevel0)
                placed = placed.filter { $0.level != 0 } + [(merged, 0)]
                outputs = placed.map(\.meta)
            }
            var edit = VersionEdit()
            edit.logNumber = logNumber
            edit.lastSequence = sequence
            edit.added = placed.map { VersionEdit.AddedFile(level: $0.level, meta: $0.meta) }
            try apply(edit, adding: outputs, while: "ingest")
        }
        return IngestReport(entries: count, tables: outputs.count, bytes: outputs.reduce(0) { $0 + $1.fileBytes }, sequence: sequence)
    }

    /// One table holding the entries of `tables` (sorted, disjoint, in key order), fsynced
    /// with the directory.
    private func concatenate(_ tables: [TableMeta]) throws(KVError) -> TableMeta {
        let builder = try TableBuilder(
            storage: storage, directory: path, number: versions.newFileNumber(),
            expectedBytes: tables.reduce(0) { $0 + $1.fileBytes }, formatVersion: options.tableFormatVersion,
            compression: options.compression(forLevel: 0), restartInterval: options.blockRestartInterval)
        do throws(KVError) {
            for meta in tables {
                let table = try Table.open(storage: storage, directory: path, meta: meta, cache: cache)
                let walk = TableIterator(table: table, readaheadPages: TableBuilder.chunkPages, alwaysReadAhead: true)
                walk.seekToFirst()
                while walk.isValid {
                    try builder.add(walk.key, tag: walk.tag, value: walk.value)
                    walk.next()
                }
                if let error = walk.error { throw error }
            }
            let merged = try builder.finish()
            try io("sync directory \(path)") { try storage.syncDirectory(atPath: path) }
            return merged
        } catch {
            builder.abandon()
            throw error
        }
    }

    /// The deepest level where no table of that level or one above overlaps `meta`'s key
    /// range: newer than everything, the table must be met before any older version of
    /// its keys, and a level below 0 must stay free of overlaps.
    static func ingestLevel(for meta: TableMeta, in version: Version) -> Int {
        let lower = Array(meta.smallestUserKey)
        let upper = Array(meta.largestUserKey)
        for level in 0..<Version.levelCount where !version.overlapping(level: level, lower: lower, upper: upper).isEmpty {
            return max(0, level - 1)
        }
        return Version.levelCount - 1
    }
}
