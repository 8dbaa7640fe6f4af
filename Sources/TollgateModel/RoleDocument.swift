/// The one role document model (issue 17): the daemon's JSON configuration (`identity.roles`) and `tollgate apply`'s
/// YAML file (`roles:`) are both turned into a `DocumentNode` tree by their own parser, and this reader turns a
/// role's node into an `IdentityRole`, checked by `Validation.identityRole`. So a role means the same, and is refused
/// for the same reason with the same message, whichever file it is written in (as `PlanDocument` does for plans).
///
/// ```yaml
/// name: ci
/// issuer: https://token.actions.githubusercontent.com
/// bound_audiences: [https://tollgate.example.com]
/// bound_claims: {sub: "repo:acme/*:ref:refs/heads/main", groups: [ops, dev]}   # a value or a list of values
/// bound_claims_type: glob              # exact by default
/// user_claim: sub                      # sub by default
/// license: lic_acme                    # or license_claim + license_mapping, or org_claim + org_mapping
/// scopes: [read, deploy]
/// scope_claim: scp                     # optional
/// max_ttl_s: 900                       # 900 by default
/// leeway_s: {exp: 30, nbf: 30, iat: 30}
/// ```
public enum RoleDocument {
    public static let keys = [
        "name", "issuer", "bound_audiences", "bound_claims", "bound_claims_type", "user_claim", "license", "license_claim",
        "license_mapping", "org_claim", "org_mapping", "scopes", "scope_claim", "max_ttl_s", "leeway_s",
    ]

    public static func read(_ reader: inout DocumentReader) throws(ValidationError) -> IdentityRole {
        try reader.allowOnly(keys)
        let name = try reader.requiredString("name")
        // The name first, so that an error in another field does not hide a malformed name.
        do throws(ValidationError) { try Validation.identifier(name, "a role name") } catch { throw error.at(reader.child("name")) }
        var role = IdentityRole(
            name: name, issuer: try reader.requiredString("issuer"), audiences: try reader.strings("bound_audiences") ?? [],
            scopes: try reader.strings("scopes") ?? [])
        if let node = reader.value("bound_claims") {
            for entry in try entries(node, reader.child("bound_claims")) {
                let path = "\(reader.child("bound_claims")).\(entry.key)"
                let values: [String]
                switch entry.value {
                case .list(let elements):
                    var list: [String] = []
                    for (index, element) in elements.enumerated() { list.append(try DocumentReader.string(element, "\(path)[\(index)]")) }
                    values = list
                default:
                    values = [try DocumentReader.string(entry.value, path)]
                }
                role.boundClaims.append(.init(claim: entry.key, values: values))
            }
        }
        role.boundClaimsMatch = try reader.named("bound_claims_type", IdentityRole.Match.init(rawValue:), allowed: ["exact", "glob"]) ?? .exact
        role.userClaim = try reader.string("user_claim") ?? role.userClaim
        role.license = try reader.string("license") ?? ""
        role.licenseClaim = try reader.string("license_claim") ?? ""
        role.licenseMapping = try table(&reader, "license_mapping")
        role.orgClaim = try reader.string("org_claim") ?? ""
        role.orgMapping = try table(&reader, "org_mapping")
        role.scopeClaim = try reader.string("scope_claim") ?? ""
        role.maxTTLSeconds = try reader.integer("max_ttl_s", UInt32.self) ?? role.maxTTLSeconds
        if var leeway = try reader.mapping("leeway_s") {
            try leeway.allowOnly(["exp", "nbf", "iat"])
            role.leewaySeconds.exp = try leeway.integer("exp", UInt32.self) ?? 0
            role.leewaySeconds.nbf = try leeway.integer("nbf", UInt32.self) ?? 0
            role.leewaySeconds.iat = try leeway.integer("iat", UInt32.self) ?? 0
            try leeway.finish()
        }
        try reader.finish()
        role = role.normalized
        do throws(ValidationError) { try Validation.identityRole(role) } catch { throw error.at(reader.path) }
        return role
    }

    static func entries(_ node: DocumentNode, _ path: String) throws(ValidationError) -> [DocumentEntry] {
        guard case .mapping(let entries) = node else { throw ValidationError(.wrongType, field: path, "must be a mapping (an object)") }
        return entries
    }

    /// A mapping of claim values to ids (`license_mapping`, `org_mapping`).
    static func table(_ reader: inout DocumentReader, _ key: String) throws(ValidationError) -> [String: String] {
        guard let node = reader.value(key) else { return [:] }
        var table: [String: String] = [:]
        for entry in try entries(node, reader.child(key)) {
            table[entry.key] = try DocumentReader.string(entry.value, "\(reader.child(key)).\(entry.key)")
        }
        return table
    }
}

extension IdentityRole {
    /// The role as it is stored: bound claims in claim order (a claim's position in a file means nothing), so that
    /// the same role read from JSON, YAML or the wire compares equal and `tollgate apply` shows no change for it.
    public var normalized: IdentityRole {
        var role = self
        role.boundClaims.sort { $0.claim < $1.claim }
        return role
    }
}
