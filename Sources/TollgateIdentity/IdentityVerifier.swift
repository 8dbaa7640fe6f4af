import JWTKit
import Logging
import TollgateModel

/// Verifies a subject token and finds what it earns: the size and shape first (`CompactJWT`), the issuer's
/// candidate roles (nothing is fetched for an issuer no role names), the key by `kid` (`IssuerKeys`), the signature
/// (jwt-kit, with exactly that key, under the header's algorithm once it is known to fit the key), then the claims
/// (`RoleMatcher`).
///
/// The roles are an argument of each verification: they are policy in the licensing state (put by `tollgate apply`
/// and ROLE_PUT, journaled), so a change applies to the next exchange. The key caches are the verifier's own, one
/// per configured provider.
public final class IdentityVerifier: Sendable {
    /// The roles `grant(for:)` uses (tests); the daemon passes the state's to `grant(for:roles:)`.
    public let roles: [IdentityRole]
    public let issuers: [String: IssuerKeys]
    public let maxTokenBytes: Int
    let clock: @Sendable () -> Int64

    public init(roles: [IdentityRole] = [], issuers: [IssuerKeys], maxTokenBytes: Int = 16_384, clock: @escaping @Sendable () -> Int64) {
        self.roles = roles
        self.issuers = Dictionary(issuers.map { ($0.issuer, $0) }, uniquingKeysWith: { first, _ in first })
        self.maxTokenBytes = maxTokenBytes
        self.clock = clock
    }

    public func grant(for request: ExchangeRequest) async -> Result<ExchangeGrant, ExchangeRefusal> {
        await grant(for: request, roles: roles)
    }

    public func grant(for request: ExchangeRequest, roles: [IdentityRole]) async -> Result<ExchangeGrant, ExchangeRefusal> {
        do throws(ExchangeRefusal) {
            let jwt = try CompactJWT(request.subjectToken, maxBytes: maxTokenBytes)
            let issuer = jwt.claims.text("iss")
            let candidates = try RoleMatcher.candidates(issuer: issuer, roles: roles, requested: request.role)
            guard let keys = issuers[issuer!] else {
                throw ExchangeRefusal(.keysUnavailable, "no key source is configured for issuer \(CompactJWT.printable(issuer!))")
            }
            let key = try await keys.key(for: jwt.keyID)
            try await Self.verifySignature(jwt, with: key)
            return .success(try RoleMatcher.grant(claims: jwt.claims, roles: candidates, requestedScopes: request.scopes, now: clock()))
        } catch {
            return .failure(error)
        }
    }

    /// Checks the signature with `key` alone, under the header's algorithm, after checking that the algorithm fits
    /// the key's type and the key's own `alg` (if it states one). jwt-kit is never given a key collection with a
    /// default key to fall back on, and never an HMAC algorithm (`CompactJWT` refused those).
    static func verifySignature(_ jwt: CompactJWT, with key: JWK) async throws(ExchangeRefusal) {
        guard let needed = CompactJWT.keyTypes[jwt.algorithm], key.keyType.rawValue == needed else {
            throw ExchangeRefusal(.algorithmNotAllowed, "alg \(jwt.algorithm) does not fit the key's type \(key.keyType.rawValue)")
        }
        if let stated = key.algorithm, stated.rawValue != jwt.algorithm {
            throw ExchangeRefusal(.algorithmNotAllowed, "alg \(jwt.algorithm) is not the key's algorithm \(stated.rawValue)")
        }
        var single = key
        single.algorithm = JWK.Algorithm(rawValue: jwt.algorithm)
        let collection = JWTKeyCollection()
        do {
            try await collection.add(jwk: single)
            _ = try await collection.verify(jwt.text, as: SignatureOnly.self)
        } catch {
            throw ExchangeRefusal(.badSignature, "the JWT's signature does not verify with the issuer's key")
        }
    }
}

/// A payload that reads nothing: jwt-kit checks the signature, the claims are read by `Claims` and `RoleMatcher`
/// with the role's leeways.
struct SignatureOnly: JWTPayload {
    init(from decoder: any Decoder) throws {}
    func encode(to encoder: any Encoder) throws {}
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}
