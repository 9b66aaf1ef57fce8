/// What a scan covers and how it walks.
public struct ScanOptions: Sendable {
    /// First key included (nil: from the first key).
    public var start: [UInt8]?
    /// First key excluded (nil: to the last key).
    public var end: [UInt8]?
    /// Only keys that begin with these bytes.
    public var prefix: [UInt8]?
    /// Walk from the last key to the first.
    public var reverse = false
    /// Stop after this many entries.
    public var limit: Int?
    /// Whether the table blocks this scan reads enter the block cache (as in LevelDB and
    /// RocksDB, on by default). Turn it off for a one-off scan of much more data than the
    /// cache holds (an export, a backup) so that it does not push out the hot blocks.
    public var fillCache = true

    /// A scan of `[start, end)` (and `prefix`), forward unless `reverse`.
    public init(
        start: [UInt8]? = nil, end: [UInt8]? = nil, prefix: [UInt8]? = nil,
        reverse: Bool = false, limit: Int? = nil, fillCache: Bool = true
    ) {
        self.start = start
        self.end = end
        self.prefix = prefix
        self.reverse = reverse
        self.limit = limit
        self.fillCache = fillCache
    }
}

/// An ordered walk over the database's keys and values at one snapshot.
///
/// A cursor sees exactly the state at the sequence number it was opened with, however
/// much is written meanwhile. It is a `Sequence`: `for (key, value) in db.scan(...)`.
/// Not thread-safe: use one cursor from one task at a time.
public final class Cursor: Sequence, IteratorProtocol {
    public typealias Element = (key: [UInt8], value: [UInt8])

    private let source: any InternalIterator
    private let snapshot: UInt64
    private let options: ScanOptions
    /// Upper bound (exclusive): the smaller of `end` and the prefix's successor.
    private let upper: [UInt8]?
    /// Lower bound (inclusive): the larger of `start` and the prefix.
    private let lower: [UInt8]?
    private var returned = 0
    private var started = false
    /// Forward: `source` sits on the entry last handed out.
    private var positioned = false
    /// Forward: the key last handed out or skipped as deleted; its older versions follow.
    private let skipKey = KeyBuffer()
    private var hasSkipKey = false
    /// Why the walk ended early: a table could not be read, or a block failed its
    /// checksum. Nil when the cursor reached the end of its range (or has not yet).
    public private(set) var error: KVError?

    init(source: any InternalIterator, snapshot: UInt64, options: ScanOptions) {
        self.source = source
        self.snapshot = snapshot
        self.options = options
        var lower = options.start
        var upper = options.end
        if let prefix = options.prefix {
            if lower.map({ $0.lexicographicallyPrecedes(prefix) }) ?? true { lower = prefix }
            if let successor = Cursor.successor(of: prefix),
                upper.map({ successor.lexicographicallyPrecedes($0) }) ?? true
            {
                upper = successor
            }
        }
        self.lower = lower
        self.upper = upper
    }

    /// The next entry, or nil at the end of the range.
    public func next() -> Element? {
        if options.reverse {
            guard withinLimit() else { return nil }
            let entry = previousVisible()
            if entry != nil { returned += 1 }
            return entry
        }
        guard advance() else { return nil }
        return (Array(source.key), Array(source.value))
    }

    /// Calls `body` with each remaining entry's key and value, without copying them; the
    /// buffers are valid only during the call. Return false from `body` to stop.
    public func forEach(_ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool) rethrows {
        if options.reverse {
            while let (key, value) = next() {
                let proceed = try key.withUnsafeBytes { k in try value.withUnsafeBytes { v in try body(k, v) } }
                if !proceed { return }
            }
            return
        }
        while advance() {
            if try !body(source.key, source.value) { return }
        }
    }

    private func withinLimit() -> Bool {
        if let limit = options.limit, returned >= limit { return false }
        if !started {
            started = true
            position()
        }
        return true
    }

    /// Forward: moves `source` to the next visible entry and leaves it there (the caller
    /// reads it in place); false at the end of the range.
    private func advance() -> Bool {
        guard withinLimit() else { return false }
        if positioned {
            source.next()
            positioned = false
        }
        while source.isValid {
            let key = source.key
            if let upper, upper.withUnsafeBytes({ SkipList.compareKeys(key, $0) }) >= 0 { return false }
            let tag = source.tag
            if Tag.sequence(tag) > snapshot || (hasSkipKey && SkipList.compareKeys(key, skipKey.bytes) == 0) {
                source.next()
                continue
            }
            // The newest visible version of this key: older ones are skipped after it.
            skipKey.set(key)
            hasSkipKey = true
            if Tag.isPut(tag) {
                positioned = true
                returned += 1
                return true
            }
            source.next()
        }
        error = error ?? source.error
        return false
    }

    private func position() {
        if options.reverse {
            if let upper {
                upper.withUnsafeBytes { source.seek($0, tag: UInt64.max) }
                if source.isValid { source.prev() } else { source.seekToLast() }
            } else {
                source.seekToLast()
            }
        } else if let lower {
            lower.withUnsafeBytes { source.seek($0, tag: UInt64.max) }
        } else {
            source.seekToFirst()
        }
    }

    private func aboveLower(_ key: UnsafeRawBufferPointer) -> Bool {
        lower.map { bound in bound.withUnsafeBytes { SkipList.compareKeys(key, $0) >= 0 } } ?? true
    }

    /// Walking backwards a key's versions go oldest to newest: the last visible one seen
    /// before the key changes is its state at the snapshot.
    private func previousVisible() -> Element? {
        var current: (key: [UInt8], put: Bool, value: [UInt8])? = nil
        while source.isValid {
            let key = source.key
            if let found = current, found.key.withUnsafeBytes({ SkipList.compareKeys(key, $0) }) != 0 {
                if found.put { return (found.key, found.value) }
                current = nil
            }
            guard aboveLower(key) else { break }
            let tag = source.tag
            if Tag.sequence(tag) <= snapshot {
                let isPut = Tag.isPut(tag)
                current = (Array(key), isPut, isPut ? Array(source.value) : [])
            }
            source.prev()
        }
        error = error ?? source.error
        if error != nil { return nil }
        if let found = current, found.put {
            current = nil
            return (found.key, found.value)
        }
        return nil
    }

    /// The smallest byte string greater than every string with `prefix`, or nil.
    static func successor(of prefix: [UInt8]) -> [UInt8]? {
        var bytes = prefix
        while let last = bytes.last {
            if last < 0xFF {
                bytes[bytes.count - 1] = last + 1
                return bytes
            }
            bytes.removeLast()
        }
        return nil
    }
}
