import Foundation
import Logging
import NIOCore
@testable import TollgateCore
import TollgateEngine
import TollgateJournal
import TollgateModel
import TollgateProtocol
import XCTest

/// EXCHANGE and SUBJECT_STATUS through the core (issue 17): the verifier is a closure the test gives (the real one,
/// `TollgateIdentity`, is tested on its own and through the daemon by the tier-2 suite); what the core owns is the
/// table entry, the minting after the journal, the status mapping and durability across a restart.
final class ExchangeCoreTests: XCTestCase {
    private var directory: String!
    private var core: ApplicationCore!

    override func setUp() async throws {
        directory = NSTemporaryDirectory() + "tollgate-exchange-core-tests-" + UUID().uuidString
        try open()
    }

    override func tearDown() async throws {
        try? core.currentJournal.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func open() throws {
        let (journal, recovered) = try Journal.open(directory: directory, options: JournalOptions(fsync: false))
        core = ApplicationCore(
            state: try ApplicationCore.rebuildState(from: recovered), journal: journal, recovery: recovered.report, clock: ManualClock(),
            options: .init(), logger: Logger(label: "core-tests") { _ in SwiftLogNoOpLogHandler() })
    }

    private func send(_ request: Request, as role: SocketRole = .admin, uid: UInt32? = 1000) async -> Response {
        await withCheckedContinuation { continuation in
            if let now = core.handle(request, from: Caller(role: role, uid: uid), completion: { continuation.resume(returning: $0) }) {
                continuation.resume(returning: now)
            }
        }
    }

    /// A verifier that grants `alice` on lic for the JWT "good", and refuses anything else with `expired` or, for
    /// "offline", `keys_unavailable`.
    private func install() {
        core.setExchangeVerifier { request, _ in
            switch request.subjectToken {
            case "good":
                return .success(ExchangeGrant(role: "people", issuer: "https://idp", subject: "alice", licenseID: "lic", org: "", scopes: ["read"], maxLifetimeMillis: 600_000, subjectTokenExpiresAt: .max))
            case "offline": return .failure(ExchangeRefusal(.keysUnavailable, "the keys of issuer 'https://idp' cannot be fetched; retry later"))
            default: return .failure(ExchangeRefusal(.expired, "the JWT has expired"))
            }
        }
    }

    private func seed() async {
        _ = await send(.planPut(Plan(id: "pro", entitlements: ["read"])))
        _ = await send(.licensePut(LicenseSpec(id: "lic", customer: "c", plan: "pro", status: .active)))
    }

    func testExchangeMintsADurableTokenAndRefusalsHaveTheirStatuses() async throws {
        await seed()
        let unconfigured = await send(.exchange(ExchangeRequest(subjectToken: "good")), as: .api)
        XCTAssertEqual(unconfigured, .error(.exchangeRefused, "not_configured: token exchange is not configured on this daemon (identity section)"))
        install()
        guard case .issue(let secret, let token) = await send(.exchange(ExchangeRequest(subjectToken: "good")), as: .api) else { return XCTFail("exchange") }
        XCTAssertEqual(token.subject, "alice")
        XCTAssertEqual(token.licenseID, "lic")
        XCTAssertTrue(core.check(CheckRequest(token: secret, scopes: ["read"]), caller: nil).allowed)
        let expired = await send(.exchange(ExchangeRequest(subjectToken: "old")), as: .api)
        XCTAssertEqual(expired, .error(.exchangeRefused, "expired: the JWT has expired"))
        guard case .error(.identityUnavailable, _) = await send(.exchange(ExchangeRequest(subjectToken: "offline")), as: .api) else { return XCTFail("offline") }

        // Deprovisioning is admin-only, revokes the token, refuses new exchanges; all of it survives a restart.
        guard case .error(.notPermitted, _) = await send(.subjectStatus(SubjectStatusRequest(subject: "alice", active: false)), as: .api) else { return XCTFail("api") }
        let revoked = await send(.subjectStatus(SubjectStatusRequest(subject: "alice", active: false, actor: "scim")))
        XCTAssertEqual(revoked, .revoke(revoked: 1))
        XCTAssertEqual(core.check(CheckRequest(token: secret), caller: nil).reason, .revoked)
        try core.currentJournal.close()
        try open()
        install()
        XCTAssertEqual(core.withState { $0.token(id: token.id)?.info.revokedBy }, "scim uid=1000")
        guard case .error(.exchangeRefused, let message) = await send(.exchange(ExchangeRequest(subjectToken: "good")), as: .api) else { return XCTFail("deprovisioned") }
        XCTAssertTrue(message.hasPrefix("subject_deprovisioned:"))
        _ = await send(.subjectStatus(SubjectStatusRequest(subject: "alice", active: true, actor: "scim")))
        guard case .issue = await send(.exchange(ExchangeRequest(subjectToken: "good")), as: .api) else { return XCTFail("reactivated") }
    }

    /// The configuration seeds a role only where the journal has no word (never held, or held and not deleted), the
    /// test and the put under one lock hold: a ROLE_PUT racing a reload's seeding always stands.
    func testSeedingPutsOnlyWhereTheJournalHasNoWordAndNeverOverwritesARacingPut() async throws {
        await seed()
        installRoleVerifier()
        let applied = role(audiences: ["billing"])
        _ = await send(.rolePut(applied))
        let overApplied = try await core.seedRoleDurably(role())
        XCTAssertFalse(overApplied)
        XCTAssertEqual(core.withState { $0.roles["people"]?.audiences }, ["billing"])
        _ = await send(.roleDelete(DeleteRequest(id: "people", actor: "ops")))
        let overDeleted = try await core.seedRoleDurably(role())
        XCTAssertFalse(overDeleted)
        XCTAssertNil(core.withState { $0.roles["people"] })
        var ci = role()
        ci.name = "ci"
        let fresh = try await core.seedRoleDurably(ci)
        XCTAssertTrue(fresh)

        // Seeding and ROLE_PUT of the same new name at once: whichever runs first, the put's contents stand.
        for index in 0..<50 {
            var configured = role()
            configured.name = "r\(index)"
            var put = role(audiences: ["billing"])
            put.name = configured.name
            let core = self.core!
            async let seeding = core.seedRoleDurably(configured)
            async let answer: Response = withCheckedContinuation { continuation in
                if let now = core.handle(.rolePut(put), from: .daemon, completion: { continuation.resume(returning: $0) }) {
                    continuation.resume(returning: now)
                }
            }
            _ = try await (seeding, answer)
            XCTAssertEqual(core.withState { $0.roles[put.name]?.audiences }, ["billing"], put.name)
        }
        try core.currentJournal.close()
        try open()
        XCTAssertEqual(core.withState { $0.roles["ci"]?.audiences }, ["tollgate"], "the seeding is durable")
        XCTAssertNil(core.withState { $0.roles["people"] })
    }

    func role(audiences: [String] = ["tollgate"], issuer: String = "https://idp") -> IdentityRole {
        var role = IdentityRole(name: "people", issuer: issuer, audiences: audiences, scopes: ["read"])
        role.license = "lic"
        return role
    }

    /// A verifier standing for `TollgateIdentity`'s: the JWT "aud=X" is granted under the role (of those it is
    /// given) whose audiences hold X. `during` runs before it answers (a change racing the verification).
    private func installRoleVerifier(during: (@Sendable () async -> Void)? = nil) {
        core.setExchangeVerifier({ request, roles in
            await during?()
            let audience = String(request.subjectToken.dropFirst("aud=".count))
            guard let role = roles.first(where: { $0.audiences.contains(audience) }) else {
                return .failure(ExchangeRefusal(.wrongAudience, "the JWT's audience is not one the role binds"))
            }
            return .success(ExchangeGrant(role: role.name, issuer: role.issuer, subject: "alice", licenseID: role.license, org: "", scopes: role.scopes, maxLifetimeMillis: 600_000, subjectTokenExpiresAt: .max))
        }, issuers: ["https://idp"])
    }

    func testRolesArePolicyThatExchangeUsesAtOnceAndThatSurvivesARestart() async throws {
        await seed()
        installRoleVerifier()
        guard case .error(.notPermitted, _) = await send(.rolePut(role()), as: .api) else { return XCTFail("ROLE_PUT on the api socket") }
        guard case .error(.invalidArgument, let message) = await send(.rolePut(role(issuer: "https://elsewhere"))) else { return XCTFail("unknown issuer") }
        XCTAssertTrue(message.contains("no provider in identity.providers"), message)
        let answer1 = await send(.rolePut(role()))
        XCTAssertEqual(answer1, .role(role()))
        guard case .issue = await send(.exchange(ExchangeRequest(subjectToken: "aud=tollgate")), as: .api) else { return XCTFail("exchange under the put role") }

        // The bound audience changes: the next exchange is refused, with no restart or reload.
        let answer2 = await send(.rolePut(role(audiences: ["billing"])))
        XCTAssertEqual(answer2, .role(role(audiences: ["billing"])))
        guard case .error(.exchangeRefused, let refused) = await send(.exchange(ExchangeRequest(subjectToken: "aud=tollgate")), as: .api) else {
            return XCTFail("old audience")
        }
        XCTAssertTrue(refused.hasPrefix("wrong_audience:"), refused)
        let answer3 = await send(.roleList(ListPageRequest()))
        XCTAssertEqual(answer3, .roleList(roles: [role(audiences: ["billing"])], next: ""))

        try core.currentJournal.close()
        try open()
        installRoleVerifier()
        guard case .issue = await send(.exchange(ExchangeRequest(subjectToken: "aud=billing")), as: .api) else { return XCTFail("after a restart") }
        let answer4 = await send(.roleDelete(DeleteRequest(id: "people", actor: "ops")))
        XCTAssertEqual(answer4, .role(role(audiences: ["billing"])))
        guard case .error(.exchangeRefused, _) = await send(.exchange(ExchangeRequest(subjectToken: "aud=billing")), as: .api) else { return XCTFail("deleted") }
        guard case .error(.notFound, _) = await send(.roleDelete(DeleteRequest(id: "people"))) else { return XCTFail("deleted twice") }
        try core.currentJournal.close()
        try open()
        XCTAssertEqual(core.withState { $0.roles.isEmpty && $0.deletedRoles == ["people"] }, true, "the deletion is durable")
    }

    /// A role changed while a JWT is being verified under it (verification runs off the lock): nothing is minted
    /// under rules that no longer hold; the caller is told to retry.
    func testARoleChangedDuringVerificationIsNotMintedUnder() async throws {
        await seed()
        _ = await send(.rolePut(role()))
        let core = self.core!
        let changed = role(audiences: ["tollgate", "more"])
        installRoleVerifier {
            _ = await withCheckedContinuation { continuation in
                if let now = core.handle(.rolePut(changed), from: .daemon, completion: { continuation.resume(returning: $0) }) {
                    continuation.resume(returning: now)
                }
            }
        }
        guard case .error(.exchangeRefused, let message) = await send(.exchange(ExchangeRequest(subjectToken: "aud=tollgate")), as: .api) else {
            return XCTFail("a role changed during verification")
        }
        XCTAssertTrue(message.hasPrefix("role_changed:"), message)
        XCTAssertEqual(core.withState { $0.tokens.count }, 0)
    }
}
