import NIOCore

/// Encodings of the shared structures (TokenInfo, LicenseSpec, LicenseInfo, Plan, OrgSpec) used by both the wire
/// protocol and the journal's record payloads, so there is one definition of each (`Protocol/PROTOCOL.md`,
/// "Shared structures").
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
        try writeWireString(token.parentID)
        try writeWireString(token.revokedBy)
        writeInteger(token.rotatedAt)
        writeInteger(token.previousSecretValidUntil)
        writeInteger(token.lastUsedAt)
        writeInteger(token.previousSecretLastUsedAt)
    }

    public mutating func writeLicenseSpec(_ spec: LicenseSpec) throws {
        try writeWireString(spec.id)
        try writeWireString(spec.customer)
        try writeWireString(spec.plan)
        writeInteger(spec.status.rawValue)
        writeInteger(spec.validUntil)
        writeInteger(spec.validFrom)
        writeInteger(spec.trialEndsAt)
        try writeWireString(spec.org)
        try writeWireString(spec.project)
        writeInteger(spec.billingAnchorDay)
    }

    public mutating func writeLicenseInfo(_ info: LicenseInfo) throws {
        try writeLicenseSpec(info.spec)
        writeInteger(info.updatedAt)
        writeInteger(info.activeTokens)
        writeInteger(info.pastDueSince)
        writeInteger(info.prepaidCredits)
    }

    public mutating func writeUsageRow(_ row: UsageRow) throws {
        try writeWireString(row.org)
        try writeWireString(row.project)
        try writeWireString(row.licenseID)
        try writeWireString(row.tokenID)
        try writeWireString(row.meter)
        writeInteger(row.periodStart)
        writeInteger(row.quantity)
        writeInteger(row.overage)
    }

    public mutating func writeEvent(_ event: LicensingEvent) throws {
        writeInteger(event.sequence)
        writeInteger(event.at)
        writeInteger(event.kind.rawValue)
        try writeWireString(event.owner)
        try writeWireString(event.detail)
    }

    public mutating func writeOrgSpec(_ org: OrgSpec) throws {
        try writeWireString(org.id)
        try writeWireString(org.name)
        writeWireBool(org.suspended)
    }

    public mutating func writePlan(_ plan: Plan) throws {
        try writeWireString(plan.id)
        try writeWireStrings(plan.entitlements)
        try writeWireStrings(plan.features)
        try writeWireCount(plan.quotas.count)
        for quota in plan.quotas {
            try writeWireString(quota.meter)
            writeInteger(quota.window.code)
            writeInteger(quota.window.seconds)
            writeInteger(quota.limit)
            writeInteger(quota.pool.rawValue)
        }
        try writeWireCount(plan.rateLimits.count)
        for rule in plan.rateLimits {
            writeInteger(rule.pool.rawValue)
            writeInteger(rule.ratePerSecond)
            writeInteger(rule.burst)
        }
        try writeWireCount(plan.concurrency.count)
        for rule in plan.concurrency {
            writeInteger(rule.pool.rawValue)
            writeInteger(rule.max)
        }
        writeWireBool(plan.credits != nil)
        writeInteger(plan.credits?.pool.rawValue ?? 0)
        writeInteger(plan.credits?.included ?? 0)
        writeInteger(plan.credits?.period.rawValue ?? 0)
        writeInteger(plan.overage.rawValue)
        writeInteger(plan.maxTokenLifetimeSeconds)
        writeInteger(plan.maxActiveTokens)
        writeInteger(plan.pastDueGraceSeconds)
    }
}

extension WireReader {
    public mutating func tokenInfo() throws -> TokenInfo {
        TokenInfo(
            id: try string("token_id"), licenseID: try string("license_id"), subject: try string("subject"),
            scopes: try strings("scopes"), issuedAt: try i64("issued_at"), notBefore: try i64("not_before"),
            expiresAt: try i64("expires_at"), revokedAt: try i64("revoked_at"), revokeReason: try string("revoke_reason"),
            metadata: try pairs("metadata"), environment: try code("environment", as: TokenEnvironment.self),
            parentID: try string("parent_id"), revokedBy: try string("revoked_by"), rotatedAt: try i64("rotated_at"),
            previousSecretValidUntil: try i64("previous_valid_until"), lastUsedAt: try i64("last_used_at"),
            previousSecretLastUsedAt: try i64("previous_last_used_at"))
    }

    public mutating func licenseSpec() throws -> LicenseSpec {
        LicenseSpec(
            id: try string("license_id"), customer: try string("customer"), plan: try string("plan"),
            status: try code("status", as: LicenseStatus.self), validUntil: try i64("valid_until"), validFrom: try i64("valid_from"),
            trialEndsAt: try i64("trial_ends_at"), org: try string("org"), project: try string("project"),
            billingAnchorDay: try u8("billing_anchor_day"))
    }

    public mutating func licenseInfo() throws -> LicenseInfo {
        LicenseInfo(
            spec: try licenseSpec(), updatedAt: try i64("updated_at"), activeTokens: try u32("active_tokens"),
            pastDueSince: try i64("past_due_since"), prepaidCredits: try u64("prepaid_credits"))
    }

    public mutating func usageRow() throws -> UsageRow {
        UsageRow(
            org: try string("org"), project: try string("project"), licenseID: try string("license_id"), tokenID: try string("token_id"),
            meter: try string("meter"), periodStart: try i64("period_start"), quantity: try u64("quantity"), overage: try u64("overage"))
    }

    public mutating func event() throws -> LicensingEvent {
        LicensingEvent(
            sequence: try u64("sequence"), at: try i64("at"), kind: try code("kind", as: LicensingEvent.Kind.self),
            owner: try string("owner"), detail: try string("detail"))
    }

    public mutating func orgSpec() throws -> OrgSpec {
        OrgSpec(id: try string("org_id"), name: try string("name"), suspended: try bool("suspended"))
    }

    public mutating func plan() throws -> Plan {
        let id = try string("plan_id")
        let entitlements = try strings("entitlements")
        let features = try strings("features")
        var quotas: [QuotaRule] = []
        for _ in 0..<(try count("quotas", minimumElementSize: 18)) {
            let meter = try string("quota.meter")
            let windowCode = try u8("quota.window")
            let seconds = try u32("quota.seconds")
            guard let window = QuotaWindow(code: windowCode, seconds: seconds) else {
                throw WireError(.malformed, "\(context): quota window \(windowCode) with seconds \(seconds) is not defined")
            }
            quotas.append(QuotaRule(meter: meter, window: window, limit: try u64("quota.limit"), pool: try code("quota.pool", as: PoolLevel.self)))
        }
        var rates: [RateRule] = []
        for _ in 0..<(try count("rate_limits", minimumElementSize: 9)) {
            rates.append(RateRule(pool: try code("rate.pool", as: PoolLevel.self), ratePerSecond: try u32("rate.per_second"), burst: try u32("rate.burst")))
        }
        var concurrency: [ConcurrencyRule] = []
        for _ in 0..<(try count("concurrency", minimumElementSize: 5)) {
            concurrency.append(ConcurrencyRule(pool: try code("concurrency.pool", as: PoolLevel.self), max: try u32("concurrency.max")))
        }
        let hasCredits = try bool("credits.present")
        let credits = CreditPolicy(pool: try code("credits.pool", as: PoolLevel.self), included: try u64("credits.included"), period: try code("credits.period", as: Period.self))
        if !hasCredits && credits != CreditPolicy(pool: .token, included: 0, period: .hour) {
            throw WireError(.malformed, "\(context): absent credits must have zero fields")
        }
        return Plan(
            id: id, entitlements: entitlements, features: features, quotas: quotas, rateLimits: rates, concurrency: concurrency,
            credits: hasCredits ? credits : nil, overage: try code("overage", as: OveragePolicy.self),
            maxTokenLifetimeSeconds: try u32("max_token_lifetime_s"), maxActiveTokens: try u32("max_active_tokens"),
            pastDueGraceSeconds: try u32("past_due_grace_s"))
    }
}
