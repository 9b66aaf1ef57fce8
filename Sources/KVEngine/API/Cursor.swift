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

    /// A scan of `[start, end)` (and `prefix`), forward unless `reverse`.
    public init(
        start: [UInt8]? = nil, end: [UInt8]? = nil, prefix: [UInt8]? = nil,
        reverse: Bool = false, limit: Int? = nil
    ) {
        self.start = start
        self.end = end
        self.prefix = prefix
        self.reverse = reverse
        self.limit = limit
    }
}

/// An ordered walk over the database's keys and values at one snapshot.
///
/// A cursor sees exactly the state at the sequence number it was opened with, however
/// much is written meanwhile. It is a `Sequence`: `for (key, value) in db.scan(...)`.
/// Not thread-safe: use one cursor from one task at a time.
public final class Cursor: Sequence, IteratorProtocol {
    public typealias Element = (key: [UInt8], value: [UInt8])

    private var source: any InternalIterator
    private let snapshot: UInt64
    private let options: ScanOptions
    /// Upper bound (exclusive): the smaller of `end` and the prefix's successor.
    private let upper: [UInt8]?
    /// Lower bound (inclusive): the larger of `start` and the prefix.
    private let lower: [UInt8]?
    private var returned = 0
    private var started = false
    private var skipKey: [UInt8]?

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
        if let limit = options.limit, returned >= limit { return nil }
        if !started {
            started = true
            position()
        }
        let entry = options.reverse ? previousVisible() : nextVisible()
        if entry != nil { returned += 1 }
        return entry
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

    private func inBounds(_ key: UnsafeRawBufferPointer) -> (belowUpper: Bool, aboveLower: Bool) {
        let belowUpper = upper.map { bound in bound.withUnsafeBytes { SkipList.compareKeys(key, $0) < 0 } } ?? true
        let aboveLower = lower.map { bound in bound.withUnsafeBytes { SkipList.compareKeys(key, $0) >= 0 } } ?? true
        return (belowUpper, aboveLower)
    }

    private func nextVisible() -> Element? {
        while source.isValid {
            let key = source.key
            guard inBounds(key).belowUpper else { return nil }
            let tag = source.tag
            if tag >> 8 > snapshot {
                source.next()
                continue
            }
            if let skip = skipKey, skip.withUnsafeBytes({ SkipList.compareKeys(key, $0) }) == 0 {
                source.next()
                continue
            }
            let owned = Array(key)
            skipKey = owned
            let isPut = tag & 0xFF == UInt64(EntryType.put.rawValue)
            let value = isPut ? Array(source.value) : []
            source.next()
            if isPut { return (owned, value) }
        }
        return nil
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
            guard inBounds(key).aboveLower else { break }
            let tag = source.tag
            if tag >> 8 <= snapshot {
                let isPut = tag & 0xFF == UInt64(EntryType.put.rawValue)
                current = (Array(key), isPut, isPut ? Array(source.value) : [])
            }
            source.prev()
        }
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
