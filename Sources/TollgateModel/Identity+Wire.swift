import NIOCore

/// The wire (and journal) encoding of an identity role (`Protocol/PROTOCOL.md`, "Shared structures", Role): one
/// definition shared by ROLE_PUT, ROLE_DELETE, ROLE_LIST and journal record 18. Mappings are written in key order,
/// so a role has one encoding.
extension ByteBuffer {
    public mutating func writeIdentityRole(_ role: IdentityRole) throws {
        try writeWireString(role.name)
        try writeWireString(role.issuer)
        try writeWireStrings(role.audiences)
        try writeWireCount(role.boundClaims.count)
        for bound in role.boundClaims {
            try writeWireString(bound.claim)
            try writeWireStrings(bound.values)
        }
        writeInteger(role.boundClaimsMatch.code)
        try writeWireString(role.userClaim)
        try writeWireString(role.license)
        try writeWireString(role.licenseClaim)
        try writeWirePairs(role.licenseMapping.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }.map { KeyValue($0.key, $0.value) })
        try writeWireString(role.orgClaim)
        try writeWirePairs(role.orgMapping.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }.map { KeyValue($0.key, $0.value) })
        try writeWireStrings(role.scopes)
        try writeWireString(role.scopeClaim)
        writeInteger(role.maxTTLSeconds)
        writeInteger(role.leewaySeconds.exp)
        writeInteger(role.leewaySeconds.nbf)
        writeInteger(role.leewaySeconds.iat)
    }
}

extension WireReader {
    public mutating func identityRole() throws -> IdentityRole {
        var role = IdentityRole(name: try string("name"), issuer: try string("issuer"), audiences: try strings("bound_audiences"), scopes: [])
        for _ in 0..<(try count("bound_claims", minimumElementSize: 4)) {
            role.boundClaims.append(.init(claim: try string("bound_claim.claim"), values: try strings("bound_claim.values")))
        }
        let match = try u8("bound_claims_type")
        guard let decoded = IdentityRole.Match(code: match) else { throw WireError(.malformed, "\(context): bound_claims_type \(match) is not defined") }
        role.boundClaimsMatch = decoded
        role.userClaim = try string("user_claim")
        role.license = try string("license")
        role.licenseClaim = try string("license_claim")
        role.licenseMapping = try mapping("license_mapping")
        role.orgClaim = try string("org_claim")
        role.orgMapping = try mapping("org_mapping")
        role.scopes = try strings("scopes")
        role.scopeClaim = try string("scope_claim")
        role.maxTTLSeconds = try u32("max_ttl_s")
        role.leewaySeconds = IdentityRole.Leeways(exp: try u32("leeway_s.exp"), nbf: try u32("leeway_s.nbf"), iat: try u32("leeway_s.iat"))
        return role
    }

    /// A mapping sent as pairs in ascending order of their keys' UTF-8 bytes, each key once: the one encoding of a
    /// mapping, so that a decoded role encodes to the bytes it came from. A key given twice is malformed (which one
    /// would win?), and so are keys out of order.
    mutating func mapping(_ field: StaticString) throws -> [String: String] {
        var table: [String: String] = [:]
        var previous: String?
        for pair in try pairs(field) {
            guard table.updateValue(pair.value, forKey: pair.key) == nil else {
                throw WireError(.malformed, "\(context): \(field) names key \(pair.key.debugDescription) twice")
            }
            if let previous, !previous.utf8.lexicographicallyPrecedes(pair.key.utf8) {
                throw WireError(.malformed, "\(context): \(field) keys must be in ascending order (\(pair.key.debugDescription) after \(previous.debugDescription))")
            }
            previous = pair.key
        }
        return table
    }
}

extension IdentityRole.Match {
    /// The wire code: 0 exact, 1 glob.
    public var code: UInt8 { self == .exact ? 0 : 1 }
    public init?(code: UInt8) {
        switch code {
        case 0: self = .exact
        case 1: self = .glob
        default: return nil
        }
    }
}
