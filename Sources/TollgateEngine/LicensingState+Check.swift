import TollgateModel

extension LicensingState {
    /// Decides a CHECK and, when it is allowed and names a meter with a cost, consumes the cost — in one step,
    /// under the caller's exclusive access. A denied check changes nothing (neither usage nor the rate limiter).
    ///
    /// - Returns: the answer, and the usage to journal (within the flush window) when something was consumed.
    /// - Parameter caller: the uid of the process that presented the token (peer credentials), checked against a
    ///   token bound to callers; nil when unknown, which a bound token refuses.
    public mutating func check(_ request: CheckRequest, at now: Timestamp, caller: UInt32? = nil) -> (result: CheckResult, consumed: UsageEntry?) {
        var tokenString = request.token
        let hash: TokenHash? = tokenString.withUTF8 { utf8 in
            guard TokenFormat.validate(utf8: utf8) != nil else { return nil }
            return Self.hash(utf8: utf8)
        }
        guard let hash else { return (CheckResult(reason: .malformedToken), nil) }
        guard let record = tokens[hash] else { return (CheckResult(reason: .unknownToken), nil) }
        let token = record.info

        var result = CheckResult(reason: .none, tokenID: token.id, licenseID: token.licenseID, subject: token.subject)
        let plan: Plan
        switch usability(of: record, at: now.millis, caller: caller) {
        case .failure(let denial):
            result.reason = denial.reason
            return (result, nil)
        case .success(let usablePlan):
            plan = usablePlan
        }

        for scope in request.scopes where !Self.grants(token.scopes, scope) || !Self.grants(plan.entitlements, scope) {
            result.reason = .insufficientScope
            return (result, nil)
        }

        // Decide every limit before committing any of them.
        var limiter: RateLimiterState?
        if plan.ratePerSecond > 0 {
            let interval = 1_000_000_000 / Int64(plan.ratePerSecond)
            let tolerance = interval * Int64(max(plan.burst, 1) - 1)
            // A limiter state left by another rate or burst (the plan changed) is discarded, so the new plan applies
            // from the next check instead of the old plan's debt.
            var tat = now.nanoseconds
            if let previous = rateLimiterTAT[token.licenseID], previous.interval == interval, previous.tolerance == tolerance {
                tat = max(previous.tat, now.nanoseconds)
            }
            if tat - now.nanoseconds > tolerance {
                let wait = tat - now.nanoseconds - tolerance
                result.reason = .rateLimited
                result.retryAfterMillis = UInt32(clamping: (wait + 999_999) / 1_000_000)
                return (result, nil)
            }
            limiter = RateLimiterState(tat: tat + interval, interval: interval, tolerance: tolerance)
        }

        var consumed: UsageEntry?
        if !request.meter.isEmpty {
            if let rule = plan.quota(for: request.meter) {
                let bounds = UTCCalendar.bounds(of: rule.period, containing: now.millis)
                let used = usage(licenseID: token.licenseID, meter: request.meter, period: rule.period, at: now.millis)
                let (after, overflow) = used.addingReportingOverflow(request.cost)
                if request.cost > 0 && (overflow || after > rule.limit) {
                    result.reason = .quotaExceeded
                    result.quota = QuotaState(limit: rule.limit, remaining: rule.limit > used ? rule.limit - used : 0, resetAt: bounds.end)
                    return (result, nil)
                }
                result.quota = QuotaState(limit: rule.limit, remaining: rule.limit > after ? rule.limit - after : 0, resetAt: bounds.end)
            }
            if request.cost > 0 {
                consumed = UsageEntry(tokenID: token.id, meter: request.meter, quantity: request.cost, at: now.millis)
            }
        }

        if let limiter { rateLimiterTAT[token.licenseID] = limiter }
        if let consumed { recordUsage(consumed) }
        return (result, consumed)
    }

    /// Whether `granted` includes `scope` (`*` includes everything).
    static func grants(_ granted: [String], _ scope: String) -> Bool {
        granted.contains(scope) || granted.contains("*")
    }

    /// The token-level and license-level gates shared by CHECK and METER: revocation, validity window, license
    /// standing. On success, the license's plan.
    func usability(of record: TokenRecord, at now: UnixMillis, caller: UInt32?) -> Result<Plan, DenyReasonError> {
        let token = record.info
        if token.revokedAt != 0 { return .failure(DenyReasonError(.revoked)) }
        if token.notBefore != 0 && now < token.notBefore { return .failure(DenyReasonError(.notYetValid)) }
        if token.expiresAt != 0 && now >= token.expiresAt { return .failure(DenyReasonError(.expired)) }
        guard let license = licenses[token.licenseID]?.spec, license.status.permitsUse,
            license.validUntil == 0 || now < license.validUntil,
            let plan = plans[license.plan]
        else { return .failure(DenyReasonError(.licenseInactive)) }
        if let bound = record.boundUIDs, !bound.contains(where: { $0 == caller }) { return .failure(DenyReasonError(.callerNotAllowed)) }
        return .success(plan)
    }
}

/// A `DenyReason` carried through `Result`.
public struct DenyReasonError: Error, Hashable {
    public var reason: DenyReason
    init(_ reason: DenyReason) { self.reason = reason }
}
