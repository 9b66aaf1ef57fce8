import Atomics
import Dispatch
import Foundation
import PageStore
import Synchronization

extension Database {
    /// Writes the oldest frozen memtable to a level-0 table and records it (with the log
    /// number after it) in the manifest; then its logs go. Returns false when none waits.
    func flushOldest() throws(KVError) -> Bool {
        guard let frozen = currentView.immutables.last else { return false }
        var edit = VersionEdit()
        edit.logNumber = frozen.nextLogNumber
        edit.lastSequence = frozen.lastSequence
        // Its range deletes join the version (those that cover nothing in tables go at once).
        let rangeDeletes = frozen.memtable.rangeDeleteList
        if frozen.memtable.pointCount > 0 {
            let number = versions.newFileNumber()
            let builder = try TableBuilder(
                storage: storage, directory: path, number: number, expectedBytes: Int64(frozen.memtable.approximateBytes),
                formatVersion: options.tableFormatVersion, compression: options.compression(forLevel: 0), restartInterval: options.blockRestartInterval, cacheFill: (cache, .insert))
            let meta: TableMeta
            do throws(KVError) {
                let walk = frozen.memtable.makeIterator()
                walk.seekToFirst()
                while walk.isValid {
                    try builder.add(walk.key, tag: walk.tag, value: walk.value)
                    walk.next()
                }
                meta = try builder.finish()
            } catch {
                builder.abandon()
                throw error
            }
            try io("sync directory \(path)") { try storage.syncDirectory(atPath: path) }
            edit.added = [VersionEdit.AddedFile(level: 0, meta: meta)]
            counters.flushBytes.add(Int(meta.fileBytes))
        }
        if !rangeDeletes.isEmpty {
            let unneeded = Set(currentView.version.unneededRangeDeletes(removing: [], added: edit.added.map(\.meta), adding: rangeDeletes))
            edit.addedRangeDeletes = rangeDeletes.filter { !unneeded.contains($0) }
        }
        try apply(edit, while: "flush") { version in
            view.withLock { $0 = $0.with(immutables: Array($0.immutables.dropLast()), version: version) }
        }
        counters.flushes.add()
        removeObsoleteLogs(below: frozen.nextLogNumber)
        return true
    }

    /// Removes the logs below `number` (in tables now), but none a checkpoint or backup
    /// in progress copies (`logPins`): those go with a later flush, or when the last copy
    /// of them is done. Under the pins' lock, so that a copy's pin and the state it pins
    /// are taken together (see `pinLogs`).
    ///
    /// With `Options.logRetention`, the newest of them stay while they are within its
    /// bounds (for the change feed).
    func removeObsoleteLogs(below number: UInt64) {
        logPins.withLock { pins in
            let floor = min(number, pins.keys.min() ?? number)
            guard let names = try? storage.contentsOfDirectory(atPath: path) else { return }
            var obsolete = names.compactMap(FileNames.logNumber).filter { $0 < floor }.sorted(by: >)
            if let retention = options.logRetention {
                let now = DispatchTime.now().uptimeNanoseconds
                let closedAt = logsClosedAt.withLock { $0 }
                var kept: Int64 = 0
                while let newest = obsolete.first {
                    let file = path + "/" + FileNames.log(newest)
                    var bytes: Int64 = 0
                    if let handle = try? storage.openFile(atPath: file, mode: .readOnly) {
                        bytes = (try? storage.fileSize(handle)) ?? 0
                        try? storage.closeFile(handle)
                    }
                    let age = Double(now - min(now, closedAt[newest] ?? openedAt)) / 1e9
                    guard kept + bytes <= retention.maxBytes, age <= retention.maxAgeSeconds else { break }
                    kept += bytes
                    obsolete.removeFirst()
                }
            }
            for log in obsolete {
                try? storage.removeFile(atPath: path + "/" + FileNames.log(log))
            }
            if !obsolete.isEmpty { logsClosedAt.withLock { closed in for log in obsolete { closed[log] = nil } } }
        }
    }

    /// At open: removes logs already in tables, tables no version names (a flush or
    /// compaction cut short), manifests other than the live one and leftover temp files.
    func removeObsoleteFiles() {
        // After a manifest failure an edit may name any of them.
        guard versions.failure == nil, let names = try? storage.contentsOfDirectory(atPath: path) else { return }
        let live = Set(versions.current.levels.joined().map(\.number))
        let logNumber = versions.logNumber
        let manifest = versions.manifestNumber
        for name in names {
            let obsolete = switch FileNames.kind(of: name) {
            case .log: false  // below, as a flush removes them (kept per `logRetention`)
            case .table(let number): !live.contains(number)
            case .manifest(let number): number != manifest
            case .temporary(of: FileNames.current): true
            default: false
            }
            if obsolete {
                engineLogger.debug("removing obsolete \(path)/\(name)")
                try? storage.removeFile(atPath: path + "/" + name)
            }
        }
        removeObsoleteLogs(below: min(logNumber, currentView.log?.number ?? logNumber))
    }

    /// Background flushing: flushes while frozen memtables wait.
    func flushWhileDue(stopping: () -> Bool) {
        while !stopping() && backgroundError.withLock({ $0 == nil }) {
            do throws(KVError) {
                guard try flushOldest() else { return }
                backgroundThreads?.wakeCompaction()
            } catch {
                fail(error, while: "flush")
                return
            }
        }
    }
}
