import ArgumentParser
import PageStore

/// `kvctl pagestore demo`: writes pages with a commit chain, reads them back, checks
/// them, and prints the store's stats.
struct PageStoreDemo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Write, commit (write -> fdatasync chain), read back and verify pages; print stats.")

    @Option(help: "Directory to put the demo file in (created when missing).")
    var dir = "demo.db"

    @Option(help: "Pages (4 KiB) to write.")
    var pages = 256

    func run() throws {
        let store = try PageStore()
        defer { store.shutdown() }
        try store.createDirectory(atPath: dir)
        let path = dir + "/pagestore-demo.dat"
        let file = try store.openFile(atPath: path, mode: .createIfMissing)
        try store.syncDirectory(atPath: dir)
        let pageBytes = store.allocator.pageSizeBytes
        try store.performBlocking(.allocate(file, offsetBytes: 0, lengthBytes: Int64(pages * pageBytes)))

        let batch = 16
        let source = try store.allocator.allocate(pages: batch)
        let target = try store.allocator.allocate(pages: 1)
        defer {
            store.allocator.free(source)
            store.allocator.free(target)
        }
        var written = 0
        while written < pages {
            let count = min(batch, pages - written)
            var segments: [IOSegment] = []
            for index in 0..<count {
                let page = source.slice(offset: index * pageBytes, count: pageBytes)
                fill(page, pageNumber: written + index)
                segments.append(IOSegment(offsetBytes: Int64((written + index) * pageBytes), buffer: page))
            }
            try store.commit(file, segments)
            written += count
        }
        for pageNumber in 0..<pages {
            let got = try store.read(file, offsetBytes: Int64(pageNumber * pageBytes), into: target)
            guard got == pageBytes, verify(target, pageNumber: pageNumber) else {
                throw ValidationError("page \(pageNumber) of \(path) did not read back as written")
            }
        }
        try store.closeFile(file)
        print("wrote \(pages) pages in commit chains of up to \(batch) writes + fdatasync, read back and verified")
        print("file: \(path)")
        print(store.stats)
    }

    private func fill(_ page: PageBuffer, pageNumber: Int) {
        var state = UInt64(pageNumber) &* 0x9E37_79B9_7F4A_7C15 | 1
        for word in 0..<(page.count / 8) {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            page.bytes.storeBytes(of: state, toByteOffset: word * 8, as: UInt64.self)
        }
    }

    private func verify(_ page: PageBuffer, pageNumber: Int) -> Bool {
        var state = UInt64(pageNumber) &* 0x9E37_79B9_7F4A_7C15 | 1
        for word in 0..<(page.count / 8) {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            if page.bytes.load(fromByteOffset: word * 8, as: UInt64.self) != state { return false }
        }
        return true
    }
}
