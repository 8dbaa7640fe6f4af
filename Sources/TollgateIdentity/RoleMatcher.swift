import TollgateModel

/// Decides what a token whose signature has been verified earns: the role (named, or the one whose issuer and
/// audiences admit the token), the time claims under the role's leeways, the bound claims, the subject, the license
/// or organisation by mapping, and the scopes. Pure: the claims, the roles and the time are arguments.
public enum RoleMatcher {
    /// The roles that could verify a token of `issuer` (the key sets to use are the issuer's). Refused before any key
    /// is fetched when none could.
    public static func candidates(issuer: String?, roles: [IdentityRole], requested: String) throws(ExchangeRefusal) -> [IdentityRole] {
        guard let issuer else { throw ExchangeRefusal(.missingClaim, "the JWT has no iss claim") }
        if !requested.isEmpty {
            guard let role = roles.first(where: { $0.name == requested }) else {
                throw ExchangeRefusal(.ambiguousRole, "no role is named \(CompactJWT.printable(requested))")
            }
            guard role.issuer == issuer else { throw ExchangeRefusal(.wrongIssuer, "role \(role.name) does not admit tokens of this issuer") }
            return [role]
        }
        let matching = roles.filter { $0.issuer == issuer }
        guard !matching.isEmpty else { throw ExchangeRefusal(.wrongIssuer, "no role admits tokens of issuer \(CompactJWT.printable(issuer))") }
        return matching
    }

    /// The grant for verified `claims` under `roles` (the candidates), at `now` (Unix milliseconds).
    public static func grant(claims: Claims, roles: [IdentityRole], requestedScopes: [String], now: Int64) throws(ExchangeRefusal) -> ExchangeGrant {
        let audiences = Set(claims.texts("aud") ?? [])
        let admitted = roles.filter { !audiences.isDisjoint(with: $0.audiences) }
        guard !admitted.isEmpty else {
            throw ExchangeRefusal(audiences.isEmpty ? .missingClaim : .wrongAudience, audiences.isEmpty ? "the JWT has no aud claim" : "the JWT's audience is not one the role binds")
        }
        guard admitted.count == 1, let role = admitted.first else {
            throw ExchangeRefusal(.ambiguousRole, "roles \(admitted.map(\.name).sorted().joined(separator: ", ")) all admit this token; name one")
        }
        try checkTimes(claims, role: role, now: now)
        for bound in role.boundClaims {
            guard let values = claims.texts(bound.claim) else { throw ExchangeRefusal(.missingClaim, "the JWT has no \(bound.claim) claim (bound by role \(role.name))") }
            let matched = values.contains { value in
                bound.values.contains { role.boundClaimsMatch == .glob ? ClaimGlob.matches($0, value) : $0 == value }
            }
            guard matched else { throw ExchangeRefusal(.claimMismatch, "claim \(bound.claim) does not match role \(role.name)'s bound values") }
        }
        guard let subject = claims.text(role.userClaim), !subject.isEmpty, subject.utf8.count <= Limits.maxSubject else {
            throw ExchangeRefusal(.missingClaim, "the JWT has no usable \(role.userClaim) claim (role \(role.name)'s user claim: 1–\(Limits.maxSubject) bytes)")
        }
        var licenseID = role.license, org = ""
        if !role.licenseClaim.isEmpty {
            licenseID = try mapped(claims, claim: role.licenseClaim, mapping: role.licenseMapping, role: role)
        } else if !role.orgClaim.isEmpty {
            org = try mapped(claims, claim: role.orgClaim, mapping: role.orgMapping, role: role)
        }
        let exp = claims.date("exp")!  // checked by checkTimes
        return ExchangeGrant(
            role: role.name, issuer: role.issuer, subject: subject, licenseID: licenseID, org: org,
            scopes: try scopes(claims, role: role, requested: requestedScopes),
            maxLifetimeMillis: Int64(role.maxTTLSeconds) * 1000, subjectTokenExpiresAt: exp)
    }

    /// `exp` is required and must be after now − leeway; `nbf`, when present, at or before now + leeway; `iat`, when
    /// present, at or before now + leeway.
    static func checkTimes(_ claims: Claims, role: IdentityRole, now: Int64) throws(ExchangeRefusal) {
        guard let exp = claims.date("exp") else { throw ExchangeRefusal(.missingClaim, "the JWT has no exp claim (a NumericDate)") }
        guard now < exp + Int64(role.leewaySeconds.exp) * 1000 else { throw ExchangeRefusal(.expired, "the JWT has expired") }
        if claims["nbf"] != nil {
            guard let nbf = claims.date("nbf") else { throw ExchangeRefusal(.missingClaim, "the JWT's nbf is not a NumericDate") }
            guard nbf <= now + Int64(role.leewaySeconds.nbf) * 1000 else { throw ExchangeRefusal(.notYetValid, "the JWT is not valid yet (nbf)") }
        }
        if claims["iat"] != nil {
            guard let iat = claims.date("iat") else { throw ExchangeRefusal(.missingClaim, "the JWT's iat is not a NumericDate") }
            guard iat <= now + Int64(role.leewaySeconds.iat) * 1000 else { throw ExchangeRefusal(.issuedInFuture, "the JWT was issued in the future (iat)") }
        }
    }

    /// The mapped id of the first value of `claim` (a string, or each element of a list in order) in `mapping`.
    static func mapped(_ claims: Claims, claim: String, mapping: [String: String], role: IdentityRole) throws(ExchangeRefusal) -> String {
        guard let values = claims.texts(claim) else { throw ExchangeRefusal(.missingClaim, "the JWT has no \(claim) claim (role \(role.name) maps it)") }
        for value in values { if let id = mapping[value] { return id } }
        throw ExchangeRefusal(.unmappedClaim, "no value of claim \(claim) is in role \(role.name)'s mapping")
    }

    /// The role's scopes ∩ the scope claim (when the role names one) ∩ the scopes asked for (when any are).
    /// A role scope `*` grants whatever the scope claim lists (or `*` itself without a scope claim).
    public static func scopes(_ claims: Claims, role: IdentityRole, requested: [String]) throws(ExchangeRefusal) -> [String] {
        func roleGrants(_ scope: String) -> Bool { role.scopes.contains("*") || role.scopes.contains(scope) }
        var granted = role.scopes
        if !role.scopeClaim.isEmpty {
            let listed: [String]
            switch claims[role.scopeClaim] {
            case .string(let text): listed = text.split(separator: " ").map(String.init)
            case .strings(let list): listed = list
            default: throw ExchangeRefusal(.missingClaim, "the JWT has no \(role.scopeClaim) claim (role \(role.name)'s scope claim)")
            }
            var seen = Set<String>()
            granted = listed.filter { roleGrants($0) && seen.insert($0).inserted }
        }
        if !requested.isEmpty {
            for scope in requested where !(granted.contains("*") || granted.contains(scope)) {
                throw ExchangeRefusal(.invalidScope, "scope \(CompactJWT.printable(scope)) is not granted by role \(role.name) to this token")
            }
            granted = requested
        }
        guard !granted.isEmpty else { throw ExchangeRefusal(.invalidScope, "role \(role.name) grants this token no scope") }
        return granted
    }
}
