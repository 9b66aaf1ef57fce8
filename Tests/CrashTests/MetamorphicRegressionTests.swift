import XCTest

@testable import KVEngine

/// Bugs the metamorphic test found (or that were found by hand and then by it), each as
/// its reduced operation list in the text form of `MetaOp`, run under the option sets
/// named with it (every set when none is named).
final class MetamorphicRegressionTests: XCTestCase {
    private func check(_ text: String, under names: [String]? = nil, file: StaticString = #filePath, line: UInt = #line) throws {
        let operations = try MetaOp.parse(text)
        let sets = try (names ?? MetaOptionSet.all.map(\.name)).map { name in
            try XCTUnwrap(MetaOptionSet.named(name), "no option set \(name)", file: file, line: line)
        }
        for set in sets {
            let runner = MetaRunner(operations: operations, optionSet: set, seed: 1)
            runner.run()
            XCTAssertNil(runner.failure, "under \(set.name)", file: file, line: line)
        }
        XCTAssertNil(MetaCheck(operations: operations, optionSets: sets, seed: 1).run(), file: file, line: line)
    }

    /// An ingest over buffered writes, a tombstone and tables: the buffered writes become
    /// durable with it, its values replace theirs, a refused ingest (keys out of order)
    /// adds nothing, and a crash right after keeps the ingest and the writes after it.
    func testIngestOverBufferedWritesSurvivesACrash() throws {
        try check("""
            put x61 v1/10 sync
            put x62 v2/10 sync
            flush
            put x63 v3/10 buffered
            del x61 buffered
            snap s1
            ingest put x61 v4/20 ; put x63 v5/20 ; put x64 v6/3000
            ingest put x66 v7/5 ; put x65 v8/5
            put x65 v9/4 buffered
            get x61
            get x61 @s1
            scan start=- end=- prefix=- forward limit=-
            crash
            get x63
            get x66
            compact - -
            scan start=- end=- prefix=- reverse limit=-
            """)
    }

    /// Range deletes around a refused write, a flush, a reopen and a crash: each holds
    /// throughout. (The bug found in review, a resume after a full disk that rebuilt the
    /// memtable without its range deletes, is `RangeDeleteFullDiskTests`: here the refused
    /// write need not be the log's.)
    func testRangeDeletesAroundARefusedWriteAndACrash() throws {
        try check("""
            put x61 v1/5 sync
            put x62 v2/5 sync
            flush
            put x6201 v3/5 sync
            delrange x61 x63 buffered
            noroom x64 v4/5 sync
            get x61
            get x6201
            scan start=- end=- prefix=- forward limit=-
            flush
            get x62
            reopen
            scan start=- end=- prefix=- reverse limit=-
            delrange x64 x65 sync
            crash
            getmany x61,x62,x64
            compact - -
            count
            """)
    }

    /// A ranged compaction of level 0 took the tables meeting its range, widened the range
    /// once, and left out an older level-0 table that overlapped the widened range; the
    /// tombstone of `b` went down to level 1 and was dropped there (no deeper level held
    /// `b`), so the older `b = old` in level 0 came back.
    func testRangedCompactionDoesNotResurrectADeletedKey() throws {
        try check("""
            put x6131 v1/1 sync
            put x62 v2/3 sync
            compact x7a7a x7a7a
            put x6132 v3/1 sync
            del x62 sync
            put x63 v4/1 sync
            compact x7a7a x7a7a
            put x63 v5/1 sync
            put x6d v6/1 sync
            compact x6d x6d
            get x62
            scan start=- end=- prefix=- forward limit=-
            """, under: ["default"])
    }

    /// Found by the sweep (seed 1492, reduced from 142 operations): the same widening, the
    /// other way round. The ranged compaction moved the newer level-0 table holding
    /// `007f = v36` to level 1 and left an older one holding a tombstone of `007f` in
    /// level 0, above it: `get` found the tombstone first and returned nil.
    func testRangedCompactionDoesNotLeaveAnOlderTombstoneAboveANewerValue() throws {
        try check("""
            del x007f sync
            put x61616200 v32/24 sync
            compact x01 x01
            del x007f buffered
            flush
            put x007f v36/17 sync
            del x01 sync
            crash
            put x7f620100 v48/21 sync
            put x01 v49/448 sync
            compact x010101 -
            get x007f
            """, under: ["default"])
    }
}
