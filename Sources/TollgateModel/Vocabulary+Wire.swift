import NIOCore

/// Encodings of the shared structures (TokenInfo, LicenseSpec, LicenseInfo, PlanInfo) used by both the wire
/// protocol and the journal's record payloads, so there is one definition of each.
extension ByteBuffer {
    public mutating func writeTokenInfo(_ token: TokenInfo) throws {
        try writeWireString(token.id)
        try writeWireString(token.licenseID)
        try writeWireString(token.subject)
        try writeWireStrings(token.scopes)
        writeInteger(token.issuedAt)
        writeInteger(token.notBefore)
        writeInteger(token.expiresAt)
        writeInteger(token.revokedAt)
        try writeWireString(token.revokeReason)
        try writeWirePairs(token.metadata)
        writeInteger(token.environment.rawValue)
    }

    public mutating func writeLicenseSpec(_ spec: LicenseSpec) throws {
        try writeWireString(spec.id)
        try writeWireString(spec.customer)
        try writeWireString(spec.plan)
        writeInteger(spec.status.rawValue)
        writeInteger(spec.validUntil)
    }

    public mutating func writeLicenseInfo(_ info: LicenseInfo) throws {
        try writeLicenseSpec(info.spec)
        writeInteger(info.updatedAt)
        writeInteger(info.activeTokens)
    }

    public mutating func writePlan(_ plan: Plan) throws {
        try writeWireString(plan.id)
        try writeWireStrings(plan.entitlements)
        try writeWireCount(plan.quotas.count)
        for quota in plan.quotas {
            try writeWireString(quota.meter)
            writeInteger(quota.period.rawValue)
            writeInteger(quota.limit)
        }
        writeInteger(plan.ratePerSecond)
        writeInteger(plan.burst)
    }
}

extension WireReader {
    public mutating func tokenInfo() throws -> TokenInfo {
        TokenInfo(
            id: try string("token_id"), licenseID: try string("license_id"), subject: try string("subject"),
            scopes: try strings("scopes"), issuedAt: try i64("issued_at"), notBefore: try i64("not_before"),
            expiresAt: try i64("expires_at"), revokedAt: try i64("revoked_at"), revokeReason: try string("revoke_reason"),
            metadata: try pairs("metadata"), environment: try code("environment", as: TokenEnvironment.self))
    }

    public mutating func licenseSpec() throws -> LicenseSpec {
        LicenseSpec(
            id: try string("license_id"), customer: try string("customer"), plan: try string("plan"),
            status: try code("status", as: LicenseStatus.self), validUntil: try i64("valid_until"))
    }

    public mutating func licenseInfo() throws -> LicenseInfo {
        LicenseInfo(spec: try licenseSpec(), updatedAt: try i64("updated_at"), activeTokens: try u32("active_tokens"))
    }

    public mutating func plan() throws -> Plan {
        let id = try string("plan_id")
        let entitlements = try strings("entitlements")
        let n = try count("quotas", minimumElementSize: 11)
        var quotas: [QuotaRule] = []
        quotas.reserveCapacity(n)
        for _ in 0..<n {
            quotas.append(QuotaRule(meter: try string("quota.meter"), period: try code("quota.period", as: Period.self), limit: try u64("quota.limit")))
        }
        return Plan(id: id, entitlements: entitlements, quotas: quotas, ratePerSecond: try u32("rate_per_second"), burst: try u32("burst"))
    }
}
