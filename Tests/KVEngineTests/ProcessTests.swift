import Foundation
import PageStore
import XCTest
import TestSupport

@testable import KVEngine

/// Behaviour across processes, through the real `kvctl` binary.
final class ProcessTests: XCTestCase {
    /// `kvctl`, built beside the test bundle by `swift build --build-tests`.
    private func kvctl() throws -> String { try kvctlBinary(orSkip: "cross-process checks") }

    private func run(_ arguments: [String], input: String? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try kvctl())
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let stdin = Pipe()
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try stdin.fileHandleForWriting.close()
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, stdout, stderr)
    }

    /// A value longer than the page arena and than any command line goes in with
    /// `put --value-file` and comes out byte for byte with `get --output` (a file, or
    /// standard output as raw bytes); a file past the limit is refused naming it.
    func testLongValueThroughValueFileAndOutput() throws {
        let dir = TestPath()
        let input = dir.path + ".in"
        let output = dir.path + ".out"
        defer {
            try? FileManager.default.removeItem(atPath: input)
            try? FileManager.default.removeItem(atPath: output)
        }
        let value = patternedBytes(PageStoreOptions().arenaBytes + 12345, seed: 9)
        XCTAssertTrue(FileManager.default.createFile(atPath: input, contents: Data(value)))
        XCTAssertEqual(try run([dir.path, "put", "long", "--value-file", input]).status, 0)
        XCTAssertEqual(try run([dir.path, "get", "long", "--output", output]).status, 0)
        XCTAssertTrue(sameBytes(FileManager.default.contents(atPath: output).map { Array($0) }, value), "from --output")
        let small = try run([dir.path, "put", "short", "--value-file", "-"], input: "raw\tbytes\n")
        XCTAssertEqual(small.status, 0, small.stderr)
        let raw = try run([dir.path, "get", "short", "--output", "-"])
        XCTAssertEqual(raw.stdout, "raw\tbytes\n", "raw bytes on standard output, no encoding, no newline added")
        let both = try run([dir.path, "put", "k", "v", "--value-file", input])
        XCTAssertEqual(both.status, 64, both.stderr)
        let missing = try run([dir.path, "put", "k", "--value-file", dir.path + ".absent"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains(".absent"), missing.stderr)
    }

    func testOpenFromAnotherProcessIsLockedAndSaysWho() throws {
        let dir = TestPath()
        let db = try Database(path: dir.path, options: testOptions())
        try db.put("k", "v")
        let result = try run([dir.path, "get", "k"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(
            result.stderr.contains("database at \(dir.path) is locked by a writer (pid \(getpid()))"),
            "stderr: \(result.stderr)")
        XCTAssertEqual(result.stdout, "")
        try db.close()
        let after = try run([dir.path, "get", "k"])
        XCTAssertEqual(after.status, 0, after.stderr)
        XCTAssertEqual(after.stdout, "v\n")
    }

    func testWritesOfAnotherProcessAreDurableWhenItExits() throws {
        let dir = TestPath()
        for index in 0..<5 {
            let result = try run([dir.path, "put", "key\(index)", "value\(index)"])
            XCTAssertEqual(result.status, 0, result.stderr)
        }
        let db = try Database(path: dir.path, options: testOptions())
        XCTAssertEqual(try db.scan().collect().map { String(decoding: $0.value, as: UTF8.self) }, (0..<5).map { "value\($0)" })
    }

    func testReadOfMissingDatabaseCreatesNothing() throws {
        let dir = TestPath()
        let result = try run([dir.path, "scan"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("no database at \(dir.path)"), result.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.path))
    }

    func testScriptedShellSessionAcknowledgesEachCommand() throws {
        let dir = TestPath()
        let script = """
            put a 1
            put "two words" "x\\x00y"
            get a
            get "two words"
            frobnicate
            scan
            count
            del a
            get a
            """
        let result = try run([dir.path], input: script + "\n")
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdout, "OK\nOK\n1\nx\\x00y\na\t1\ntwo words\tx\\x00y\n2\nOK\n(not found)\n", "no prompt on a pipe, one result per command")
        XCTAssertEqual(result.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }, ["error: unknown command 'frobnicate' (type help)"])
        // Every acknowledged write is in the database, including the binary value.
        let db = try Database(path: dir.path, options: testOptions())
        XCTAssertEqual(try db.get(Array("two words".utf8)), [0x78, 0x00, 0x79])
        XCTAssertNil(try db.get("a"))
    }

    func testBatchFromStdinIsAtomic() throws {
        let dir = TestPath()
        XCTAssertEqual(try run([dir.path, "put", "keep", "1"]).status, 0)
        let bad = try run([dir.path, "batch"], input: "put a 1\nput b\n")
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("line 2: expected 'put KEY VALUE', 'del KEY' or 'delrange START END'"), bad.stderr)
        XCTAssertEqual(try run([dir.path, "count"]).stdout, "1\n", "a bad batch applies nothing")
        let good = try run([dir.path, "batch"], input: "put a 1\ndel keep\nput b 2\n")
        XCTAssertEqual(good.stdout, "OK (3 entries)\n", good.stderr)
        XCTAssertEqual(try run([dir.path, "scan", "--keys-only"]).stdout, "a\nb\n")
    }

    func testCompactMergesTablesAndKeepsEveryKey() throws {
        let dir = TestPath()
        var options = testOptions()
        options.memtableBytes = 1 << 16
        let db = try Database(path: dir.path, options: options)
        for index in 0..<3000 { try db.put(Array(String(format: "key%05d", index).utf8), [UInt8](repeating: 0x61, count: 100), durability: .buffered) }
        for index in stride(from: 0, to: 3000, by: 2) { try db.delete(Array(String(format: "key%05d", index).utf8), durability: .buffered) }
        try db.close()
        let compact = try run([dir.path, "compact"])
        XCTAssertEqual(compact.status, 0, compact.stderr)
        XCTAssertTrue(compact.stdout.hasPrefix("OK: "), compact.stdout)
        XCTAssertTrue(compact.stdout.contains("(L1 "), compact.stdout)
        XCTAssertEqual(try run([dir.path, "count"]).stdout, "1500\n")
        let stats = try run([dir.path, "stats"])
        XCTAssertTrue(stats.stdout.contains("1500 entries"), stats.stdout)
        XCTAssertEqual(try run([dir.path, "check"]).status, 0)
        XCTAssertEqual(try run(["/nonexistent-kvengine-dir", "compact"]).status, 66)
    }

    /// db_bench's benchmarks each draw their own keys: `overwrite` after `fillrandom` over n
    /// keys leaves about 1 - e^-2 (86.5%) of them present, not the 1 - e^-1 (63%) of one
    /// sequence written twice, and `readrandom` finds that share.
    func testBenchWorkloadsDrawTheirOwnKeys() throws {
        let dir = TestPath()
        let result = try run(["bench", "--db=\(dir.path)", "--num=20000", "--benchmarks=fillrandom,overwrite,readrandom,seekrandom"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let found = result.stdout.split(separator: "\n").compactMap { line -> Int? in
            guard let range = line.range(of: #"\((\d+) of 20000 found\)"#, options: .regularExpression) else { return nil }
            return Int(line[range].dropFirst().prefix { $0.isNumber })
        }
        XCTAssertEqual(found.count, 2, result.stdout)
        for count in found { XCTAssertTrue((16_800...17_800).contains(count), "found \(count) of 20000:\n\(result.stdout)") }
    }

    func testCheckNamesDamageWithFileAndOffsetAndChangesNothing() throws {
        let dir = TestPath()
        // Closed as a crash leaves it, with its log (a clean close flushes it to a table).
        let db = try Database(path: dir.path, options: testOptions { $0.flushOnClose = false })
        for index in 0..<8 { try db.put("k\(index)", "v\(index)") }
        try db.close()
        let clean = try run([dir.path, "check"])
        XCTAssertEqual(clean.status, 0, clean.stderr)
        XCTAssertTrue(clean.stdout.hasPrefix("manifest 2, 0 tables, 0 blocks, 1 logs, 8 records, last sequence 8"), clean.stdout)
        let log = logFiles(dir.path)[0]
        scribble(log, at: 3 * 4096 + 40, count: 4)
        let before = try Data(contentsOf: URL(fileURLWithPath: log))
        let damaged = try run([dir.path, "check"])
        XCTAssertEqual(damaged.status, 1)
        XCTAssertTrue(damaged.stdout.contains("damaged: \(log) at offset 12288: checksum mismatch"), damaged.stdout)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: log)), before, "check changes nothing")
        XCTAssertEqual(try run([dir.path, "get", "k0"]).status, 76, "the open refuses the damaged log")
        // Salvage keeps the records before the damage and sets the log aside.
        let salvage = try run([dir.path, "salvage"])
        XCTAssertEqual(salvage.status, 0, salvage.stderr)
        XCTAssertTrue(salvage.stdout.contains("records of 1 logs (1 damaged)"), salvage.stdout)
        XCTAssertTrue(salvage.stdout.contains("set aside: \(dir.path)/lost/"), salvage.stdout)
        XCTAssertEqual(try run([dir.path, "check"]).status, 0)
        XCTAssertEqual(try run([dir.path, "get", "k1"]).stdout, "v1\n")
        XCTAssertEqual(try run([dir.path, "get", "k2"]).status, 1, "k2's record was in the damaged page")
    }

    func testBinaryRoundTripsThroughHexAndBase64() throws {
        let dir = TestPath()
        let key: [UInt8] = [0x00, 0xFF, 0x0A]
        let value: [UInt8] = (0..<64).map { UInt8(truncatingIfNeeded: $0 * 5) }
        let hexKey = key.map { String(format: "%02x", $0) }.joined()
        let hexValue = value.map { String(format: "%02x", $0) }.joined()
        XCTAssertEqual(try run([dir.path, "put", "--hex", hexKey, hexValue]).status, 0)
        XCTAssertEqual(try run([dir.path, "get", "--hex", hexKey]).stdout, hexValue + "\n")
        let base64Key = Data(key).base64EncodedString()
        XCTAssertEqual(try run([dir.path, "get", "--base64", base64Key]).stdout, Data(value).base64EncodedString() + "\n")
        XCTAssertEqual(
            try run([dir.path, "scan", "--json", "--hex"]).stdout, "{\"key\": \"\(hexKey)\", \"value\": \"\(hexValue)\"}\n")
        let db = try Database(path: dir.path, options: testOptions())
        XCTAssertEqual(try db.get(key), value, "the bytes stored are exactly the bytes given")
        try db.close()
        let bad = try run([dir.path, "get", "--hex", "0g"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("malformed hex in KEY: '0g' has a non-hex digit at position 0"), bad.stderr)
    }

    func testBadInputGetsOneLineAndTheDocumentedExitCode() throws {
        let dir = TestPath()
        let missing = try run([dir.path, "get", "k"])
        XCTAssertEqual(missing.status, 66)
        XCTAssertEqual(missing.stderr, "kvctl: no database at \(dir.path) (a read-only open creates nothing)\n")
        XCTAssertEqual(try run([dir.path, "put", "k", "v"]).status, 0)
        let unknown = try run([dir.path, "frobnicate"])
        XCTAssertEqual(unknown.status, 64)
        XCTAssertTrue(unknown.stderr.hasPrefix("kvctl: unknown command 'frobnicate'"), unknown.stderr)
        XCTAssertEqual(unknown.stderr.filter { $0 == "\n" }.count, 1, "one line")
        XCTAssertEqual(try run([dir.path, "get", "--hex", "xyz"]).status, 64)
        let oversized = try run([dir.path, "put", String(repeating: "k", count: Limits.maxKeyBytes + 1), "v"])
        XCTAssertEqual(oversized.status, 65)
        XCTAssertEqual(oversized.stderr, "kvctl: write rejected: entry 0: key of 65536 bytes exceeds the limit of 65535\n")
        XCTAssertEqual(try run([dir.path, "get", "absent"]).status, 1)
        let db = try Database(path: dir.path, options: testOptions())
        let locked = try run([dir.path, "get", "k"])
        XCTAssertEqual(locked.status, 75)
        XCTAssertEqual(locked.stderr, "kvctl: database at \(dir.path) is locked by a writer (pid \(getpid()))\n")
        try db.close()
    }

    /// The shell runs the one-shot commands' definitions: their flags work (and unknown
    /// ones are refused), names are case-insensitive, a quote left open on a pipe fails that
    /// line alone (on a terminal it goes on: scripts/shell-tty-test.sh), `mode` switches
    /// the encoding, `help COMMAND` shows the command's flags.
    func testTheShellSharesTheOneShotParser() throws {
        let dir = TestPath()
        let script = """
            PUT greeting "hello, shell"
            get --json greeting
            scan --frobnicate
            put "two
            put "two\\nlines" v2
            get "two\\nlines"
            mode hex
            get 6772656574696e67
            mode text
            Scan --keys-only --limit 1
            help count
            get missing

            """
        let result = try run([dir.path], input: script)
        XCTAssertEqual(result.status, 0, result.stderr)
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        XCTAssertEqual(Array(lines.prefix(8)), [
            "OK", #"{"key": "greeting", "value": "hello, shell"}"#, "OK", "v2", "OK",
            "68656c6c6f2c207368656c6c", "OK", "greeting",
        ], result.stdout)
        XCTAssertTrue(result.stdout.contains("USAGE: count"), result.stdout)
        XCTAssertTrue(result.stdout.hasSuffix("(not found)\n"), result.stdout)
        XCTAssertEqual(result.stderr, "error: Unknown option '--frobnicate'\nerror: unterminated quote\n")
    }

    /// What a user who mistypes gets: usage (exit 64) for a bare kvctl, the DBPATH named
    /// when it is missing, negative limits and write-only flags refused with one line, and
    /// per-command help in the form users type.
    func testUsageMessagesSayWhatToType() throws {
        let dir = TestPath()
        XCTAssertEqual(try run([dir.path, "put", "k", "v"]).status, 0)
        let bare = try run([])
        XCTAssertEqual(bare.status, 64)
        XCTAssertTrue(bare.stderr.contains("USAGE: kvctl DBPATH [get|put|del|delrange|scan|count|batch|import|export|check|dump|stats|compact|checkpoint|backup|changes|salvage|shell]"), bare.stderr)
        let noPath = try run(["get", dir.path, "k"])
        XCTAssertEqual(noPath.status, 64)
        XCTAssertEqual(noPath.stderr, "kvctl: missing DBPATH: the database comes first, as in kvctl DBPATH get ...\n")
        let negative = try run([dir.path, "scan", "--limit", "-3"])
        XCTAssertEqual(negative.status, 64)
        XCTAssertEqual(negative.stderr, "kvctl: --limit must be 0 or more, not -3\n")
        XCTAssertEqual(try run([dir.path, "get", "--buffered", "k"]).status, 64, "--buffered is for writes")
        XCTAssertEqual(try run([dir.path, "put", "--buffered", "k2", "v"]).status, 0)
        let help = try run([dir.path, "scan", "--help"])
        XCTAssertEqual(help.status, 0)
        XCTAssertTrue(help.stdout.contains("USAGE: kvctl DBPATH scan "), help.stdout)
        XCTAssertFalse(help.stdout.contains("--db"), help.stdout)
    }

    /// get, scan, count, export and stats open read-only: they change no byte, no name and
    /// no modification time of the directory, and run while another reader holds it; a
    /// write command waits its turn (refused with exit 75).
    func testReadCommandsChangeNothingAndRunBesideAReader() throws {
        let dir = TestPath()
        for index in 0..<5 { XCTAssertEqual(try run([dir.path, "put", "k\(index)", "v\(index)"]).status, 0) }
        func listing() throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted().map { name in
                let attributes = try FileManager.default.attributesOfItem(atPath: dir.path + "/" + name)
                let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
                return "\(name) \(attributes[.size] ?? 0) \(modified)"
            }
        }
        let before = try listing()
        let reader = try Database(path: dir.path, options: testOptions { $0.readOnly = true })
        let get = try run([dir.path, "get", "k3"])
        XCTAssertEqual(get.status, 0, get.stderr)
        XCTAssertEqual(get.stdout, "v3\n")
        XCTAssertEqual(try run([dir.path, "count"]).stdout, "5\n")
        XCTAssertEqual(try run([dir.path, "scan"]).status, 0)
        XCTAssertEqual(try run([dir.path, "export"]).status, 0)
        XCTAssertEqual(try run([dir.path, "stats"]).status, 0)
        XCTAssertEqual(try run([dir.path, "put", "k9", "v9"]).status, 75, "a writer waits for the readers")
        try reader.close()
        XCTAssertEqual(try listing(), before, "a read command changed the directory")
    }

    /// `kvctl DB checkpoint DIR` and `kvctl DB backup DIR` run beside a reader, change
    /// nothing of the database, and make directories that open as it; a second backup
    /// copies only what is new, and a checkpoint's directory is no backup.
    func testCheckpointAndBackupCommands() throws {
        let dir = TestPath()
        for index in 0..<5 { XCTAssertEqual(try run([dir.path, "put", "k\(index)", "v\(index)"]).status, 0) }
        let reader = try Database(path: dir.path, options: testOptions { $0.readOnly = true })
        let checkpoint = try run([dir.path, "checkpoint", dir.root + "/cp"])
        XCTAssertEqual(checkpoint.status, 0, checkpoint.stderr)
        XCTAssertTrue(checkpoint.stdout.hasPrefix("OK: checkpoint in \(dir.root)/cp: through sequence 5, "), checkpoint.stdout)
        let backup = try run([dir.path, "backup", dir.root + "/bk"])
        XCTAssertEqual(backup.status, 0, backup.stderr)
        try reader.close()
        XCTAssertEqual(try run([dir.root + "/cp", "scan"]).stdout, "k0\tv0\nk1\tv1\nk2\tv2\nk3\tv3\nk4\tv4\n")
        XCTAssertEqual(try run([dir.root + "/bk", "count"]).stdout, "5\n")
        XCTAssertEqual(try run([dir.path, "put", "k5", "v5"]).status, 0)
        let again = try run([dir.path, "backup", dir.root + "/bk"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("1 copied") && again.stdout.contains("kept"), again.stdout)
        XCTAssertEqual(try run([dir.root + "/bk", "get", "k5"]).stdout, "v5\n")
        let refused = try run([dir.path, "backup", dir.root + "/cp"])
        XCTAssertEqual(refused.status, 65, refused.stderr)
        XCTAssertTrue(refused.stderr.hasPrefix("kvctl: backup into \(dir.root)/cp: it is a database"), refused.stderr)
        let busy = try run([dir.path, "checkpoint", dir.root + "/bk"])
        XCTAssertEqual(busy.status, 73, busy.stderr)
    }

    func testImportThenExportIsIdentity() throws {
        let seed = testSeed()
        var random = SplitMix(seed: seed)
        let source = TestPath()
        let db = try Database(path: source.path, options: testOptions())
        for _ in 0..<200 {
            let key = (0..<(1 + random.below(12))).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            let value = (0..<random.below(40)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            try db.put(key, value, durability: .buffered)
        }
        try db.close()
        for format in ["jsonl", "tsv"] {
            let exported = try run([source.path, "export", "--format", format])
            XCTAssertEqual(exported.status, 0, exported.stderr)
            let target = TestPath()
            let imported = try run([target.path, "import", "--format", format], input: exported.stdout)
            XCTAssertEqual(imported.status, 0, imported.stderr)
            let again = try run([target.path, "export", "--format", format])
            XCTAssertEqual(again.stdout, exported.stdout, "\(format): import then export is identity (seed \(seed))")
        }
        let target = TestPath()
        let bad = try run([target.path, "import"], input: "{\"key\": \"a\", \"value\": \"1\"}\nnot json\n")
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("line 2: expected {"), bad.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: target.path), "a malformed import writes nothing")
    }

    /// An import larger than its sort buffer is sorted in runs on disk and merged: the
    /// result is the same as an in-memory sort (the last value of a key given twice, in
    /// whichever run), into a new database and into one that holds keys already; a
    /// malformed line after runs were written leaves nothing; no run is left behind.
    func testImportLargerThanItsSortBufferMergesRuns() throws {
        let seed = testSeed()
        var random = SplitMix(seed: seed)
        var lines = ""
        var expected: [String: String] = [:]
        for number in 0..<40_000 {
            let key = "k\(random.below(25_000))"
            let value = "v\(number)-" + String(repeating: "x", count: random.below(40))
            lines += "\(key)\t\(value)\n"
            expected[key] = value
        }
        func tsv(_ entries: [String: String]) -> String {
            entries.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
                .map { "\($0)\t\(entries[$0]!)\n" }.joined()
        }
        let want = tsv(expected)
        let fresh = TestPath()
        let imported = try run([fresh.path, "import", "--format", "tsv", "--sort-buffer", "1"], input: lines)
        XCTAssertEqual(imported.status, 0, imported.stderr)
        XCTAssertEqual(try run([fresh.path, "export", "--format", "tsv"]).stdout, want, "seed \(seed)")

        let existing = TestPath()
        XCTAssertEqual(try run([existing.path, "put", "k1", "old"]).status, 0)
        XCTAssertEqual(try run([existing.path, "put", "only-before", "kept"]).status, 0)
        let again = try run([existing.path, "import", "--format", "tsv", "--sort-buffer", "1"], input: lines)
        XCTAssertEqual(again.status, 0, again.stderr)
        let merged = try run([existing.path, "export", "--format", "tsv"]).stdout
        XCTAssertEqual(merged, tsv(expected.merging(["k1": "old", "only-before": "kept"]) { imported, _ in imported }), "seed \(seed)")

        // Into an empty directory made beforehand (it must stay empty until the database is
        // made in it), merging two runs at a time: several passes.
        let empty = TestPath()
        try FileManager.default.createDirectory(atPath: empty.path, withIntermediateDirectories: false)
        let passes = try run([empty.path, "import", "--format", "tsv", "--sort-buffer", "1", "--merge-width", "2"], input: lines)
        XCTAssertEqual(passes.status, 0, passes.stderr)
        XCTAssertEqual(try run([empty.path, "export", "--format", "tsv"]).stdout, want, "seed \(seed)")

        let bad = TestPath()
        let failed = try run([bad.path, "import", "--format", "tsv", "--sort-buffer", "1"], input: lines + "no tab here\n")
        XCTAssertNotEqual(failed.status, 0)
        XCTAssertTrue(failed.stderr.contains("line 40001"), failed.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: bad.path), "a malformed import writes nothing")
        for directory in [existing.path, fresh.root, bad.root, empty.root, empty.path] {
            let left = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix(".kvctl-import-") }
            XCTAssertEqual(left, [], "no sorted run is left in \(directory)")
        }
    }

    /// Export then import is identity for the shapes real data has (accents, tabs,
    /// backslashes, quotes, emoji, NUL, newlines, bytes that are not UTF-8) in every format
    /// and encoding; UTF-8 prints as itself, and `--json` is JSON a parser reads back.
    func testRealWorldTextSurvivesEveryFormat() throws {
        let source = TestPath()
        let shapes: [([UInt8], [UInt8])] = [
            (bytes("clé"), bytes("café au lait")),
            (bytes("tab\tkey"), bytes("a\tb\tc")),
            (bytes("path"), bytes("C:\\Users\\x41 \\n not an escape")),
            (bytes("quote\""), bytes("say \"hi\"")),
            (bytes("emoji 🙂"), bytes("👍🏽 ok")),
            (bytes("nul"), [0x61, 0x00, 0x62]),
            (bytes("lines"), bytes("one\ntwo\r\nthree")),
            ([0xFF, 0xFE, 0x41], [0xC3, 0x28, 0xE2, 0x82]),
            (bytes("summary"), bytes("A \\ backslash, a / slash and \u{7F} DEL")),
        ]
        let db = try Database(path: source.path, options: testOptions())
        for (key, value) in shapes { try db.put(key, value) }
        try db.close()
        for flags in [[], ["--hex"], ["--base64"]] {
            for format in ["jsonl", "tsv"] {
                let exported = try run([source.path, "export", "--format", format] + flags)
                XCTAssertEqual(exported.status, 0, exported.stderr)
                let target = TestPath()
                let imported = try run([target.path, "import", "--format", format] + flags, input: exported.stdout)
                XCTAssertEqual(imported.status, 0, "\(format) \(flags): \(imported.stderr)")
                let copy = try Database(path: target.path, options: testOptions())
                for (key, value) in shapes {
                    XCTAssertEqual(try copy.get(key), value, "\(format) \(flags): \(key)")
                }
                XCTAssertEqual(try copy.scan().collect().count, shapes.count)
                try copy.close()
            }
        }
        // Text prints as itself; escapes only where bytes are not printable text.
        XCTAssertEqual(try run([source.path, "get", "clé"]).stdout, "café au lait\n")
        XCTAssertEqual(try run([source.path, "get", "tab\\tkey"]).stdout, "a\\tb\\tc\n")
        XCTAssertEqual(try run([source.path, "get", "nul"]).stdout, "a\\x00b\n")
        // --json is JSON: a parser gets the text back exactly, no escape soup.
        let json = try run([source.path, "get", "--json", "path"])
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: String]
        XCTAssertEqual(object?["value"], "C:\\Users\\x41 \\n not an escape", json.stdout)
        let binary = try run([source.path, "scan", "--json", "--reverse", "--limit", "1"])
        XCTAssertTrue(binary.stdout.contains("\"key_base64\": \"//5B\""), binary.stdout)
        // What jq writes (other spacing and order, \u escapes, an escaped slash) imports.
        let target = TestPath()
        let jq = #"{"value":"caf\u00e9 \/ \\x41","key":"k\u00e9"}"# + "\n"
        let imported = try run([target.path, "import"], input: jq)
        XCTAssertEqual(imported.status, 0, imported.stderr)
        let copy = try Database(path: target.path, options: testOptions())
        XCTAssertEqual(try copy.get("ké"), "café / \\x41")
        try copy.close()
        // A TSV line with two tabs says how a tab inside a field is written.
        let bad = try run([TestPath().path, "import", "--format", "tsv"], input: "a\tb\tc\n")
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("line 1: expected KEY<TAB>VALUE, one tab (a tab inside a key or value is written \\t)"), bad.stderr)
    }

    /// Runs a system tool; returns its exit status and standard error.
    @discardableResult
    private func system(_ tool: String, _ arguments: [String]) throws -> (status: Int32, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [tool] + arguments
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, stderr)
    }

    /// A real full disk: a 96 MiB ext4 image, loop-mounted (root only; skipped with the
    /// reason when the machine cannot). Writes go on until the volume is full: the failing
    /// write is `.full`, every acknowledged key reads back in the same process, the
    /// database reopens and reads (API and kvctl) while the volume is still full, kvctl's
    /// write exits 77, and once space is freed a reopen takes writes again.
    func testFullExt4Volume() throws {
        guard getuid() == 0 else { throw XCTSkip("loop-mounting an ext4 image needs root: the real full-disk check is not run") }
        let dir = TestPath()
        let image = dir.root + "/volume.ext4"
        let mountPoint = dir.root + "/mnt"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        guard try system("truncate", ["-s", "96M", image]).status == 0, try system("mkfs.ext4", ["-q", "-F", image]).status == 0 else {
            throw XCTSkip("mkfs.ext4 is not available: the real full-disk check is not run")
        }
        let mounted = try system("mount", ["-o", "loop", image, mountPoint])
        guard mounted.status == 0 else {
            throw XCTSkip("cannot loop-mount an ext4 image here (\(mounted.stderr.trimmingCharacters(in: .whitespacesAndNewlines))): the real full-disk check is not run")
        }
        defer { _ = try? system("umount", [mountPoint]) }
        // Space to give back later.
        let filler = mountPoint + "/filler"
        XCTAssertTrue(FileManager.default.createFile(atPath: filler, contents: Data(repeating: 7, count: 12 << 20)))
        let spare = mountPoint + "/spare"
        XCTAssertTrue(FileManager.default.createFile(atPath: spare, contents: Data(repeating: 7, count: 16 << 20)))
        let path = mountPoint + "/db"
        var options = testOptions()
        options.memtableBytes = 4 << 20
        options.logPreallocateBytes = 64 << 20
        options.compression = .none  // the values below would compress to nothing
        let value = [UInt8](repeating: 0x5A, count: 2000)
        func key(_ index: Int) -> [UInt8] { Array(String(format: "key%08d", index).utf8) }
        var acknowledged = 0
        do {
            let db = try Database(path: path, options: options)
            var failure: KVError?
            while failure == nil && acknowledged < 200_000 {
                var batch = WriteBatch()
                for index in acknowledged..<(acknowledged + 100) { batch.put(key(index), value) }
                do {
                    try db.write(batch, durability: .sync)
                    acknowledged += 100
                } catch {
                    failure = error
                }
            }
            let error = try XCTUnwrap(failure, "the volume never filled")
            XCTAssertEqual(error.code, .full, "\(error)")
            XCTAssertGreaterThan(acknowledged, 10_000, "\(error)")
            for index in stride(from: 0, to: acknowledged, by: 97) { XCTAssertEqual(try db.get(key(index)), value, "key \(index)") }
            XCTAssertNil(try db.get(key(acknowledged)), "the failed batch left no trace")
            // Room again: writes go on in the same handle, after the pause between tries.
            try FileManager.default.removeItem(atPath: spare)
            usleep(UInt32(Database.resumeIntervalNanos / 1000) + 50_000)
            var batch = WriteBatch()
            for index in 0..<100 { batch.put(Array("resumed\(index)".utf8), value) }
            try db.write(batch, durability: .sync)
            for index in stride(from: 0, to: acknowledged, by: 97) { XCTAssertEqual(try db.get(key(index)), value, "resumed: key \(index)") }
            XCTAssertNil(try db.get(key(acknowledged)), "the failed batch left no trace after the resume")
            XCTAssertEqual(try db.get(Array("resumed99".utf8)), value)
            acknowledged += 100
            try? db.close()
        }
        do {
            let db = try Database(path: path, options: options)
            XCTAssertEqual(try db.scan().collect().count, acknowledged, "reopened on the full volume")
            try? db.close()
        }
        let count = try run([path, "count"])
        XCTAssertEqual(count.status, 0, count.stderr)
        XCTAssertEqual(count.stdout, "\(acknowledged)\n")
        // What room the closes and reopens gave back (their flushes, removed logs) is taken
        // up too: then not even a new log's header fits, and kvctl's write exits 77.
        let rest = mountPoint + "/rest"
        XCTAssertTrue(FileManager.default.createFile(atPath: rest, contents: nil))
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: rest))
        for chunk in [1 << 20, 4096, 512] {
            while (try? handle.write(contentsOf: Data(count: chunk))) != nil {}
        }
        try? handle.close()
        let put = try run([path, "put", "one", "more"])
        XCTAssertEqual(put.status, 77, "kvctl's write on the full volume: \(put.stderr)")
        XCTAssertEqual(try run([path, "count"]).stdout, "\(acknowledged)\n", "reads on the full volume")
        // Room for a part of an import (50 MB on a volume that is full but for what `rest`
        // held): the import fails whole, exit 77, and adds nothing.
        let restBytes = fileSize(rest)
        try FileManager.default.removeItem(atPath: rest)
        func rows(_ count: Int, _ name: String) -> String {
            (0..<count).map { "\(name)\($0)\t\(String(repeating: "v", count: 2000))\n" }.joined()
        }
        XCTAssertLessThan(restBytes, 40 << 20, "the import below must not fit")
        let failedImport = try run([path, "import", "--format", "tsv", "--compression", "none"], input: rows(25_000, "big"))
        XCTAssertEqual(failedImport.status, 77, "an import larger than the room: \(failedImport.stderr)")
        XCTAssertEqual(try run([path, "count"]).stdout, "\(acknowledged)\n", "nothing of the failed import")
        try FileManager.default.removeItem(atPath: filler)
        do {
            let db = try Database(path: path, options: options)
            try db.put("after", "room")
            try db.close()
        }
        let smallImport = try run([path, "import", "--format", "tsv"], input: rows(2_000, "small"))
        XCTAssertEqual(smallImport.status, 0, smallImport.stderr)
        let db = try Database(path: path, options: options)
        XCTAssertEqual(try db.get("after"), "room")
        XCTAssertEqual(try db.get("small1999"), String(repeating: "v", count: 2000))
        XCTAssertNil(try db.get("big0"))
        XCTAssertEqual(try db.scan().collect().count, acknowledged + 1 + 2_000)
        try db.close()
    }
}
