import NIOCore
import TollgateEngine
import TollgateFleet
import TollgateModel
import XCTest

/// The rule every host follows for the rows after its position (Protocol/FLEET.md 4.3), without PostgreSQL.
final class LogCursorTests: XCTestCase {
    static let at: UnixMillis = 1_800_000_000_000

    func row(_ sequence: UInt64, origin: String = "b", incarnation: UInt64 = 9, reference: UInt64 = 1, _ change: StateChange) throws -> LogRow {
        LogRow(sequence: sequence, origin: origin, incarnation: incarnation, reference: reference, type: change.typeCode, payload: try change.encodedPayload())
    }

    func revoke(_ id: String) -> StateChange { .tokensRevoked(tokenIDs: [id], reason: "r", actor: "a", at: Self.at) }

    func testRowsInOrderAreAppliedWrappedWithTheirSequence() throws {
        var cursor = LogCursor(hostID: "a", incarnation: 1, journalSequenceAtStart: 0, position: 0)
        let (changes, error) = cursor.advance(over: [try row(1, revoke("t1")), try row(2, revoke("t2"))])
        XCTAssertNil(error)
        XCTAssertEqual(changes, [.fleetApplied(sequence: 1, revoke("t1")), .fleetApplied(sequence: 2, revoke("t2"))])
        XCTAssertEqual(cursor.position, 2)
    }

    /// A missing sequence number is never skipped: what came before it is applied, nothing after it, and the
    /// position stays where the gap begins, so the next read asks for the missing row again.
    func testAGapStopsTheCursorBeforeIt() throws {
        var cursor = LogCursor(hostID: "a", incarnation: 1, journalSequenceAtStart: 0, position: 4)
        let (changes, error) = cursor.advance(over: [try row(5, revoke("t5")), try row(7, revoke("t7")), try row(8, revoke("t8"))])
        XCTAssertEqual(changes, [.fleetApplied(sequence: 5, revoke("t5"))])
        XCTAssertEqual(error, .gap(position: 5, found: 7))
        XCTAssertEqual(cursor.position, 5)
        // The slow transaction's row arrives later: everything is applied, in order.
        let (later, none) = cursor.advance(over: [try row(6, revoke("t6")), try row(7, revoke("t7")), try row(8, revoke("t8"))])
        XCTAssertNil(none)
        XCTAssertEqual(later.count, 3)
        XCTAssertEqual(cursor.position, 8)
    }

    func testRowsReadTwiceAreIgnored() throws {
        var cursor = LogCursor(hostID: "a", incarnation: 1, journalSequenceAtStart: 0, position: 3)
        let (changes, error) = cursor.advance(over: [try row(2, revoke("t2")), try row(3, revoke("t3")), try row(4, revoke("t4"))])
        XCTAssertNil(error)
        XCTAssertEqual(changes, [.fleetApplied(sequence: 4, revoke("t4"))])
    }

    /// Own records of this run were applied when decided; those of an earlier run are applied only when the journal
    /// at start did not hold them (a crash between the log's commit and the fsync).
    func testOwnRecordsAreSkippedOnlyWhenAlreadyApplied() throws {
        var cursor = LogCursor(hostID: "a", incarnation: 2, journalSequenceAtStart: 10, position: 0)
        let rows = [
            try row(1, origin: "a", incarnation: 2, reference: 50, revoke("this-run")),
            try row(2, origin: "a", incarnation: 1, reference: 10, revoke("earlier-run-journaled")),
            try row(3, origin: "a", incarnation: 1, reference: 11, revoke("earlier-run-lost-locally")),
            try row(4, origin: "b", incarnation: 2, reference: 1, revoke("another-host")),
        ]
        let (changes, error) = cursor.advance(over: rows)
        XCTAssertNil(error)
        XCTAssertEqual(changes, [.fleetApplied(sequence: 3, revoke("earlier-run-lost-locally")), .fleetApplied(sequence: 4, revoke("another-host"))])
        XCTAssertEqual(cursor.position, 4)
    }

    /// A METER is counted from the log only, so the origin applies its own when it reads it, in this run or after a
    /// restart (FLEET.md 10); its other own records stay skipped.
    func testOwnMetersAreAppliedFromTheLogLikeAnyoneElses() throws {
        var cursor = LogCursor(hostID: "a", incarnation: 2, journalSequenceAtStart: 10, position: 0)
        let entry = UsageEntry(tokenID: "t", meter: "m", quantity: 3, at: 1)
        let meter = StateChange.metered(entry, idempotencyKey: "k")
        let rows = [
            LogRow(sequence: 1, origin: "a", incarnation: 2, reference: 50, type: 5, payload: try meter.encodedPayload()),
            LogRow(sequence: 2, origin: "a", incarnation: 1, reference: 9, type: 5, payload: try meter.encodedPayload()),
            try row(3, origin: "a", incarnation: 2, reference: 51, revoke("this-run")),
        ]
        let (changes, error) = cursor.advance(over: rows)
        XCTAssertNil(error)
        XCTAssertEqual(changes, [.fleetApplied(sequence: 1, meter), .fleetApplied(sequence: 2, meter)])
        XCTAssertEqual(cursor.position, 3)
    }

    func testARecordThatDoesNotDecodeStopsTheCursor() throws {
        var cursor = LogCursor(hostID: "a", incarnation: 1, journalSequenceAtStart: 0, position: 0)
        let bad = LogRow(sequence: 2, origin: "b", incarnation: 1, reference: 2, type: 4, payload: [1, 2, 3])
        let local = LogRow(sequence: 2, origin: "b", incarnation: 1, reference: 2, type: 12, payload: [])
        for wrong in [bad, local] {
            var c = cursor
            let (changes, error) = c.advance(over: [try row(1, revoke("t1")), wrong])
            XCTAssertEqual(changes.count, 1)
            guard case .undecodable(let sequence, _)? = error else { return XCTFail("\(String(describing: error))") }
            XCTAssertEqual(sequence, 2)
            XCTAssertEqual(c.position, 1)
        }
        _ = cursor.advance(over: [])
        XCTAssertEqual(cursor.position, 0)
    }
}

/// The horizon's arithmetic on an injected clock (Protocol/FLEET.md 7).
final class FleetHorizonTests: XCTestCase {
    let start = Timestamp(millis: 1_800_000_000_000)

    func testAHostIsStaleExactlyHAfterTheLastCatchUpWasSent() {
        var horizon = FleetHorizon(horizonMillis: 30_000, startedAt: start)
        XCTAssertFalse(horizon.isStale(at: start.adding(millis: 29_999)))
        XCTAssertTrue(horizon.isStale(at: start.adding(millis: 30_000)), "before the first catch-up the start counts as one")
        horizon.confirm(sentAt: start.adding(millis: 25_000))
        XCTAssertFalse(horizon.isStale(at: start.adding(millis: 54_999)))
        XCTAssertTrue(horizon.isStale(at: start.adding(millis: 55_000)))
        XCTAssertEqual(horizon.lagMillis(at: start.adding(millis: 26_500)), 1_500)
    }

    /// An answer that arrives late (sent before a newer one) does not move the horizon back.
    func testAnOlderCatchUpNeverMovesTheHorizonBack() {
        var horizon = FleetHorizon(horizonMillis: 1_000, startedAt: start)
        horizon.confirm(sentAt: start.adding(millis: 500))
        horizon.confirm(sentAt: start.adding(millis: 200))
        XCTAssertEqual(horizon.staleAt, start.adding(millis: 1_500))
    }

    func testBackoffDoublesToFiveSecondsAndCyclesThroughTheStandbys() {
        var backoff = ReconnectBackoff(addresses: 2)
        var seen: [(Int, Int64)] = []
        for _ in 0..<9 {
            seen.append(backoff.next)
            backoff.failed()
        }
        XCTAssertEqual(seen.map(\.0), [0, 1, 0, 1, 0, 1, 0, 1, 0])
        XCTAssertEqual(seen.map(\.1), [0, 100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000])
        backoff.connected()
        XCTAssertEqual(backoff.next.delayMillis, 0)
    }
}

/// The outbound queue: apply order kept, a failed batch retried first, each waiter answered once.
final class OutboundQueueTests: XCTestCase {
    func testAFailedBatchIsRetriedFirstAndWaitersAreAnsweredOnce() {
        let queue = OutboundQueue(wake: {})
        let answers = NSLockedArray()
        for reference in 1...3 as ClosedRange<UInt64> {
            queue.enqueue(type: 4, payload: [UInt8(reference)], reference: reference, deadline: 100) { answers.append("\(reference):\($0)") }
        }
        let first = queue.takeBatch(limit: 2)
        XCTAssertEqual(first.map(\.reference), [1, 2])
        XCTAssertEqual(queue.takeBatch(limit: 2).count, 0, "one batch in flight at a time")
        queue.failed()
        let again = queue.takeBatch(limit: 5)
        XCTAssertEqual(again.map(\.reference), [1, 2, 3], "the failed records first, in order")
        queue.expire(now: 100)
        XCTAssertEqual(answers.values.sorted(), ["1:timedOut", "2:timedOut", "3:timedOut"], "unconfirmed at the deadline")
        queue.committed(again)
        XCTAssertEqual(answers.values.count, 3, "a waiter answered at its deadline is not answered again")
        XCTAssertEqual(queue.statistics.queued, 0)
        XCTAssertEqual(queue.statistics.committed, 3)
    }
}

extension OutboundQueueTests {
    /// A METER whose key was claimed already leaves the queue for good, answered refused; the others committed.
    func testARefusedRecordIsAnsweredRefusedAndLeavesTheQueue() {
        let queue = OutboundQueue(wake: {})
        let answers = NSLockedArray()
        for reference in 1...3 as ClosedRange<UInt64> {
            queue.enqueue(type: 5, payload: [], reference: reference, key: "k\(reference)", deadline: 100) { answers.append("\(reference):\($0)") }
        }
        let batch = queue.takeBatch(limit: 5)
        XCTAssertEqual(batch.map(\.key), ["k1", "k2", "k3"])
        queue.committed(batch, refused: [2])
        XCTAssertEqual(answers.values.sorted(), ["1:committed", "2:refused", "3:committed"])
        XCTAssertEqual(queue.statistics.queued, 0)
        XCTAssertEqual(queue.statistics.committed, 2)
        XCTAssertEqual(queue.statistics.refused, 1)
    }
}

final class NSLockedArray: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func append(_ item: String) { lock.withLock { items.append(item) } }
    var values: [String] { lock.withLock { items } }
}
