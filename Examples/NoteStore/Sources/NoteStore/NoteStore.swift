import Foundation
import KVEngine

/// A note, stored as JSON under `note:<number>`.
struct Note: Codable, Equatable, Sendable {
    var text: String
    var tags: [String]
}

/// A tiny persistent note store: notes under `note:<number>` and a counter under
/// `meta:next`, updated together by a transaction, so that two writers adding at once
/// never take the same number, and a crash never leaves a note without its number.
actor NoteStore {
    let db: Database

    init(path: String) throws {
        db = try Database(path: path)  // creates the database on first use
    }

    /// Adds a note and returns its number. Durable when this returns. The actor is
    /// re-entered at every `await`: the transaction, not the actor, keeps the read of the
    /// counter and its write together (a conflict runs the body again).
    func add(_ note: Note) async throws -> Int {
        try await db.transaction { tx in
            let number = try await tx.get("meta:next", decoding: Int.self) ?? 1
            try tx.put(NoteStore.key(number), encoding: note)
            try tx.put("meta:next", encoding: number + 1)
            return number
        }
    }

    /// Every note, oldest first: a prefix scan over the ordered keys, read a batch at a
    /// time off the cooperative pool.
    func all() async throws -> [(Int, Note)] {
        var notes: [(Int, Note)] = []
        for try await (key, value) in db.scan(ScanOptions(prefix: "note:")) {
            let number = Int(String(decoding: key.dropFirst(5), as: UTF8.self)) ?? 0
            notes.append((number, try JSONDecoder().decode(Note.self, from: Data(value))))
        }
        return notes
    }

    /// The newest `count` notes' texts: the same scan, reversed and limited.
    func latest(_ count: Int) throws -> [String] {
        try db.scan(ScanOptions(prefix: "note:", reverse: true, limit: count)).collect().map {
            (try? JSONDecoder().decode(Note.self, from: Data($0.value)).text) ?? "?"
        }
    }

    func remove(_ number: Int) async throws {
        try await db.delete(NoteStore.key(number))
    }

    /// Zero-padded so that the byte order of keys is the numeric order.
    static func key(_ number: Int) -> String {
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
            for text in ["buy milk", "call the plumber", "write the report"] {
                _ = try await notes.add(Note(text: text, tags: []))
            }
            try await notes.remove(2)
            // Many tasks adding at once: each gets a number of its own.
            let numbers = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<8 {
                    group.addTask { try await notes.add(Note(text: "visit \(index)", tags: ["visit"])) }
                }
                var numbers: [Int] = []
                for try await number in group { numbers.append(number) }
                return numbers
            }
            guard Set(numbers).count == 8 else {
                print("NoteStore example: two notes took one number: \(numbers.sorted())")
                exit(1)
            }
            // Bytes of any kind: a Data value under a String key.
            try await notes.db.put("attachment:1", Data([0x89, 0x50, 0x4E, 0x47]))
            try await notes.db.close()
        }

        // A second open of a database in use fails with .locked, caught by its code.
        let notes = try NoteStore(path: path)
        do {
            _ = try Database(path: path)
            print("NoteStore example: a second open succeeded")
            exit(1)
        } catch KVError.locked {
            print("second open refused: locked")
        } catch {
            throw error
        }

        // Reopened: everything acknowledged is there.
        let all = try await notes.all()
        for (number, note) in all.prefix(3) { print("\(number): \(note.text)") }
        let latest = try await notes.latest(1)
        print("latest: \(latest)")
        let attachment = try await notes.db.get("attachment:1", as: Data.self)
        guard all.count == 10, all.map(\.0) == [1, 3] + Array(4...11), all[1].1.text == "write the report",
            attachment == Data([0x89, 0x50, 0x4E, 0x47])
        else {
            print("NoteStore example: unexpected state \(all.map(\.0))")
            exit(1)
        }
        try await notes.db.close()
        try FileManager.default.removeItem(atPath: path)
        print("NoteStore example: OK")
    }
}
