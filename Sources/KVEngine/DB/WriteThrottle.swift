import Atomics
import Dispatch
import Foundation
import PageStore
import Synchronization

extension Database {
    /// Delays a write (once, by a millisecond) or holds it while level 0 or the compaction
    /// backlog is too far ahead.
    func makeRoomForWrite() throws(KVError) {
        let picker = self.picker
        var version = currentView.version
        let slow = { (version: Version) -> Bool in
            version.levels[0].count >= self.options.level0SlowdownTrigger
                || picker.pendingBytes(version) >= self.options.pendingCompactionSlowdownBytes
        }
        // The common case, on every write: room, and no lock taken but the view's.
        guard slow(version) else { return }
        var stallStarted: UInt64? = nil
        defer { if let stallStarted { countStall(since: stallStarted) } }
        let mustStop = { (version: Version) -> Bool in
            version.levels[0].count >= self.options.level0StopTrigger
                || picker.pendingBytes(version) >= self.options.pendingCompactionStopBytes
        }
        let wakeCompaction = { () -> Void in self.backgroundThreads?.wakeCompaction() }
        try waitForBackground(until: { !mustStop(currentView.version) }, wake: wakeCompaction, stall: &stallStarted)
        version = currentView.version
        if slow(version) {
            counters.slowdowns.add()
            if stallStarted == nil { stallStarted = DispatchTime.now().uptimeNanoseconds }
            // A delay, not a poll: one millisecond per write hands the two background
            // threads time before level 0 reaches the stop (LevelDB's slowdown).
            usleep(1000)
            try waitForBackground(until: { !mustStop(currentView.version) }, wake: wakeCompaction, stall: &stallStarted)
        }
    }

    /// Blocks until `isClear()` holds: a state that only background work (a flush, a
    /// compaction) changes. Each round reads the change signal's generation before it
    /// checks, so a change in between is not missed; throws once the database closes or a
    /// background failure stops it; `wake` nudges the thread that can clear the way (with
    /// `inlineBackgroundWork`, this thread does the work). When `counted` (a writer's
    /// stall), a wait is counted once and `stall` set to when it began, if not set before.
    func waitForBackground(until isClear: () -> Bool, wake: () -> Void, stall: inout UInt64?, counted: Bool = true) throws(KVError) {
        if isClear() { return }
        while true {
            let seen = changes.generation
            if isClear() { return }
            try checkOpen()
            if let error = backgroundError.withLock({ $0 }) { throw error }
            if counted && stall == nil {
                stall = DispatchTime.now().uptimeNanoseconds
                counters.stalls.add()
            }
            wake()
            if options.inlineBackgroundWork { runInlineWork() }
            changes.wait(past: seen, timeoutMs: 50)
        }
    }
}
