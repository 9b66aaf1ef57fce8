/// The oracle of a metamorphic run: what every read must return.
///
/// An ordered map of the acknowledged state, a copy of it per live snapshot, the expected
/// entries of every open cursor, and enough history to judge a crash: the state at the
/// last point known durable and the state after each buffered commit since (a power cut
/// may keep any prefix of those, never less than the durable point, never a part of one).
struct MetaModel {
    typealias State = [[UInt8]: [UInt8]]

    private(set) var state: State = [:]
    private(set) var snapshots: [Int: State] = [:]
    private var cursors: [Int: (entries: [(key: [UInt8], value: [UInt8])], position: Int)] = [:]
    /// The state that survives any crash, and the sequence number that ends it.
    private var durable: (sequence: UInt64, state: State) = (0, [:])
    /// Acknowledged buffered commits since the durable point, oldest first.
    private var buffered: [(sequence: UInt64, state: State)] = []
    private var lastSequence: UInt64 = 0

    /// Applies an acknowledged commit whose last entry got `sequence`.
    mutating func commit(_ entries: [MetaBatchEntry], sync: Bool, sequence: UInt64) {
        for entry in entries {
            switch entry {
            case .put(let key, let value): state[key] = value.bytes
            case .delete(let key): state[key] = nil
            case .deleteRange(let start, let end):
                state = state.filter { $0.key.lexicographicallyPrecedes(start) || !$0.key.lexicographicallyPrecedes(end) }
            }
        }
        lastSequence = sequence
        if sync {
            markDurable()
        } else {
            buffered.append((sequence, state))
        }
    }

    /// Everything acknowledged so far is durable (a `sync()`, a flush, a clean close).
    mutating func markDurable() {
        durable = (lastSequence, state)
        buffered.removeAll()
    }

    func value(_ key: [UInt8], snapshot: Int?) -> [UInt8]? {
        (snapshot.flatMap { snapshots[$0] } ?? state)[key]
    }

    func hasSnapshot(_ id: Int) -> Bool { snapshots[id] != nil }
    func hasCursor(_ id: Int) -> Bool { cursors[id] != nil }

    mutating func takeSnapshot(_ id: Int) { snapshots[id] = state }
    mutating func releaseSnapshot(_ id: Int) { snapshots[id] = nil }

    /// The entries a scan returns, in its order.
    func scan(_ scan: MetaScan, snapshot: Int?) -> [(key: [UInt8], value: [UInt8])] {
        let source = snapshot.flatMap { snapshots[$0] } ?? state
        var entries = source.filter { scan.admits($0.key) }.map { (key: $0.key, value: $0.value) }
        entries.sort { $0.key.lexicographicallyPrecedes($1.key) }
        if scan.reverse { entries.reverse() }
        if let limit = scan.limit { entries = Array(entries.prefix(max(0, limit))) }
        return entries
    }

    mutating func openCursor(_ id: Int, scan: MetaScan, snapshot: Int?) {
        cursors[id] = (self.scan(scan, snapshot: snapshot), 0)
    }

    /// The cursor's next expected entry (nil at its end), advancing it.
    mutating func nextEntry(cursor id: Int) -> (key: [UInt8], value: [UInt8])? {
        guard var cursor = cursors[id], cursor.position < cursor.entries.count else { return nil }
        let entry = cursor.entries[cursor.position]
        cursor.position += 1
        cursors[id] = cursor
        return entry
    }

    mutating func closeCursor(_ id: Int) { cursors[id] = nil }

    /// A reopen or a crash: the handle's snapshots and cursors are gone.
    mutating func dropHandles() {
        snapshots.removeAll()
        cursors.removeAll()
    }

    /// After a crash the database recovered through `sequence`: the state becomes the one
    /// that sequence ends, or the reason it is not a state the crash may leave.
    mutating func recover(sequence: UInt64) -> String? {
        dropHandles()
        if sequence == durable.sequence {
            state = durable.state
        } else if let kept = buffered.first(where: { $0.sequence == sequence }) {
            state = kept.state
        } else if sequence < durable.sequence {
            return "recovered through sequence \(sequence), but sequence \(durable.sequence) was durable: acknowledged writes lost"
        } else {
            return "recovered through sequence \(sequence), which ends no acknowledged commit (durable through \(durable.sequence); buffered commits end at \(buffered.map(\.sequence)))"
        }
        lastSequence = sequence
        markDurable()
        return nil
    }

    /// Every key the model holds, sorted.
    var sortedEntries: [(key: [UInt8], value: [UInt8])] {
        state.map { (key: $0.key, value: $0.value) }.sorted { $0.key.lexicographicallyPrecedes($1.key) }
    }
}
