import Foundation
import TollgateClient
import TollgateModel
import TollgateProtocol
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The real daemon on temporary sockets, spoken to by the client library.
final class EndToEndTests: DaemonTestCase {
    override func setUp() async throws {
        try await super.setUp()
        try await harness.start()
    }

    func testHelloReportsTheSocketRole() async throws {
        let api = try await harness.api()
        let admin = try await harness.admin()
        let apiHello = try await api.hello()
        let adminHello = try await admin.hello()
        XCTAssertEqual(apiHello.role, .api)
        XCTAssertEqual(adminHello.role, .admin)
        XCTAssertEqual(apiHello.version, 1)
        XCTAssertEqual(apiHello.maxFrameSize, 65536)
        let unsupported = try await api.send(.hello(HelloRequest(minVersion: 2, maxVersion: 3, clientName: "future")))
        XCTAssertEqual(unsupported.status, .unsupportedVersion)
    }

    func testCheckMeterRevokeWalkthrough() async throws {
        let p = try await harness.provision()
        let api = try await harness.api()

        let allowed = try await api.check(CheckRequest(token: p.secret, scopes: ["read"], meter: "requests", cost: 3))
        XCTAssertTrue(allowed.allowed)
        XCTAssertEqual(allowed.tokenID, p.token.id)
        XCTAssertEqual(allowed.licenseID, "lic_test")
        XCTAssertEqual(allowed.subject, "svc-test")
        XCTAssertEqual(allowed.quota?.limit, 1000)
        XCTAssertEqual(allowed.quota?.remaining, 997)

        let scope = try await api.check(CheckRequest(token: p.secret, scopes: ["write"]))
        XCTAssertEqual(scope.reason, .insufficientScope, "the plan grants write, the token does not")

        let metered = try await api.meter(MeterRequest(token: p.secret, meter: "requests", quantity: 10, idempotencyKey: "evt-1"))
        XCTAssertFalse(metered.duplicate)
        XCTAssertEqual(metered.quota?.remaining, 987)
        let repeated = try await api.meter(MeterRequest(token: p.secret, meter: "requests", quantity: 10, idempotencyKey: "evt-1"))
        XCTAssertTrue(repeated.duplicate)
        XCTAssertEqual(repeated.quota?.remaining, 987, "a repeated idempotency key is not counted again")

        // A revocation on one connection is seen by the next check on any other connection.
        let other = try await harness.api()
        let revoked = try await api.revoke(RevokeRequest(target: .secret(p.secret), reason: "leaked in a log"))
        XCTAssertEqual(revoked, 1)
        let after = try await other.check(CheckRequest(token: p.secret))
        XCTAssertEqual(after.reason, .revoked)
        XCTAssertEqual(after.tokenID, p.token.id)

        let admin = try await harness.admin()
        let info = try await admin.token(id: p.token.id)
        XCTAssertNotEqual(info.revokedAt, 0)
        XCTAssertEqual(info.revokeReason, "leaked in a log")
    }

    func testDenyReasonsAreToldApart() async throws {
        let p = try await harness.provision()
        let api = try await harness.api()
        let admin = try await harness.admin()

        let malformedResult = try await api.check(CheckRequest(token: "tg_live_not-a-token"))
        XCTAssertEqual(malformedResult.reason, .malformedToken)
        XCTAssertEqual(malformedResult.tokenID, "")
        var mistyped = Array(p.secret)
        mistyped[20] = mistyped[20] == "a" ? "b" : "a"
        let mistypedResult = try await api.check(CheckRequest(token: String(mistyped)))
        XCTAssertEqual(mistypedResult.reason, .malformedToken, "the checksum catches a mistyped character before any lookup")

        let (unknown, _) = try await admin.issue(IssueRequest(licenseID: p.licenseID, subject: "other"))
        _ = try await admin.revoke(RevokeRequest(target: .license(p.licenseID)))
        let revokedResult = try await api.check(CheckRequest(token: unknown))
        XCTAssertEqual(revokedResult.reason, .revoked)

        let future = Int64(Date().timeIntervalSince1970 * 1000) + 86_400_000
        let (early, _) = try await admin.issue(IssueRequest(licenseID: p.licenseID, subject: "later", notBefore: future))
        let earlyResult = try await api.check(CheckRequest(token: early))
        XCTAssertEqual(earlyResult.reason, .notYetValid)

        _ = try await admin.putLicense(LicenseSpec(id: p.licenseID, customer: "x", plan: "test_plan", status: .canceled))
        let (fresh, _) = try await admin.issue(IssueRequest(licenseID: p.licenseID, subject: "fresh"))
        let inactive = try await api.check(CheckRequest(token: fresh))
        XCTAssertEqual(inactive.reason, .licenseInactive)

        let wellFormedButUnknown = "tg_test_00000000000000000000000000000000000000000003waIaM"
        let unknownResult = try await api.check(CheckRequest(token: wellFormedButUnknown))
        XCTAssertEqual(unknownResult.reason, .unknownToken)
    }

    func testQuotaDeniesWithoutConsumingAndPlanChangesApplyLive() async throws {
        let plan = Plan(id: "small", entitlements: ["read"], quotas: [QuotaRule(meter: "requests", period: .day, limit: 5)])
        let p = try await harness.provision(plan: plan)
        let api = try await harness.api()
        let admin = try await harness.admin()
        let first = try await api.check(CheckRequest(token: p.secret, scopes: ["read"], meter: "requests", cost: 4))
        XCTAssertTrue(first.allowed)
        let over = try await api.check(CheckRequest(token: p.secret, scopes: ["read"], meter: "requests", cost: 2))
        XCTAssertEqual(over.reason, .quotaExceeded)
        XCTAssertEqual(over.quota?.remaining, 1, "the denied check consumed nothing")
        let exact = try await api.check(CheckRequest(token: p.secret, scopes: ["read"], meter: "requests", cost: 1))
        XCTAssertTrue(exact.allowed)
        XCTAssertEqual(exact.quota?.remaining, 0)

        // Upsell: a bigger quota applies to the very next check, with no restart.
        _ = try await admin.putPlan(Plan(id: "small", entitlements: ["read"], quotas: [QuotaRule(meter: "requests", period: .day, limit: 50)]))
        let upsold = try await api.check(CheckRequest(token: p.secret, scopes: ["read"], meter: "requests", cost: 1))
        XCTAssertTrue(upsold.allowed)
        XCTAssertEqual(upsold.quota?.remaining, 44)

        // Downgrade: removing an entitlement denies it at once.
        _ = try await admin.putPlan(Plan(id: "small", entitlements: [], quotas: []))
        let downgraded = try await api.check(CheckRequest(token: p.secret, scopes: ["read"]))
        XCTAssertEqual(downgraded.reason, .insufficientScope)
    }

    func testRateLimitAnswersRetryAfter() async throws {
        let plan = Plan(id: "slow", entitlements: ["*"], ratePerSecond: 1, burst: 2)
        let p = try await harness.provision(plan: plan)
        let api = try await harness.api()
        var reasons: [DenyReason] = []
        var retry: UInt32 = 0
        for _ in 0..<3 {
            let result = try await api.check(CheckRequest(token: p.secret))
            reasons.append(result.reason)
            retry = result.retryAfterMillis
        }
        XCTAssertEqual(reasons, [.none, .none, .rateLimited], "a burst of 2 lets two through at once")
        XCTAssertGreaterThan(retry, 0)
        XCTAssertLessThanOrEqual(retry, 1000)
    }

    func testATokenBoundToCallersIsUselessToAnyOtherProcess() async throws {
        let p = try await harness.provision()
        let admin = try await harness.admin()
        let me = UInt32(geteuid())
        let (mine, _) = try await admin.issue(IssueRequest(licenseID: p.licenseID, subject: "bound-to-me", metadata: [KeyValue("tollgate.bind_uids", "\(me)")]))
        let (theirs, _) = try await admin.issue(IssueRequest(licenseID: p.licenseID, subject: "bound-elsewhere", metadata: [KeyValue("tollgate.bind_uids", "\(me &+ 1)")]))
        let api = try await harness.api()
        let allowed = try await api.check(CheckRequest(token: mine))
        XCTAssertTrue(allowed.allowed, "the peer uid of this connection is the bound one")
        let refused = try await api.check(CheckRequest(token: theirs))
        XCTAssertEqual(refused.reason, .callerNotAllowed)
        XCTAssertEqual(refused.subject, "bound-elsewhere")
        let meter = try await api.meter(MeterRequest(token: theirs, meter: "requests", quantity: 1))
        XCTAssertEqual(meter.reason, .callerNotAllowed)
    }

    func testAdminRequestsAreRefusedOnTheAPISocket() async throws {
        let p = try await harness.provision()
        let api = try await harness.api()
        let issue = try await api.send(.issue(IssueRequest(licenseID: "lic_test", subject: "intruder")))
        XCTAssertEqual(issue.status, .notPermitted)
        let revokeByID = try await api.send(.revoke(RevokeRequest(target: .tokenID(p.token.id))))
        XCTAssertEqual(revokeByID.status, .notPermitted)
        let stats = try await api.send(.stats)
        XCTAssertEqual(stats.status, .notPermitted)
        // The connection stays usable.
        let check = try await api.check(CheckRequest(token: p.secret, scopes: ["read"]))
        XCTAssertTrue(check.allowed)
        let token = try await (try await harness.admin()).token(id: p.token.id)
        XCTAssertEqual(token.revokedAt, 0, "the refused revoke did nothing")
    }

    func testControlPlaneErrorsAreTyped() async throws {
        let admin = try await harness.admin()
        let missingLicense = try await admin.send(.issue(IssueRequest(licenseID: "nope", subject: "s")))
        XCTAssertEqual(missingLicense.status, .notFound)
        let missingPlan = try await admin.send(.licensePut(LicenseSpec(id: "lic", customer: "c", plan: "nope", status: .active)))
        XCTAssertEqual(missingPlan.status, .notFound)
        let badID = try await admin.send(.licensePut(LicenseSpec(id: "has space", customer: "c", plan: "free", status: .active)))
        XCTAssertEqual(badID.status, .invalidArgument)
        let missingToken = try await admin.send(.tokenGet(tokenID: "tok_missing"))
        XCTAssertEqual(missingToken.status, .notFound)
        let unknownSecret = try await admin.send(.revoke(RevokeRequest(target: .secret("tg_test_00000000000000000000000000000000000000000003waIaM"))))
        XCTAssertEqual(unknownSecret.status, .notFound)
        if case .error(_, let message) = unknownSecret {
            XCTAssertFalse(message.contains("tg_test_"), "error messages never echo a secret")
        }
    }

    func testTokenListPaginatesInIDOrder() async throws {
        let p = try await harness.provision()
        let admin = try await harness.admin()
        for i in 0..<24 { _ = try await admin.issue(IssueRequest(licenseID: p.licenseID, subject: "s\(i)")) }
        var seen: [String] = []
        var after = ""
        repeat {
            let page = try await admin.listTokens(TokenListRequest(licenseID: p.licenseID, after: after, limit: 10))
            XCTAssertLessThanOrEqual(page.tokens.count, 10)
            seen += page.tokens.map(\.id)
            after = page.next
        } while !after.isEmpty
        XCTAssertEqual(seen.count, 25)
        XCTAssertEqual(seen, seen.sorted())
        XCTAssertEqual(Set(seen).count, 25)
        let license = try await admin.license(id: p.licenseID)
        XCTAssertEqual(license.activeTokens, 25)
    }

    func testPipelinedRequestsAreAnsweredInOrderAcrossDurableWrites() async throws {
        let p = try await harness.provision()
        let api = try await harness.api()
        // One write carrying checks interleaved with durable meters: answers must come back in request order.
        var bytes: [UInt8] = []
        var expected: [(UInt32, Opcode)] = []
        for i in 0..<60 {
            let id = UInt32(1000 + i)
            if i % 7 == 3 {
                bytes += RawFrame.request(.meter(MeterRequest(token: p.secret, meter: "requests", quantity: 1, idempotencyKey: "pipe-\(i)")), id: id)
                expected.append((id, .meter))
            } else {
                bytes += RawFrame.request(.check(CheckRequest(token: p.secret, scopes: ["read"])), id: id)
                expected.append((id, .check))
            }
        }
        try await api.sendRaw(bytes)
        for (id, opcode) in expected {
            let frame = try await api.nextUnsolicitedFrame()
            XCTAssertEqual(frame.header.requestID, id)
            XCTAssertEqual(frame.header.opcode, opcode.rawValue)
            XCTAssertEqual(frame.header.status, Status.ok.rawValue)
        }
    }

    func testStatsCountChecks() async throws {
        let p = try await harness.provision()
        let api = try await harness.api()
        for _ in 0..<5 { _ = try await api.check(CheckRequest(token: p.secret, scopes: ["read"])) }
        _ = try await api.check(CheckRequest(token: "garbage"))
        let stats = Dictionary(try await (try await harness.admin()).stats().map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(stats["checks_total"], "6")
        XCTAssertEqual(stats["checks_denied"], "1")
        XCTAssertEqual(stats["tokens"], "1")
        XCTAssertEqual(stats["licenses"], "1")
    }
}
