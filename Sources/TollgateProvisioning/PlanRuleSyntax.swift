import TollgateModel

/// The colon-separated forms `tollgate plan set` takes for a plan's rules, e.g. `requests:rolling:60:100:token`,
/// and the plan they build. They live beside the file formats (not in the CLI) so that the table-driven tests can
/// run a bad value through the CLI's parsing as a pure function, and the verdict comes from the same validation
/// source (`Validation`) as the configuration's, `apply`'s and the engine's. `field` is the option's name.
///
/// A rolling window's name contains a colon itself (`rolling:60`), so a quota is read from its fixed positions: the
/// meter first, then the window (two parts when it is rolling), then the limit and the optional pool. A meter name
/// cannot contain a colon (`Validation.meterNameCharacters`), so this is never ambiguous.
public enum PlanRuleSyntax {
    /// `METER:WINDOW:LIMIT[:POOL]`; the pool defaults to `license`.
    public static func quota(_ text: String) throws(ValidationError) -> QuotaRule {
        let field = "--quota"
        let usage = ValidationError(
            .invalidValue, field: field, "takes METER:WINDOW:LIMIT[:POOL] (WINDOW hour, day, month or rolling:SECONDS), got \(ValidationError.quoted(text))")
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 3 else { throw usage }
        try Validation.meterName(parts[0], field: field)
        let windowParts = parts[1] == "rolling" ? 2 : 1
        let rest = parts.dropFirst(1 + windowParts)
        guard (1...2).contains(rest.count) else { throw usage }
        let window = try Validation.window(named: parts[1..<(1 + windowParts)].joined(separator: ":"), field: field)
        guard let limit = UInt64(rest.first!) else {
            throw ValidationError(.invalidValue, field: field, "the limit \(ValidationError.quoted(rest.first!)) is not a whole number")
        }
        let pool = try rest.count == 2 ? self.pool(rest.last!, field: field) : .license
        return QuotaRule(meter: parts[0], window: window, limit: limit, pool: pool)
    }

    /// `POOL:PER_SECOND:BURST`.
    public static func rate(_ text: String) throws(ValidationError) -> RateRule {
        let field = "--rate-limit"
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3, let perSecond = UInt32(parts[1]), let burst = UInt32(parts[2]) else {
            throw ValidationError(.invalidValue, field: field, "takes POOL:PER_SECOND:BURST, such as license:100:200, got \(ValidationError.quoted(text))")
        }
        try Validation.ratePerSecond(perSecond, field: field)
        return RateRule(pool: try pool(parts[0], field: field), ratePerSecond: perSecond, burst: max(burst, 1))
    }

    /// `POOL:MAX`.
    public static func concurrency(_ text: String) throws(ValidationError) -> ConcurrencyRule {
        let field = "--concurrency"
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2, let max = UInt32(parts[1]) else {
            throw ValidationError(.invalidValue, field: field, "takes POOL:MAX, such as token:8, got \(ValidationError.quoted(text))")
        }
        return ConcurrencyRule(pool: try pool(parts[0], field: field), max: max)
    }

    /// `POOL:INCLUDED:PERIOD`.
    public static func credits(_ text: String) throws(ValidationError) -> CreditPolicy {
        let field = "--credits"
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3, let included = UInt64(parts[1]) else {
            throw ValidationError(
                .invalidValue, field: field, "takes POOL:INCLUDED:PERIOD (PERIOD hour, day or month), such as license:50000:month, got \(ValidationError.quoted(text))")
        }
        let period = try Validation.named(parts[2], Period.init(name:), allowed: Period.allCases.map(\.name), field: field)
        return CreditPolicy(pool: try pool(parts[0], field: field), included: included, period: period)
    }

    static func pool(_ name: String, field: String) throws(ValidationError) -> PoolLevel {
        try Validation.named(name, PoolLevel.init(name:), allowed: PoolLevel.allCases.map(\.name), field: field)
    }

    /// The plan `plan set` puts, from its options, checked by `Validation.plan` (the engine's own check) before
    /// anything is sent. A rule's own fault names its option; a fault of the plan as a whole (a rule given twice)
    /// names the plan's field (`quotas[1]`).
    public static func plan(
        id: String, entitlements: [String], features: [String], quotas: [String], rate: UInt32, burst: UInt32, rateLimits: [String],
        concurrency: [String], credits: String?, overage: String, maxTokenLifetimeSeconds: UInt32, maxActiveTokens: UInt32,
        pastDueGraceSeconds: UInt32
    ) throws(ValidationError) -> Plan {
        var plan = Plan(id: id, entitlements: entitlements, features: features)
        for text in quotas { plan.quotas.append(try Self.quota(text)) }
        if rate > 0 { plan.rateLimits.append(RateRule(pool: .license, ratePerSecond: rate, burst: max(burst, 1))) }
        for text in rateLimits { plan.rateLimits.append(try Self.rate(text)) }
        for text in concurrency { plan.concurrency.append(try self.concurrency(text)) }
        plan.credits = try credits.map { (text) throws(ValidationError) in try self.credits(text) }
        plan.overage = try Validation.named(overage, OveragePolicy.init(name:), allowed: OveragePolicy.allCases.map(\.name), field: "--overage")
        plan.maxTokenLifetimeSeconds = maxTokenLifetimeSeconds
        plan.maxActiveTokens = maxActiveTokens
        plan.pastDueGraceSeconds = pastDueGraceSeconds
        try Validation.plan(plan)
        return plan
    }
}
