import Dispatch
import Synchronization
import TollgateCore
import XCTest

/// The daemon-wide bound on durable requests: counting at the bound, waking waiters in a group, and no wake-up
/// lost when connections enter, wait and leave on several threads at once.
final class DurableBacklogUnitTests: XCTestCase {
    func testRefusesAtTheBoundAndCountsThePeak() {
        let backlog = DurableBacklog(limit: 4)
        for _ in 0..<4 { XCTAssertTrue(backlog.tryEnter()) }
        XCTAssertFalse(backlog.tryEnter())
        backlog.leave()
        XCTAssertTrue(backlog.tryEnter())
        XCTAssertEqual(backlog.statistics.waiting, 4)
        XCTAssertEqual(backlog.statistics.peak, 4)
        XCTAssertEqual(backlog.statistics.holds, 0)
    }

    func testWaitersAreWokenOnceTheBacklogFallsBelowThreeQuarters() {
        let backlog = DurableBacklog(limit: 8)
        XCTAssertEqual(backlog.resumeBelow, 6)
        XCTAssertFalse(backlog.notifyWhenRoom { XCTFail("there was room: nothing to wait for") })
        for _ in 0..<8 { XCTAssertTrue(backlog.tryEnter()) }
        let woken = Counter()
        XCTAssertTrue(backlog.notifyWhenRoom { woken.add() })
        XCTAssertTrue(backlog.notifyWhenRoom { woken.add() })
        backlog.leave()  // 7
        backlog.leave()  // 6
        XCTAssertEqual(woken.value, 0, "still at or above resumeBelow")
        backlog.leave()  // 5
        XCTAssertEqual(woken.value, 2, "both waiters, together")
        backlog.leave()
        XCTAssertEqual(woken.value, 2, "each waiter once")
        XCTAssertEqual(backlog.statistics.holds, 2)
    }

    /// Threads enter, wait when refused, and leave, against a bound of 2: if a wake-up were lost between a refusal
    /// and the registration, a thread would wait forever (bounded here, so the test fails instead of hanging).
    func testNoWakeUpIsLostUnderContention() {
        let backlog = DurableBacklog(limit: 2)
        let threads = 4, rounds = 20_000
        let lost = Counter()
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            let room = DispatchSemaphore(value: 0)
            for _ in 0..<rounds {
                while !backlog.tryEnter() {
                    if backlog.notifyWhenRoom({ room.signal() }), room.wait(timeout: .now() + 30) == .timedOut {
                        lost.add()
                        return
                    }
                }
                backlog.leave()
            }
        }
        XCTAssertEqual(lost.value, 0, "a waiter was never woken")
        XCTAssertEqual(backlog.statistics.waiting, 0)
        XCTAssertLessThanOrEqual(backlog.statistics.peak, 2)
    }
}

private final class Counter: Sendable {
    private let count = Mutex(0)
    func add() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}
