import Foundation
import Logging
@testable import TollgateCore
import TollgateEngine
import TollgateJournal
import TollgateModel
import TollgateProtocol
import XCTest

/// A clock the test moves by hand.
final class ManualClock: WallClock, @unchecked Sendable {
    private let lock = NSLock()
    private var current: Timestamp
    init(_ start: Timestamp = Timestamp(millis: 1_800_000_000_000)) { current = start }
    func now() -> Timestamp { lock.withLock { current } }
    func advance(millis: Int64) { lock.withLock { current = current.adding(millis: millis) } }
}

/// The core without sockets: the operation table decides who may call what and when it is answered; one place
/// turns errors into answers.
final class ApplicationCoreTests: XCTestCase {
    private var directory: String!
    private var core: ApplicationCore!
    private var journal: Journal!
    let clock = ManualClock()

    override func setUp() async throws {
        directory = NSTemporaryDirectory() + "tollgate-core-tests-" + UUID().uuidString
        let (journal, recovered) = try Journal.open(directory: directory, options: JournalOptions(fsync: false))
        self.journal = journal
        core = ApplicationCore(
            state: try ApplicationCore.rebuildState(from: recovered), journal: journal, recovery: recovered.report, clock: clock,
            options: .init(), logger: Logger(label: "core-tests") { _ in SwiftLogNoOpLogHandler() })
    }

    override func tearDown() async throws {
        try? core.currentJournal.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Sends a request and waits for its answer, now or after the journal.
    private func send(_ request: Request, as role: SocketRole = .admin, uid: UInt32? = 0) async -> Response {
        await withCheckedContinuation { continuation in
            if let now = core.handle(request, from: Caller(role: role, uid: uid), completion: { continuation.resume(returning: $0) }) {
                continuation.resume(returning: now)
            }
        }
    }

    private func provision() async throws -> String {
        _ = await send(.planPut(Plan(id: "p", entitlements: ["read"], quotas: [QuotaRule(meter: "requests", period: .month, limit: 10)])))
        _ = await send(.licensePut(LicenseSpec(id: "l", customer: "c", plan: "p", status: .active)))
        guard case .issue(let secret, _) = await send(.issue(IssueRequest(licenseID: "l", subject: "s", scopes: ["read"]))) else {
            throw XCTSkip("issue failed")
        }
        return secret
    }

    /// Every opcode has exactly one operation; the control plane is admin-only; what changes state is answered
    /// after the journal and nothing else is; only data-plane changes other than REVOKE count in the backlog.
    func testTheOperationTableCoversEveryOpcodeAndStatesEachRule() {
        XCTAssertEqual(Operation.all.map(\.opcode), Opcode.allCases.sorted { $0.rawValue < $1.rawValue })
        let changes: Set<Opcode> = [
            .meter, .revoke, .issue, .licensePut, .planPut, .derive, .rotate, .rotationEnd, .orgPut, .creditsGrant, .licenseDelete, .planDelete, .orgDelete,
            .exchange, .subjectStatus, .rolePut, .roleDelete,
        ]
        let dataPlane: Set<Opcode> = [.hello, .ping, .check, .meter, .revoke, .release, .settle, .derive, .exchange]
        for operation in Operation.all {
            XCTAssertEqual(operation.timing == .afterJournal, changes.contains(operation.opcode), "\(operation.opcode.name)")
            XCTAssertEqual(operation.callers == .dataPlane, dataPlane.contains(operation.opcode), "\(operation.opcode.name)")
            XCTAssertEqual(operation.countsInBacklog, [.meter, .derive, .exchange].contains(operation.opcode), "\(operation.opcode.name)")
            XCTAssertTrue(operation.permits(.admin))
            XCTAssertEqual(operation.permits(.api), dataPlane.contains(operation.opcode))
        }
    }

    func testControlPlaneRequestsFromTheAPISocketAreRefusedBeforeTheyAreDecided() async throws {
        let before = journal.lastSequence
        let answer = await send(.issue(IssueRequest(licenseID: "l", subject: "s")), as: .api)
        XCTAssertEqual(answer, .error(.notPermitted, "ISSUE is served on the admin socket only"))
        XCTAssertEqual(journal.lastSequence, before, "nothing was journaled")
    }

    func testTheAPISocketRevokesBySecretOnly() async throws {
        let secret = try await provision()
        guard case .token(let info) = await send(.tokenList(TokenListRequest(licenseID: "l"))).tokenFromList else { return XCTFail("no token") }
        let byID = await send(.revoke(RevokeRequest(target: .tokenID(info.id))), as: .api)
        guard case .error(.notPermitted, _) = byID else { return XCTFail("\(byID)") }
        let bySecret = await send(.revoke(RevokeRequest(target: .secret(secret))), as: .api)
        XCTAssertEqual(bySecret, .revoke(revoked: 1))
        XCTAssertEqual(core.check(CheckRequest(token: secret)).reason, .revoked)
    }

    /// A lone CHECK and a batch take one route: the same decisions, counters and consumption.
    func testALoneCheckAndABatchDecideAlike() async throws {
        let secret = try await provision()
        let request = CheckRequest(token: secret, meter: "requests", cost: 4)
        let lone = await send(.check(request), as: .api)
        var batch: [CheckResult] = []
        core.checkBatch([request, request], caller: nil, into: &batch)
        guard case .check(let first) = lone else { return XCTFail("\(lone)") }
        XCTAssertEqual(first.quota?.remaining, 6)
        XCTAssertEqual(batch[0].quota?.remaining, 2)
        XCTAssertEqual(batch[1].reason, .quotaExceeded)
        let stats = Dictionary(core.statistics().map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(stats["checks_total"], "3")
        XCTAssertEqual(stats["checks_denied"], "1")
    }

    /// A CHECK whose meter name the wire does not allow is refused the same way alone as in the table.
    func testAMeterNameTooLongIsRefusedWithInvalidArgument() async throws {
        let long = String(repeating: "m", count: Limits.maxMeterName + 1)
        let answer = await send(.check(CheckRequest(token: "tg_live_x", meter: long)), as: .api)
        XCTAssertEqual(answer, .error(.invalidArgument, "the meter name must be at most \(Limits.maxMeterName) bytes"))
        XCTAssertFalse(ApplicationCore.admits(CheckRequest(token: "", meter: long)))
    }

    /// The journal's error text (it may name paths and errno) is logged, never answered.
    func testAJournalFailureIsAnsweredWithoutItsDetail() async throws {
        try core.currentJournal.close()
        for request: Request in [
            .planPut(Plan(id: "q", entitlements: ["read"])),
            .licensePut(LicenseSpec(id: "m", customer: "c", plan: "q", status: .active)),
        ] {
            let answer = await send(request)
            guard case .error(.unavailable, let message) = answer else { return XCTFail("\(answer)") }
            XCTAssertFalse(message.contains(directory), message)
            XCTAssertFalse(message.lowercased().contains("journal is closed"), message)
        }
    }

    func testTheEngineRefusalsKeepTheirStatusAndMessage() async {
        let missing = await send(.licenseGet(licenseID: "nosuch"))
        XCTAssertEqual(missing, .error(.notFound, "license 'nosuch' does not exist"))
        let badPlan = await send(.licensePut(LicenseSpec(id: "l2", customer: "c", plan: "nosuch", status: .active)))
        guard case .error(let status, _) = badPlan else { return XCTFail("\(badPlan)") }
        XCTAssertTrue([.notFound, .invalidArgument].contains(status))
    }
}

private extension Response {
    var tokenFromList: Response? {
        guard case .tokenList(let tokens, _) = self, let first = tokens.first else { return nil }
        return .token(first)
    }
}
