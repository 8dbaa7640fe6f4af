import TollgateModel

/// The data- and control-plane commands other than CHECK. Each validates, builds the one `StateChange` that
/// records it, applies that change through `apply(_:)`, and returns it so the caller can journal it.
extension LicensingState {
    /// Records usage the caller served. Quota never denies a METER: usage that happened is counted (what exceeds a
    /// quota or the credits is recorded as overage); a token that may not be used at all is refused.
    ///
    /// - Parameter counting: false decides the METER and returns its change without counting it: fleet mode counts a
    ///   METER on every host, its origin included, only when it reads it back from the fleet log, once its
    ///   idempotency key is claimed there (`Protocol/FLEET.md` 10).
    public mutating func meter(_ request: MeterRequest, at now: Timestamp, caller: UInt32? = nil, counting: Bool = true) throws -> (result: MeterResult, change: StateChange?) {
        try Validate.run { () throws(ValidationError) in
            try Validation.meterName(request.meter)
            try Validation.text(request.idempotencyKey, max: Limits.maxIdempotencyKey, "the idempotency key")
        }
        guard request.quantity > 0 else { throw EngineError.invalid("the quantity must be at least 1") }

        guard TokenFormat.validate(request.token) != nil else { return (MeterResult(reason: .malformedToken), nil) }
        guard let (token, retired) = resolveView(secret: request.token) else { return (MeterResult(reason: .unknownToken), nil) }
        var result = MeterResult(reason: .none, tokenID: token.id, licenseID: token.licenseID)
        if let retired, now.millis >= retired.validUntil {
            result.reason = .revoked
            return (result, nil)
        }
        let plan: Plan
        let license: LicenseSpec
        switch usability(of: token, at: now.millis, caller: caller) {
        case .failure(let denial):
            result.reason = denial.reason
            return (result, nil)
        case .success(let usable):
            (plan, license) = usable
        }

        var change: StateChange?
        if !request.idempotencyKey.isEmpty, book.idempotencyKeys[request.idempotencyKey] != nil {
            result.duplicate = true
            result.quota = servedUsage(0, meter: request.meter, tokenID: token.id, license: license, plan: plan, at: now.millis).quota
        } else {
            let served = servedUsage(request.quantity, meter: request.meter, tokenID: token.id, license: license, plan: plan, at: now.millis)
            change = .metered(served.entry, idempotencyKey: request.idempotencyKey)
            if counting { recordUsageLive(served.entry, idempotencyKey: request.idempotencyKey, context: (license, plan), crossable: served.crossable) }
            result.quota = served.quota
        }
        return (result, change)
    }

    /// Revokes by secret, token id, license, organisation or subject, and every token derived from those. Returns
    /// how many tokens this request revoked (already revoked ones are not counted) and the change, which is nil
    /// when there was nothing left to revoke.
    public mutating func revoke(_ request: RevokeRequest, at now: Timestamp) throws -> (revoked: UInt32, change: StateChange?) {
        try Validate.run { () throws(ValidationError) in
            try Validation.text(request.reason, max: Limits.maxReason, "the reason")
            try Validation.text(request.actor, max: Limits.maxReason, "the actor")
        }
        var ids: [String]
        switch request.target {
        case .secret(let secret):
            guard TokenFormat.validate(secret) != nil else { throw EngineError.invalid("the value is not a well-formed token") }
            // A rotated-out secret names its token too: revoking with a leaked old secret revokes the identity.
            guard let (token, _) = resolve(secret: secret) else { throw EngineError.notFound("no token matches the given secret") }
            ids = [token.info.id]
        case .tokenID(let id):
            guard tokens.contains(id: id) else { throw EngineError.notFound("token \(Self.printable(id)) does not exist") }
            ids = [id]
        case .license(let id):
            guard licenses[id] != nil || tokens.hasTokens(license: id) else { throw EngineError.notFound("license \(Self.printable(id)) does not exist") }
            ids = tokens.ids(license: id)
        case .org(let org):
            let members = licenses.values.filter { $0.spec.org == org }.map(\.spec.id).sorted()
            guard orgs[org] != nil || !members.isEmpty else { throw EngineError.notFound("organisation \(Self.printable(org)) does not exist") }
            ids = members.flatMap { tokens.ids(license: $0) }
        case .subject(let subject):
            try Validate.run { () throws(ValidationError) in try Validation.subject(subject) }
            ids = tokens.ids(subject: subject)
            guard !ids.isEmpty else { throw EngineError.notFound("no token was issued to that subject") }
        }
        // Derived tokens go with their parents.
        ids += ids.flatMap { children[$0] ?? [] }
        var seen = Set<String>()
        let live = ids.filter { seen.insert($0).inserted && token(id: $0)?.info.revokedAt == 0 }
        guard !live.isEmpty else { return (0, nil) }
        let change = StateChange.tokensRevoked(tokenIDs: live, reason: request.reason, actor: request.actor, at: max(now.millis, 1))
        apply(change)
        return (UInt32(clamping: live.count), change)
    }

    /// Mints a token. The secret is returned here and stored nowhere: the state and the change hold its hash.
    public mutating func issue<R: RandomNumberGenerator>(_ request: IssueRequest, at now: Timestamp, using rng: inout R) throws -> (secret: String, token: TokenInfo, change: StateChange) {
        guard let license = licenses[request.licenseID]?.spec else { throw EngineError.notFound("license \(Self.printable(request.licenseID)) does not exist") }
        let scopes = request.scopes.isEmpty ? ["*"] : request.scopes
        try Validate.run { () throws(ValidationError) in
            try Validation.subject(request.subject)
            try Validation.scopes(scopes, "scopes", field: "scopes")
            try Validation.metadata(request.metadata, field: "metadata")
            // Refused now rather than denied at every check (issue 13 §3); see `Validation.scopesGranted`.
            if let plan = plans[license.plan] { try Validation.scopesGranted(scopes, by: plan, license: license.id, field: "scopes") }
        }
        guard request.expiresAt == 0 || request.expiresAt > max(request.notBefore, now.millis) else {
            throw EngineError.invalid("expires_at must be later than now and than not_before")
        }
        var expiresAt = request.expiresAt
        if let plan = plans[license.plan] {
            if plan.maxTokenLifetimeSeconds > 0 {
                let longest = max(request.notBefore, now.millis) + Int64(plan.maxTokenLifetimeSeconds) * 1000
                // A token asked for without an expiry gets the plan's longest lifetime; a longer one is refused.
                guard expiresAt <= longest else {
                    throw EngineError.invalid("plan \(plan.id) allows tokens to live at most \(plan.maxTokenLifetimeSeconds) s")
                }
                if expiresAt == 0 { expiresAt = longest }
            }
            try checkTokenLimit(plan: plan, licenseID: license.id, at: now.millis)
        }
        var info = TokenInfo(
            id: "", licenseID: request.licenseID, subject: request.subject, scopes: scopes, issuedAt: now.millis,
            notBefore: request.notBefore, expiresAt: expiresAt, metadata: request.metadata, environment: request.environment)
        let secret = mint(&info, using: &rng)
        let change = StateChange.tokenIssued(TokenRecord(hash: Self.hash(of: secret), info: info))
        apply(change)
        return (secret, info, change)
    }

    /// Exchanges a token for a short-lived child: a subset of its scopes, a lifetime capped by `maxLifetime`, the
    /// plan's maximum and the parent's own expiry. Revoking the parent revokes the child; a derived token cannot
    /// derive further.
    public mutating func derive<R: RandomNumberGenerator>(
        _ request: DeriveRequest, at now: Timestamp, caller: UInt32? = nil, maxLifetime: Int64, using rng: inout R
    ) throws -> (result: CheckResult, secret: String, token: TokenInfo?, change: StateChange?) {
        guard TokenFormat.validate(request.parent) != nil else { return (CheckResult(reason: .malformedToken), "", nil, nil) }
        guard let (parent, retired) = resolve(secret: request.parent) else { return (CheckResult(reason: .unknownToken), "", nil, nil) }
        var result = CheckResult(reason: .none, tokenID: parent.info.id, licenseID: parent.info.licenseID, subject: parent.info.subject)
        if let retired, now.millis >= retired.validUntil {
            result.reason = .revoked
            return (result, "", nil, nil)
        }
        let plan: Plan
        switch usability(of: TokenView(parent), at: now.millis, caller: caller) {
        case .failure(let denial):
            result.reason = denial.reason
            return (result, "", nil, nil)
        case .success(let usable):
            plan = usable.0
        }
        // A token from an identity-provider exchange is a derived token too (issue 17): short-lived by design.
        guard parent.info.parentID.isEmpty, !parent.info.metadata.contains(where: { $0.key == ExchangeGrant.roleMetadataKey }) else {
            throw EngineError.invalid("a derived token cannot derive further tokens")
        }
        let scopes = request.scopes.isEmpty ? parent.info.scopes : request.scopes
        try Validate.run { () throws(ValidationError) in try Validation.scopes(scopes, "scopes", field: "scopes") }
        for scope in scopes where !Self.grants(parent.info.scopes, scope) {
            result.reason = .insufficientScope
            return (result, "", nil, nil)
        }
        guard request.ttlSeconds > 0 else { throw EngineError.invalid("ttl_seconds must be at least 1") }
        var expiresAt = now.millis + min(Int64(request.ttlSeconds) * 1000, maxLifetime)
        if plan.maxTokenLifetimeSeconds > 0 { expiresAt = min(expiresAt, now.millis + Int64(plan.maxTokenLifetimeSeconds) * 1000) }
        if parent.info.expiresAt != 0 { expiresAt = min(expiresAt, parent.info.expiresAt) }
        var info = TokenInfo(
            id: "", licenseID: parent.info.licenseID, subject: parent.info.subject, scopes: scopes, issuedAt: now.millis,
            notBefore: 0, expiresAt: expiresAt, metadata: parent.info.metadata, environment: parent.info.environment, parentID: parent.info.id)
        let secret = mint(&info, using: &rng)
        let change = StateChange.tokenIssued(TokenRecord(hash: Self.hash(of: secret), info: info))
        apply(change)
        return (result, secret, info, change)
    }

    /// A new secret for the same token; the previous one is accepted for `graceSeconds` more.
    public mutating func rotate<R: RandomNumberGenerator>(_ request: RotateRequest, at now: Timestamp, using rng: inout R) throws -> (secret: String, token: TokenInfo, change: StateChange) {
        guard let record = tokens.record(id: request.tokenID) else {
            throw EngineError.notFound("token \(Self.printable(request.tokenID)) does not exist")
        }
        guard record.info.revokedAt == 0 else { throw EngineError.invalid("a revoked token cannot be rotated") }
        let secret = TokenFormat.make(environment: record.info.environment, randomBytes: Self.randomBytes(using: &rng))
        let change = StateChange.tokenRotated(
            tokenID: request.tokenID, newHash: Self.hash(of: secret), previousHash: record.hash,
            previousValidUntil: now.millis + Int64(request.graceSeconds) * 1000, at: now.millis)
        apply(change)
        return (secret, token(id: request.tokenID)!.info, change)
    }

    /// Ends a rotation's overlap now: every previous secret of the token is refused from the next check.
    public mutating func endRotation(tokenID: String, at now: Timestamp) throws -> (token: TokenInfo, change: StateChange?) {
        guard let record = token(id: tokenID) else { throw EngineError.notFound("token \(Self.printable(tokenID)) does not exist") }
        // `previous_valid_until` is the last rotation's; an earlier rotation's overlap can outlast it (a long grace,
        // then a rotation with none), and ending the overlap ends that one too (PROTOCOL.md 6.15, 8.7).
        guard record.info.previousSecretValidUntil > now.millis
            || book.retiredSecrets.values.contains(where: { $0.tokenID == tokenID && $0.validUntil > now.millis })
        else { return (record.info, nil) }
        let change = StateChange.rotationEnded(tokenID: tokenID, at: now.millis)
        apply(change)
        return (token(id: tokenID)!.info, change)
    }

    public mutating func putLicense(_ spec: LicenseSpec, at now: Timestamp) throws -> (info: LicenseInfo, change: StateChange?) {
        try Validate.run { () throws(ValidationError) in try Validation.license(spec) }
        guard plans[spec.plan] != nil else { throw EngineError.notFound("plan \(Self.printable(spec.plan)) does not exist") }
        let previous = licenses[spec.id]
        if previous?.spec == spec { return (licenseInfo(id: spec.id)!, nil) }
        // Past due since the change that made it so; a license that stays past due keeps its date.
        let pastDueSince = spec.status != .pastDue ? 0 : previous.flatMap { $0.spec.status == .pastDue ? $0.pastDueSince : nil } ?? now.millis
        let change = StateChange.licensePut(spec, at: now.millis, pastDueSince: pastDueSince)
        apply(change)
        return (licenseInfo(id: spec.id)!, change)
    }

    public mutating func putOrg(_ spec: OrgSpec, at now: Timestamp) throws -> (org: OrgSpec, change: StateChange?) {
        try Validate.run { () throws(ValidationError) in try Validation.organisation(spec) }
        guard orgs[spec.id]?.spec != spec else { return (spec, nil) }
        let change = StateChange.orgPut(spec, at: now.millis)
        apply(change)
        return (spec, change)
    }

    public mutating func putPlan(_ plan: Plan, at now: Timestamp) throws -> (plan: Plan, change: StateChange?) {
        try Validate.run { () throws(ValidationError) in try Validation.plan(plan) }
        var plan = plan
        for i in plan.rateLimits.indices { plan.rateLimits[i].burst = max(plan.rateLimits[i].burst, 1) }
        guard plans[plan.id] != plan else { return (plan, nil) }
        let change = StateChange.planPut(plan, at: now.millis)
        apply(change)
        return (plan, change)
    }

    public mutating func grantCredits(_ grant: CreditsGrant, at now: Timestamp) throws -> (balance: UInt64, change: StateChange) {
        try Validate.run { () throws(ValidationError) in try Validation.text(grant.reason, max: Limits.maxReason, "the reason") }
        guard grant.amount > 0 else { throw EngineError.invalid("the amount must be at least 1") }
        switch grant.pool {
        case .token: guard tokens.contains(id: grant.owner) else { throw EngineError.notFound("token \(Self.printable(grant.owner)) does not exist") }
        case .license: guard licenses[grant.owner] != nil else { throw EngineError.notFound("license \(Self.printable(grant.owner)) does not exist") }
        case .org:
            guard orgs[grant.owner] != nil || grant.owner.hasPrefix("license:") && licenses[String(grant.owner.dropFirst(8))] != nil else {
                throw EngineError.notFound("organisation \(Self.printable(grant.owner)) does not exist")
            }
        }
        let change = StateChange.creditsGranted(pool: grant.pool, owner: grant.owner, amount: grant.amount, reason: grant.reason, at: now.millis)
        apply(change)
        return (book.prepaid[PoolKey(grant.pool, grant.owner)]?.balance ?? 0, change)
    }

    /// Housekeeping as one journaled change (see `StateChange.swept`).
    public mutating func sweep(at now: Timestamp, tokenRetention: Int64, keyRetention: Int64, expiryWarning: Int64, ledgerRetention: Int64 = 0) -> StateChange {
        recordExpiryWarnings(at: now.millis, expiryWarning: expiryWarning)
        let change = StateChange.swept(at: now.millis, tokenRetention: tokenRetention, keyRetention: keyRetention, expiryWarning: expiryWarning, ledgerRetention: ledgerRetention)
        apply(change)
        return change
    }

    // MARK: - Helpers

    /// Usage that already happened (METER, SETTLE) is never denied: what exceeds a quota or the credits is recorded
    /// as overage. Returns the entry that records `quantity`, and the tightest quota and the credits as they stand
    /// once it is recorded.
    func servedUsage(_ quantity: UInt64, meter: String, tokenID: String, license: LicenseSpec, plan: Plan?, at now: UnixMillis)
        -> (entry: UsageEntry, quota: QuotaState?, creditsRemaining: UInt64?, crossable: [ThresholdReading])
    {
        var overage: UInt64 = 0
        var quota: QuotaState?
        // The counters this usage can take across a threshold, as read here before it (`recordUsageLive`).
        var crossable: [ThresholdReading] = []
        for rule in plan?.quotas ?? [] where rule.meter == meter {
            let pool = Self.poolKey(rule.pool, tokenID: tokenID, license: license)
            let (used, windowStart, resetAt) = quotaUsage(rule, pool: pool, license: license, at: now)
            if Self.mayCross(used, adding: quantity, limit: rule.limit, credits: false) {
                crossable.append(ThresholdReading(owner: pool.owner, quota: rule, windowStart: windowStart, used: used, limit: rule.limit))
            }
            let (after, overflow) = used.addingReportingOverflow(quantity)
            if overflow || after > rule.limit { overage = max(overage, overflow ? quantity : min(quantity, after - rule.limit)) }
            let state = QuotaState(limit: rule.limit, remaining: rule.limit > after && !overflow ? rule.limit - after : 0, resetAt: resetAt)
            if quota == nil || state.remaining < quota!.remaining { quota = state }
        }
        var payment = CreditPayment()
        var creditsRemaining: UInt64?
        if let credits = plan?.credits {
            let pool = Self.poolKey(credits.pool, tokenID: tokenID, license: license)
            payment = creditPayment(quantity, policy: credits, pool: pool, license: license, at: now)
            if Self.mayCross(payment.spent, adding: payment.fromIncluded, limit: credits.included, credits: true) {
                crossable.append(ThresholdReading(owner: pool.owner, quota: nil, creditsPool: credits.pool, windowStart: payment.periodStart, used: payment.spent, limit: credits.included))
            }
            overage = max(overage, payment.shortfall)
            creditsRemaining = payment.availableBefore - min(payment.availableBefore, quantity)
        }
        let entry = UsageEntry(
            tokenID: tokenID, meter: meter, quantity: quantity, at: now, overage: overage,
            includedCredits: payment.fromIncluded, prepaidCredits: payment.fromPrepaid, creditPool: plan?.credits?.pool ?? .license)
        return (entry, quota, creditsRemaining, crossable)
    }

    /// The token a (well-formed) secret names: by its current secret, or by a secret a rotation replaced (returned
    /// with it, so the caller can refuse it once its grace period is over).
    func resolve(secret: String) -> (TokenRecord, RetiredSecret?)? {
        let hash = Self.hash(of: secret)
        if let record = tokens[hash] { return (record, nil) }
        guard let retired = book.retiredSecrets[hash], let record = tokens.record(id: retired.tokenID) else { return nil }
        return (record, retired)
    }

    /// `resolve(secret:)` reading only what a METER needs of the token (see `TokenView`).
    func resolveView(secret: String) -> (TokenView, RetiredSecret?)? {
        let hash = Self.hash(of: secret)
        if let found = tokens.view(hash: hash) { return (found.view, nil) }
        guard let retired = book.retiredSecrets[hash], let view = tokens.view(id: retired.tokenID) else { return nil }
        return (view, retired)
    }

    /// Refuses a new token when the license already holds the plan's maximum of active tokens.
    func checkTokenLimit(plan: Plan, licenseID: String, at time: UnixMillis) throws {
        guard plan.maxActiveTokens > 0 else { return }
        guard activeTokenCount(licenseID: licenseID, at: time) < plan.maxActiveTokens else {
            throw EngineError.invalid("license \(Self.printable(licenseID)) already holds the \(plan.maxActiveTokens) active tokens plan \(plan.id) allows")
        }
    }

    /// Gives `info` a fresh id and returns a fresh secret for it.
    mutating func mint<R: RandomNumberGenerator>(_ info: inout TokenInfo, using rng: inout R) -> String {
        var id: String
        repeat { id = "tok_" + TokenFormat.randomIdentifier(length: 22, using: &rng) } while tokens.contains(id: id)
        info.id = id
        return TokenFormat.make(environment: info.environment, randomBytes: Self.randomBytes(using: &rng))
    }

    static func randomBytes<R: RandomNumberGenerator>(using rng: inout R) -> [UInt8] {
        var random = [UInt8](repeating: 0, count: 32)
        for i in 0..<4 {
            let word = rng.next()
            for j in 0..<8 { random[i * 8 + j] = UInt8(truncatingIfNeeded: word >> (j * 8)) }
        }
        return random
    }

    /// A value from a request, made safe to put in an error message or a log line: bounded, control characters
    /// replaced, and anything that could be a token secret (even a mistyped one) withheld.
    public static func printable(_ value: String) -> String {
        if value.hasPrefix(TokenFormat.prefix) { return "(withheld: looks like a token secret)" }
        let cut = value.unicodeScalars.prefix(64).map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) }
        return "'" + String(cut) + (value.unicodeScalars.count > 64 ? "…" : "") + "'"
    }
}
