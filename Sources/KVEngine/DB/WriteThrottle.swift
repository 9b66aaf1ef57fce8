import Atomics
import Dispatch
import Foundation
import PageStore
import Synchronization

extension Database {
    /// Delays a write (once, by a millisecond) or holds it while level 0 or the compaction
    /// backlog is too far ahead.
    func makeRoomForWrite() throws(KVError) {
        var slowed = false
        var stallStarted: UInt64? = nil
        defer { if let stallStarted { countStall(since: stallStarted) } }
        while true {
            let seen = changes.generation
            let version = currentView.version
            let level0 = version.levels[0].count
            let pending = picker.pendingBytes(version)
            if level0 >= options.level0StopTrigger || pending >= options.pendingCompactionStopBytes {
                try checkOpen()
                if let error = backgroundError.withLock({ $0 }) { throw error }
                if stallStarted == nil {
                    stallStarted = DispatchTime.now().uptimeNanoseconds
                    counters.stalls.wrappingIncrement(ordering: .relaxed)
                }
                backgroundThreads?.wakeCompaction()
                if options.inlineBackgroundWork { runInlineWork() }
                changes.wait(past: seen, timeoutMs: 50)
                continue
            }
            if !slowed && (level0 >= options.level0SlowdownTrigger || pending >= options.pendingCompactionSlowdownBytes) {
                slowed = true
                counters.slowdowns.wrappingIncrement(ordering: .relaxed)
                if stallStarted == nil { stallStarted = DispatchTime.now().uptimeNanoseconds }
                // A delay, not a poll: one millisecond per write hands the two background
                // threads time before level 0 reaches the stop (LevelDB's slowdown).
                usleep(1000)
                continue
            }
            return
        }
    }
}
