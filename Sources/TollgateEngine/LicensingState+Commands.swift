import TollgateModel

/// The data- and control-plane commands other than CHECK. Each validates, builds the one `StateChange` that
/// records it, applies that change through `apply(_:)`, and returns it so the caller can journal it.
extension LicensingState {
    /// Records usage the caller served. Quota never denies a METER: usage that happened is counted.
    public mutating func meter(_ request: MeterRequest, at now: Timestamp, caller: UInt32? = nil) throws -> (result: MeterResult, change: StateChange?) {
        try Validate.length(request.meter, max: Limits.maxMeterName, "the meter name", allowEmpty: false)
        try Validate.length(request.idempotencyKey, max: Limits.maxIdempotencyKey, "the idempotency key")
        guard request.quantity > 0 else { throw EngineError.invalid("the quantity must be at least 1") }

        guard TokenFormat.validate(request.token) != nil else { return (MeterResult(reason: .malformedToken), nil) }
        guard let record = tokens[Self.hash(of: request.token)] else { return (MeterResult(reason: .unknownToken), nil) }
        let token = record.info
        var result = MeterResult(reason: .none, tokenID: token.id, licenseID: token.licenseID)
        let plan: Plan
        switch usability(of: record, at: now.millis, caller: caller) {
        case .failure(let denial):
            result.reason = denial.reason
            return (result, nil)
        case .success(let usablePlan):
            plan = usablePlan
        }

        var change: StateChange?
        if !request.idempotencyKey.isEmpty, idempotencyKeys[request.idempotencyKey] != nil {
            result.duplicate = true
        } else {
            let entry = UsageEntry(tokenID: token.id, meter: request.meter, quantity: request.quantity, at: now.millis)
            change = .metered(entry, idempotencyKey: request.idempotencyKey)
            apply(change!)
        }
        if let rule = plan.quota(for: request.meter) {
            let used = usage(licenseID: token.licenseID, meter: request.meter, period: rule.period, at: now.millis)
            result.quota = QuotaState(
                limit: rule.limit, remaining: rule.limit > used ? rule.limit - used : 0,
                resetAt: UTCCalendar.bounds(of: rule.period, containing: now.millis).end)
        }
        return (result, change)
    }

    /// Revokes by secret, token id, or license. Returns how many tokens this request revoked (already revoked
    /// ones are not counted) and the change, which is nil when there was nothing left to revoke.
    public mutating func revoke(_ request: RevokeRequest, at now: Timestamp) throws -> (revoked: UInt32, change: StateChange?) {
        try Validate.length(request.reason, max: Limits.maxReason, "the reason")
        let ids: [String]
        switch request.target {
        case .secret(let secret):
            guard TokenFormat.validate(secret) != nil else { throw EngineError.invalid("the value is not a well-formed token") }
            guard let token = tokens[Self.hash(of: secret)] else { throw EngineError.notFound("no token matches the given secret") }
            ids = [token.info.id]
        case .tokenID(let id):
            guard tokenIDs[id] != nil else { throw EngineError.notFound("token \(Self.printable(id)) does not exist") }
            ids = [id]
        case .license(let id):
            guard licenses[id] != nil || licenseTokens[id] != nil else { throw EngineError.notFound("license \(Self.printable(id)) does not exist") }
            ids = licenseTokens[id] ?? []
        }
        let live = ids.filter { token(id: $0)?.info.revokedAt == 0 }
        guard !live.isEmpty else { return (0, nil) }
        let change = StateChange.tokensRevoked(tokenIDs: live, reason: request.reason, at: max(now.millis, 1))
        apply(change)
        return (UInt32(clamping: live.count), change)
    }

    /// Mints a token. The secret is returned here and stored nowhere: the state and the change hold its hash.
    public mutating func issue<R: RandomNumberGenerator>(_ request: IssueRequest, at now: Timestamp, using rng: inout R) throws -> (secret: String, token: TokenInfo, change: StateChange) {
        guard licenses[request.licenseID] != nil else { throw EngineError.notFound("license \(Self.printable(request.licenseID)) does not exist") }
        try Validate.length(request.subject, max: Limits.maxSubject, "the subject", allowEmpty: false)
        let scopes = request.scopes.isEmpty ? ["*"] : request.scopes
        try Validate.scopes(scopes, "scopes")
        guard request.metadata.count <= Limits.maxMetadataPairs else { throw EngineError.invalid("at most \(Limits.maxMetadataPairs) metadata pairs are allowed") }
        for pair in request.metadata {
            try Validate.length(pair.key, max: Limits.maxMetadataKey, "a metadata key", allowEmpty: false)
            try Validate.length(pair.value, max: Limits.maxMetadataValue, "a metadata value")
            if pair.key.hasPrefix(TokenBinding.reservedPrefix) {
                guard pair.key == TokenBinding.metadataKey else {
                    throw EngineError.invalid("metadata keys starting with \(TokenBinding.reservedPrefix) are reserved; the only one defined is \(TokenBinding.metadataKey)")
                }
                guard TokenBinding.parse(pair.value) != nil else {
                    throw EngineError.invalid("\(TokenBinding.metadataKey) must be a comma-separated list of 1 to 16 uids")
                }
            }
        }
        let notBefore = request.notBefore
        guard request.expiresAt == 0 || request.expiresAt > max(notBefore, now.millis) else {
            throw EngineError.invalid("expires_at must be later than now and than not_before")
        }

        var id: String
        repeat { id = "tok_" + TokenFormat.randomIdentifier(length: 22, using: &rng) } while tokenIDs[id] != nil
        var random = [UInt8](repeating: 0, count: 32)
        for i in 0..<4 {
            let word = rng.next()
            for j in 0..<8 { random[i * 8 + j] = UInt8(truncatingIfNeeded: word >> (j * 8)) }
        }
        let secret = TokenFormat.make(environment: request.environment, randomBytes: random)
        let info = TokenInfo(
            id: id, licenseID: request.licenseID, subject: request.subject, scopes: scopes, issuedAt: now.millis,
            notBefore: notBefore, expiresAt: request.expiresAt, metadata: request.metadata, environment: request.environment)
        let change = StateChange.tokenIssued(TokenRecord(hash: Self.hash(of: secret), info: info))
        apply(change)
        return (secret, info, change)
    }

    public mutating func putLicense(_ spec: LicenseSpec, at now: Timestamp) throws -> (info: LicenseInfo, change: StateChange) {
        try Validate.identifier(spec.id, "the license id")
        try Validate.length(spec.customer, max: Limits.maxCustomer, "the customer")
        guard plans[spec.plan] != nil else { throw EngineError.notFound("plan \(Self.printable(spec.plan)) does not exist") }
        let change = StateChange.licensePut(spec, at: now.millis)
        apply(change)
        return (licenseInfo(id: spec.id)!, change)
    }

    public mutating func putPlan(_ plan: Plan, at now: Timestamp) throws -> (plan: Plan, change: StateChange?) {
        try Validate.identifier(plan.id, "the plan id")
        try Validate.scopes(plan.entitlements, "entitlements")
        guard plan.quotas.count <= Limits.maxQuotas else { throw EngineError.invalid("at most \(Limits.maxQuotas) quotas are allowed") }
        var meters = Set<String>()
        for quota in plan.quotas {
            try Validate.length(quota.meter, max: Limits.maxMeterName, "a quota's meter name", allowEmpty: false)
            guard meters.insert(quota.meter).inserted else { throw EngineError.invalid("meter \(quota.meter) has two quotas") }
        }
        guard plan.ratePerSecond <= Limits.maxRatePerSecond else { throw EngineError.invalid("rate_per_second must be at most \(Limits.maxRatePerSecond)") }
        var plan = plan
        if plan.ratePerSecond > 0 && plan.burst == 0 { plan.burst = 1 }
        if plan.ratePerSecond == 0 { plan.burst = 0 }
        guard plans[plan.id] != plan else { return (plan, nil) }
        let change = StateChange.planPut(plan, at: now.millis)
        apply(change)
        return (plan, change)
    }

    /// A value from a request, made safe to put in an error message or a log line: bounded, control characters
    /// replaced, and anything that could be a token secret (even a mistyped one) withheld.
    public static func printable(_ value: String) -> String {
        if value.hasPrefix(TokenFormat.prefix) { return "(withheld: looks like a token secret)" }
        let cut = value.unicodeScalars.prefix(64).map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) }
        return "'" + String(cut) + (value.unicodeScalars.count > 64 ? "…" : "") + "'"
    }
}
