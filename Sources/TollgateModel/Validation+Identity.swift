/// The rules for identity-provider roles (issue 17), in the one validation source: the daemon's configuration (and
/// anything else that ever writes a role) gets its verdict here.
extension Validation {
    /// Longest role lifetime: a day. Exchanged tokens are meant to be short-lived; a longer need is an ISSUE.
    public static let maxExchangeTTLSeconds: UInt32 = 86_400
    /// Longest leeway on `exp`, `nbf` or `iat`: ten minutes of clock skew is already generous.
    public static let maxLeewaySeconds: UInt32 = 600
    /// Most entries in each of a role's lists and mappings (audiences, bound claims, values of one bound claim,
    /// scopes, mapping entries): a role is policy an operator writes, and it must fit in one frame (ROLE_PUT).
    public static let maxRoleEntries = 64

    /// A role: its name an id, an issuer, at least one audience, a user claim, exactly one way to a license, scopes,
    /// a lifetime and leeways in range, claim names and bound values non-empty.
    public static func identityRole(_ role: IdentityRole, field: String = "") throws(ValidationError) {
        func at(_ key: String) -> String { field.isEmpty ? key : "\(field).\(key)" }
        try identifier(role.name, "a role name", field: at("name"))
        try text(role.issuer, max: 512, "the issuer", allowEmpty: false, field: at("issuer"))
        guard !role.audiences.isEmpty else {
            throw ValidationError(.missingKey, field: at("bound_audiences"), "a role must bind at least one audience")
        }
        for (key, count) in [
            ("bound_audiences", role.audiences.count), ("bound_claims", role.boundClaims.count),
            ("license_mapping", role.licenseMapping.count), ("org_mapping", role.orgMapping.count),
        ] + role.boundClaims.map({ ("bound_claims.\($0.claim)", $0.values.count) }) where count > maxRoleEntries {
            throw ValidationError(.outOfRange, field: at(key), "a role holds at most \(maxRoleEntries) entries in each list or mapping")
        }
        for (index, audience) in role.audiences.enumerated() {
            try text(audience, max: 512, "an audience", allowEmpty: false, field: at("bound_audiences[\(index)]"))
        }
        try claimName(role.userClaim, field: at("user_claim"))
        var boundNames = Set<String>()
        for (index, bound) in role.boundClaims.enumerated() {
            try claimName(bound.claim, field: at("bound_claims[\(index)]"))
            guard boundNames.insert(bound.claim).inserted else {
                throw ValidationError(.invalidValue, field: at("bound_claims.\(bound.claim)"), "a claim is bound once (list its values instead)")
            }
            guard !bound.values.isEmpty else {
                throw ValidationError(.invalidValue, field: at("bound_claims.\(bound.claim)"), "a bound claim needs at least one value")
            }
            for value in bound.values { try text(value, max: 512, "a bound value", allowEmpty: false, field: at("bound_claims.\(bound.claim)")) }
        }
        let ways = [!role.license.isEmpty, !role.licenseClaim.isEmpty, !role.orgClaim.isEmpty].filter { $0 }.count
        guard ways == 1 else {
            throw ValidationError(.invalidValue, field: field, "a role needs exactly one of license, license_claim or org_claim")
        }
        if !role.license.isEmpty { try identifier(role.license, "a license id", field: at("license")) }
        if !role.licenseClaim.isEmpty {
            try claimName(role.licenseClaim, field: at("license_claim"))
            try mapping(role.licenseMapping, "a license id", field: at("license_mapping"))
        }
        if !role.orgClaim.isEmpty {
            try claimName(role.orgClaim, field: at("org_claim"))
            try mapping(role.orgMapping, "an organisation id", field: at("org_mapping"))
        }
        guard !role.scopes.isEmpty else { throw ValidationError(.missingKey, field: at("scopes"), "a role must grant at least one scope") }
        try scopes(role.scopes, field: at("scopes"))
        if !role.scopeClaim.isEmpty { try claimName(role.scopeClaim, field: at("scope_claim")) }
        guard (1...maxExchangeTTLSeconds).contains(role.maxTTLSeconds) else {
            throw ValidationError(.outOfRange, field: at("max_ttl_s"), "max_ttl_s must be between 1 and \(maxExchangeTTLSeconds)")
        }
        for (name, value) in [("exp", role.leewaySeconds.exp), ("nbf", role.leewaySeconds.nbf), ("iat", role.leewaySeconds.iat)] where value > maxLeewaySeconds {
            throw ValidationError(.outOfRange, field: at("leeway_s.\(name)"), "a leeway must be between 0 and \(maxLeewaySeconds) seconds")
        }
    }

    /// A set of roles: each valid, names unique.
    public static func identityRoles(_ roles: [IdentityRole], field: String = "roles") throws(ValidationError) {
        var names = Set<String>()
        for (index, role) in roles.enumerated() {
            try identityRole(role, field: "\(field)[\(index)]")
            guard names.insert(role.name).inserted else {
                throw ValidationError(.invalidValue, field: "\(field)[\(index)].name", "role \(quotedPlain(role.name)) is defined twice")
            }
        }
    }

    /// A JWT claim name: 1–128 printable ASCII characters without spaces (`groups`, `https://example.com/org`).
    public static func claimName(_ value: String, field: String = "") throws(ValidationError) {
        guard !value.isEmpty, value.utf8.count <= 128, everyByte(of: value, { $0 > 0x20 && $0 < 0x7F }) else {
            throw ValidationError(.invalidValue, field: field, "a claim name must be 1–128 printable ASCII characters without spaces")
        }
    }

    static func mapping(_ table: [String: String], _ what: String, field: String) throws(ValidationError) {
        guard !table.isEmpty else { throw ValidationError(.missingKey, field: field, "a mapping needs at least one entry") }
        for (claim, id) in table.sorted(by: { $0.key < $1.key }) {
            try text(claim, max: 512, "a claim value", allowEmpty: false, field: field)
            try identifier(id, what, field: "\(field).\(claim)")
        }
    }
}
