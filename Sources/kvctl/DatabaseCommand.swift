import ArgumentParser
import Foundation
import KVEngine

/// A command that works on an open database, defined once for both of its forms: one-shot
/// (`kvctl DBPATH NAME ...`, which opens the database around it) and inside the shell (on
/// the shell's open database). Both parse the same ArgumentParser definition, so every
/// flag works in both and an unknown one is an error in both.
protocol DatabaseCommand: ParsableCommand {
    var database: DatabaseOptions { get }
    /// How the one-shot form opens the database.
    var access: DatabaseAccess { get }
    /// Runs on `db`, writing its results to `out`.
    func run(on db: Database, _ out: inout OutputBuffer) throws
}

/// How a one-shot command opens its database.
enum DatabaseAccess {
    /// Read-only: creates and changes nothing; runs beside other readers.
    case read
    /// For writing: `create` when missing; `buffered` acknowledges writes once in memory.
    case write(create: Bool, buffered: Bool)
}

extension DatabaseCommand {
    /// The one-shot form: open, run, close. A write command prints only after the close
    /// (its `OK` follows what makes it durable); a read command streams its output as it
    /// goes (at every line on a terminal). It does not page: a pager would hold the
    /// database open, and writers out, for as long as someone reads.
    func run() throws {
        let db: Database
        switch access {
        case .read: db = try database.openReadOnly()
        case .write(let create, let buffered): db = try database.open(create: create, buffered: buffered)
        }
        var writes = false
        if case .write = access { writes = true }
        var out = OutputBuffer(streaming: !writes)
        do {
            try run(on: db, &out)
        } catch {
            out.finish()
            try? db.close()
            throw error
        }
        try db.close()
        out.finish()
    }
}

/// `get` of a key that is not there: exit 1 one-shot, `(not found)` in the shell.
struct NotFound: Error {
    let key: String
}
