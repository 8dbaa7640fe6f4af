import TollgateIdentity
import TollgateModel
import XCTest

/// Role matching, claim globbing, time claims with leeways, mapping and scopes: pure, the time an argument.
final class RoleMatcherTests: XCTestCase {
    let now: Int64 = 1_800_000_000_000

    func role(_ name: String = "ci", issuer: String = "https://token.actions.githubusercontent.com", audiences: [String] = ["tollgate"]) -> IdentityRole {
        var role = IdentityRole(name: name, issuer: issuer, audiences: audiences, scopes: ["read", "write"])
        role.boundClaims = [.init(claim: "repository", values: ["acme/*"])]
        role.boundClaimsMatch = .glob
        role.licenseClaim = "repository_owner"
        role.licenseMapping = ["acme": "lic_acme"]
        role.maxTTLSeconds = 600
        role.leewaySeconds = .init(exp: 30, nbf: 30, iat: 30)
        return role
    }

    func claims(_ extra: [String: Claims.Value] = [:], removing: [String] = []) -> Claims {
        var values: [String: Claims.Value] = [
            "iss": .string("https://token.actions.githubusercontent.com"), "aud": .string("tollgate"), "sub": .string("repo:acme/api:ref:refs/heads/main"),
            "repository": .string("acme/api"), "repository_owner": .string("acme"),
            "exp": .number(Double(now / 1000 + 300)), "iat": .number(Double(now / 1000 - 10)), "nbf": .number(Double(now / 1000 - 10)),
        ]
        for (k, v) in extra { values[k] = v }
        for k in removing { values[k] = nil }
        return Claims(values)
    }

    func refusal(_ claims: Claims, roles: [IdentityRole]? = nil, scopes: [String] = [], at time: Int64? = nil) -> ExchangeRefusal.Code? {
        do throws(ExchangeRefusal) {
            _ = try RoleMatcher.grant(claims: claims, roles: roles ?? [role()], requestedScopes: scopes, now: time ?? now)
            return nil
        } catch {
            return error.code
        }
    }

    func testGrantMapsSubjectLicenseScopesAndLimits() throws {
        let grant = try RoleMatcher.grant(claims: claims(), roles: [role()], requestedScopes: [], now: now)
        XCTAssertEqual(grant.subject, "repo:acme/api:ref:refs/heads/main")
        XCTAssertEqual(grant.licenseID, "lic_acme")
        XCTAssertEqual(grant.scopes, ["read", "write"])
        XCTAssertEqual(grant.maxLifetimeMillis, 600_000)
        XCTAssertEqual(grant.subjectTokenExpiresAt, now + 300_000)
        XCTAssertEqual(grant.role, "ci")
    }

    func testAudienceMustBeBound() {
        XCTAssertEqual(refusal(claims(["aud": .strings(["other", "another"])])), .wrongAudience)
        XCTAssertEqual(refusal(claims(removing: ["aud"])), .missingClaim)
        XCTAssertNil(refusal(claims(["aud": .strings(["other", "tollgate"])])))
    }

    func testTimeClaimsWithLeeways() {
        // exp 300 s ahead; with a 30 s leeway it is refused only from exp + 30 s.
        XCTAssertNil(refusal(claims(), at: now + 300_000 + 29_999))
        XCTAssertEqual(refusal(claims(), at: now + 330_000), .expired)
        XCTAssertEqual(refusal(claims(["nbf": .number(Double(now / 1000 + 31))])), .notYetValid)
        XCTAssertNil(refusal(claims(["nbf": .number(Double(now / 1000 + 30))])))
        XCTAssertEqual(refusal(claims(["iat": .number(Double(now / 1000 + 31))])), .issuedInFuture)
        XCTAssertEqual(refusal(claims(removing: ["exp"])), .missingClaim)
        XCTAssertEqual(refusal(claims(["exp": .string("tomorrow")])), .missingClaim)
    }

    func testBoundClaimsExactAndGlob() {
        XCTAssertEqual(refusal(claims(["repository": .string("evil/api")])), .claimMismatch)
        XCTAssertEqual(refusal(claims(removing: ["repository"])), .missingClaim)
        var exact = role()
        exact.boundClaimsMatch = .exact
        XCTAssertEqual(refusal(claims(), roles: [exact]), .claimMismatch, "acme/* is a literal under exact matching")
        exact.boundClaims = [.init(claim: "repository", values: ["acme/web", "acme/api"])]
        XCTAssertNil(refusal(claims(), roles: [exact]))
        // A list claim (groups) matches when any element does.
        var groups = role()
        groups.boundClaims = [.init(claim: "groups", values: ["eng-*"])]
        XCTAssertNil(refusal(claims(["groups": .strings(["sales", "eng-platform"])]), roles: [groups]))
        XCTAssertEqual(refusal(claims(["groups": .strings(["sales"])]), roles: [groups]), .claimMismatch)
    }

    func testUserClaimAndMappingRequired() {
        XCTAssertEqual(refusal(claims(removing: ["sub"])), .missingClaim)
        XCTAssertEqual(refusal(claims(["sub": .string(String(repeating: "x", count: 257))])), .missingClaim)
        XCTAssertEqual(refusal(claims(["repository_owner": .string("globex")])), .unmappedClaim)
        var org = role()
        org.licenseClaim = ""
        org.licenseMapping = [:]
        org.orgClaim = "repository_owner"
        org.orgMapping = ["acme": "org_acme"]
        let grant = try? RoleMatcher.grant(claims: claims(), roles: [org], requestedScopes: [], now: now)
        XCTAssertEqual(grant?.org, "org_acme")
        XCTAssertEqual(grant?.licenseID, "")
    }

    func testScopesAreRoleIntersectScopeClaimIntersectRequested() throws {
        var scoped = role()
        scoped.scopeClaim = "scope"
        let grant = try RoleMatcher.grant(claims: claims(["scope": .string("write admin")]), roles: [scoped], requestedScopes: [], now: now)
        XCTAssertEqual(grant.scopes, ["write"], "admin is not the role's; read is not in the claim")
        XCTAssertEqual(refusal(claims(["scope": .string("admin")]), roles: [scoped]), .invalidScope)
        XCTAssertEqual(refusal(claims(), roles: [scoped]), .missingClaim)
        XCTAssertEqual(refusal(claims(), scopes: ["admin"]), .invalidScope)
        XCTAssertEqual(try RoleMatcher.grant(claims: claims(), roles: [role()], requestedScopes: ["read"], now: now).scopes, ["read"])
    }

    func testRoleSelectionByIssuerAudienceAndName() throws {
        let a = role("a"), b = role("b", audiences: ["other"]), c = role("c", issuer: "https://kubernetes.default.svc")
        XCTAssertEqual(try RoleMatcher.candidates(issuer: "https://token.actions.githubusercontent.com", roles: [a, b, c], requested: "").map(\.name), ["a", "b"])
        XCTAssertThrowsError(try RoleMatcher.candidates(issuer: "https://evil.example", roles: [a, b, c], requested: "")) {
            XCTAssertEqual(($0 as? ExchangeRefusal)?.code, .wrongIssuer)
        }
        XCTAssertThrowsError(try RoleMatcher.candidates(issuer: "https://token.actions.githubusercontent.com", roles: [a, c], requested: "c")) {
            XCTAssertEqual(($0 as? ExchangeRefusal)?.code, .wrongIssuer)
        }
        XCTAssertThrowsError(try RoleMatcher.candidates(issuer: "x", roles: [a], requested: "nope")) { XCTAssertEqual(($0 as? ExchangeRefusal)?.code, .ambiguousRole) }
        XCTAssertEqual(try RoleMatcher.grant(claims: claims(), roles: [a, b], requestedScopes: [], now: now).role, "a")
        XCTAssertEqual(refusal(claims(), roles: [a, role("d")]), .ambiguousRole)
    }

    func testGlob() {
        XCTAssertTrue(ClaimGlob.matches("repo:acme/*:ref:refs/heads/main", "repo:acme/api:ref:refs/heads/main"))
        XCTAssertFalse(ClaimGlob.matches("repo:acme/*:ref:refs/heads/main", "repo:acme/api:ref:refs/heads/dev"))
        XCTAssertTrue(ClaimGlob.matches("*", ""))
        XCTAssertTrue(ClaimGlob.matches("a?c", "abc"))
        XCTAssertFalse(ClaimGlob.matches("a?c", "ac"))
        XCTAssertTrue(ClaimGlob.matches("*a*b*", "xxaxxbxx"))
        XCTAssertFalse(ClaimGlob.matches("abc", "abcd"))
        XCTAssertFalse(ClaimGlob.matches("*x", String(repeating: "a", count: 10_000)), "linear on a hostile value")
    }

    func testRoleValidation() {
        XCTAssertNoThrow(try Validation.identityRoles([role()]))
        var noAudience = role()
        noAudience.audiences = []
        XCTAssertThrowsError(try Validation.identityRole(noAudience)) { XCTAssertEqual(($0 as? ValidationError)?.code, .missingKey) }
        var twoWays = role()
        twoWays.license = "lic_x"
        XCTAssertThrowsError(try Validation.identityRole(twoWays)) { XCTAssertEqual(($0 as? ValidationError)?.code, .invalidValue) }
        var long = role()
        long.maxTTLSeconds = 86_401
        XCTAssertThrowsError(try Validation.identityRole(long)) { XCTAssertEqual(($0 as? ValidationError)?.code, .outOfRange) }
        XCTAssertThrowsError(try Validation.identityRoles([role(), role()])) { XCTAssertEqual(($0 as? ValidationError)?.code, .invalidValue) }
    }
}
