import Atomics
import Dispatch
import Foundation
import PageStore
import Synchronization

extension Database {
    /// Freezes the memtable of `old` and starts a new log and memtable: the old log is
    /// made wholly durable and closed first, so the next log's records always follow a
    /// complete one (recovery requires sequence numbers without gaps across logs).
    /// Waits while `maxFrozenMemtables` memtables already wait for their flush.
    func rotate(from old: LogWriter) throws(KVError) {
        try rotation.withLock { (_: inout Void) throws(KVError) in
            guard currentView.log === old else { return }
            // After a failure (a log that could not be recorded, say) no new log is started.
            if let error = backgroundError.withLock({ $0 }) { throw error }
            var stallStarted: UInt64? = nil
            defer { if let stallStarted { countStall(since: stallStarted) } }
            if options.inlineBackgroundWork { runInlineWork() }
            try waitForBackground(
                until: { currentView.immutables.count < options.maxFrozenMemtables },
                wake: { backgroundThreads?.wakeFlush() }, stall: &stallStarted)
            try checkOpen()
            try retire(old)
            let number = versions.newFileNumber()
            let frozen = FrozenMemtable(memtable: old.memtable, nextLogNumber: number, lastSequence: old.lastSequence)
            try startLog(number, lastSequence: old.lastSequence, freezing: frozen)
            backgroundThreads?.wakeFlush()
            if options.inlineBackgroundWork { runInlineWork() }
        }
    }

    /// Seals `old` (appends turn to the next log), makes it wholly durable and closes it.
    /// Called with `rotation` held.
    func retire(_ old: LogWriter) throws(KVError) {
        old.seal()
        try makeDurable(old)
        try close(old)
        let now = DispatchTime.now().uptimeNanoseconds
        logsClosedAt.withLock { $0[old.number] = now }
    }

    /// Closes a sealed log (after its chains in flight land, cut at its durable end); a
    /// failure stops writes. Called with `rotation` held.
    func close(_ old: LogWriter) throws(KVError) {
        old.beginClose()
        do throws(KVError) {
            try old.close()
        } catch {
            // The sealed log stays current and takes nothing more: writes fail with this.
            fail(error, while: "close log \(old.number)")
            throw error
        }
    }

    /// Starts log `number` and a fresh memtable after a retired log whose records end at
    /// `lastSequence`, records the log in the manifest and installs both (with `frozen`
    /// joining the memtables that wait for their flush). Called with `rotation` held.
    func startLog(_ number: UInt64, lastSequence: UInt64, freezing frozen: FrozenMemtable?) throws(KVError) {
        let memtable = Memtable(filterBytes: MemtableFilter.bytes(forMemtable: options.memtableBytes))
        let log: LogWriter
        do throws(KVError) {
            log = try LogWriter.create(
                directory: path, number: number, storage: storage, memtable: memtable,
                lastSequence: lastSequence, options: options, counters: counters, feed: feedSignal)
        } catch {
            // Recorded nowhere yet: what was made of it goes (a later try starts it again).
            try? storage.removeFile(atPath: path + "/" + FileNames.log(number))
            fail(error, while: "start log \(number)")
            throw error
        }
        // Recorded before any write in it is acknowledged: from then on recovery
        // requires the log, and treats a header that does not verify as damage.
        do throws(KVError) {
            var edit = VersionEdit()
            edit.createdLogs = [number]
            try apply(edit, while: "record log \(number)") { _ in }
        } catch {
            // `apply` has stopped writes: an edit that adds no table fails only in the manifest.
            log.beginClose()
            try? log.close()
            throw error
        }
        view.withLock { $0 = $0.with(log: log, memtable: memtable, immutables: (frozen.map { [$0] } ?? []) + $0.immutables) }
        feedSignal.signal()  // feeds reading the old log to its durable end read it to its end
    }

    /// Waits until no frozen memtable waits for its flush (the flush thread writes them;
    /// with `inlineBackgroundWork`, this thread).
    func waitForFlushes() throws(KVError) {
        var unused: UInt64? = nil
        try waitForBackground(
            until: { currentView.immutables.isEmpty }, wake: { backgroundThreads?.wakeFlush() }, stall: &unused, counted: false)
    }

    /// With `inlineBackgroundWork`: the flushes and compactions due, on this thread.
    func runInlineWork() {
        flushWhileDue(stopping: { false })
        compactWhileDue(stopping: { false })
    }

    /// Applies `edit` to the version set; a manifest failure stops the database's writes
    /// (`fail`): the version set accepts no edit after one, so nor may anything else.
    func apply(_ edit: VersionEdit, while action: String, install: (Version) -> Void) throws(KVError) {
        do throws(KVError) {
            try versions.apply(edit, install: install)
            changes.signal()
        } catch {
            if versions.failure != nil { fail(error, while: action) }
            throw error
        }
    }

    /// Applies `edit`, which adds the just written `tables`, and installs its version. If
    /// it fails before any manifest failure (the edit was never written), the tables go;
    /// after one they stay, as the edit naming them may be durable (the next open removes
    /// them if no version names them).
    func apply(_ edit: VersionEdit, adding tables: [TableMeta], while action: String) throws(KVError) {
        do throws(KVError) {
            try apply(edit, while: action) { version in view.withLock { $0 = $0.with(version: version) } }
        } catch {
            if versions.failure == nil { removeTables(tables) }
            throw error
        }
    }

    /// Removes the files of tables no version names (written, then not installed).
    func removeTables(_ tables: [TableMeta]) {
        for meta in tables { try? storage.removeFile(atPath: path + "/" + FileNames.table(meta.number)) }
    }

    /// Records the first background failure: writes fail with it until reopened (or, for
    /// a full disk, until a write finds room again: `resumeAfterFullDisk`).
    func fail(_ error: KVError, while action: String) {
        let first = backgroundError.withLock { current -> Bool in
            guard current == nil else { return false }
            let until = error.isFull ? "there is room again"
                : error.code == .corruption ? "the damage is repaired (kvctl check names it; kvctl salvage rebuilds what verifies)"
                : "the database is reopened"
            current = KVError(error.code, "\(action) failed, writes are refused until \(until): \(error.message)",
                              path: error.path, offsetBytes: error.offsetBytes)
            return true
        }
        if first {
            hasBackgroundError.store(true, ordering: .releasing)
            changes.signal()
            engineLogger.error("\(path): \(action) failed: \(error)")
        }
    }

    func countStall(since started: UInt64) {
        let micros = Int((DispatchTime.now().uptimeNanoseconds - started) / 1000)
        counters.stallMicros.add(micros)
    }
}
