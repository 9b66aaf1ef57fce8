/// The page store's open files, indexed by registered-file slot.
///
/// Slot 0 belongs to the ring's wake-up eventfd; files get slots 1...capacity, lowest
/// free first, and a slot's generation is bumped when it is released so stale handles
/// are refused.
struct FileTable {
    struct Entry {
        let fd: Int32
        let info: FileInfo
    }

    private var entries: [Entry?]
    private var generations: [UInt32]
    private var free: [UInt32]

    init(capacity: Int) {
        entries = Array(repeating: nil, count: capacity + 1)
        generations = Array(repeating: 0, count: capacity + 1)
        free = (1...UInt32(capacity)).reversed()
    }

    var openCount: Int { entries.count - 1 - free.count }

    /// A free slot, or nil when every slot is taken.
    mutating func reserve() -> UInt32? { free.popLast() }

    /// Gives back a reserved slot that was never filled.
    mutating func unreserve(_ slot: UInt32) { free.append(slot) }

    mutating func fill(_ slot: UInt32, _ entry: Entry) -> FileID {
        entries[Int(slot)] = entry
        return FileID(slot: slot, generation: generations[Int(slot)])
    }

    func lookup(_ handle: FileID) -> Entry? {
        let slot = Int(handle.slot)
        guard slot > 0, slot < entries.count, generations[slot] == handle.generation else { return nil }
        return entries[slot]
    }

    /// Empties the slot of `handle`; returns what it held.
    mutating func release(_ handle: FileID) -> Entry? {
        guard let entry = lookup(handle) else { return nil }
        let slot = Int(handle.slot)
        entries[slot] = nil
        generations[slot] &+= 1
        free.append(handle.slot)
        free.sort(by: >)
        return entry
    }

    /// Slot and descriptor of every open file (to register them in a new ring).
    var slots: [(UInt32, Int32)] {
        entries.enumerated().compactMap { index, entry in entry.map { (UInt32(index), $0.fd) } }
    }

    /// Every open entry, for shutdown.
    var all: [Entry] { entries.compactMap { $0 } }
}
