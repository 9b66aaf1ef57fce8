import PageStore

/// What `Database.check` found.
public struct CheckReport: Sendable, CustomStringConvertible {
    /// One finding: a file, where in it, and what.
    public struct Finding: Sendable {
        /// The file concerned.
        public let path: String
        /// Byte offset in the file.
        public let offsetBytes: Int64
        /// What is wrong there.
        public let problem: String
        /// Corruption (true), or a torn tail that the next open will cut off (false).
        public let isDamage: Bool
    }

    /// Log files verified.
    public var logs = 0
    /// Tables verified (footer, index, filter, properties and every data block).
    public var tables = 0
    /// Data blocks verified.
    public var blocks = 0
    /// Number of the live manifest (0 when there is none yet).
    public var manifest: UInt64 = 0
    /// Records whose every fragment checksum verified and whose batch is well-formed.
    public var records = 0
    /// The last sequence number of the last good record.
    public var lastSequence: UInt64 = 0
    /// Everything that is not as it should be.
    public var findings: [Finding] = []

    /// Whether any finding is damage (corruption), not merely a torn tail.
    public var isDamaged: Bool { findings.contains(where: \.isDamage) }

    public var description: String {
        var lines = ["manifest \(manifest), \(tables) tables, \(blocks) blocks, \(logs) logs, \(records) records, last sequence \(lastSequence)"]
        for finding in findings {
            lines.append("\(finding.isDamage ? "damaged" : "torn tail"): \(finding.path) at offset \(finding.offsetBytes): \(finding.problem)")
        }
        return lines.joined(separator: "\n")
    }
}

/// One verified log record, as `kvctl dump` shows it.
package struct LogRecordView {
    /// One entry of the record's batch.
    package struct Entry {
        package let sequence: UInt64
        package let isPut: Bool
        package let key: [UInt8]
        package let value: [UInt8]
        /// A range delete of [key, value).
        package var isRangeDelete = false
    }

    /// Where the record comes from.
    package enum Source {
        case log
        /// A table of this level (`offsetBytes` is 0: entries come from the whole table).
        case table(level: Int)
        /// A manifest edit, described in one line (no entries).
        case manifest(String)
    }

    package let file: String
    package let offsetBytes: Int64
    package let entries: [Entry]
    package var source: Source = .log
}

extension Database {
    /// Verifies every checksum of every file of the database at `path` without opening it
    /// for writing or changing anything: the identity file, CURRENT and the manifest, every
    /// block of every live table (entries in order), and every fragment and record of every
    /// log the manifest still needs (sequence numbers must follow on from the tables'). A database that is open elsewhere
    /// can be checked; what it is writing at that moment may show as a torn tail.
    public static func check(path: String, options: Options = Options()) throws(KVError) -> CheckReport {
        try check(path: path, options: options, visit: nil)
    }

    /// `check`, handing every verified record to `visit` as it goes (for `kvctl dump`).
    package static func check(
        path: String, options: Options = Options(), visit: ((LogRecordView) -> Void)?,
        progress: ((Int) -> Void)? = nil
    ) throws(KVError) -> CheckReport {
        var filesChecked = 0
        try options.validate()
        let (store, owned) = try options.openStorage()
        defer { owned?.shutdown() }
        guard store.fileExists(atPath: path + "/" + FileNames.identity) else {
            throw KVError(.notADatabase, "no database at \(path)", path: path)
        }
        try Identity.verify(in: path, storage: store)
        var report = CheckReport()
        let names = try io("list \(path)") { try store.contentsOfDirectory(atPath: path) }
        var manifest = ManifestState()
        do throws(KVError) {
            if let number = try CurrentFile.read(directory: path, storage: store) {
                report.manifest = number
                let file = path + "/" + FileNames.manifest(number)
                manifest = try ManifestState.replay(directory: path, number: number, storage: store) { edit, offset in
                    visit?(LogRecordView(file: file, offsetBytes: offset, entries: [], source: .manifest(edit.summary)))
                }
            }
        } catch {
            report.findings.append(.init(path: error.path ?? path, offsetBytes: error.offsetBytes ?? 0, problem: error.message, isDamage: true))
            return report
        }
        let cache = BlockCache(capacityBytes: 0)
        for (level, tables) in manifest.levels.enumerated() {
            for (number, meta) in tables.sorted(by: { $0.key < $1.key }) {
                let file = path + "/" + FileNames.table(number)
                do throws(KVError) {
                    let table = try Table.open(storage: store, directory: path, meta: meta, cache: cache)
                    var entries: [LogRecordView.Entry] = []
                    report.blocks += try table.verifyBlocks(visit: visit == nil ? nil : { key, tag, value in
                        entries.append(.init(
                            sequence: Tag.sequence(tag), isPut: Tag.isPut(tag), key: Array(key), value: Array(value)))
                    })
                    report.tables += 1
                    filesChecked += 1
                    progress?(filesChecked)
                    visit?(LogRecordView(file: file, offsetBytes: 0, entries: entries, source: .table(level: level)))
                } catch {
                    report.findings.append(.init(
                        path: file, offsetBytes: error.offsetBytes ?? 0, problem: "level \(level): \(error.message)", isDamage: true))
                }
            }
        }
        var lastSequence: UInt64 = manifest.lastSequence
        let present = Set(names.compactMap(FileNames.logNumber))
        let live = manifest.tracksLogs ? manifest.liveLogs : []
        // Listed before the manifest was read: a log created since is there now.
        for number in live.subtracting(present).sorted()
        where !store.fileExists(atPath: path + "/" + FileNames.log(number)) {
            report.findings.append(.init(
                path: path + "/" + FileNames.log(number), offsetBytes: 0,
                problem: "missing, but the manifest records it as holding writes not yet in tables", isDamage: true))
        }
        for number in present.sorted() where number >= manifest.logNumber {
            let file = path + "/" + FileNames.log(number)
            if manifest.tracksLogs && !manifest.liveLogs.contains(number) {
                // An open ignores (and a writable one removes) it: it holds no acknowledged write.
                report.findings.append(.init(
                    path: file, offsetBytes: 0,
                    problem: "not recorded in the manifest (left by a log creation or a backup cut short, or created after the manifest was read): not checked, and the next open removes it",
                    isDamage: false))
                continue
            }
            report.logs += 1
            var records = 0
            let result = try LogReader(storage: store, path: file, number: number).replay { record, offset in
                switch Recovery.replayed(record, at: offset, after: lastSequence, tables: manifest.lastSequence) {
                case .failure(let problem):
                    return problem.reason
                case .success(nil):
                    return nil
                case .success(let last?):
                    if let visit {
                        var entries: [LogRecordView.Entry] = []
                        _ = WriteBatch.forEachEntry(in: record) { sequence, type, key, value in
                            entries.append(.init(sequence: sequence, isPut: type == .put, key: Array(key), value: Array(value), isRangeDelete: type == .rangeDelete))
                        }
                        visit(LogRecordView(file: file, offsetBytes: offset, entries: entries))
                    }
                    lastSequence = last
                    records += 1
                    return nil
                }
            }
            report.records += records
            filesChecked += 1
            progress?(filesChecked)
            switch result.verdict(live: live.contains(number)) {
            case .clean:
                break
            case .unfinished(let reason):
                report.findings.append(.init(path: file, offsetBytes: 0, problem: "never finished being created (\(reason))", isDamage: false))
            case .tornTail(let offset, let reason, _):
                report.findings.append(.init(path: file, offsetBytes: offset, problem: reason, isDamage: false))
            case .damaged(let offset, let reason):
                report.findings.append(.init(path: file, offsetBytes: offset, problem: reason, isDamage: true))
            }
        }
        report.lastSequence = lastSequence
        return report
    }
}
