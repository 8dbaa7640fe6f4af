/// The licensing model as data: plans (tiers) and the rules they carry, organisations, licenses.
///
/// Everything here is plain values. The engine evaluates them; the wire protocol and the journal encode them with
/// one codec each (`Vocabulary+Wire.swift`), so a plan edited over the admin socket, replayed from the journal, or
/// applied from a provisioning file is the same value.

/// The level at which a limit is counted: one counter per token, shared by every token of a license, or shared by
/// every license of an organisation (a license without an organisation counts as its own organisation).
public enum PoolLevel: UInt8, Sendable, CaseIterable, Hashable {
    case token = 0
    case license = 1
    case org = 2

    public var name: String {
        switch self {
        case .token: return "token"
        case .license: return "license"
        case .org: return "org"
        }
    }

    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = match
    }
}

/// The window a quota counts over: a UTC calendar period (months start on the license's billing anchor day), or
/// a rolling window of the last `seconds` seconds (counted in 60 slices, so usage leaves the window one slice at
/// a time).
public enum QuotaWindow: Sendable, Hashable {
    case calendar(Period)
    case rolling(seconds: UInt32)

    /// The wire code: 0 hour, 1 day, 2 month, 3 rolling.
    public var code: UInt8 {
        switch self {
        case .calendar(let period): return period.rawValue
        case .rolling: return 3
        }
    }

    public var seconds: UInt32 {
        if case .rolling(let seconds) = self { return seconds }
        return 0
    }

    public init?(code: UInt8, seconds: UInt32) {
        if code == 3 {
            guard seconds > 0 else { return nil }
            self = .rolling(seconds: seconds)
        } else if let period = Period(rawValue: code), seconds == 0 {
            self = .calendar(period)
        } else {
            return nil
        }
    }

    /// `hour`, `day`, `month`, or `rolling:SECONDS`.
    public var name: String {
        switch self {
        case .calendar(let period): return period.name
        case .rolling(let seconds): return "rolling:\(seconds)"
        }
    }

    public init?(name: String) {
        if let period = Period(name: name) {
            self = .calendar(period)
        } else if name.hasPrefix("rolling:"), let seconds = UInt32(name.dropFirst(8)), seconds > 0 {
            self = .rolling(seconds: seconds)
        } else {
            return nil
        }
    }
}

/// At most `limit` units of `meter` per `window`, counted at `pool` level.
public struct QuotaRule: Sendable, Hashable {
    public var meter: String
    public var window: QuotaWindow
    public var limit: UInt64
    public var pool: PoolLevel

    public init(meter: String, window: QuotaWindow, limit: UInt64, pool: PoolLevel = .license) {
        self.meter = meter
        self.window = window
        self.limit = limit
        self.pool = pool
    }

    /// A calendar quota pooled over a license, the most common kind.
    public init(meter: String, period: Period, limit: UInt64, pool: PoolLevel = .license) {
        self.init(meter: meter, window: .calendar(period), limit: limit, pool: pool)
    }

    /// Stable name of the rule in explanations and events, e.g. `quota:api_calls:month:license`.
    public var name: String { "quota:\(meter):\(window.name):\(pool.name)" }
}

/// At most `ratePerSecond` checks per second at `pool` level, with `burst` arriving at once (GCRA).
public struct RateRule: Sendable, Hashable {
    public var pool: PoolLevel
    public var ratePerSecond: UInt32
    public var burst: UInt32

    public init(pool: PoolLevel, ratePerSecond: UInt32, burst: UInt32) {
        self.pool = pool
        self.ratePerSecond = ratePerSecond
        self.burst = burst
    }

    public var name: String { "rate:\(pool.name)" }
}

/// At most `max` leases held at once at `pool` level (requests in flight).
public struct ConcurrencyRule: Sendable, Hashable {
    public var pool: PoolLevel
    public var max: UInt32

    public init(pool: PoolLevel, max: UInt32) {
        self.pool = pool
        self.max = max
    }

    public var name: String { "concurrency:\(pool.name)" }
}

/// Credits: every unit of cost (of any meter) is paid from the pool's credits. Each `period` (months from the
/// billing anchor day) the pool gets `included` credits that do not carry over; prepaid credits granted by an
/// operator are spent after them and never expire.
public struct CreditPolicy: Sendable, Hashable {
    public var pool: PoolLevel
    public var included: UInt64
    public var period: Period

    public init(pool: PoolLevel = .license, included: UInt64, period: Period = .month) {
        self.pool = pool
        self.included = included
        self.period = period
    }
}

/// What happens when usage would exceed a quota or the credits.
public enum OveragePolicy: UInt8, Sendable, CaseIterable, Hashable {
    /// The check is denied and nothing is counted.
    case hardStop = 0
    /// The check is allowed and the usage beyond the limit is recorded as overage, for billing.
    case allowAndRecord = 1

    public var name: String { self == .hardStop ? "hard_stop" : "allow_and_record" }

    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = match
    }
}

/// A plan (tier): what every license on it, and so every token of those licenses, may do. Editing a plan, or
/// moving a license to another plan, takes effect on the next check.
public struct Plan: Sendable, Hashable {
    public var id: String
    /// Scopes the plan grants; `*` grants every scope. A token's own scopes narrow these further.
    public var entitlements: [String]
    /// Features the plan grants (`*`: every feature). A check that names features needs all of them.
    public var features: [String]
    public var quotas: [QuotaRule]
    public var rateLimits: [RateRule]
    public var concurrency: [ConcurrencyRule]
    /// nil: the plan does not use credits.
    public var credits: CreditPolicy?
    public var overage: OveragePolicy
    /// The longest lifetime a token of this plan may be issued (or derived) with; 0: no limit.
    public var maxTokenLifetimeSeconds: UInt32
    /// How many unrevoked, unexpired tokens a license on this plan may hold; 0: no limit.
    public var maxActiveTokens: UInt32
    /// How long a `past_due` license keeps working after it became past due.
    public var pastDueGraceSeconds: UInt32

    public init(
        id: String, entitlements: [String], features: [String] = [], quotas: [QuotaRule] = [], rateLimits: [RateRule] = [],
        concurrency: [ConcurrencyRule] = [], credits: CreditPolicy? = nil, overage: OveragePolicy = .hardStop,
        maxTokenLifetimeSeconds: UInt32 = 0, maxActiveTokens: UInt32 = 0, pastDueGraceSeconds: UInt32 = 0
    ) {
        self.id = id
        self.entitlements = entitlements
        self.features = features
        self.quotas = quotas
        self.rateLimits = rateLimits
        self.concurrency = concurrency
        self.credits = credits
        self.overage = overage
        self.maxTokenLifetimeSeconds = maxTokenLifetimeSeconds
        self.maxActiveTokens = maxActiveTokens
        self.pastDueGraceSeconds = pastDueGraceSeconds
    }

    /// A plan with one license-wide rate limit, as the core protocol described it.
    public init(id: String, entitlements: [String], quotas: [QuotaRule] = [], ratePerSecond: UInt32, burst: UInt32 = 0) {
        self.init(
            id: id, entitlements: entitlements, quotas: quotas,
            rateLimits: ratePerSecond > 0 ? [RateRule(pool: .license, ratePerSecond: ratePerSecond, burst: max(burst, 1))] : [])
    }
}

/// An organisation: the top of the hierarchy organisation → (project) → license → token. Suspending it denies
/// every license in it; pooled limits at `org` level are shared by its licenses.
public struct OrgSpec: Sendable, Hashable {
    public var id: String
    public var name: String
    public var suspended: Bool

    public init(id: String, name: String = "", suspended: Bool = false) {
        self.id = id
        self.name = name
        self.suspended = suspended
    }
}

/// What LICENSE_PUT sets: the license as the subscription system sees it.
public struct LicenseSpec: Sendable, Hashable {
    public var id: String
    public var customer: String
    public var plan: String
    public var status: LicenseStatus
    /// 0: open-ended.
    public var validUntil: UnixMillis
    /// 0: valid from the start.
    public var validFrom: UnixMillis
    /// With `trialing`: when the trial ends (0: no end set).
    public var trialEndsAt: UnixMillis
    /// Empty: no organisation (the license is its own pool at `org` level).
    public var org: String
    /// A grouping inside the organisation (team or project); informative, exported with usage.
    public var project: String
    /// Day of the month (1–28) on which monthly periods start, in UTC.
    public var billingAnchorDay: UInt8

    public init(
        id: String, customer: String, plan: String, status: LicenseStatus, validUntil: UnixMillis = 0, validFrom: UnixMillis = 0,
        trialEndsAt: UnixMillis = 0, org: String = "", project: String = "", billingAnchorDay: UInt8 = 1
    ) {
        self.id = id
        self.customer = customer
        self.plan = plan
        self.status = status
        self.validUntil = validUntil
        self.validFrom = validFrom
        self.trialEndsAt = trialEndsAt
        self.org = org
        self.project = project
        self.billingAnchorDay = billingAnchorDay
    }

    /// The owner of `org`-level pools: the organisation, or the license itself when it has none.
    public var orgPoolOwner: String { org.isEmpty ? "license:" + id : org }
}

/// A license as shown to operators.
public struct LicenseInfo: Sendable, Hashable {
    public var spec: LicenseSpec
    public var updatedAt: UnixMillis
    public var activeTokens: UInt32
    /// When the license last became `past_due` (0: it is not past due).
    public var pastDueSince: UnixMillis
    /// Prepaid credits left (granted minus spent).
    public var prepaidCredits: UInt64

    public init(spec: LicenseSpec, updatedAt: UnixMillis, activeTokens: UInt32, pastDueSince: UnixMillis = 0, prepaidCredits: UInt64 = 0) {
        self.spec = spec
        self.updatedAt = updatedAt
        self.activeTokens = activeTokens
        self.pastDueSince = pastDueSince
        self.prepaidCredits = prepaidCredits
    }
}
