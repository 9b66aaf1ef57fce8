import PageStore
import XCTest

@testable import KVEngine

/// The compaction picker on hand-built versions: which tables a compaction takes, where
/// they go, and when a move needs no rewrite. No table is read or written.
final class CompactionPickerTests: XCTestCase {
    /// Tables here are never opened; the cache only names where they would come from.
    nonisolated(unsafe) static var store: PageStore? = nil
    var tables: TableCache!

    override func setUpWithError() throws {
        if Self.store == nil { Self.store = try PageStore(options: testOptions().pageStore) }
        tables = TableCache(storage: Self.store!, directory: "/nonexistent", blocks: BlockCache(capacityBytes: 1 << 16), capacity: 8)
    }

    /// A table of user keys [smallest, largest] (one-letter strings here).
    func table(
        _ number: UInt64, _ smallest: String, _ largest: String, bytes: Int64 = 1 << 20, deletions: UInt64 = 0
    ) -> TableFile {
        var properties = TableProperties()
        properties.entries = 10
        properties.deletions = deletions
        properties.smallestSequence = number
        properties.largestSequence = number
        properties.smallest = Array(smallest.utf8).withUnsafeBytes { InternalKey.encode($0, tag: number << 8 | 1) }
        properties.largest = Array(largest.utf8).withUnsafeBytes { InternalKey.encode($0, tag: number << 8 | 1) }
        return TableFile(meta: TableMeta(number: number, fileBytes: bytes, properties: properties), tables: tables)
    }

    func version(_ levels: [Int: [TableFile]]) -> Version {
        var all = Array(repeating: [TableFile](), count: Version.levelCount)
        for (level, tables) in levels { all[level] = tables }
        return Version(levels: all)
    }

    let picker = CompactionPicker(level0Trigger: 4, levelBaseBytes: 10 << 20, levelMultiplier: 10)
    let noPointers = [[UInt8]?](repeating: nil, count: Version.levelCount)

    func numbers(_ tables: [TableFile]) -> [UInt64] { tables.map(\.number).sorted() }

    func testNothingIsDueInAnEmptyOrSmallVersion() {
        XCTAssertNil(picker.pick(version([:]), pointers: noPointers))
        let small = version([0: [table(3, "a", "b"), table(2, "c", "d"), table(1, "e", "f")], 1: [table(4, "a", "z", bytes: 9 << 20)]])
        XCTAssertNil(picker.pick(small, pointers: noPointers), "3 of 4 level-0 tables and level 1 at 90% of its target")
        XCTAssertEqual(picker.score(small).level, 1)
        XCTAssertEqual(picker.score(small).score, 0.9, accuracy: 1e-9)
    }

    func testLevelZeroAtItsTriggerTakesEveryLevelZeroTableAndWhatLiesBelow() throws {
        let v = version([
            0: [table(9, "m", "p"), table(8, "a", "c"), table(7, "b", "d"), table(6, "x", "z")],
            1: [table(1, "a", "b"), table(2, "e", "l"), table(3, "n", "o")],
        ])
        let plan = try XCTUnwrap(picker.pick(v, pointers: noPointers))
        XCTAssertEqual(plan.level, 0)
        XCTAssertEqual(plan.outputLevel, 1)
        XCTAssertEqual(numbers(plan.inputs), [6, 7, 8, 9])
        XCTAssertEqual(numbers(plan.below), [1, 2, 3], "every level-1 table within [a, z]")
        XCTAssertFalse(plan.trivial)
        XCTAssertNil(plan.pointer, "level 0 has no compaction pointer")
        XCTAssertNil(picker.pick(v, pointers: noPointers, level0: false), "level 0 is not due while a flush is running")
    }

    func testLevelZeroInputsWidenToEveryTableTheyOverlap() throws {
        // [a,c] meets [b,f], which meets [e,g]; [x,z] meets none of them.
        let v = version([0: [table(4, "x", "z"), table(3, "e", "g"), table(2, "b", "f"), table(1, "a", "c")]])
        let plan = try XCTUnwrap(picker.manual(level: 0, deepest: 0, version: v, lower: Array("a".utf8), upper: Array("a".utf8)))
        XCTAssertEqual(numbers(plan.inputs), [1, 2, 3])
        XCTAssertEqual(plan.outputLevel, 1)
        XCTAssertFalse(plan.trivial, "the bottom level is rewritten, not moved into")
        let direct = try XCTUnwrap(picker.plan(level: 0, inputs: [v.levels[0][3]], version: v))
        XCTAssertEqual(numbers(direct.inputs), [1, 2, 3])
    }

    func testDisjointLevelZeroTablesOverAnEmptyRangeMoveDownWhole() throws {
        let disjoint = version([0: [table(4, "g", "h"), table(3, "e", "f"), table(2, "c", "d"), table(1, "a", "b")], 2: [table(5, "a", "z")]])
        let plan = try XCTUnwrap(picker.pick(disjoint, pointers: noPointers))
        XCTAssertTrue(plan.trivial, "nothing in level 1 under them and no two overlap")
        XCTAssertEqual(plan.below.count, 0)
        let overlapping = version([0: [table(4, "g", "h"), table(3, "e", "f"), table(2, "c", "e"), table(1, "a", "b")]])
        XCTAssertFalse(try XCTUnwrap(picker.pick(overlapping, pointers: noPointers)).trivial, "[c,e] and [e,f] share e")
    }

    func testADeeperLevelGivesTheTableWithTheLeastOverlapBelowForItsSize() throws {
        // Level 1 is over its 10 MiB target. Table 11 lies over 8 MiB of level 2, table 12
        // over 1 MiB, table 13 over nothing but is small: 13 has ratio 0 and goes first.
        let v = version([
            1: [table(11, "a", "c", bytes: 4 << 20), table(12, "d", "f", bytes: 4 << 20), table(13, "g", "h", bytes: 3 << 20)],
            2: [table(21, "a", "b", bytes: 8 << 20), table(22, "e", "e", bytes: 1 << 20), table(23, "x", "y", bytes: 1 << 20)],
        ])
        let plan = try XCTUnwrap(picker.pick(v, pointers: noPointers))
        XCTAssertEqual(plan.level, 1)
        XCTAssertEqual(numbers(plan.inputs), [13])
        XCTAssertTrue(plan.trivial)
        XCTAssertEqual(plan.pointer, Array("h".utf8))
        // Without 13, table 12 (1 MiB below per 4 MiB) beats 11 (8 MiB below per 4 MiB).
        let without = version([1: [v.levels[1][0], v.levels[1][1], table(14, "i", "j", bytes: 3 << 20)], 2: [v.levels[2][0], v.levels[2][1], table(24, "i", "j", bytes: 8 << 20)]])
        let next = try XCTUnwrap(picker.pick(without, pointers: noPointers))
        XCTAssertEqual(numbers(next.inputs), [12])
        XCTAssertEqual(numbers(next.below), [22])
        XCTAssertFalse(next.trivial)
    }

    func testTiesGoToTheFirstTableAfterTheLevelsPointer() throws {
        let v = version([1: [table(1, "a", "b", bytes: 4 << 20), table(2, "c", "d", bytes: 4 << 20), table(3, "e", "f", bytes: 4 << 20)]])
        var pointers = noPointers
        XCTAssertEqual(numbers(try XCTUnwrap(picker.pick(v, pointers: pointers)).inputs), [1])
        pointers[1] = Array("b".utf8)
        let second = try XCTUnwrap(picker.pick(v, pointers: pointers))
        XCTAssertEqual(numbers(second.inputs), [2])
        XCTAssertEqual(second.pointer, Array("d".utf8))
        pointers[1] = second.pointer
        XCTAssertEqual(numbers(try XCTUnwrap(picker.pick(v, pointers: pointers)).inputs), [3])
        pointers[1] = Array("f".utf8)
        XCTAssertEqual(numbers(try XCTUnwrap(picker.pick(v, pointers: pointers)).inputs), [1], "past the last table: round robin from the start")
    }

    func testTheDeepestLevelsScoreIsNeverDue() {
        let v = version([Version.levelCount - 1: [table(1, "a", "z", bytes: .max / 2)]])
        XCTAssertNil(picker.pick(v, pointers: noPointers))
        XCTAssertEqual(picker.pendingBytes(v), 0)
    }

    func testTargetsGrowByTheMultiplierAndSaturate() {
        XCTAssertEqual(picker.maxBytes(level: 1), 10 << 20)
        XCTAssertEqual(picker.maxBytes(level: 2), 100 << 20)
        XCTAssertEqual(picker.maxBytes(level: 3), 1000 << 20)
        let huge = CompactionPicker(level0Trigger: 4, levelBaseBytes: Int64.max / 4, levelMultiplier: 10)
        XCTAssertEqual(huge.maxBytes(level: 6), .max)
    }

    func testPendingBytesCountLevelZeroWhenDueAndEachLevelsExcess() {
        let level0 = (1...4).map { table(UInt64($0), "a", "b", bytes: 1 << 20) }
        let v = version([0: level0, 1: [table(10, "a", "z", bytes: 15 << 20)], 2: [table(11, "a", "z", bytes: 50 << 20)]])
        XCTAssertEqual(picker.pendingBytes(v), (4 << 20) + (5 << 20), "level 0's 4 MiB, level 1's 5 MiB over, level 2 under")
        let notDue = version([0: Array(level0.prefix(3))])
        XCTAssertEqual(picker.pendingBytes(notDue), 0)
    }

    func testManualStepsRewriteIntoTheBottomAndCompactABottomWithTombstonesIntoItself() throws {
        let v = version([
            1: [table(1, "a", "c"), table(2, "m", "p")],
            2: [table(3, "b", "d", deletions: 1), table(4, "x", "z")],
        ])
        let (a, c) = (Array("a".utf8), Array("c".utf8))
        let first = try XCTUnwrap(picker.manual(level: 1, deepest: 2, version: v, lower: a, upper: c))
        XCTAssertEqual(numbers(first.inputs), [1])
        XCTAssertEqual(numbers(first.below), [3])
        XCTAssertFalse(first.trivial)
        XCTAssertNil(picker.manual(level: 0, deepest: 2, version: v, lower: a, upper: c), "level 0 is empty")
        let bottom = try XCTUnwrap(picker.manual(level: 2, deepest: 2, version: v, lower: nil, upper: nil))
        XCTAssertEqual(bottom.outputLevel, 2)
        XCTAssertEqual(numbers(bottom.inputs), [3, 4])
        XCTAssertEqual(bottom.below.count, 0)
        XCTAssertNil(picker.manual(level: 2, deepest: 2, version: v, lower: Array("x".utf8), upper: nil), "[x,z] holds no tombstone")
        // A move that lands in the bottom is a rewrite even with nothing below it.
        let intoEmpty = try XCTUnwrap(picker.manual(level: 1, deepest: 2, version: v, lower: Array("m".utf8), upper: nil))
        XCTAssertEqual(numbers(intoEmpty.inputs), [2])
        XCTAssertFalse(intoEmpty.trivial)
    }

    func testOnlyLevelZeroHoldingDataCompactsIntoLevelOneAndStops() throws {
        let v = version([0: [table(2, "a", "b", deletions: 1), table(1, "c", "d", deletions: 1)]])
        let plan = try XCTUnwrap(picker.manual(level: 0, deepest: 0, version: v, lower: nil, upper: nil))
        XCTAssertEqual(plan.outputLevel, 1)
        XCTAssertFalse(plan.trivial, "level 1 is the bottom: tombstones are dropped there")
        let after = version([1: [table(3, "a", "d", deletions: 1)]])
        XCTAssertNil(picker.manual(level: 1, deepest: 0, version: after, lower: nil, upper: nil), "the bottom was just rewritten")
        XCTAssertNil(picker.manual(level: 2, deepest: 0, version: after, lower: nil, upper: nil))
    }
}
