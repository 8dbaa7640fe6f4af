import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import TollgateCore
import TollgateEngine
import TollgateFleet
import TollgateJournal
import TollgateModel
import TollgateProtocol
import XCTest

/// A clock the test moves by hand.
final class StepClock: WallClock, @unchecked Sendable {
    private let lock = NSLock()
    private var current = Timestamp(millis: 1_800_000_000_000)
    func now() -> Timestamp { lock.withLock { current } }
    func advance(millis: Int64) { lock.withLock { current = current.adding(millis: millis) } }
}

/// Our own seam's other side, recorded: what the core hands over, in order, and answers the test gives back.
final class RecordingReplicator: ChangeReplicator, @unchecked Sendable {
    struct Handed { var type: UInt8; var reference: UInt64; var waits: Bool }
    private let lock = NSLock()
    private var _handed: [Handed] = []
    private var completions: [@Sendable (Bool) -> Void] = []
    private var _accepts = true
    var acceptsChanges: Bool { lock.withLock { _accepts } }
    func setAccepts(_ value: Bool) { lock.withLock { _accepts = value } }
    var handed: [Handed] { lock.withLock { _handed } }
    func enqueue(type: UInt8, payload: [UInt8], reference: UInt64, completion: (@Sendable (Bool) -> Void)?) {
        lock.withLock {
            _handed.append(Handed(type: type, reference: reference, waits: completion != nil))
            if let completion { completions.append(completion) }
        }
    }
    private var usage: [(payload: [UInt8], key: String, completion: @Sendable (UsageCommit) -> Void)] = []
    func enqueueUsage(payload: [UInt8], reference: UInt64, idempotencyKey: String, completion: @escaping @Sendable (UsageCommit) -> Void) {
        lock.withLock {
            _handed.append(Handed(type: 5, reference: reference, waits: true))
            usage.append((payload, idempotencyKey, completion))
        }
    }
    var usageWaiting: [String] { lock.withLock { usage.map(\.key) } }
    /// Answers the oldest waiting METER; returns its record, as the log would hold it.
    @discardableResult
    func answerUsage(_ outcome: UsageCommit) throws -> StateChange {
        let (payload, _, completion) = lock.withLock { usage.removeFirst() }
        completion(outcome)
        return try StateChange.decode(type: 5, payload: ByteBuffer(bytes: payload))
    }
    /// Answers the oldest waiting record.
    func answer(_ committed: Bool) {
        let completion = lock.withLock { completions.removeFirst() }
        completion(committed)
    }
    var waiting: Int { lock.withLock { completions.count } }
}

/// The core's durable path in fleet mode (Protocol/FLEET.md 4.1, 5.2, 7), with a real journal in a temporary
/// directory: acknowledgement after both the journal and the fleet log, refusal while disconnected, the horizon on
/// the check path, and records read from the log journaled so that a restart rebuilds them and the position.
final class CoreSeamTests: XCTestCase {
    var directory: String!
    var core: ApplicationCore!
    let clock = StepClock()
    let replicator = RecordingReplicator()

    override func setUp() async throws {
        directory = NSTemporaryDirectory() + "tollgate-fleet-seam-" + UUID().uuidString
        core = try open()
    }

    override func tearDown() async throws {
        try? core.currentJournal.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    func open() throws -> ApplicationCore {
        let (journal, recovered) = try Journal.open(directory: directory, options: JournalOptions(fsync: false))
        return ApplicationCore(
            state: try ApplicationCore.rebuildState(from: recovered), journal: journal, recovery: recovered.report, clock: clock,
            options: .init(), logger: Logger(label: "fleet-seam") { _ in SwiftLogNoOpLogHandler() })
    }

    func send(_ request: Request, to core: ApplicationCore? = nil) async -> Response {
        let core = core ?? self.core!
        return await withCheckedContinuation { continuation in
            if let now = core.handle(request, from: .daemon, completion: { continuation.resume(returning: $0) }) { continuation.resume(returning: now) }
        }
    }

    /// Sends without waiting; the answer is delivered to `answers`.
    func start(_ request: Request, answers: NIOLockedValueBox<[Response]>) {
        if let now = core.handle(request, from: .daemon, completion: { r in answers.withLockedValue { $0.append(r) } }) {
            answers.withLockedValue { $0.append(now) }
        }
    }

    func waitUntil(_ condition: @escaping () -> Bool) async {
        while !condition() { await Task.yield() }
    }

    func testAChangeIsAnsweredOnlyOnceTheFleetLogHasCommittedIt() async throws {
        core.attachReplicator(replicator, staleAt: clock.now().adding(millis: 60_000))
        let answers = NIOLockedValueBox<[Response]>([])
        start(.planPut(Plan(id: "p", entitlements: ["read"])), answers: answers)
        await waitUntil { self.replicator.waiting == 1 && self.core.currentJournal.statistics.durableSequence >= 1 }
        XCTAssertEqual(answers.withLockedValue { $0.count }, 0, "journaled but not committed to the log: not answered")
        replicator.answer(true)
        await waitUntil { answers.withLockedValue { $0.count } == 1 }
        guard case .plan = answers.withLockedValue({ $0[0] }) else { return XCTFail("\(answers.withLockedValue { $0 })") }
        XCTAssertEqual(replicator.handed.map(\.type), [1])
        XCTAssertEqual(replicator.handed.map(\.reference), [core.currentJournal.lastSequence], "the reference is the journal's sequence")
    }

    func testAnUnconfirmedCommitIsAnsweredFleetUnconfirmed() async throws {
        core.attachReplicator(replicator, staleAt: clock.now().adding(millis: 60_000))
        let answers = NIOLockedValueBox<[Response]>([])
        start(.orgPut(OrgSpec(id: "o", name: "O", suspended: false)), answers: answers)
        await waitUntil { self.replicator.waiting == 1 }
        replicator.answer(false)
        await waitUntil { answers.withLockedValue { $0.count } == 1 }
        guard case .error(let status, _) = answers.withLockedValue({ $0[0] }) else { return XCTFail() }
        XCTAssertEqual(status, .fleetUnconfirmed)
    }

    func testWhileTheLogIsUnreachableAChangeIsRefusedBeforeItIsMade() async throws {
        core.attachReplicator(replicator, staleAt: clock.now().adding(millis: 60_000))
        replicator.setAccepts(false)
        let before = core.currentJournal.lastSequence
        let answer = await send(.planPut(Plan(id: "p", entitlements: ["read"])))
        guard case .error(let status, _) = answer else { return XCTFail("\(answer)") }
        XCTAssertEqual(status, .fleetUnavailable)
        XCTAssertEqual(core.currentJournal.lastSequence, before, "nothing journaled")
        XCTAssertNil(core.withState { $0.plans["p"] }, "nothing applied")
        XCTAssertTrue(replicator.handed.isEmpty)
    }

    /// Check consumption goes to the log without anyone waiting; host-local housekeeping does not go at all.
    func testConsumptionIsReplicatedUnwaitedAndHousekeepingIsNot() async throws {
        let secret = try await provision()
        core.attachReplicator(replicator, staleAt: clock.now().adding(millis: 60_000))
        XCTAssertTrue(core.check(CheckRequest(token: secret, meter: "requests", cost: 1)).allowed)
        core.flushPendingUsage()
        core.housekeeping(sweep: true)
        XCTAssertEqual(replicator.handed.map(\.type), [6])
        XCTAssertEqual(replicator.handed.map(\.waits), [false])
    }

    func testEveryCheckIsDeniedFleetStaleFromTheHorizonOnUntilACatchUpIsConfirmed() async throws {
        let secret = try await provision()
        core.attachReplicator(replicator, staleAt: clock.now().adding(millis: 1_000))
        clock.advance(millis: 999)
        XCTAssertTrue(core.check(CheckRequest(token: secret)).allowed)
        clock.advance(millis: 1)
        XCTAssertEqual(core.check(CheckRequest(token: secret)).reason, .fleetStale)
        XCTAssertEqual(core.check(CheckRequest(token: "not-a-token")).reason, .fleetStale, "whatever the token")
        var batch: [CheckResult] = []
        core.checkBatch([CheckRequest(token: secret), CheckRequest(token: secret)], caller: nil, into: &batch)
        XCTAssertEqual(batch.map(\.reason), [.fleetStale, .fleetStale], "the pipelined path too")
        core.confirmFleetCatchUp(staleAt: clock.now().adding(millis: 1_000))
        XCTAssertTrue(core.check(CheckRequest(token: secret)).allowed)
    }

    /// Another host's revocation applied here is journaled with its sequence: a restart rebuilds both.
    func testRecordsFromTheLogSurviveARestartWithTheirPosition() async throws {
        let secret = try await provision()
        let tokenID = core.check(CheckRequest(token: secret)).tokenID
        core.attachReplicator(replicator, staleAt: clock.now().adding(millis: 60_000))
        let revoke = StateChange.tokensRevoked(tokenIDs: [tokenID], reason: "elsewhere", actor: "host b", at: clock.now().millis)
        core.applyFleetRecords([.fleetApplied(sequence: 7, revoke)], position: 9)
        XCTAssertEqual(core.check(CheckRequest(token: secret)).reason, .revoked)
        XCTAssertEqual(core.fleetPosition, 9)
        XCTAssertTrue(replicator.handed.isEmpty, "a record read from the log is not sent back to it")
        try core.currentJournal.flush(timeout: .seconds(10))
        try core.currentJournal.close()
        let reopened = try open()
        core = reopened
        XCTAssertEqual(reopened.check(CheckRequest(token: secret)).reason, .revoked)
        XCTAssertEqual(reopened.fleetPosition, 9)
    }

    func exported(_ meter: String) -> UInt64 {
        core.withState { $0.usageRows(UsageQuery(from: 0, to: .max)) }.filter { $0.meter == meter }.reduce(0) { $0 + $1.quantity }
    }

    /// A METER is not counted where it is decided: only when its record comes back from the log, so that no host
    /// holds usage the log does not (FLEET.md 10). The local journal gets a marker whose sequence is the reference.
    func testAMeterIsCountedOnlyWhenReadBackFromTheLog() async throws {
        let secret = try await provision()
        core.attachReplicator(replicator, staleAt: clock.now().adding(millis: 60_000))
        let answers = NIOLockedValueBox<[Response]>([])
        start(.meter(MeterRequest(token: secret, meter: "calls", quantity: 4, idempotencyKey: "k1")), answers: answers)
        XCTAssertEqual(replicator.usageWaiting, ["k1"])
        XCTAssertEqual(replicator.handed.last?.reference, core.currentJournal.lastSequence, "the marker's sequence is the reference")
        XCTAssertEqual(exported("calls"), 0, "not counted before the log has it")
        let record = try replicator.answerUsage(.counted)
        await waitUntil { answers.withLockedValue { $0.count } == 1 }
        guard case .meter(let result) = answers.withLockedValue({ $0[0] }) else { return XCTFail("\(answers.withLockedValue { $0 })") }
        XCTAssertTrue(result.allowed)
        XCTAssertFalse(result.duplicate)
        XCTAssertEqual(exported("calls"), 0, "counted when read back, not when committed")
        core.applyFleetRecords([.fleetApplied(sequence: 1, record)], position: 1)
        XCTAssertEqual(exported("calls"), 4)
        // Read back, the key is known here: a repeat is a duplicate without asking the log.
        let again = await send(.meter(MeterRequest(token: secret, meter: "calls", quantity: 4, idempotencyKey: "k1")))
        guard case .meter(let repeated) = again else { return XCTFail("\(again)") }
        XCTAssertTrue(repeated.duplicate)
        XCTAssertTrue(replicator.usageWaiting.isEmpty)
        // A restart replays the marker as nothing and the record read back as the METER: counted once.
        try core.currentJournal.flush(timeout: .seconds(10))
        try core.currentJournal.close()
        core = try open()
        XCTAssertEqual(exported("calls"), 4)
    }

    /// A key the log finds claimed already (by another host) is answered duplicate and counted nowhere by this METER;
    /// a repeat on this host while the first is queued waits for the first's outcome instead of queuing again.
    func testAKeyClaimedElsewhereIsAnsweredDuplicateAndARepeatWaitsForTheFirst() async throws {
        let secret = try await provision()
        core.attachReplicator(replicator, staleAt: clock.now().adding(millis: 60_000))
        let answers = NIOLockedValueBox<[Response]>([])
        start(.meter(MeterRequest(token: secret, meter: "calls", quantity: 2, idempotencyKey: "shared")), answers: answers)
        start(.meter(MeterRequest(token: secret, meter: "calls", quantity: 2, idempotencyKey: "shared")), answers: answers)
        XCTAssertEqual(replicator.usageWaiting, ["shared"], "queued once")
        XCTAssertEqual(answers.withLockedValue { $0.count }, 0)
        try replicator.answerUsage(.duplicate)
        await waitUntil { answers.withLockedValue { $0.count } == 2 }
        for answer in answers.withLockedValue({ $0 }) {
            guard case .meter(let result) = answer else { return XCTFail("\(answer)") }
            XCTAssertTrue(result.duplicate)
        }
        XCTAssertEqual(exported("calls"), 0)
        // Unconfirmed: the client is told the outcome is unknown (it retries with the same key).
        start(.meter(MeterRequest(token: secret, meter: "calls", quantity: 2, idempotencyKey: "later")), answers: answers)
        try replicator.answerUsage(.unconfirmed)
        await waitUntil { answers.withLockedValue { $0.count } == 3 }
        guard case .error(let status, _) = answers.withLockedValue({ $0[2] }) else { return XCTFail() }
        XCTAssertEqual(status, .fleetUnconfirmed)
    }

    /// A METER answered duplicate counts nothing here, so its quota reading leaves its own quantity out, as a single
    /// host's duplicate does (10 of 10 left, not 7), for the log's answer and for a repeat that waited on it.
    func testADuplicateReadsTheQuotaWithoutItsOwnQuantity() async throws {
        let secret = try await provision()
        core.attachReplicator(replicator, staleAt: clock.now().adding(millis: 60_000))
        let answers = NIOLockedValueBox<[Response]>([])
        start(.meter(MeterRequest(token: secret, meter: "requests", quantity: 3, idempotencyKey: "elsewhere")), answers: answers)
        start(.meter(MeterRequest(token: secret, meter: "requests", quantity: 3, idempotencyKey: "elsewhere")), answers: answers)
        try replicator.answerUsage(.duplicate)
        await waitUntil { answers.withLockedValue { $0.count } == 2 }
        for answer in answers.withLockedValue({ $0 }) {
            guard case .meter(let result) = answer else { return XCTFail("\(answer)") }
            XCTAssertTrue(result.duplicate)
            XCTAssertEqual(result.quota?.limit, 10)
            XCTAssertEqual(result.quota?.remaining, 10)
        }
        // A METER the log counts reads its own quantity in.
        start(.meter(MeterRequest(token: secret, meter: "requests", quantity: 3, idempotencyKey: "here")), answers: answers)
        try replicator.answerUsage(.counted)
        await waitUntil { answers.withLockedValue { $0.count } == 3 }
        guard case .meter(let counted) = answers.withLockedValue({ $0[2] }) else { return XCTFail() }
        XCTAssertEqual(counted.quota?.remaining, 7)
    }

    /// The live-host count divides every rate rule (FLEET.md 9): rate 30/s burst 30 on 3 hosts is 10/s burst 10 here.
    func testTheRateShareDividesRateAndBurst() async throws {
        _ = await send(.planPut(Plan(id: "r", entitlements: ["read"], rateLimits: [RateRule(pool: .license, ratePerSecond: 3, burst: 30)])))
        _ = await send(.licensePut(LicenseSpec(id: "rl", customer: "c", plan: "r", status: .active)))
        guard case .issue(let secret, _) = await send(.issue(IssueRequest(licenseID: "rl", subject: "s", scopes: ["read"]))) else {
            return XCTFail("issue failed")
        }
        core.setRateShare(hosts: 3)
        let admitted = (0..<40).filter { _ in core.check(CheckRequest(token: secret)).allowed }.count
        XCTAssertEqual(admitted, 10, "burst 30 / 3 hosts, the clock standing still")
        clock.advance(millis: 1_000)
        XCTAssertEqual((0..<5).filter { _ in core.check(CheckRequest(token: secret)).allowed }.count, 1, "rate 3/s / 3 hosts: one a second")
        core.setRateShare(hosts: 1)
        clock.advance(millis: 60_000)
        XCTAssertEqual((0..<40).filter { _ in core.check(CheckRequest(token: secret)).allowed }.count, 30, "a single host: the rule as it is")
        XCTAssertEqual(LicensingState.shared(RateRule(pool: .license, ratePerSecond: 2, burst: 1), share: 3).ratePerSecond, 1, "at least 1")
    }

    func provision() async throws -> String {
        _ = await send(.planPut(Plan(id: "p", entitlements: ["read"], quotas: [QuotaRule(meter: "requests", period: .month, limit: 10)])))
        _ = await send(.licensePut(LicenseSpec(id: "l", customer: "c", plan: "p", status: .active)))
        guard case .issue(let secret, _) = await send(.issue(IssueRequest(licenseID: "l", subject: "s", scopes: ["read"]))) else {
            throw XCTSkip("issue failed")
        }
        return secret
    }
}
