import PageStore
import Synchronization
import XCTest

@testable import KVEngine

/// The commit pipeline's bookkeeping and the log's space plan on their own: no file, no
/// ring, hand-made completions.
final class CommitQueueTests: XCTestCase {
    private let page = Int64(LogFormat.pageBytes)

    /// Records which waiters were acknowledged, in order.
    private final class Acks: Sendable {
        let list = Mutex<[String]>([])
        func ack(_ name: String) -> CommitQueue.Ack { { result in self.list.withLock { $0.append("\(name):\((try? result.get()) != nil ? "ok" : "failed")") } } }
        var all: [String] { list.withLock { $0 } }
    }

    func testChainsRetireInLogOrderWhateverOrderTheyComplete() {
        var queue = CommitQueue(lastSequence: 10)
        let acks = Acks()
        let first = queue.start(endOffset: page * 2, lastSequence: 11, carriesZeroFill: false)
        queue.wait(.init(lastSequence: 11, sync: true, ack: acks.ack("a")))
        let second = queue.start(endOffset: page * 3, lastSequence: 12, carriesZeroFill: true)
        queue.wait(.init(lastSequence: 12, sync: true, ack: acks.ack("b")))
        var acknowledged: [UInt64] = []

        // The later chain completes first: nothing retires, nothing is durable.
        XCTAssertFalse(queue.complete(second, .success(4096), trusting: true) { acknowledged.append($0.lastSequence) })
        XCTAssertEqual(acknowledged, [])
        XCTAssertEqual(queue.durableBytes, page)
        XCTAssertEqual(queue.durableSequence, 10)
        XCTAssertEqual(queue.chainsInFlight, 2)

        // The earlier one completes: both retire, in order, and the zero-fill with them.
        XCTAssertTrue(queue.complete(first, .success(4096), trusting: true) { acknowledged.append($0.lastSequence) })
        XCTAssertEqual(acknowledged, [11, 12])
        XCTAssertEqual(queue.durableBytes, page * 3)
        XCTAssertEqual(queue.durableSequence, 12)
        XCTAssertTrue(queue.isIdle)
        XCTAssertTrue(queue.waiters.isEmpty)
    }

    func testASyncWaiterPastTheChainWaitsAndABufferedOneBehindItWaitsToo() {
        var queue = CommitQueue(lastSequence: 0)
        let acks = Acks()
        let chain = queue.start(endOffset: page * 2, lastSequence: 5, carriesZeroFill: false)
        queue.wait(.init(lastSequence: 5, sync: true, ack: acks.ack("covered")))
        queue.wait(.init(lastSequence: 7, sync: true, ack: acks.ack("past")))
        queue.wait(.init(lastSequence: 8, sync: false, ack: acks.ack("buffered")))
        var acknowledged: [UInt64] = []
        _ = queue.complete(chain, .success(4096), trusting: true) { acknowledged.append($0.lastSequence) }
        XCTAssertEqual(acknowledged, [5], "only the sync write the chain covers is acknowledged")
        XCTAssertTrue(queue.hasSyncWaiter)

        let next = queue.start(endOffset: page * 3, lastSequence: 8, carriesZeroFill: false)
        _ = queue.complete(next, .success(4096), trusting: true) { acknowledged.append($0.lastSequence) }
        XCTAssertEqual(acknowledged, [5, 7, 8])
    }

    func testNothingIsDurableOnceTheLogIsNoLongerTrusted() {
        var queue = CommitQueue(lastSequence: 0)
        let acks = Acks()
        let first = queue.start(endOffset: page * 2, lastSequence: 1, carriesZeroFill: false)
        let second = queue.start(endOffset: page * 3, lastSequence: 2, carriesZeroFill: false)
        queue.wait(.init(lastSequence: 1, sync: true, ack: acks.ack("a")))
        queue.wait(.init(lastSequence: 2, sync: true, ack: acks.ack("b")))
        // The second fails first: the writer fails every waiter, then nothing it retires
        // (the first included, although it succeeds) makes anything durable.
        for ack in queue.fail() { ack(.failure(KVError(.io, "lost"))) }
        XCTAssertEqual(acks.all, ["a:failed", "b:failed"])
        var acknowledged = 0
        _ = queue.complete(second, .failure(PageStoreError(kind: .io, operation: "commit", path: "log", detail: "EIO")), trusting: false) { _ in acknowledged += 1 }
        _ = queue.complete(first, .success(4096), trusting: false) { _ in acknowledged += 1 }
        XCTAssertEqual(acknowledged, 0)
        XCTAssertEqual(queue.durableBytes, page)
        XCTAssertEqual(queue.durableSequence, 0)
        XCTAssertTrue(queue.isIdle)
    }

    // MARK: the space plan

    func testZeroFillGoesOnlyWithAChainAloneAndHoldsBackDataPastIt() {
        let chunk = Int64(LogSpace.zeroChunkBytes)
        var space = LogSpace(reserved: 4 << 20, zeroed: chunk, reservationStep: 1 << 20)
        // With chains in flight: no zero-fill, however close the tail is to the zeroed end.
        XCTAssertNil(space.plan(chainEndingAt: page * 2, alone: false).zeroFill)
        // Alone, within a chunk of the zeroed end: the next chunk from there.
        let plan = space.plan(chainEndingAt: page * 2, alone: true)
        XCTAssertEqual(plan.zeroFill?.from, page + chunk)
        XCTAssertEqual(plan.zeroFill?.bytes, chunk)
        XCTAssertFalse(space.blocksData(endingAt: page + chunk))
        XCTAssertTrue(space.blocksData(endingAt: page + chunk + page), "no data past a zero-fill in flight")
        space.zeroFillRetired()
        XCTAssertFalse(space.blocksData(endingAt: page + chunk + page))
        // A chunk or more of zeros still ahead of the tail: none this time.
        XCTAssertNil(space.plan(chainEndingAt: page * 3, alone: true).zeroFill)
    }

    func testZeroFillStaysInsideTheConfirmedReservation() {
        var space = LogSpace(reserved: page * 3, zeroed: page, reservationStep: 0)
        // Two pages reserved after the header, one zeroed: one page is left to zero.
        let plan = space.plan(chainEndingAt: page * 2, alone: true)
        XCTAssertEqual(plan.zeroFill?.from, page * 2)
        XCTAssertEqual(plan.zeroFill?.bytes, page)
        XCTAssertNil(plan.reserve, "a log without a reservation step never asks for one")
        space.zeroFillRetired()
        XCTAssertNil(space.plan(chainEndingAt: page * 3, alone: true).zeroFill, "nothing reserved is left to zero")
    }

    func testReservationsGrowInStepsAndStopOnceOneIsRefused() {
        let step = Int64(1 << 20)
        var space = LogSpace(reserved: step, zeroed: 0, reservationStep: step)
        let first = space.plan(chainEndingAt: page * 2, alone: false).reserve
        XCTAssertEqual(first?.offset, step)
        XCTAssertEqual(first?.length, step)
        XCTAssertEqual(space.reservationsInFlight, 1)
        let second = space.plan(chainEndingAt: step + page, alone: false).reserve
        XCTAssertEqual(second?.offset, step * 2)
        // The second completes first: it does not join the confirmed reservation (the
        // first could still be refused and leave a hole).
        space.reservationCompleted(offset: step * 2, length: step, succeeded: true)
        XCTAssertEqual(space.reservedBytes, step)
        space.reservationCompleted(offset: step, length: step, succeeded: false)
        XCTAssertEqual(space.reservedBytes, step)
        XCTAssertEqual(space.reservationsInFlight, 0)
        XCTAssertNil(space.plan(chainEndingAt: step * 2, alone: false).reserve, "a refused reservation stops the next ones")
    }
}
