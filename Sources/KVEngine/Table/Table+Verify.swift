// `check`'s read of a whole table.

extension Table {
    /// Reads every data block, verifying checksums, that entries are in order, and that
    /// the first and last are the properties' smallest and largest keys; `visit` sees each
    /// entry (user key, tag, value) on the way. Returns the blocks read.
    func verifyBlocks(
        visit: ((UnsafeRawBufferPointer, UInt64, UnsafeRawBufferPointer) -> Void)? = nil
    ) throws(KVError) -> Int {
        let walk = TableIterator(table: self, readaheadPages: TableBuilder.chunkPages, alwaysReadAhead: true)
        walk.seekToFirst()
        var previous: [UInt8] = []
        var entries: UInt64 = 0
        while walk.isValid {
            let current = InternalKey.encode(walk.key, tag: walk.tag)
            if entries > 0 {
                let ordered = previous.withUnsafeBytes { a in current.withUnsafeBytes { b in InternalKey.compare(a, b) < 0 } }
                if !ordered { throw corruption(TableProblem(offset: 0, reason: "entries out of order after entry \(entries)")) }
            }
            if entries == 0 && current != meta.properties.smallest {
                throw corruption(TableProblem(offset: 0, reason: "first entry is not the properties' smallest key"))
            }
            visit?(walk.key, walk.tag, walk.value)
            previous = current
            entries += 1
            walk.next()
        }
        if let error = walk.error { throw error }
        if entries > 0 && previous != meta.properties.largest {
            throw corruption(TableProblem(offset: 0, reason: "last entry is not the properties' largest key"))
        }
        guard entries == meta.properties.entries else {
            throw corruption(TableProblem(offset: 0, reason: "\(entries) entries read; the properties say \(meta.properties.entries)"))
        }
        return blockCount
    }
}
