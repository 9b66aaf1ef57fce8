/// A position in the internal key order (user key ascending, newest version first).
protocol InternalIterator: AnyObject {
    var isValid: Bool { get }
    /// User key of the current entry.
    var key: UnsafeRawBufferPointer { get }
    /// The current entry's `Tag`.
    var tag: UInt64 { get }
    var value: UnsafeRawBufferPointer { get }
    func seekToFirst()
    func seekToLast()
    /// First entry at or after (key, tag).
    func seek(_ key: UnsafeRawBufferPointer, tag: UInt64)
    func next()
    func prev()
    /// Why the walk ended early (an I/O error or corruption), if it did.
    var error: KVError? { get }
    /// Before `seek(key, tag:)` with the same target, called right before it: the table
    /// block the seek will read that the cache does not hold (nil if none). The source
    /// keeps what it found for the seek, so the two do the lookup work once.
    func prepareSeek(_ key: UnsafeRawBufferPointer, tag: UInt64) -> (table: Table, block: Int)?
    /// The block `prepareSeek` asked for, read by the caller (with other sources' blocks).
    func supplyPrepared(_ block: Block)
}

extension InternalIterator {
    var error: KVError? { nil }
    func prepareSeek(_ key: UnsafeRawBufferPointer, tag: UInt64) -> (table: Table, block: Int)? { nil }
    func supplyPrepared(_ block: Block) {}
}
