import PageStore

/// What `Database.salvage` kept, wrote, set aside and dropped.
public struct SalvageReport: Sendable, CustomStringConvertible {
    /// Tables whose every block verified: all their entries were kept.
    public var tablesKept = 0
    /// Tables that did not verify: set aside in `lost/`; the entries of their blocks before
    /// the damage were kept.
    public var tablesDamaged = 0
    /// Entries kept from damaged tables.
    public var entriesKeptFromDamagedTables = 0
    /// Logs read.
    public var logs = 0
    /// Log records (write batches) that verified and were kept.
    public var recordsKept = 0
    /// Logs damaged before their end: set aside in `lost/`; their records before the
    /// damage were kept.
    public var logsDamaged = 0
    /// Tables written, holding the whole salvaged database.
    public var tablesWritten = 0
    /// Keys the salvaged database holds.
    public var keys = 0
    /// The newest sequence number kept.
    public var lastSequence: UInt64 = 0
    /// Files moved into `lost/` (their paths there).
    public var setAside: [String] = []
    /// What was dropped, one line each: the file, where, why, and how much was kept.
    public var dropped: [String] = []

    public var description: String {
        var lines = [
            "kept \(tablesKept) tables whole, \(entriesKeptFromDamagedTables) entries of \(tablesDamaged) damaged tables, \(recordsKept) records of \(logs) logs (\(logsDamaged) damaged)",
            "wrote \(tablesWritten) tables: \(keys) keys through sequence \(lastSequence)",
        ]
        lines += dropped.map { "dropped: \($0)" }
        lines += setAside.map { "set aside: \($0)" }
        return lines.joined(separator: "\n")
    }
}

extension Database {
    /// Rebuilds the database at `path` from whatever of it still verifies, as LevelDB's
    /// `RepairDB`: every table block and log record whose checksums hold is kept, the
    /// newest version of each key (as its sequence numbers order them, deletions too) is
    /// written into new tables in the deepest level, and a new manifest names them. Within
    /// a log, records are kept up to the first that does not follow the one before.
    ///
    /// Files that do not verify (a damaged table or log, a log with a torn tail, a damaged
    /// identity file) are moved into `path/lost/`, never deleted; whole files that
    /// everything was copied out of are removed once the new manifest is in force. A
    /// deletion whose older value sat in a dropped block may let that value come back, and
    /// writes in dropped blocks are gone: the report says which files and offsets were
    /// dropped. The database is locked meanwhile.
    ///
    /// Crash safety: the new tables (tombstones included) are written and synced first (a
    /// crash leaves them as orphans, which the next open removes), then damaged files move
    /// to `lost/`, then the manifest switch; running it again after a crash starts over
    /// from what is there, the first run's new tables among it.
    public static func salvage(path: String, options: Options = Options()) throws(KVError) -> SalvageReport {
        try options.validate()
        let (storage, owned) = try options.openStorage(forWriting: true)
        defer { owned?.shutdown() }
        return try salvage(path: path, options: options, storage: storage)
    }

    /// `salvage` on another storage (`Options.storage`, or the crash tests' simulated disk).
    package static func salvage(path: String, options: Options, storage store: any Storage) throws(KVError) -> SalvageReport {
        func isEngineFile(_ name: String) -> Bool {
            switch FileNames.kind(of: name) {
            case .identity, .current, .log, .table, .manifest: true
            default: false
            }
        }
        // Looked at before the lock, which would leave a LOCK file in a directory that is
        // no database; listed again once it is held.
        guard (try? store.contentsOfDirectory(atPath: path))?.contains(where: isEngineFile) == true else {
            throw KVError(.notADatabase, "no database at \(path): nothing to salvage", path: path)
        }
        let lock = try DirectoryLock(directory: path, storage: store)
        defer { lock.release() }
        let names = try io("list \(path)") { try store.contentsOfDirectory(atPath: path) }
        var report = SalvageReport()
        var damaged: [String] = []
        // Files whose contents all went into the new tables (or held nothing to keep).
        var obsolete = names.filter { FileNames.manifestNumber($0) != nil || $0 == FileNames.current || $0.hasSuffix(".tmp") }

        var identityDamaged = false
        /// An intact identity of an older format is rewritten too: salvage writes tables in
        /// this build's format, which an older build must refuse.
        var identityOlder = false
        var identity: Identity.Info? = nil
        if names.contains(FileNames.identity) {
            do throws(KVError) {
                identity = try Identity.read(in: path, storage: store)
                identityOlder = identity!.version < Identity.formatVersion || identity!.id == nil
            } catch where error.code == .corruption {
                identityDamaged = true
                report.dropped.append("\(path)/\(FileNames.identity): \(error.message)")
            }
        }

        // The newest sequence number ever used: the manifest's, if it still reads, the
        // tables', the records'. Later writes must follow all of them (a tombstone that a
        // compaction dropped may have carried the newest one).
        var newestSequence: UInt64 = 0
        var manifestNextFile: UInt64 = 0
        // Range deletes live in the manifest (and in logs not yet flushed): those that
        // still read become point deletes of the keys they cover in the new tables.
        var rangeDeletes: Set<RangeTombstone> = []
        if let number = try? CurrentFile.read(directory: path, storage: store),
            let manifest = try? ManifestState.replay(directory: path, number: number, storage: store, keepingWhatPrecedesDamage: true)
        {
            newestSequence = manifest.lastSequence
            manifestNextFile = manifest.nextFileNumber
            rangeDeletes = manifest.rangeDeletes
        }
        let recovered = Memtable()
        let cache = BlockCache(capacityBytes: 0)
        var sources: [Table] = []
        for number in names.compactMap(FileNames.tableNumber).sorted() {
            let name = FileNames.table(number)
            do throws(KVError) {
                let table = try Table.open(
                    storage: store, directory: path, meta: try Table.readMeta(storage: store, directory: path, number: number), cache: cache)
                _ = try table.verifyBlocks()
                sources.append(table)
                newestSequence = max(newestSequence, table.meta.properties.largestSequence)
                report.tablesKept += 1
                obsolete.append(name)
            } catch where error.code == .corruption {
                // What the blocks before the damage hold is kept. (Other failures, an I/O
                // error or too many open files, say nothing of the table: they stop salvage.)
                var kept = 0
                if let meta = try? Table.readMeta(storage: store, directory: path, number: number),
                    let table = try? Table.open(storage: store, directory: path, meta: meta, cache: cache)
                {
                    newestSequence = max(newestSequence, meta.properties.largestSequence)
                    _ = try? table.verifyBlocks { key, tag, value in
                        newestSequence = max(newestSequence, Tag.sequence(tag))
                        // (A table holds no range delete: a kind it may not hold reads as a delete.)
                        let type = Tag.type(tag).flatMap { $0 == .rangeDelete ? nil : $0 } ?? .delete
                        recovered.add(sequence: Tag.sequence(tag), type: type, key: key, value: value)
                        kept += 1
                    }
                }
                report.tablesDamaged += 1
                report.entriesKeptFromDamagedTables += kept
                report.dropped.append("\(path)/\(name) at offset \(error.offsetBytes ?? 0): \(error.message) (\(kept) entries before it kept)")
                damaged.append(name)
            }
        }

        for number in names.compactMap(FileNames.logNumber).sorted() {
            let name = FileNames.log(number)
            report.logs += 1
            var records = 0
            var last: UInt64? = nil
            let result = try LogReader(storage: store, path: path + "/" + name, number: number).replay { record, offset in
                // Within a log, each record follows the one before: past a gap, a record
                // would make a state no crash leaves (a later write without an earlier one).
                // A log's first record may start anywhere (logs before it may be lost).
                switch Recovery.validate(record, at: offset, after: last) {
                case .failure(let problem):
                    return problem.reason
                case .success(let end):
                    last = end
                    _ = recovered.apply(batch: record)
                    newestSequence = max(newestSequence, end)
                    records += 1
                    return nil
                }
            }
            report.recordsKept += records
            // Salvage trusts no manifest: a log it finds with an unfinished header held nothing.
            switch result.verdict(live: false) {
            case .clean, .unfinished:
                obsolete.append(name)
            case .damaged(let offset, let reason):
                report.logsDamaged += 1
                report.dropped.append("\(path)/\(name) at offset \(offset): \(reason) (\(records) records before it kept)")
                damaged.append(name)
            case .tornTail(let offset, let reason, _):
                // Never acknowledged, by the reader's rules; set aside all the same.
                report.dropped.append("\(path)/\(name) at offset \(offset): torn tail (\(reason)) (\(records) records before it kept)")
                damaged.append(name)
            }
        }

        // The newest version of every key, tombstones included, in the deepest level. New
        // numbers follow every file in the directory and the manifest's next number.
        var next = max(manifestNextFile, names.compactMap { FileNames.kind(of: $0)?.number }.max().map { $0 + 1 } ?? 1)
        var outputs: [TableMeta] = []
        let coverage = RangeTombstones(rangeDeletes.union(recovered.rangeDeleteList))
        do throws(KVError) {
            var children: [any InternalIterator] = [recovered.makeIterator()]
            for table in sources { children.append(TableIterator(table: table, fillCache: false)) }
            let merge = MergingIterator(children)
            merge.seekToFirst()
            var builder: TableBuilder? = nil
            var previous: [UInt8]? = nil
            while merge.isValid {
                let key = merge.key
                if let previous, previous.elementsEqual(key) {
                    merge.next()
                    continue
                }
                previous = Array(key)
                report.lastSequence = max(report.lastSequence, Tag.sequence(merge.tag))
                // Tombstones are kept too: should this run be cut short and run again, the
                // new tables then still hide what the old ones deleted.
                if builder == nil {
                    builder = try TableBuilder(
                        storage: store, directory: path, number: next, expectedBytes: Int64(options.tableTargetBytes),
                        formatVersion: options.tableFormatVersion, compression: options.compression(forLevel: Version.levelCount - 1), restartInterval: options.blockRestartInterval)
                    next += 1
                }
                if let cover = coverage.cover(key, snapshot: .max), cover.sequence > Tag.sequence(merge.tag) {
                    // Deleted by a range delete: kept as a delete at its sequence number.
                    try builder!.add(key, tag: Tag.make(cover.sequence, .delete), value: UnsafeRawBufferPointer(start: nil, count: 0))
                } else {
                    try builder!.add(key, tag: merge.tag, value: merge.value)
                    if Tag.isPut(merge.tag) { report.keys += 1 }
                }
                if builder!.fileBytes >= Int64(options.tableTargetBytes) {
                    outputs.append(try builder!.finish())
                    builder = nil
                }
                merge.next()
            }
            if let error = merge.error { throw error }
            if let builder { outputs.append(try builder.finish()) }
            try io("sync directory \(path)") { try store.syncDirectory(atPath: path) }
        } catch {
            for meta in outputs { try? store.removeFile(atPath: path + "/" + FileNames.table(meta.number)) }
            throw error
        }
        report.tablesWritten = outputs.count
        report.lastSequence = max(report.lastSequence, newestSequence)

        // Damaged files go aside before the switch: once the new manifest is in force, an
        // open would remove them as files no version needs.
        if identityDamaged { damaged.append(FileNames.identity) }
        if !damaged.isEmpty {
            let lost = path + "/" + FileNames.lost
            try io("set aside damaged files in \(lost)") {
                if !store.fileExists(atPath: lost) {
                    try store.createDirectory(atPath: lost)
                    try store.syncDirectory(atPath: path)
                }
                for name in damaged {
                    var target = lost + "/" + name
                    var copy = 1
                    while store.fileExists(atPath: target) {
                        target = lost + "/" + name + ".\(copy)"
                        copy += 1
                    }
                    try store.renameFile(atPath: path + "/" + name, toPath: target)
                    report.setAside.append(target)
                }
                try store.syncDirectory(atPath: lost)
                try store.syncDirectory(atPath: path)
            }
        }
        // A salvaged backup is a database of its own (a new id): later backups refuse it.
        if identityDamaged || identityOlder || identity?.isBackup == true || !names.contains(FileNames.identity) {
            try Identity.create(in: path, storage: store, id: identity?.isBackup == false ? identity?.id ?? Identity.newID() : Identity.newID())
        }

        // The new manifest: the new tables alone.
        var edit = VersionEdit()
        let tables = TableCache(storage: store, directory: path, blocks: cache, capacity: 0)
        var added: [UInt64: TableFile] = [:]
        for meta in outputs {
            added[meta.number] = TableFile(meta: meta, tables: tables)
            _ = try added[meta.number]!.open()  // verified before the manifest names it
            edit.added.append(VersionEdit.AddedFile(level: Version.levelCount - 1, meta: meta))
        }
        let versions = VersionSet(
            directory: path, storage: store, tables: tables, version: Version().applying(edit, added: added),
            logNumber: next, lastSequence: report.lastSequence, nextFileNumber: next + 1)
        try versions.startManifest(liveLogs: [])
        let manifestNumber = versions.manifestNumber
        versions.close()
        for name in obsolete where name != FileNames.current {
            if let number = FileNames.manifestNumber(name), number == manifestNumber { continue }
            try? store.removeFile(atPath: path + "/" + name)
        }
        try? store.syncDirectory(atPath: path)
        engineLogger.debug("salvaged \(path): \(report.description)")
        return report
    }
}
