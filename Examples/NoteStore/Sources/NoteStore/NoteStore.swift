import Foundation
import KVEngine

/// A tiny persistent note store: notes under `note:<number>`, a counter under
/// `meta:next`, updated together in one batch so a crash never leaves a note without its
/// number or a number without its note.
struct NoteStore {
    let db: Database

    init(path: String) throws {
        db = try Database(path: path)  // creates the database on first use
    }

    /// Adds a note and returns its number. Durable when this returns.
    func add(_ text: String) throws -> Int {
        let number = Int(try db.get("meta:next") ?? "1") ?? 1
        var batch = WriteBatch()
        batch.put(key(number), text)
        batch.put("meta:next", String(number + 1))
        try db.write(batch)
        return number
    }

    /// Every note, oldest first: a prefix scan over the ordered keys.
    func all() -> [(Int, String)] {
        db.scan(ScanOptions(prefix: Array("note:".utf8))).map { key, value in
            (Int(String(decoding: key.dropFirst(5), as: UTF8.self)) ?? 0, String(decoding: value, as: UTF8.self))
        }
    }

    /// The newest `count` notes: the same scan, reversed and limited.
    func latest(_ count: Int) -> [String] {
        db.scan(ScanOptions(prefix: Array("note:".utf8), reverse: true, limit: count)).map {
            String(decoding: $0.value, as: UTF8.self)
        }
    }

    func remove(_ number: Int) throws {
        try db.delete(key(number))
    }

    /// Zero-padded so that the byte order of keys is the numeric order.
    private func key(_ number: Int) -> String {
        let digits = String(number)
        return "note:" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }
}

@main
struct Main {
    static func main() async throws {
        let path = CommandLine.arguments.dropFirst().first ?? FileManager.default.temporaryDirectory.path + "/notestore-example"
        try? FileManager.default.removeItem(atPath: path)

        do {
            let notes = try NoteStore(path: path)
            for text in ["buy milk", "call the plumber", "write the report"] { _ = try notes.add(text) }
            try notes.remove(2)
            // Async use: suspends instead of blocking, from many tasks at once.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<8 {
                    group.addTask { try await notes.db.put("visit:\(index)", "seen", durability: .buffered) }
                }
                try await group.waitForAll()
            }
            try await notes.db.sync()
            try notes.db.close()
        }

        // Reopen: everything acknowledged is there.
        let notes = try NoteStore(path: path)
        let all = notes.all()
        for (number, text) in all { print("\(number): \(text)") }
        print("latest: \(notes.latest(1))")
        let visits = notes.db.scan(ScanOptions(prefix: Array("visit:".utf8))).reduce(0) { count, _ in count + 1 }
        print("visits: \(visits)")
        guard all.map(\.1) == ["buy milk", "write the report"], visits == 8, notes.latest(1) == ["write the report"] else {
            print("NoteStore example: unexpected state")
            exit(1)
        }
        try notes.db.close()
        try FileManager.default.removeItem(atPath: path)
        print("NoteStore example: OK")
    }
}
