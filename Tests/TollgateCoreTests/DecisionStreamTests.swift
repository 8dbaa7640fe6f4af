import Foundation
import Logging
@testable import TollgateCore
import TollgateEngine
import TollgateJournal
import TollgateModel
import TollgateProtocol
import XCTest

/// The decision ring and the core's decision stream: what a slot carries, the filter, the exact accounting of what a
/// reader that fell behind lost, and that the core records nothing while nobody watches.
final class DecisionStreamTests: XCTestCase {
    private static func record(_ ring: DecisionRing, _ count: Int, license: String = "lic_a", route: String? = nil, scopes: [String] = ["read"]) {
        for index in 0..<count {
            let result = CheckResult(reason: index % 3 == 0 ? .rateLimited : .none, tokenID: "tok_\(index)", licenseID: license, subject: "svc")
            ring.record(at: 1_000 + Int64(index), latencyNanoseconds: UInt32(index), source: route == nil ? .socket : .forwardAuth, result: result, route: route, scopes: scopes)
        }
    }

    func testASlotCarriesEveryFieldOfTheDecision() {
        let ring = DecisionRing(capacity: 8)
        let reader = ring.subscribe()
        let subject = String(repeating: "s", count: Limits.maxSubject)
        let license = String(repeating: "l", count: Limits.maxIdentifier)
        ring.record(
            at: 1_767_225_600_123, latencyNanoseconds: 4242, source: .forwardAuth,
            result: CheckResult(reason: .quotaExceeded, tokenID: "tok_0123456789012345678901", licenseID: license, subject: subject),
            route: "GET /v1/é/{id}", scopes: [])
        ring.record(at: 5, latencyNanoseconds: 1, source: .socket, result: CheckResult(reason: .malformedToken), route: nil, scopes: ["read", "write", "x"])
        let events = reader.poll(limit: 10)
        XCTAssertEqual(events, [
            DecisionEvent(
                sequence: 1, at: 1_767_225_600_123, latencyNanoseconds: 4242, source: .forwardAuth, reason: .quotaExceeded,
                tokenID: "tok_0123456789012345678901", licenseID: license, subject: subject, route: "GET /v1/é/{id}"),
            DecisionEvent(sequence: 2, at: 5, latencyNanoseconds: 1, source: .socket, reason: .malformedToken, tokenID: "", licenseID: "", subject: "", route: "read write x"),
        ])
        XCTAssertEqual(reader.dropped, 0)
        XCTAssertEqual(reader.poll(limit: 10), [], "each decision once")
    }

    func testALongRouteIsCutAtACharacterBoundaryAndScopesWhole() {
        let ring = DecisionRing(capacity: 4)
        let reader = ring.subscribe()
        // 127 ASCII bytes then a 2-byte character: cut before it, not in its middle.
        ring.record(at: 0, latencyNanoseconds: 0, source: .forwardAuth, result: CheckResult(reason: .none), route: "GET /" + String(repeating: "a", count: 122) + "é", scopes: [])
        // scope_0…scope_9 take 7 bytes, the next 8; with their spaces, 15 fit in 128 (124 bytes), not 16.
        let scopes = (0..<20).map { "scope_\($0)" }
        ring.record(at: 0, latencyNanoseconds: 0, source: .socket, result: CheckResult(reason: .none), route: nil, scopes: scopes)
        let events = reader.poll(limit: 10)
        XCTAssertEqual(events[0].route.utf8.count, 127)
        XCTAssertEqual(events[1].route, scopes.prefix(15).joined(separator: " "))
    }

    func testAReaderThatFellBehindCountsExactlyWhatItLost() {
        let ring = DecisionRing(capacity: 16)
        let reader = ring.subscribe()
        Self.record(ring, 40)
        let events = reader.poll(limit: 100)
        XCTAssertEqual(events.map(\.sequence), Array(25...40), "the newest 16 are still there")
        XCTAssertEqual(reader.dropped, 24)
        // A second round: 10 more, read in two polls with a limit.
        Self.record(ring, 10)
        XCTAssertEqual(reader.poll(limit: 4).map(\.sequence), [41, 42, 43, 44])
        XCTAssertEqual(reader.poll(limit: 100).map(\.sequence), Array(45...50))
        XCTAssertEqual(reader.dropped, 24)
    }

    func testTheLicenseFilterAndIndependentReaders() {
        let ring = DecisionRing(capacity: 64)
        let all = ring.subscribe()
        let acme = ring.subscribe(licenseID: "acme")
        Self.record(ring, 3, license: "globex")
        Self.record(ring, 2, license: "acme")
        XCTAssertEqual(acme.poll(limit: 10).map(\.licenseID), ["acme", "acme"])
        XCTAssertEqual(all.poll(limit: 10).count, 5, "a reader's progress is its own")
        let late = ring.subscribe()
        XCTAssertEqual(late.poll(limit: 10), [], "a subscription starts after the newest decision")
    }

    func testReadersOnOtherThreadsGetEveryDecisionOrCountIt() async {
        let ring = DecisionRing(capacity: 64)
        let readers = (0..<3).map { _ in ring.subscribe() }
        let total = 20_000
        let writer = Task.detached { DecisionStreamTests.record(ring, total) }
        let counts = await withTaskGroup(of: (Int, UInt64, Bool).self) { group in
            for reader in readers {
                group.addTask {
                    var seen = 0
                    var last: UInt64 = 0
                    var ordered = true
                    while UInt64(seen) + reader.dropped < UInt64(total) {
                        for event in reader.poll(limit: 1000) {
                            ordered = ordered && event.sequence > last && event.tokenID == "tok_\(event.sequence - 1)" && event.at == 999 + Int64(event.sequence)
                            last = event.sequence
                            seen += 1
                        }
                        await Task.yield()
                    }
                    return (seen, reader.dropped, ordered)
                }
            }
            var all: [(Int, UInt64, Bool)] = []
            for await result in group { all.append(result) }
            return all
        }
        await writer.value
        for (seen, dropped, ordered) in counts {
            XCTAssertEqual(UInt64(seen) + dropped, UInt64(total))
            XCTAssertTrue(ordered, "every event read whole, in order, never a torn slot")
        }
    }

    // MARK: - The core

    private var directory: String!
    private var core: ApplicationCore!
    let clock = ManualClock()

    override func setUp() async throws {
        directory = NSTemporaryDirectory() + "tollgate-decisions-" + UUID().uuidString
        let (journal, recovered) = try Journal.open(directory: directory, options: JournalOptions(fsync: false))
        core = ApplicationCore(
            state: try ApplicationCore.rebuildState(from: recovered), journal: journal, recovery: recovered.report, clock: clock,
            options: .init(), logger: Logger(label: "decision-tests") { _ in SwiftLogNoOpLogHandler() })
    }

    override func tearDown() async throws {
        try? core.currentJournal.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    func testTheCoreRecordsOnlyWhileSomeoneWatches() {
        _ = core.check(CheckRequest(token: "tg_nothing"))
        XCTAssertNil(core.lock.withLock { core.decisionRing }, "no watcher ever: no ring, nothing written")
        let subscription = core.watchDecisions()
        XCTAssertEqual(core.decisionWatcherCount, 1)
        var batch: [CheckResult] = []
        core.checkBatch([CheckRequest(token: "tg_a", scopes: ["read"]), CheckRequest(token: "tg_b", scopes: ["write", "admin"])], caller: nil, into: &batch)
        _ = core.checkDetailed(CheckRequest(token: "tg_c", options: .details), caller: nil, route: "GET /v1/items/{id}")
        let events = subscription.poll(limit: 10)
        XCTAssertEqual(events.map(\.route), ["read", "write admin", "GET /v1/items/{id}"])
        XCTAssertEqual(events.map(\.source), [.socket, .socket, .forwardAuth])
        XCTAssertEqual(events.map(\.reason), [.malformedToken, .malformedToken, .malformedToken])
        XCTAssertEqual(events.map(\.at), Array(repeating: clock.now().millis, count: 3))
        subscription.cancel()
        subscription.cancel()
        XCTAssertEqual(core.decisionWatcherCount, 0, "cancelled once, counted once")
        let newest = core.lock.withLock { core.decisionRing!.newest }
        _ = core.check(CheckRequest(token: "tg_after"))
        XCTAssertEqual(core.lock.withLock { core.decisionRing!.newest }, newest, "nothing recorded once nobody watches")
    }

    func testAStalledSubscriptionNeverHoldsUpChecks() {
        let stalled = core.watchDecisions()
        let checks = 3 * ApplicationCore.decisionRingCapacity
        var results: [CheckResult] = []
        for _ in 0..<checks / 64 {
            core.checkBatch(Array(repeating: CheckRequest(token: "tg_x"), count: 64), caller: nil, into: &results)
        }
        XCTAssertEqual(results.count, checks, "every check decided with a reader that never read")
        let events = stalled.poll(limit: .max)
        XCTAssertEqual(events.count, ApplicationCore.decisionRingCapacity)
        XCTAssertEqual(UInt64(events.count) + stalled.dropped, UInt64(checks))
        stalled.cancel()
    }
}
