import TollgateModel

/// Leases and reservations: limits on what is in flight, held in memory only.
struct LiveLimits: Sendable {
    struct Lease: Sendable {
        var pools: [PoolKey]
    }

    struct Reservation: Sendable {
        var tokenID: String
        var meter: String
        var amount: UInt64
        var expiresAt: UnixMillis
        var quotaPools: [PoolKey]
        var creditPool: PoolKey?
    }

    struct HeldKey: Hashable, Sendable {
        var pool: PoolKey
        var meter: String
    }

    var leases: [UInt64: Lease] = [:]
    var leaseCounts: [PoolKey: UInt32] = [:]
    var reservations: [UInt64: Reservation] = [:]
    var heldQuota: [HeldKey: UInt64] = [:]
    var heldCredits: [PoolKey: UInt64] = [:]
    var nextID: UInt64 = 1

    mutating func makeID() -> UInt64 {
        defer { nextID &+= 1 }
        return nextID
    }
}

extension LicensingState {
    /// How long a reservation is held before it is released unsettled.
    public static let defaultReservationLifetime: Int64 = 60_000

    /// Decides a CHECK and, when it is allowed and names a meter with a cost, consumes the cost — in one step,
    /// under the caller's exclusive access. Every rule that applies (scopes, features, rate limits, concurrency,
    /// quotas at every level, credits) is evaluated before any is committed: a denied check changes nothing.
    ///
    /// - Returns: the answer, and the usage to journal (within the flush window) when something was consumed.
    /// - Parameter caller: the uid of the process that presented the token (peer credentials), checked against a
    ///   token bound to callers; nil when unknown, which a bound token refuses.
    public mutating func check(
        _ request: CheckRequest, at now: Timestamp, caller: UInt32? = nil, reservationLifetime: Int64 = LicensingState.defaultReservationLifetime
    ) -> (result: CheckResult, consumed: UsageEntry?) {
        var tokenString = request.token
        let hash: TokenHash? = tokenString.withUTF8 { utf8 in
            guard TokenFormat.validate(utf8: utf8) != nil else { return nil }
            return Self.hash(utf8: utf8)
        }
        guard let hash else { return (CheckResult(reason: .malformedToken), nil) }
        let token: TokenView
        let handle: TokenStore.Handle?
        var retired: RetiredSecret?
        if let current = tokens.view(hash: hash) {
            (handle, token) = current
        } else if let old = book.retiredSecrets[hash], let current = tokens.view(id: old.tokenID) {
            (handle, token) = (nil, current)
            retired = old
        } else {
            return (CheckResult(reason: .unknownToken), nil)
        }
        let explain = request.options.contains(.explain)
        var result = CheckResult(reason: .none, tokenID: token.id, licenseID: token.licenseID, subject: token.subject)
        if let retired, now.millis >= retired.validUntil {
            return Self.deny(&result, explain, .revoked, RuleEvaluation(rule: "token.rotated", owner: token.id))
        }

        let plan: Plan
        let license: LicenseSpec
        switch usability(of: token, at: now.millis, caller: caller) {
        case .failure(let denial):
            return Self.deny(&result, explain, denial.reason, RuleEvaluation(rule: denial.rule, owner: denial.owner))
        case .success(let usable):
            (plan, license) = usable
        }

        for scope in request.scopes where !Self.grants(token.scopes, scope) || !Self.grants(plan.entitlements, scope) {
            return Self.deny(&result, explain, .insufficientScope, RuleEvaluation(rule: "scope:" + scope, owner: token.id))
        }
        for feature in request.features where !Self.grants(plan.features, feature) {
            return Self.deny(&result, explain, .featureNotEntitled, RuleEvaluation(rule: "feature:" + feature, owner: plan.id))
        }

        // Rate limits: every rule is decided; a denial reports the longest wait among the rules that denied.
        var limiterUpdates: [(PoolKey, RateLimiterState)] = []
        var rateDenial: RuleEvaluation?
        var wait: Int64 = 0
        for rule in plan.rateLimits where rule.ratePerSecond > 0 {
            let pool = Self.poolKey(rule.pool, tokenID: token.id, license: license)
            let share = rateShare
            let (interval, tolerance) = Self.limiter(rule, share: share)
            let tat = theoreticalArrival(pool, interval: interval, tolerance: tolerance, now: now.nanoseconds)
            // Built only when reported (explain mode or a denial): a rule's name is formatted on demand.
            func evaluation() -> RuleEvaluation {
                RuleEvaluation(rule: rule.name, owner: pool.owner, limit: UInt64(Self.shared(rule, share: share).burst), used: UInt64(clamping: (tat - now.nanoseconds + interval - 1) / interval))
            }
            if tat - now.nanoseconds > tolerance {
                wait = max(wait, tat - now.nanoseconds - tolerance)
                rateDenial = rateDenial ?? evaluation()
            } else {
                if explain { result.explanation.append(evaluation()) }
                limiterUpdates.append((pool, RateLimiterState(tat: tat + interval, interval: interval, tolerance: tolerance)))
            }
        }
        if let rateDenial {
            result.retryAfterMillis = UInt32(clamping: (wait + 999_999) / 1_000_000)
            return Self.deny(&result, explain, .rateLimited, rateDenial)
        }

        // Concurrency applies to checks that take a lease.
        var leasePools: [PoolKey] = []
        if request.options.contains(.lease) {
            for rule in plan.concurrency {
                let pool = Self.poolKey(rule.pool, tokenID: token.id, license: license)
                let held = limits.leaseCounts[pool] ?? 0
                func evaluation() -> RuleEvaluation { RuleEvaluation(rule: rule.name, owner: pool.owner, limit: UInt64(rule.max), used: UInt64(held)) }
                if held >= rule.max { return Self.deny(&result, explain, .concurrencyLimited, evaluation()) }
                if explain { result.explanation.append(evaluation()) }
                leasePools.append(pool)
            }
        }

        // Quotas on the meter, at every level that has one.
        let cost = request.meter.isEmpty ? 0 : request.cost
        var overage: UInt64 = 0
        var quotaPools: [PoolKey] = []
        // The tightest quota before this check's cost: what a later denial reports (it charged nothing).
        var quotaBefore: QuotaState?
        // The counters this cost can take across a threshold, as read here before it (`recordUsageLive`).
        var crossable: [ThresholdReading] = []
        if !request.meter.isEmpty {
            for rule in plan.quotas where rule.meter == request.meter {
                let pool = Self.poolKey(rule.pool, tokenID: token.id, license: license)
                let held = limits.heldQuota.isEmpty ? 0 : limits.heldQuota[LiveLimits.HeldKey(pool: pool, meter: rule.meter)] ?? 0
                let (counted, windowStart, resetAt) = quotaUsage(rule, pool: pool, license: license, at: now.millis)
                var used = counted
                used.saturatingAdd(held)
                let (after, overflow) = used.addingReportingOverflow(cost)
                func evaluation() -> RuleEvaluation { RuleEvaluation(rule: rule.name, owner: pool.owner, limit: rule.limit, used: used) }
                if cost > 0 && (overflow || after > rule.limit) {
                    guard plan.overage == .allowAndRecord else {
                        result.quota = QuotaState(limit: rule.limit, remaining: rule.limit > used ? rule.limit - used : 0, resetAt: resetAt)
                        return Self.deny(&result, explain, .quotaExceeded, evaluation())
                    }
                    overage = max(overage, overflow ? cost : min(cost, after - rule.limit))
                }
                if explain { result.explanation.append(evaluation()) }
                quotaPools.append(pool)
                if Self.mayCross(counted, adding: cost, limit: rule.limit, credits: false) {
                    crossable.append(ThresholdReading(owner: pool.owner, quota: rule, windowStart: windowStart, used: counted, limit: rule.limit))
                }
                let state = QuotaState(limit: rule.limit, remaining: rule.limit > after && !overflow ? rule.limit - after : 0, resetAt: resetAt)
                if result.quota == nil || state.remaining < result.quota!.remaining {
                    result.quota = state
                    quotaBefore = QuotaState(limit: rule.limit, remaining: rule.limit > used ? rule.limit - used : 0, resetAt: resetAt)
                }
            }
        }

        // Credits pay for the cost: the period's included credits first, then prepaid ones.
        var payment = CreditPayment()
        if let credits = plan.credits {
            let pool = Self.poolKey(credits.pool, tokenID: token.id, license: license)
            payment = creditPayment(cost, policy: credits, pool: pool, license: license, at: now.millis)
            func evaluation() -> RuleEvaluation {
                RuleEvaluation(rule: "credits:\(credits.pool.name)", owner: pool.owner, limit: credits.included, used: payment.availableBefore)
            }
            if payment.shortfall > 0 {
                guard plan.overage == .allowAndRecord else {
                    result.creditsRemaining = payment.availableBefore
                    result.quota = quotaBefore
                    return Self.deny(&result, explain, .creditsExhausted, evaluation())
                }
                overage = max(overage, payment.shortfall)
            }
            if explain { result.explanation.append(evaluation()) }
            result.creditsRemaining = payment.availableBefore - min(payment.availableBefore, cost)
            if Self.mayCross(payment.spent, adding: payment.fromIncluded, limit: credits.included, credits: true) {
                crossable.append(ThresholdReading(owner: pool.owner, quota: nil, creditsPool: credits.pool, windowStart: payment.periodStart, used: payment.spent, limit: credits.included))
            }
        }

        // Everything passed: commit.
        for (pool, state) in limiterUpdates { rateLimiters[pool] = state }
        // A lease is taken only where a concurrency limit applies: without one there is nothing to hold (and nothing a
        // caller that never releases could pile up).
        if request.options.contains(.lease) && !leasePools.isEmpty {
            let id = limits.makeID()
            limits.leases[id] = LiveLimits.Lease(pools: leasePools)
            for pool in leasePools { limits.leaseCounts[pool, default: 0] += 1 }
            result.leaseID = id
        }
        if let handle {
            observations.noteCurrentSecretUsed(handle, at: now.millis)
        } else {
            observations.previous[token.id] = now.millis
        }
        result.overage = overage

        guard cost > 0 else { return (result, nil) }
        if request.options.contains(.reserve) {
            let id = limits.makeID()
            var reservation = LiveLimits.Reservation(
                tokenID: token.id, meter: request.meter, amount: cost, expiresAt: now.millis + reservationLifetime, quotaPools: quotaPools, creditPool: nil)
            for pool in quotaPools { limits.heldQuota[LiveLimits.HeldKey(pool: pool, meter: request.meter), default: 0].saturatingAdd(cost) }
            if let credits = plan.credits {
                let pool = Self.poolKey(credits.pool, tokenID: token.id, license: license)
                reservation.creditPool = pool
                limits.heldCredits[pool, default: 0].saturatingAdd(cost)
            }
            limits.reservations[id] = reservation
            result.reservationID = id
            return (result, nil)
        }
        let entry = UsageEntry(
            tokenID: token.id, meter: request.meter, quantity: cost, at: now.millis, overage: overage,
            includedCredits: payment.fromIncluded, prepaidCredits: payment.fromPrepaid, creditPool: plan.credits?.pool ?? .license)
        recordUsageLive(entry, context: (license, plan), crossable: crossable)
        return (result, entry)
    }

    /// `result` denied for `reason`, with the rule that denied when the check explains itself. Static, over the
    /// result passed in, rather than a local function that captures it: a captured result cannot be moved out, so
    /// the allowed path returned a copy (its strings retained and released; callgrind, issue 19).
    @inline(__always)
    static func deny(
        _ result: inout CheckResult, _ explain: Bool, _ reason: DenyReason, _ evaluation: RuleEvaluation? = nil
    ) -> (result: CheckResult, consumed: UsageEntry?) {
        result.reason = reason
        if explain, var evaluation {
            evaluation.denied = true
            result.explanation.append(evaluation)
        }
        return (result, nil)
    }

    /// The `details` of a check just decided for `tokenID` (its result's), read from the state as the check left it:
    /// called under the same exclusive access, at the same instant, only for a check that asks. The rate limit is
    /// the plan's rule with the fewest requests left now (after the check's own request when it was allowed; a
    /// denied check took nothing); of two with as many left, the one that takes longer to refill.
    public func checkDetails(tokenID: String, at now: Timestamp) -> CheckDetails {
        guard !tokenID.isEmpty, let token = tokens.record(id: tokenID)?.info else { return CheckDetails() }
        var details = CheckDetails(tokenExpiresAt: token.expiresAt)
        guard let license = licenses[token.licenseID]?.spec, let plan = plans[license.plan] else { return details }
        details.planID = plan.id
        for rule in plan.rateLimits where rule.ratePerSecond > 0 {
            let pool = Self.poolKey(rule.pool, tokenID: token.id, license: license)
            let (interval, tolerance) = Self.limiter(rule, share: rateShare)
            let ahead = theoreticalArrival(pool, interval: interval, tolerance: tolerance, now: now.nanoseconds) - now.nanoseconds
            let candidate = Self.rateLimitState(ahead: ahead, interval: interval, tolerance: tolerance, burst: Self.shared(rule, share: rateShare).burst)
            if let known = details.rateLimit,
                known.remaining < candidate.remaining || (known.remaining == candidate.remaining && known.resetMillis >= candidate.resetMillis)
            {
                continue
            }
            details.rateLimit = candidate
        }
        return details
    }

    /// A rate rule as a GCRA limiter: nanoseconds between requests, and how far ahead of now the theoretical arrival
    /// time may run (the burst beyond the first request). The rule's `ratePerSecond` is above 0.
    @inline(__always)
    static func limiter(_ rule: RateRule, share: UInt32) -> (interval: Int64, tolerance: Int64) {
        let (rate, burst) = share > 1 ? shared(rule, share: share) : (rule.ratePerSecond, rule.burst)
        let interval = 1_000_000_000 / Int64(rate)
        return (interval, interval * Int64(max(burst, 1) - 1))
    }

    /// This host's part of a rate rule in a fleet of `share` live hosts (`Protocol/FLEET.md` 9): the rate and the
    /// burst each divided by `share`, rounded down, at least 1. A single host (`share` 1) enforces the rule as it is.
    public static func shared(_ rule: RateRule, share: UInt32) -> (ratePerSecond: UInt32, burst: UInt32) {
        guard share > 1 else { return (rule.ratePerSecond, rule.burst) }
        return (max(1, rule.ratePerSecond / share), max(1, rule.burst / share))
    }

    /// The theoretical arrival time of `pool`'s limiter, now at the earliest. A state left by another rate or burst
    /// (the plan changed) is discarded, so the new plan applies from the next check instead of the old plan's debt.
    @inline(__always)
    func theoreticalArrival(_ pool: PoolKey, interval: Int64, tolerance: Int64, now: Int64) -> Int64 {
        guard let previous = rateLimiters[pool], previous.interval == interval, previous.tolerance == tolerance else { return now }
        return max(previous.tat, now)
    }

    /// A GCRA limiter as the RateLimit header fields describe it: `ahead` is how far its theoretical
    /// arrival time is ahead of now (0 when full). A request is allowed while `ahead <= tolerance`, so
    /// `(tolerance - ahead) / interval + 1` requests are available now; it is full again `ahead` from now.
    static func rateLimitState(ahead: Int64, interval: Int64, tolerance: Int64, burst: UInt32) -> RateLimitState {
        let remaining = ahead > tolerance ? 0 : UInt64((tolerance - ahead) / interval + 1)
        return RateLimitState(limit: UInt64(max(burst, 1)), remaining: remaining, resetMillis: UInt32(clamping: (ahead + 999_999) / 1_000_000))
    }

    /// How a cost is paid from credits.
    struct CreditPayment {
        var availableBefore: UInt64 = 0
        var fromIncluded: UInt64 = 0
        var fromPrepaid: UInt64 = 0
        var shortfall: UInt64 = 0
        /// The period's included credits spent before, and the period's start (a threshold reading's).
        var spent: UInt64 = 0
        var periodStart: UnixMillis = 0
    }

    /// Splits `cost` between the period's included credits and prepaid credits, after what reservations hold.
    func creditPayment(_ cost: UInt64, policy: CreditPolicy, pool: PoolKey, license: LicenseSpec, at time: UnixMillis, ignoringHeld: UInt64 = 0) -> CreditPayment {
        let start = Self.periodBounds(policy.period, level: policy.pool, license: license, at: time).start
        let spent = book.includedSpent[IncludedCreditsKey(pool: pool, start: start)] ?? 0
        var included = policy.included > spent ? policy.included - spent : 0
        var prepaid = book.prepaid[pool]?.balance ?? 0
        // Reservations hold included credits first, like spending does.
        var held = (limits.heldCredits[pool] ?? 0) - min(limits.heldCredits[pool] ?? 0, ignoringHeld)
        let fromIncludedHeld = min(held, included)
        included -= fromIncludedHeld
        held -= fromIncludedHeld
        prepaid -= min(prepaid, held)
        var payment = CreditPayment()
        payment.availableBefore = included.addingReportingOverflow(prepaid).overflow ? .max : included + prepaid
        payment.fromIncluded = min(cost, included)
        payment.fromPrepaid = min(cost - payment.fromIncluded, prepaid)
        payment.shortfall = cost - payment.fromIncluded - payment.fromPrepaid
        payment.spent = spent
        payment.periodStart = start
        return payment
    }

    /// Whether `granted` includes `scope` (`*` includes everything).
    static func grants(_ granted: [String], _ scope: String) -> Bool {
        granted.contains(scope) || granted.contains("*")
    }

    /// Why a token may not be used at all, with the rule that said so.
    struct Unusable: Error {
        var reason: DenyReason
        var rule: String
        var owner: String
    }

    /// The token-level, license-level and organisation-level gates shared by CHECK, METER and DERIVE: revocation
    /// (of the token or the token it was derived from), validity window, organisation suspended, license status and
    /// validity, the caller binding. On success, the license and its plan.
    func usability(of token: TokenView, at now: UnixMillis, caller: UInt32?) -> Result<(Plan, LicenseSpec), Unusable> {
        if token.revokedAt != 0 { return .failure(Unusable(reason: .revoked, rule: "token.revoked", owner: token.id)) }
        if !token.parentID.isEmpty, tokens.revokedAt(id: token.parentID).map({ $0 != 0 }) ?? true {
            return .failure(Unusable(reason: .revoked, rule: "parent.revoked", owner: token.parentID))
        }
        if token.notBefore != 0 && now < token.notBefore { return .failure(Unusable(reason: .notYetValid, rule: "token.not_before", owner: token.id)) }
        if token.expiresAt != 0 && now >= token.expiresAt { return .failure(Unusable(reason: .expired, rule: "token.expires_at", owner: token.id)) }
        guard let licenseRecord = licenses[token.licenseID] else {
            return .failure(Unusable(reason: .licenseInactive, rule: "license.missing", owner: token.licenseID))
        }
        let license = licenseRecord.spec
        if !license.org.isEmpty, orgs[license.org]?.spec.suspended == true {
            return .failure(Unusable(reason: .orgSuspended, rule: "org.suspended", owner: license.org))
        }
        if license.validFrom != 0 && now < license.validFrom { return .failure(Unusable(reason: .licenseNotYetValid, rule: "license.valid_from", owner: license.id)) }
        if license.validUntil != 0 && now >= license.validUntil { return .failure(Unusable(reason: .licenseExpired, rule: "license.valid_until", owner: license.id)) }
        guard let plan = plans[license.plan] else { return .failure(Unusable(reason: .licenseInactive, rule: "plan.missing", owner: license.plan)) }
        switch license.status {
        case .active:
            break
        case .trialing:
            if license.trialEndsAt != 0 && now >= license.trialEndsAt { return .failure(Unusable(reason: .trialEnded, rule: "license.trial_ends_at", owner: license.id)) }
        case .pastDue:
            if now >= licenseRecord.pastDueSince + Int64(plan.pastDueGraceSeconds) * 1000 {
                return .failure(Unusable(reason: .paymentOverdue, rule: "license.past_due_grace", owner: license.id))
            }
        case .canceled:
            return .failure(Unusable(reason: .licenseInactive, rule: "license.canceled", owner: license.id))
        case .expired:
            return .failure(Unusable(reason: .licenseExpired, rule: "license.expired", owner: license.id))
        }
        if let bound = token.boundUIDs, !bound.contains(where: { $0 == caller }) {
            return .failure(Unusable(reason: .callerNotAllowed, rule: "token.bind_uids", owner: token.id))
        }
        return .success((plan, license))
    }

    // MARK: - Leases and reservations

    /// Releases a lease. Returns false when it is not held (released before, or never taken).
    public mutating func release(leaseID: UInt64) -> Bool {
        guard let lease = limits.leases.removeValue(forKey: leaseID) else { return false }
        for pool in lease.pools {
            limits.leaseCounts[pool]! -= 1
            if limits.leaseCounts[pool] == 0 { limits.leaseCounts[pool] = nil }
        }
        return true
    }

    /// Leases held now (tests).
    public var leasesHeld: Int { limits.leases.count }

    /// Charges the actual cost of a reservation (which may exceed the estimate: usage that happened is counted,
    /// and what exceeds a limit is recorded as overage) and releases what it held.
    public mutating func settle(_ request: SettleRequest, at now: Timestamp) throws -> (result: CheckResult, consumed: UsageEntry?) {
        guard let reservation = takeReservation(request.reservationID) else {
            throw EngineError.notFound("reservation \(request.reservationID) is not held (settled, expired or never made)")
        }
        guard let record = token(id: reservation.tokenID) else { throw EngineError.notFound("the token of the reservation no longer exists") }
        var result = CheckResult(reason: .none, tokenID: record.info.id, licenseID: record.info.licenseID, subject: record.info.subject)
        guard request.actualCost > 0, let license = licenses[record.info.licenseID]?.spec else { return (result, nil) }
        let served = servedUsage(request.actualCost, meter: reservation.meter, tokenID: record.info.id, license: license, plan: plans[license.plan], at: now.millis)
        result.quota = served.quota
        result.creditsRemaining = served.creditsRemaining
        result.overage = served.entry.overage
        recordUsageLive(served.entry, crossable: served.crossable)
        return (result, served.entry)
    }

    /// Releases reservations whose lifetime ended before `now`; returns how many.
    @discardableResult
    public mutating func expireReservations(at now: UnixMillis) -> Int {
        let expired = limits.reservations.filter { $0.value.expiresAt <= now }.map(\.key)
        for id in expired { _ = takeReservation(id) }
        return expired.count
    }

    mutating func takeReservation(_ id: UInt64) -> LiveLimits.Reservation? {
        guard let reservation = limits.reservations.removeValue(forKey: id) else { return nil }
        for pool in reservation.quotaPools {
            let key = LiveLimits.HeldKey(pool: pool, meter: reservation.meter)
            limits.heldQuota[key] = (limits.heldQuota[key] ?? 0) - min(limits.heldQuota[key] ?? 0, reservation.amount)
            if limits.heldQuota[key] == 0 { limits.heldQuota[key] = nil }
        }
        if let pool = reservation.creditPool {
            limits.heldCredits[pool] = (limits.heldCredits[pool] ?? 0) - min(limits.heldCredits[pool] ?? 0, reservation.amount)
            if limits.heldCredits[pool] == 0 { limits.heldCredits[pool] = nil }
        }
        return reservation
    }
}
