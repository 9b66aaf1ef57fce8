import Atomics
import Dispatch
import Foundation
import PageStore
import Synchronization

extension Database {
    /// Makes every acknowledged write durable, closes the files and releases the lock.
    /// A flush or compaction in progress finishes first; memtables not yet flushed stay in
    /// their logs and are replayed at the next open. Later calls fail with `.closed`.
    /// Calling it again does nothing.
    public func close() throws(KVError) {
        let wasOpen = !closed.exchange(true, ordering: .acquiringAndReleasing)
        guard wasOpen else { return }
        changes.signal()  // writers waiting for room see the close
        flusher?.stop()
        backgroundThreads?.stop()
        var failure: KVError?
        // No rotation can start now (writers see `closed`); wait out one in progress.
        rotation.withLock { _ in }
        if let log = currentView.log {
            log.beginClose()
            do { try makeDurable(log) } catch { failure = error }
            do { try log.close() } catch { failure = failure ?? error }
            if options.flushOnClose && failure == nil && backgroundError.withLock({ $0 }) == nil {
                let idle = currentView.memtable.count == 0 && currentView.immutables.isEmpty
                do {
                    try flushAtClose(log)
                } catch where idle && error.isFull {
                    // Only an empty log to remove: nothing is lost by keeping it.
                } catch {
                    failure = error
                }
            }
        }
        versions.close()
        // Tables close when the last view, cursor or snapshot that holds them goes.
        view.withLock { $0 = View(log: nil, memtable: Memtable(), immutables: [], version: Version(), readOnlySequence: 0) }
        ownedStore?.shutdown()
        lock.release()
        if let failure { throw failure }
    }

    /// A clean close leaves no log: what the memtables hold goes into level-0 tables and
    /// the logs are removed, so the next open replays nothing, and every acknowledged write
    /// sits in checksummed table blocks (a log's last chain is the one place where damage
    /// that resets bytes to zero can pass for a write that never arrived). When this fails,
    /// the log stays and the next open replays it.
    private func flushAtClose(_ log: LogWriter) throws(KVError) {
        // The view's memtable, which is the log's but after an ingest or a resume that
        // stopped between retiring a log and starting the next (the log's is frozen then).
        let frozen = FrozenMemtable(memtable: currentView.memtable, nextLogNumber: versions.newFileNumber(),
            lastSequence: max(log.lastSequence, versions.lastSequence))
        view.withLock { $0 = $0.with(memtable: Memtable(), immutables: [frozen] + $0.immutables) }
        while try flushOldest() {}
    }

    func checkOpen() throws(KVError) {
        if closed.load(ordering: .acquiring) { throw KVError(.closed, "database at \(path) is closed", path: path) }
    }
}
