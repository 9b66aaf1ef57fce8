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
            let version = currentView.version
            let level0 = version.levels[0].count
            let pending = pendingCompactionBytes(version)
            if level0 >= options.level0StopTrigger || pending >= options.pendingCompactionStopBytes {
                try checkOpen()
                if let error = backgroundError.withLock({ $0 }) { throw error }
                if stallStarted == nil {
                    stallStarted = DispatchTime.now().uptimeNanoseconds
                    counters.stalls.wrappingIncrement(ordering: .relaxed)
                }
                backgroundThreads?.wakeCompaction()
                if options.inlineBackgroundWork { runInlineWork() }
                usleep(500)
                continue
            }
            if !slowed && (level0 >= options.level0SlowdownTrigger || pending >= options.pendingCompactionSlowdownBytes) {
                slowed = true
                counters.slowdowns.wrappingIncrement(ordering: .relaxed)
                if stallStarted == nil { stallStarted = DispatchTime.now().uptimeNanoseconds }
                usleep(1000)
                continue
            }
            return
        }
    }

    /// Target size of `level` (1...).
    func maxBytes(level: Int) -> Int64 {
        var bytes = options.levelBaseBytes
        for _ in 1..<max(1, level) { bytes = bytes.multipliedReportingOverflow(by: Int64(options.levelMultiplier)).overflow ? .max : bytes * Int64(options.levelMultiplier) }
        return bytes
    }

    /// Bytes compaction is estimated to be behind: level 0 when it is due, and every level's
    /// excess over its target.
    func pendingCompactionBytes(_ version: Version) -> Int64 {
        var pending: Int64 = 0
        if version.levels[0].count >= options.level0CompactionTrigger { pending += version.bytes(atLevel: 0) }
        for level in 1..<(Version.levelCount - 1) {
            pending += max(0, version.bytes(atLevel: level) - maxBytes(level: level))
        }
        return pending
    }
}
