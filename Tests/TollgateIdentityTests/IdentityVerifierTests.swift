import Crypto
import Foundation
import Logging
import Synchronization
import TollgateIdentity
import TollgateModel
import XCTest

/// The verifier end to end on JWTs signed here with swift-crypto (ES256, EdDSA; RSA is covered by the tier-2 suite
/// with PyJWT), keys served by an in-memory source whose fetches are counted, the time an injected clock.
final class IdentityVerifierTests: XCTestCase {
    static let issuer = "https://idp.example"
    let ec = P256.Signing.PrivateKey()
    let ed = Curve25519.Signing.PrivateKey()
    let clock = TestClock()

    /// The injected clock: moves only when a test advances it.
    final class TestClock: Sendable {
        let millis = Mutex<Int64>(1_800_000_000_000)
        var now: Int64 { millis.withLock { $0 } }
        func advance(_ by: Int64) { millis.withLock { $0 += by } }
    }

    /// Serves whatever JWKS it holds now; counts fetches.
    final class Source: KeySetSource, @unchecked Sendable {
        let state = Mutex<(jwks: [UInt8]?, fetches: Int)>((nil, 0))
        func fetch() async throws -> [UInt8] {
            let jwks = state.withLock { $0.fetches += 1; return $0.jwks }
            guard let jwks else { throw KeySetFetchError("unreachable") }
            return jwks
        }
        var fetches: Int { state.withLock { $0.fetches } }
    }

    static func b64(_ bytes: some DataProtocol) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    func jwks(ecKid: String = "ec1", edKid: String = "ed1") -> [UInt8] {
        let raw = ec.publicKey.rawRepresentation
        let keys: [[String: Any]] = [
            ["kty": "EC", "crv": "P-256", "kid": ecKid, "use": "sig", "x": Self.b64(raw.prefix(32)), "y": Self.b64(raw.suffix(32))],
            ["kty": "OKP", "crv": "Ed25519", "kid": edKid, "x": Self.b64(ed.publicKey.rawRepresentation)],
            ["kty": "oct", "kid": "hmac", "k": "c2VjcmV0"],
        ]
        return [UInt8](try! JSONSerialization.data(withJSONObject: ["keys": keys]))
    }

    func claims(_ extra: [String: Any] = [:]) -> [String: Any] {
        let now = clock.now / 1000
        var claims: [String: Any] = ["iss": Self.issuer, "aud": "tollgate", "sub": "alice@example.com", "exp": now + 300, "iat": now, "org": "acme"]
        for (k, v) in extra { claims[k] = v }
        return claims
    }

    func token(alg: String, kid: String?, claims: [String: Any], sign: (Data) throws -> Data) rethrows -> String {
        var header: [String: Any] = ["alg": alg, "typ": "JWT"]
        if let kid { header["kid"] = kid }
        let input = Self.b64(try! JSONSerialization.data(withJSONObject: header)) + "." + Self.b64(try! JSONSerialization.data(withJSONObject: claims))
        return input + "." + Self.b64(try sign(Data(input.utf8)))
    }

    func es256(kid: String? = "ec1", _ claims: [String: Any]) -> String {
        token(alg: "ES256", kid: kid, claims: claims) { try! ec.signature(for: $0).rawRepresentation }
    }

    func eddsa(kid: String? = "ed1", _ claims: [String: Any]) -> String {
        token(alg: "EdDSA", kid: kid, claims: claims) { try! ed.signature(for: $0) }
    }

    func verifier(_ source: Source, maxTokenBytes: Int = 16_384) -> IdentityVerifier {
        var role = IdentityRole(name: "people", issuer: Self.issuer, audiences: ["tollgate"], scopes: ["read"])
        role.orgClaim = "org"
        role.orgMapping = ["acme": "org_acme"]
        let clock = self.clock
        let keys = IssuerKeys(
            issuer: Self.issuer, source: source, policy: KeySetPolicy(refreshAfterMillis: 3_600_000, minRefreshIntervalMillis: 60_000, maxAgeMillis: 86_400_000),
            clock: { clock.now }, logger: Logger(label: "test"))
        return IdentityVerifier(roles: [role], issuers: [keys], maxTokenBytes: maxTokenBytes, clock: { clock.now })
    }

    func code(_ verifier: IdentityVerifier, _ token: String) async -> ExchangeRefusal.Code? {
        if case .failure(let refusal) = await verifier.grant(for: ExchangeRequest(subjectToken: token)) { return refusal.code }
        return nil
    }

    func testES256AndEdDSAVerify() async throws {
        let source = Source()
        source.state.withLock { $0.jwks = jwks() }
        let verifier = verifier(source)
        let grant = try await verifier.grant(for: ExchangeRequest(subjectToken: es256(claims()))).get()
        XCTAssertEqual(grant.subject, "alice@example.com")
        XCTAssertEqual(grant.org, "org_acme")
        _ = try await verifier.grant(for: ExchangeRequest(subjectToken: eddsa(claims()))).get()
        XCTAssertEqual(source.fetches, 1, "one fetch serves both")
    }

    func testRefusals() async {
        let source = Source()
        source.state.withLock { $0.jwks = jwks() }
        let verifier = verifier(source, maxTokenBytes: 2048)
        let good = es256(claims())
        let parts = good.split(separator: ".")
        // alg none, unsigned.
        let none = Self.b64(Data(#"{"alg":"none","kid":"ec1"}"#.utf8)) + "." + parts[1] + "."
        var none2 = none
        none2 += ""
        let noneCode = await code(verifier, none2)
        XCTAssertEqual(noneCode, .unsignedToken)
        // HS256 with the public key as the HMAC secret (algorithm confusion).
        let publicKeyBytes = ec.publicKey.x963Representation
        let confused = token(alg: "HS256", kid: "ec1", claims: claims()) { Data(HMAC<SHA256>.authenticationCode(for: $0, using: SymmetricKey(data: publicKeyBytes))) }
        let confusedCode = await code(verifier, confused)
        XCTAssertEqual(confusedCode, .algorithmNotAllowed)
        // ES256 header on an Ed25519 key: the algorithm does not fit the key.
        let mismatched = token(alg: "ES256", kid: "ed1", claims: claims()) { try! ec.signature(for: $0).rawRepresentation }
        let mismatchCode = await code(verifier, mismatched)
        XCTAssertEqual(mismatchCode, .algorithmNotAllowed)
        // A signature by another key under a known kid.
        let forged = token(alg: "ES256", kid: "ec1", claims: claims()) { try! P256.Signing.PrivateKey().signature(for: $0).rawRepresentation }
        let forgedCode = await code(verifier, forged)
        XCTAssertEqual(forgedCode, .badSignature)
        let tooLarge = await code(verifier, es256(claims(["padding": String(repeating: "x", count: 3000)])))
        XCTAssertEqual(tooLarge, .tokenTooLarge)
        let malformed = await code(verifier, "not.a-jwt")
        XCTAssertEqual(malformed, .malformedToken)
        let wrongIssuer = await code(verifier, es256(claims(["iss": "https://other.example"])))
        XCTAssertEqual(wrongIssuer, .wrongIssuer)
        let wrongAudience = await code(verifier, es256(claims(["aud": "someone-else"])))
        XCTAssertEqual(wrongAudience, .wrongAudience)
        let expired = await code(verifier, es256(claims(["exp": clock.now / 1000 - 1])))
        XCTAssertEqual(expired, .expired)
        let early = await code(verifier, es256(claims(["nbf": clock.now / 1000 + 60])))
        XCTAssertEqual(early, .notYetValid)
        let missing = await code(verifier, es256(claims(["org": 5])))
        XCTAssertEqual(missing, .unmappedClaim)
        var noSubject = claims()
        noSubject["sub"] = nil
        let noSub = await code(verifier, es256(noSubject))
        XCTAssertEqual(noSub, .missingClaim)
        XCTAssertEqual(source.fetches, 1, "refusals before the key lookup fetch nothing")
    }

    func testUnknownKidRefreshesOnceThenRotationIsPickedUp() async throws {
        let source = Source()
        source.state.withLock { $0.jwks = jwks() }
        let verifier = verifier(source)
        _ = try await verifier.grant(for: ExchangeRequest(subjectToken: es256(claims()))).get()
        XCTAssertEqual(source.fetches, 1)
        // Rotation at the IdP: the key is now published as ec2; a token naming it arrives within the interval.
        source.state.withLock { $0.jwks = jwks(ecKid: "ec2") }
        clock.advance(1_000)
        let tooSoon = await code(verifier, es256(kid: "ec2", claims()))
        XCTAssertEqual(tooSoon, .unknownKey, "a refresh within the interval is not allowed")
        XCTAssertEqual(source.fetches, 1)
        clock.advance(60_000)
        _ = try await verifier.grant(for: ExchangeRequest(subjectToken: es256(kid: "ec2", claims()))).get()
        XCTAssertEqual(source.fetches, 2)
        // A made-up kid: one refresh (after the interval), then unknown_key.
        clock.advance(60_000)
        let madeUp = await code(verifier, es256(kid: "nope", claims()))
        XCTAssertEqual(madeUp, .unknownKey)
        XCTAssertEqual(source.fetches, 3)
        let again = await code(verifier, es256(kid: "nope", claims()))
        XCTAssertEqual(again, .unknownKey)
        XCTAssertEqual(source.fetches, 3, "no second refresh within the interval")
    }

    func testUnreachableIdPKeepsKeysUntilMaxAge() async throws {
        let source = Source()
        source.state.withLock { $0.jwks = jwks() }
        let verifier = verifier(source)
        _ = try await verifier.grant(for: ExchangeRequest(subjectToken: es256(claims()))).get()
        source.state.withLock { $0.jwks = nil }
        clock.advance(3_600_000)  // stale: a background refresh fails, the held keys still verify
        _ = try await verifier.grant(for: ExchangeRequest(subjectToken: es256(claims()))).get()
        clock.advance(86_400_000 - 3_600_000 + 1)  // past the maximum age
        let unavailable = await code(verifier, es256(claims()))
        XCTAssertEqual(unavailable, .keysUnavailable)
    }

    /// A source whose fetches after the first hang until the test ends them (an IdP that accepts the connection
    /// and never answers); `started` reports each hanging fetch, so the test waits on the event, not on time.
    final class HangingSource: KeySetSource, @unchecked Sendable {
        let jwks: [UInt8]
        let state = Mutex<(fetches: Int, waiting: [CheckedContinuation<Void, Never>])>((0, []))
        let started: AsyncStream<Void>
        let startedContinuation: AsyncStream<Void>.Continuation
        init(jwks: [UInt8]) {
            self.jwks = jwks
            let (stream, continuation) = AsyncStream<Void>.makeStream()
            started = stream
            startedContinuation = continuation
        }
        func fetch() async throws -> [UInt8] {
            let first = state.withLock { $0.fetches += 1; return $0.fetches == 1 }
            if first { return jwks }
            await withCheckedContinuation { continuation in
                state.withLock { $0.waiting.append(continuation) }
                startedContinuation.yield()
            }
            throw KeySetFetchError("timed out")
        }
        /// Ends every hanging fetch as a timeout would.
        func timeOut() { for waiter in state.withLock({ s in defer { s.waiting = [] }; return s.waiting }) { waiter.resume() } }
    }

    /// While a refresh for an unknown kid hangs, a token with a known kid verifies from the cache; when the refresh
    /// fails, the unknown kid is `keys_unavailable` (retry), not `unknown_key`: the provider may well have it.
    func testAHangingRefreshBlocksOnlyTheUnknownKidAndEndsAsKeysUnavailable() async throws {
        let source = HangingSource(jwks: jwks())
        let keys = IssuerKeys(
            issuer: Self.issuer, source: source, policy: KeySetPolicy(refreshAfterMillis: 3_600_000, minRefreshIntervalMillis: 60_000, maxAgeMillis: 86_400_000),
            clock: { [clock] in clock.now }, logger: Logger(label: "test"))
        var role = IdentityRole(name: "people", issuer: Self.issuer, audiences: ["tollgate"], scopes: ["read"])
        role.license = "lic"
        let verifier = IdentityVerifier(issuers: [keys], clock: { [clock] in clock.now })
        _ = try await verifier.grant(for: ExchangeRequest(subjectToken: es256(claims())), roles: [role]).get()
        clock.advance(60_000)
        let unknownToken = es256(kid: "rotated", claims())
        let roles = [role]
        let unknown = Task { [verifier] in await verifier.grant(for: ExchangeRequest(subjectToken: unknownToken), roles: roles) }
        var events = source.started.makeAsyncIterator()
        _ = await events.next()  // the refresh is hanging now
        let known = await verifier.grant(for: ExchangeRequest(subjectToken: eddsa(claims())), roles: [role])
        XCTAssertNotNil(try? known.get(), "a known kid verifies from the cache while the refresh hangs")
        source.timeOut()
        guard case .failure(let refusal) = await unknown.value else { return XCTFail("the unknown kid was granted") }
        XCTAssertEqual(refusal.code, .keysUnavailable)
        // Roles are the caller's: with none given, nothing admits the token.
        guard case .failure(let none) = await verifier.grant(for: ExchangeRequest(subjectToken: es256(claims())), roles: []) else { return XCTFail("no roles") }
        XCTAssertEqual(none.code, .wrongIssuer)
    }
}
