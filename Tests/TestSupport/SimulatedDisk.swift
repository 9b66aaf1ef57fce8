import Foundation
import PageStore
import Synchronization

import KVEngine

/// An in-memory disk behind the engine's `Storage` seam: seeded, deterministic, and as
/// unforgiving as a real disk is allowed to be.
///
/// Per file it keeps a durable image and the operations that completed but are not yet
/// covered by an fsync (writes, size changes). Directory entries (create, rename, remove)
/// are durable only after `syncDirectory` on their directory. `crash()` is a power cut:
/// each unsynced operation is independently persisted, dropped, or torn (a random subset
/// of its 512-byte sectors), per the fault plan; unsynced directory changes are lost. A
/// sector is the unit a device writes atomically: it is found as it was or as written,
/// never half or garbled (garbage in durable data is a fault of its own, between runs). Faults can also fail the N-th write or fsync (EIO,
/// ENOSPC, once or from then on), fail reads of chosen sectors, and flip bits or misdirect
/// pages in durable data between runs.
///
/// Every request is checked for O_DIRECT alignment (512 bytes); a violation is recorded
/// and fails the request, and the harness fails the seed.
package final class SimulatedDisk: Storage, @unchecked Sendable {
    // @unchecked: all mutable state is inside `state` (a Mutex); `allocator` is Sendable.

    package static let sector = 512

    package let allocator: PageAllocator
    private let state: Mutex<State>

    /// What can go wrong, drawn per seed.
    package struct FaultPlan: Sendable {
        package enum TornMode: String, Sendable {
            /// Unsynced operations are persisted or dropped, whole.
            case dropOnly
            /// ... or torn: a random subset of their sectors persisted.
            case torn
        }
        package var tornMode = TornMode.torn
        /// Probability that an unsynced operation survives a crash (whole or torn).
        package var persistProbability = 0.5
        /// Lose unsynced size changes (file growth) whatever happens to the data.
        package var pessimisticSizes = false
        /// The I/O event at which the power is cut (nil: only when the harness says).
        package var cutAtEvent: Int?
        /// Fail the N-th write request (1-based) with this errno.
        package var failWrite: (n: Int, errno: Int32, persistent: Bool)?
        /// Fail the N-th fsync (1-based) with this errno.
        package var failSync: (n: Int, errno: Int32, persistent: Bool)?
        /// Probability that a submitted request is held back, to be carried out and
        /// completed later, in random order with the others held back.
        package var deferProbability = 0.0
        /// For named cases: every unsynced write keeps exactly its first N sectors (and
        /// every unsynced size change persists), instead of the random choices above.
        package var keepOnlyFirstSectors: Int?

        /// The defaults above: no fault is injected and nothing held back; at a power cut,
        /// half of what is unsynced survives, whole or torn.
        package init() {}
    }

    private enum PendingOp {
        case write(offset: Int, data: [UInt8])
        case resize(Int)
    }

    private struct Inode {
        var durable: [UInt8] = []
        var volatile: [UInt8] = []
        var pending: [PendingOp] = []
    }

    private struct State {
        var random: SplitMix
        var plan: FaultPlan
        var inodes: [Int: Inode] = [:]
        var nextInode = 1
        /// Path -> inode as the running system sees it, and as it would survive a crash.
        var names: [String: Int] = [:]
        var durableNames: [String: Int] = [:]
        var directories: Set<String> = ["/"]
        var durableDirectories: Set<String> = ["/"]
        var open: [UInt32: (inode: Int, path: String)] = [:]
        var nextSlot: UInt32 = 1
        var events = 0
        var writes = 0
        var syncs = 0
        var crashed = false
        var badSectors: Set<String> = []
        var violations: [String] = []
        var faultsInjected = 0
        /// Requests submitted and not yet carried out: in flight.
        var deferred: [Deferred] = []
        var delivering = false
        var deferredTotal = 0
        /// Faults armed by `failNext`, in order: the first fails the next matching event.
        var armed: [ArmedFault] = []
        /// Bytes the files may hold in all (nil: no limit); see `setCapacity`.
        var capacityBytes: Int?
    }

    /// One event to fail: `operation` as events name it ("write", "fdatasync", "fsync",
    /// "rename", "fsync directory", "unlink", ...) on a path containing `path`.
    package struct ArmedFault {
        package let operation: String
        package let path: String
        package let errno: Int32
        /// When set, the fault is armed only once an event matching this has happened.
        package var after: (operation: String, path: String)?
    }

    private struct Deferred {
        let request: IORequest
        let completion: @Sendable (IOResult) -> Void
    }

    /// A fresh, empty disk with `directories` already durable.
    package init(seed: UInt64, plan: FaultPlan, directories: [String]) throws {
        allocator = try PageAllocator(arenaBytes: 16 << 20)
        var initial = State(random: SplitMix(seed: seed), plan: plan)
        for directory in directories {
            initial.directories.insert(directory)
            initial.durableDirectories.insert(directory)
        }
        state = Mutex(initial)
    }

    private init(allocator: PageAllocator, state: State) {
        self.allocator = allocator
        self.state = Mutex(state)
    }

    // MARK: the harness's view

    /// Requests that broke O_DIRECT alignment (must stay empty).
    package var violations: [String] { state.withLock { $0.violations } }
    /// I/O events so far.
    package var events: Int { state.withLock { $0.events } }
    /// Faults injected so far (failed writes and fsyncs, bad-sector reads).
    package var faultsInjected: Int { state.withLock { $0.faultsInjected } }
    /// Whether the power has been cut.
    package var crashed: Bool { state.withLock { $0.crashed } }
    /// Requests that were held back and completed out of line.
    package var deferredTotal: Int { state.withLock { $0.deferredTotal } }

    /// Cuts the power now: later requests fail with EIO, as if the machine were gone.
    package func cutPower() { state.withLock { $0.crashed = true } }

    /// Fails the next `operation` on a path containing `path` with `errno` (once); with
    /// `after`, only one that follows an event matching it. A failed write writes nothing;
    /// a failed fdatasync leaves its file's unsynced writes pending (a crash decides them).
    package func failNext(_ operation: String, pathContaining path: String, errno: Int32 = EIO, after: (operation: String, path: String)? = nil) {
        state.withLock { $0.armed.append(ArmedFault(operation: operation, path: path, errno: errno, after: after)) }
    }

    /// Faults armed by `failNext` that have not fired yet.
    package var armedFaults: Int { state.withLock { $0.armed.count } }

    /// Drops the faults armed by `failNext` that have not fired.
    package func disarmFaults() { state.withLock { $0.armed.removeAll() } }

    /// The disk as it comes back after the power cut, with a new fault plan: every
    /// unsynced operation resolved per the old plan, unsynced directory changes lost.
    package func restarted(plan: FaultPlan, seed: UInt64) -> SimulatedDisk {
        state.withLock { old in
            var next = State(random: SplitMix(seed: seed), plan: plan)
            next.directories = old.durableDirectories
            next.durableDirectories = old.durableDirectories
            next.names = old.durableNames
            next.durableNames = old.durableNames
            next.nextInode = old.nextInode
            next.badSectors = []
            // Sorted: Set order varies between processes, and the draws must not.
            for inodeNumber in Set(old.durableNames.values).sorted() {
                guard let inode = old.inodes[inodeNumber] else { continue }
                var image = inode.durable
                for op in inode.pending {
                    SimulatedDisk.resolve(op, into: &image, durableSize: inode.durable.count, &old)
                }
                next.inodes[inodeNumber] = Inode(durable: image, volatile: image, pending: [])
            }
            return SimulatedDisk(allocator: allocator, state: next)
        }
    }

    /// What one unsynced operation leaves on the platter after a power cut.
    private static func resolve(_ op: PendingOp, into image: inout [UInt8], durableSize: Int, _ state: inout State) {
        if let keep = state.plan.keepOnlyFirstSectors {
            switch op {
            case .resize(let size):
                image = Array(image.prefix(size)) + [UInt8](repeating: 0, count: max(0, size - image.count))
            case .write(let offset, let data):
                let end = min(data.count, keep * sector)
                if image.count < offset + end { image += [UInt8](repeating: 0, count: offset + end - image.count) }
                image.replaceSubrange(offset..<(offset + end), with: data[0..<end])
            }
            return
        }
        guard state.random.chance(state.plan.persistProbability) else { return }
        switch op {
        case .resize(let size):
            if state.plan.pessimisticSizes && size > image.count { return }
            image = Array(image.prefix(size)) + [UInt8](repeating: 0, count: max(0, size - image.count))
        case .write(let offset, let data):
            let sectors = (data.count + sector - 1) / sector
            var keep = [Bool](repeating: true, count: sectors)
            if state.plan.tornMode == .torn && state.random.chance(0.5) {
                keep = keep.map { _ in state.random.chance(0.5) }
            }
            for index in 0..<sectors where keep[index] {
                let start = offset + index * sector
                let end = min(start + sector, offset + data.count)
                if state.plan.pessimisticSizes && end > max(durableSize, image.count) { continue }
                if image.count < end { image += [UInt8](repeating: 0, count: end - image.count) }
                image.replaceSubrange(start..<end, with: data[(start - offset)..<(end - offset)])
            }
        }
    }

    /// Flips `count` random bits in durable files whose names pass `filter`; returns what
    /// was flipped (for the failure message).
    package func flipBits(_ count: Int, in filter: (String) -> Bool) -> [String] {
        state.withLock { state in
            var done: [String] = []
            let candidates = state.names.filter { filter($0.key) && !(state.inodes[$0.value]?.durable.isEmpty ?? true) }
                .sorted { $0.key < $1.key }
            guard !candidates.isEmpty else { return done }
            for _ in 0..<count {
                let (path, inode) = candidates[state.random.below(candidates.count)]
                let size = state.inodes[inode]!.durable.count
                let offset = state.random.below(size)
                let bit = UInt8(1) << UInt8(state.random.below(8))
                state.inodes[inode]!.durable[offset] ^= bit
                state.inodes[inode]!.volatile = state.inodes[inode]!.durable
                done.append("\(path)@\(offset)^\(bit)")
            }
            return done
        }
    }

    /// Copies one 4 KiB page of a durable file over another page of the same file.
    package func misdirectPage(in filter: (String) -> Bool) -> String? {
        state.withLock { state in
            let candidates = state.names.filter { filter($0.key) && (state.inodes[$0.value]?.durable.count ?? 0) >= 8192 }
                .sorted { $0.key < $1.key }
            guard !candidates.isEmpty else { return nil }
            let (path, inode) = candidates[state.random.below(candidates.count)]
            let pages = state.inodes[inode]!.durable.count / 4096
            let source = state.random.below(pages)
            let target = state.random.below(pages)
            let bytes = Array(state.inodes[inode]!.durable[(source * 4096)..<((source + 1) * 4096)])
            state.inodes[inode]!.durable.replaceSubrange((target * 4096)..<((target + 1) * 4096), with: bytes)
            state.inodes[inode]!.volatile = state.inodes[inode]!.durable
            return "\(path): page \(source) written over page \(target)"
        }
    }

    /// Makes the disk hold at most `bytes` in all its files (nil: no limit): a write,
    /// fallocate or truncation that would grow them past it fails with ENOSPC and changes
    /// nothing; writes within files already that large go on.
    package func setCapacity(_ bytes: Int?) { state.withLock { $0.capacityBytes = bytes } }

    /// Bytes the files hold (named or still open).
    package var usedBytes: Int { state.withLock { SimulatedDisk.used($0) } }

    private static func used(_ state: State) -> Int {
        let live = Set(state.names.values).union(state.open.values.map(\.inode))
        return live.reduce(0) { $0 + (state.inodes[$1]?.volatile.count ?? 0) }
    }

    private static func checkRoom(_ state: inout State, inode: Int, size: Int, _ operation: String, _ path: String) throws {
        guard let capacity = state.capacityBytes else { return }
        let growth = size - (state.inodes[inode]?.volatile.count ?? 0)
        if growth > 0 && used(state) + growth > capacity {
            state.faultsInjected += 1
            throw PageStoreError.io(operation, path: path, errno: ENOSPC)
        }
    }

    /// Writes random bytes over part of a durable file: one unaligned run of up to 64
    /// bytes, one 512-byte sector, or one 4 KiB page, at a random place.
    package func overwriteWithGarbage(in filter: (String) -> Bool) -> String? {
        state.withLock { state in
            let candidates = state.names.filter { filter($0.key) && (state.inodes[$0.value]?.durable.count ?? 0) > 0 }
                .sorted { $0.key < $1.key }
            guard !candidates.isEmpty else { return nil }
            let (path, inode) = candidates[state.random.below(candidates.count)]
            let size = state.inodes[inode]!.durable.count
            let (offset, count): (Int, Int)
            switch state.random.below(3) {
            case 0:
                offset = state.random.below(size)
                count = min(1 + state.random.below(64), size - offset)
            case 1:
                offset = state.random.below((size + SimulatedDisk.sector - 1) / SimulatedDisk.sector) * SimulatedDisk.sector
                count = min(SimulatedDisk.sector, size - offset)
            default:
                offset = state.random.below((size + 4095) / 4096) * 4096
                count = min(4096, size - offset)
            }
            for position in offset..<(offset + count) {
                state.inodes[inode]!.durable[position] = UInt8(truncatingIfNeeded: state.random.next())
            }
            state.inodes[inode]!.volatile = state.inodes[inode]!.durable
            return "\(path): \(count) random bytes at offset \(offset)"
        }
    }

    /// Zeroes 4 KiB page `page` of the first durable file matching `filter`.
    package func zeroPage(_ page: Int, in filter: (String) -> Bool) -> String? {
        state.withLock { state in
            guard let (path, inode) = state.names.filter({ filter($0.key) }).sorted(by: { $0.key < $1.key }).first,
                state.inodes[inode]!.durable.count >= (page + 1) * 4096
            else { return nil }
            state.inodes[inode]!.durable.replaceSubrange((page * 4096)..<((page + 1) * 4096), with: [UInt8](repeating: 0, count: 4096))
            state.inodes[inode]!.volatile = state.inodes[inode]!.durable
            return "\(path): page \(page) zeroed"
        }
    }

    /// Makes reads of one random sector of a matching file fail with EIO.
    package func addBadSector(in filter: (String) -> Bool) -> String? {
        state.withLock { state in
            let candidates = state.names.filter { filter($0.key) && (state.inodes[$0.value]?.durable.count ?? 0) > 0 }
                .sorted { $0.key < $1.key }
            guard !candidates.isEmpty else { return nil }
            let (path, inode) = candidates[state.random.below(candidates.count)]
            let sector = state.random.below(state.inodes[inode]!.durable.count / SimulatedDisk.sector + 1)
            state.badSectors.insert("\(inode):\(sector)")
            return "\(path): sector \(sector)"
        }
    }

    // MARK: Storage

    package func openFile(atPath path: String, mode: FileOpenMode) throws -> FileID {
        try state.withLock { state in
            try SimulatedDisk.event(&state, "open", path)
            var inode = state.names[path]
            if inode != nil && mode.create && mode.exclusive {
                throw PageStoreError.io("open", path: path, errno: EEXIST)
            }
            if inode == nil {
                guard mode.create else { throw PageStoreError.io("open", path: path, errno: ENOENT) }
                guard state.directories.contains(SimulatedDisk.parent(of: path)) else {
                    throw PageStoreError.io("open", path: path, errno: ENOENT)
                }
                inode = state.nextInode
                state.nextInode += 1
                state.inodes[inode!] = Inode()
                state.names[path] = inode
            }
            let slot = state.nextSlot
            state.nextSlot += 1
            state.open[slot] = (inode!, path)
            return FileID(slot: slot, generation: 0)
        }
    }

    package func closeFile(_ file: FileID) throws {
        _ = state.withLock { $0.open.removeValue(forKey: file.slot) }
    }

    package func fileInfo(_ file: FileID) throws -> FileInfo {
        let path = try state.withLock { state in try SimulatedDisk.opened(state, file).1 }
        return FileInfo(
            path: path, alignment: FileAlignment(memoryBytes: 512, offsetBytes: 512, source: .assumed), directIO: true)
    }

    package func fileSize(_ file: FileID) throws -> Int64 {
        try state.withLock { state in
            let (inode, _) = try SimulatedDisk.opened(state, file)
            return Int64(state.inodes[inode]!.volatile.count)
        }
    }

    package func truncateFile(_ file: FileID, toBytes size: Int64) throws {
        try state.withLock { state in
            let (inode, path) = try SimulatedDisk.opened(state, file)
            try SimulatedDisk.event(&state, "ftruncate", path)
            try SimulatedDisk.checkRoom(&state, inode: inode, size: Int(size), "ftruncate", path)
            SimulatedDisk.resize(&state.inodes[inode]!, Int(size))
        }
    }

    package func submit(_ request: IORequest, completion: @escaping @Sendable (IOResult) -> Void) {
        deliver(all: false)
        let held = state.withLock { state -> Bool in
            SimulatedDisk.checkOverlap(request, &state)
            guard !state.crashed, state.random.chance(state.plan.deferProbability) else { return false }
            state.deferred.append(Deferred(request: request, completion: completion))
            state.deferredTotal += 1
            return true
        }
        if !held { completion(execute(request)) }
    }

    package func performBlocking(_ request: IORequest) throws -> Int {
        deliver(all: false)
        state.withLock { SimulatedDisk.checkOverlap(request, &$0) }
        return try execute(request).get()
    }

    package func willWait() { deliver(all: true) }

    private func execute(_ request: IORequest) -> IOResult {
        do {
            return .success(try state.withLock { state in try SimulatedDisk.perform(request, &state) })
        } catch {
            return .failure(error as! PageStoreError)
        }
    }

    /// Carries out held-back requests in random order (all of them, or a random number)
    /// and delivers their completions. Not re-entered from a completion.
    private func deliver(all: Bool) {
        let started = state.withLock { state -> Bool in
            guard !state.delivering, !state.deferred.isEmpty else { return false }
            state.delivering = true
            return true
        }
        guard started else { return }
        var budget = state.withLock { all ? Int.max : $0.random.below($0.deferred.count + 1) }
        while budget > 0 {
            let next = state.withLock { state -> Deferred? in
                guard !state.deferred.isEmpty else { return nil }
                return state.deferred.remove(at: state.random.below(state.deferred.count))
            }
            guard let next else { break }
            next.completion(execute(next.request))
            budget -= 1
        }
        state.withLock { $0.delivering = false }
        // Completions may have submitted more; when asked for everything, finish those too.
        if all && state.withLock({ !$0.deferred.isEmpty }) { deliver(all: true) }
    }

    /// Records a violation when `request` writes bytes that a request in flight also writes.
    private static func checkOverlap(_ request: IORequest, _ state: inout State) {
        func ranges(_ request: IORequest) -> [(Int, Range<Int64>)] {
            guard let inode = state.open[request.file.slot]?.inode else { return [] }
            switch request {
            case .write(_, let segments), .commit(_, let segments):
                return segments.map { (inode, $0.offsetBytes..<($0.offsetBytes + Int64($0.buffer.count))) }
            default:
                return []
            }
        }
        let mine = ranges(request)
        guard !mine.isEmpty else { return }
        for other in state.deferred {
            for (inode, range) in ranges(other.request) where mine.contains(where: { $0.0 == inode && $0.1.overlaps(range) }) {
                state.violations.append("two writes in flight overlap: \(request.operationName) and \(other.request.operationName) at \(range)")
            }
        }
    }

    package func syncDirectory(atPath path: String) throws {
        try state.withLock { state in
            try SimulatedDisk.event(&state, "fsync directory", path)
            for (name, inode) in state.names where SimulatedDisk.parent(of: name) == path {
                state.durableNames[name] = inode
            }
            for name in state.durableNames.keys where SimulatedDisk.parent(of: name) == path && state.names[name] == nil {
                state.durableNames[name] = nil
            }
            for directory in state.directories where SimulatedDisk.parent(of: directory) == path {
                state.durableDirectories.insert(directory)
            }
        }
    }

    package func renameFile(atPath source: String, toPath target: String) throws {
        try state.withLock { state in
            try SimulatedDisk.event(&state, "rename", source)
            guard let inode = state.names.removeValue(forKey: source) else {
                throw PageStoreError.io("rename", path: source, errno: ENOENT)
            }
            state.names[target] = inode
        }
    }

    package func linkFile(atPath source: String, toPath target: String) throws {
        try state.withLock { state in
            try SimulatedDisk.event(&state, "link", source)
            guard let inode = state.names[source] else { throw PageStoreError.io("link", path: source, errno: ENOENT) }
            guard state.names[target] == nil, !state.directories.contains(target) else {
                throw PageStoreError.io("link", path: target, errno: EEXIST)
            }
            guard state.directories.contains(SimulatedDisk.parent(of: target)) else {
                throw PageStoreError.io("link", path: target, errno: ENOENT)
            }
            state.names[target] = inode
        }
    }

    package func removeFile(atPath path: String) throws {
        try state.withLock { state in
            try SimulatedDisk.event(&state, "unlink", path)
            guard state.names.removeValue(forKey: path) != nil else {
                throw PageStoreError.io("unlink", path: path, errno: ENOENT)
            }
        }
    }

    package func createDirectory(atPath path: String) throws {
        try state.withLock { state in
            try SimulatedDisk.event(&state, "mkdir", path)
            guard state.directories.contains(SimulatedDisk.parent(of: path)) else {
                throw PageStoreError.io("mkdir", path: path, errno: ENOENT)
            }
            state.directories.insert(path)
        }
    }

    package func contentsOfDirectory(atPath path: String) throws -> [String] {
        try state.withLock { state in
            guard state.directories.contains(path) else { throw PageStoreError.io("opendir", path: path, errno: ENOTDIR) }
            let files = state.names.keys.filter { SimulatedDisk.parent(of: $0) == path }
            let directories = state.directories.filter { $0 != path && SimulatedDisk.parent(of: $0) == path }
            return (files + directories).map { String($0.dropFirst(path.count + 1)) }.sorted()
        }
    }

    package func fileExists(atPath path: String) -> Bool {
        state.withLock { $0.names[path] != nil || $0.directories.contains(path) }
    }

    /// Locks held, by path: -1 exclusive, else the number of shared holders. Kept apart
    /// from the files (no LOCK file is written, so locking adds no event to a run) and
    /// lost with the power, as `flock` locks are.
    private let locks = LockTable()

    private final class LockTable: Sendable {
        let held = Mutex<[String: Int]>([:])
    }

    package func lockFile(atPath path: String, shared: Bool, holder: String) throws -> (any FileLock)? {
        try locks.held.withLock { locks in
            let held = locks[path] ?? 0
            guard held == 0 || (shared && held > 0) else { throw FileLockConflict(path: path, holder: nil) }
            locks[path] = shared ? held + 1 : -1
        }
        return SimulatedLock { [locks] in
            locks.held.withLock { locks in
                let left = shared ? (locks[path] ?? 1) - 1 : 0
                locks[path] = left > 0 ? left : nil
            }
        }
    }

    private final class SimulatedLock: FileLock, @unchecked Sendable {
        // @unchecked: `unlock` is taken out under its mutex, once.
        private let unlock: Mutex<(@Sendable () -> Void)?>

        init(_ unlock: @escaping @Sendable () -> Void) { self.unlock = Mutex(unlock) }

        func release() { unlock.withLock { taken in defer { taken = nil }; return taken }?() }

        deinit { release() }
    }

    // MARK: internals

    private static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    private static func opened(_ state: State, _ file: FileID) throws -> (Int, String) {
        guard let entry = state.open[file.slot] else {
            throw PageStoreError(kind: .invalidArgument, operation: "file", detail: "\(file) is not open")
        }
        return entry
    }

    /// Counts an I/O event; cuts the power when the plan says so; fails once it is cut.
    private static func event(_ state: inout State, _ operation: String, _ path: String) throws {
        state.events += 1
        if let cut = state.plan.cutAtEvent, state.events >= cut { state.crashed = true }
        if state.crashed {
            throw PageStoreError(kind: .io, operation: operation, path: path, errno: EIO, detail: "power cut (simulated)")
        }
        guard let first = state.armed.first else { return }
        if let after = first.after {
            if after.operation == operation && path.contains(after.path) { state.armed[0].after = nil }
            return
        }
        if first.operation == operation && path.contains(first.path) {
            state.armed.removeFirst()
            state.faultsInjected += 1
            throw PageStoreError.io(operation, path: path, errno: first.errno)
        }
    }

    private static func resize(_ inode: inout Inode, _ size: Int) {
        if size < inode.volatile.count {
            inode.volatile.removeSubrange(size...)
        } else {
            inode.volatile += [UInt8](repeating: 0, count: size - inode.volatile.count)
        }
        inode.pending.append(.resize(size))
    }

    private static func perform(_ request: IORequest, _ state: inout State) throws -> Int {
        let (inode, path) = try opened(state, request.file)
        try event(&state, request.operationName, path)
        do {
            try request.validate(alignment: FileAlignment(memoryBytes: 512, offsetBytes: 512, source: .assumed), path: path)
        } catch {
            state.violations.append("\(error)")
            throw error
        }
        switch request {
        case .read(_, let segment):
            let image = state.inodes[inode]!.volatile
            let start = Int(segment.offsetBytes)
            let end = min(image.count, start + segment.buffer.count)
            guard start < end else { return 0 }
            for sector in (start / sector)...((end - 1) / sector) where state.badSectors.contains("\(inode):\(sector)") {
                state.faultsInjected += 1
                throw PageStoreError.io("read", path: path, offsetBytes: Int64(sector * SimulatedDisk.sector), errno: EIO)
            }
            image[start..<end].withUnsafeBytes { segment.buffer.base.copyMemory(from: $0.baseAddress!, byteCount: end - start) }
            return end - start
        case .write(_, let segments):
            return try segments.reduce(0) { $0 + (try write($1, inode, path, &state)) }
        case .commit(_, let segments):
            let total = try segments.reduce(0) { $0 + (try write($1, inode, path, &state)) }
            try sync(inode, path, &state)
            return total
        case .sync:
            try sync(inode, path, &state)
            return 0
        case .allocate(_, let offset, let length):
            try checkRoom(&state, inode: inode, size: Int(offset + length), "fallocate", path)
            if Int(offset + length) > state.inodes[inode]!.volatile.count {
                resize(&state.inodes[inode]!, Int(offset + length))
            }
            return 0
        }
    }

    private static func write(_ segment: IOSegment, _ inode: Int, _ path: String, _ state: inout State) throws -> Int {
        // Each write of a chain is an event of its own: the power may go between them.
        try event(&state, "write", path)
        state.writes += 1
        if let fault = state.plan.failWrite, state.writes == fault.n || (fault.persistent && state.writes > fault.n) {
            state.faultsInjected += 1
            // A failed write may have written some of its sectors (a short write) first.
            let sectors = state.random.below(segment.buffer.count / sector + 1)
            if sectors > 0 {
                apply(IOSegment(offsetBytes: segment.offsetBytes, buffer: segment.buffer.slice(offset: 0, count: sectors * sector)), inode, &state)
            }
            throw PageStoreError.io("write", path: path, offsetBytes: segment.offsetBytes + Int64(sectors * sector), errno: fault.errno)
        }
        try checkRoom(&state, inode: inode, size: Int(segment.offsetBytes) + segment.buffer.count, "write", path)
        apply(segment, inode, &state)
        return segment.buffer.count
    }

    private static func apply(_ segment: IOSegment, _ inode: Int, _ state: inout State) {
        let data = Array(UnsafeRawBufferPointer(segment.buffer.bytes))
        let offset = Int(segment.offsetBytes)
        // In place: a copy of the inode would copy the whole file image on every write.
        let size = state.inodes[inode]!.volatile.count
        if size < offset + data.count {
            state.inodes[inode]!.volatile += [UInt8](repeating: 0, count: offset + data.count - size)
        }
        state.inodes[inode]!.volatile.replaceSubrange(offset..<(offset + data.count), with: data)
        state.inodes[inode]!.pending.append(.write(offset: offset, data: data))
    }

    private static func sync(_ inode: Int, _ path: String, _ state: inout State) throws {
        try event(&state, "fdatasync", path)
        state.syncs += 1
        if let fault = state.plan.failSync, state.syncs == fault.n || (fault.persistent && state.syncs > fault.n) {
            // The pending operations stay pending: a crash may keep or lose each of them.
            state.faultsInjected += 1
            throw PageStoreError.io("fdatasync", path: path, errno: fault.errno)
        }
        var file = state.inodes[inode]!
        file.durable = file.volatile
        file.pending.removeAll()
        state.inodes[inode] = file
    }
}
