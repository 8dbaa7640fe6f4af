import NIOCore
import TollgateModel
import XCTest

@testable import TollgateEngine

/// Identity-provider exchanges and deprovisioning in the engine (issue 17): the grant meets the licensing rules,
/// the token is an ordinary journaled token, and the deprovisioned set survives replay and snapshots.
final class ExchangeTests: XCTestCase {
    func fixture() throws -> EngineFixture {
        let f = EngineFixture()
        try f.putPlan(Plan(id: "pro", entitlements: ["read", "write"], maxTokenLifetimeSeconds: 1800))
        try f.putOrg(OrgSpec(id: "org_acme", name: "Acme"))
        try f.putLicense(LicenseSpec(id: "lic_acme", customer: "Acme", plan: "pro", status: .active, org: "org_acme"))
        return f
    }

    func grant(_ f: EngineFixture, subject: String = "alice", license: String = "lic_acme", org: String = "", scopes: [String] = ["read"], roleMax: Int64 = 900_000, jwtLeft: Int64 = 3_600_000) -> ExchangeGrant {
        ExchangeGrant(role: "people", issuer: "https://idp", subject: subject, licenseID: license, org: org, scopes: scopes, maxLifetimeMillis: roleMax, subjectTokenExpiresAt: f.nowMillis + jwtLeft)
    }

    func exchange(_ f: EngineFixture, _ grant: ExchangeGrant, ttl: UInt32 = 0) throws -> (String, TokenInfo) {
        let (secret, token, change) = try f.state.exchange(grant, ttlSeconds: ttl, at: f.now, maxLifetime: Millis.hour, using: &f.rng)
        f.record(change)
        return (secret, token)
    }

    func refusal(_ body: () throws -> Void) -> ExchangeRefusal.Code? {
        do { try body() } catch let refusal as ExchangeRefusal { return refusal.code } catch { return ExchangeRefusal.Code(rawValue: "other: \(error)") }
        return nil
    }

    func testExpiryIsTheShortestOfEveryBound() {
        let now: Int64 = 1_000_000
        func expiry(_ requested: UInt32, role: Int64 = 900_000, daemon: Int64 = 3_600_000, plan: UInt32 = 0, jwt: Int64 = 10_000_000) -> Int64 {
            LicensingState.exchangeExpiry(now: now, requestedSeconds: requested, roleMaxMillis: role, daemonMaxMillis: daemon, planMaxSeconds: plan, subjectTokenExpiresAt: jwt) - now
        }
        XCTAssertEqual(expiry(0), 900_000, "nothing asked: the role's maximum")
        XCTAssertEqual(expiry(60), 60_000)
        XCTAssertEqual(expiry(7200), 900_000, "more than the role allows: the role's maximum")
        XCTAssertEqual(expiry(0, role: 7_200_000), 3_600_000, "the daemon's maximum for derived tokens")
        XCTAssertEqual(expiry(0, plan: 300), 300_000, "the plan's maximum token lifetime")
        XCTAssertEqual(expiry(0, jwt: now + 42_000), 42_000, "never beyond the JWT's own expiry")
    }

    func testExchangedTokenChecksMetersAndCannotDeriveFurther() throws {
        let f = try fixture()
        let (secret, token) = try exchange(f, grant(f))
        XCTAssertEqual(token.licenseID, "lic_acme")
        XCTAssertEqual(token.subject, "alice")
        XCTAssertEqual(token.expiresAt, f.nowMillis + 900_000)
        XCTAssertEqual(token.metadata, [KeyValue(ExchangeGrant.roleMetadataKey, "people")])
        XCTAssertTrue(f.check(secret, scopes: ["read"]).allowed)
        XCTAssertEqual(f.check(secret, scopes: ["write"]).reason, .insufficientScope)
        XCTAssertThrowsError(try f.state.derive(DeriveRequest(parent: secret, ttlSeconds: 60), at: f.now, maxLifetime: Millis.hour, using: &f.rng))
        f.advance(millis: 900_000)
        XCTAssertEqual(f.check(secret).reason, .expired)
    }

    func testOrganisationGrantGoesToItsLicense() throws {
        let f = try fixture()
        let (_, token) = try exchange(f, grant(f, license: "", org: "org_acme"))
        XCTAssertEqual(token.licenseID, "lic_acme")
        try f.putLicense(LicenseSpec(id: "lic_acme2", customer: "Acme", plan: "pro", status: .active, org: "org_acme"))
        XCTAssertEqual(refusal { _ = try exchange(f, grant(f, license: "", org: "org_acme")) }, .licenseUnavailable, "two licenses: ambiguous")
        XCTAssertEqual(refusal { _ = try exchange(f, grant(f, license: "", org: "org_none")) }, .licenseUnavailable)
    }

    func testRefusedByTheLicensingRules() throws {
        let f = try fixture()
        XCTAssertEqual(refusal { _ = try exchange(f, grant(f, license: "lic_missing")) }, .licenseUnavailable)
        XCTAssertEqual(refusal { _ = try exchange(f, grant(f, scopes: ["admin"])) }, .invalidScope, "the plan does not grant admin")
        try f.putLicense(LicenseSpec(id: "lic_acme", customer: "Acme", plan: "pro", status: .canceled, org: "org_acme"))
        XCTAssertEqual(refusal { _ = try exchange(f, grant(f)) }, .licenseUnavailable)
    }

    func testDeprovisionRevokesEverythingAndReactivationAllowsNewExchangesOnly() throws {
        let f = try fixture()
        let (first, _) = try exchange(f, grant(f))
        let (issued, _, change) = try f.state.issue(IssueRequest(licenseID: "lic_acme", subject: "alice", scopes: ["read"]), at: f.now, using: &f.rng)
        f.record(change)
        let (_, child, childToken, childChange) = try f.state.derive(DeriveRequest(parent: issued, ttlSeconds: 60), at: f.now, maxLifetime: Millis.hour, using: &f.rng)
        XCTAssertNotNil(childToken)
        f.record(childChange)
        let (bob, _) = try exchange(f, grant(f, subject: "bob"))

        let (revoked, deprovision) = try f.state.setSubjectStatus(SubjectStatusRequest(subject: "alice", active: false, actor: "scim"), at: f.now)
        f.record(deprovision)
        XCTAssertEqual(revoked, 3, "the exchanged token, the issued one and its child")
        for secret in [first, issued, child] { XCTAssertEqual(f.check(secret).reason, .revoked) }
        XCTAssertTrue(f.check(bob).allowed)
        XCTAssertEqual(refusal { _ = try exchange(f, grant(f)) }, .subjectDeprovisioned)
        XCTAssertNil(try f.state.setSubjectStatus(SubjectStatusRequest(subject: "alice", active: false), at: f.now).change, "nothing left to do")

        // Survives a restart from the journal and from a snapshot.
        try f.restart()
        XCTAssertEqual(refusal { _ = try exchange(f, grant(f)) }, .subjectDeprovisioned)
        try f.takeSnapshot()
        try f.restart()
        XCTAssertEqual(refusal { _ = try exchange(f, grant(f)) }, .subjectDeprovisioned)
        XCTAssertEqual(f.check(first).reason, .revoked)

        let (_, reactivate) = try f.state.setSubjectStatus(SubjectStatusRequest(subject: "alice", active: true, actor: "scim"), at: f.now)
        f.record(reactivate)
        let (again, _) = try exchange(f, grant(f))
        XCTAssertTrue(f.check(again).allowed)
        XCTAssertEqual(f.check(first).reason, .revoked, "old tokens stay revoked")
        try f.restart()
        XCTAssertTrue(f.check(again).allowed)
    }

    func testSubjectStatusRecordRoundTrips() throws {
        let change = StateChange.subjectStatus(subject: "alice@example.com", active: false, tokenIDs: ["tok_a", "tok_b"], actor: "scim uid=0", at: 1_834_403_400_000)
        XCTAssertEqual(change.typeCode, 17)
        var buffer = ByteBufferAllocator().buffer(bytes: try change.encodedPayload())
        XCTAssertEqual(try StateChange.decode(type: 17, payload: buffer), change)
        buffer.moveWriterIndex(to: 8)
        buffer.writeInteger(UInt8(2))
        XCTAssertThrowsError(try StateChange.decode(type: 17, payload: buffer), "active must be 0 or 1")
    }
}
