/// "May this token do this, now?" — and, if it may, charge `cost` units of `meter`.
public struct CheckRequest: Sendable, Hashable {
    public var token: String
    public var scopes: [String]
    /// Empty: charge nothing.
    public var meter: String
    public var cost: UInt64
    /// Features of the plan the request needs (all of them).
    public var features: [String]
    public var options: CheckOptions

    public init(token: String, scopes: [String] = [], meter: String = "", cost: UInt64 = 0, features: [String] = [], options: CheckOptions = []) {
        self.token = token
        self.scopes = scopes
        self.meter = meter
        self.cost = cost
        self.features = features
        self.options = options
    }
}

/// How a check is to be answered (a bit set; the wire carries `rawValue`).
public struct CheckOptions: OptionSet, Sendable, Hashable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// List every rule that was evaluated, with the counters it saw.
    public static let explain = CheckOptions(rawValue: 1 << 0)
    /// Take a concurrency lease, held until RELEASE or until the connection closes.
    public static let lease = CheckOptions(rawValue: 1 << 1)
    /// `cost` is an estimate to reserve, not to charge: SETTLE charges the actual cost later, or the reservation
    /// expires and is released.
    public static let reserve = CheckOptions(rawValue: 1 << 2)
    /// Answer with `CheckDetails` too (the tightest rate limit, the token's expiry, the plan): what a proxy passes on
    /// as `RateLimit-*` and identity headers. Opt-in, so a caller that does not need it pays nothing.
    public static let details = CheckOptions(rawValue: 1 << 3)

    public static let all: CheckOptions = [.explain, .lease, .reserve, .details]
}

/// One rule a check evaluated, for explain mode.
public struct RuleEvaluation: Sendable, Hashable {
    /// `scope`, `feature`, `quota:METER:WINDOW:POOL`, `rate:POOL`, `credits:POOL`, `concurrency:POOL`, …
    public var rule: String
    /// Whose counter: a token id, license id or organisation id (empty for rules without a counter).
    public var owner: String
    public var limit: UInt64
    /// What the counter held before this check.
    public var used: UInt64
    /// Whether this rule denied the check.
    public var denied: Bool

    public init(rule: String, owner: String = "", limit: UInt64 = 0, used: UInt64 = 0, denied: Bool = false) {
        self.rule = rule
        self.owner = owner
        self.limit = limit
        self.used = used
        self.denied = denied
    }
}

/// The answer to a check. `reason == .none` means allowed.
public struct CheckResult: Sendable, Hashable {
    public var reason: DenyReason
    public var tokenID: String
    public var licenseID: String
    public var subject: String
    public var quota: QuotaState?
    /// With `.rateLimited`: how long until a request would be allowed.
    public var retryAfterMillis: UInt32
    /// With the `lease` option and allowed: the lease to RELEASE (0: none taken).
    public var leaseID: UInt64
    /// With the `reserve` option and allowed: the reservation to SETTLE (0: none).
    public var reservationID: UInt64
    /// Credits left after this check (included + prepaid), when the plan uses credits.
    public var creditsRemaining: UInt64?
    /// Units of this check's cost recorded as overage (plan policy `allow_and_record`).
    public var overage: UInt64
    /// With the `explain` option: every rule evaluated, in order.
    public var explanation: [RuleEvaluation]

    public var allowed: Bool { reason == .none }

    public init(
        reason: DenyReason, tokenID: String = "", licenseID: String = "", subject: String = "",
        quota: QuotaState? = nil, retryAfterMillis: UInt32 = 0, leaseID: UInt64 = 0, reservationID: UInt64 = 0,
        creditsRemaining: UInt64? = nil, overage: UInt64 = 0, explanation: [RuleEvaluation] = []
    ) {
        self.reason = reason
        self.tokenID = tokenID
        self.licenseID = licenseID
        self.subject = subject
        self.quota = quota
        self.retryAfterMillis = retryAfterMillis
        self.leaseID = leaseID
        self.reservationID = reservationID
        self.creditsRemaining = creditsRemaining
        self.overage = overage
        self.explanation = explanation
    }
}

/// What a check answers with the `details` option, on allow and on deny: what a proxy in front of an API passes on.
///
/// Not a field of `CheckResult`: read from the state just after the check, under the same lock, only for a check
/// that asks. As a field (an optional holding a string) it made every CHECK's result costlier to build, copy and
/// destroy: +2 % to +3.6 % instructions per CHECK, asked or not (callgrind, Benchmarks/RESULTS.md).
public struct CheckDetails: Sendable, Hashable {
    /// The plan's rate limit with the fewest requests left, as it stands after the check (absent when the plan has
    /// none, or the token, its license or its plan is not known).
    public var rateLimit: RateLimitState?
    /// When the token stops working (0: it does not expire; also 0 when the token is unknown).
    public var tokenExpiresAt: UnixMillis
    /// The plan of the token's license (empty when the token or its license is not known).
    public var planID: String

    public init(rateLimit: RateLimitState? = nil, tokenExpiresAt: UnixMillis = 0, planID: String = "") {
        self.rateLimit = rateLimit
        self.tokenExpiresAt = tokenExpiresAt
        self.planID = planID
    }
}

/// One rate limit as the IETF `RateLimit` header fields describe it: a burst of `limit` requests, `remaining` of
/// them available now (after this check, when it was allowed), and `resetMillis` until all `limit` are available again.
public struct RateLimitState: Sendable, Hashable {
    public var limit: UInt64
    public var remaining: UInt64
    public var resetMillis: UInt32

    public init(limit: UInt64, remaining: UInt64, resetMillis: UInt32) {
        self.limit = limit
        self.remaining = remaining
        self.resetMillis = resetMillis
    }
}

/// Usage the caller already served, to be recorded per token and per license.
public struct MeterRequest: Sendable, Hashable {
    public var token: String
    public var meter: String
    public var quantity: UInt64
    /// Empty: none. A repeated key is acknowledged and not counted again.
    public var idempotencyKey: String

    public init(token: String, meter: String, quantity: UInt64, idempotencyKey: String = "") {
        self.token = token
        self.meter = meter
        self.quantity = quantity
        self.idempotencyKey = idempotencyKey
    }
}

public struct MeterResult: Sendable, Hashable {
    public var reason: DenyReason
    public var tokenID: String
    public var licenseID: String
    /// The idempotency key had been seen; nothing was counted.
    public var duplicate: Bool
    public var quota: QuotaState?

    public var allowed: Bool { reason == .none }

    public init(reason: DenyReason, tokenID: String = "", licenseID: String = "", duplicate: Bool = false, quota: QuotaState? = nil) {
        self.reason = reason
        self.tokenID = tokenID
        self.licenseID = licenseID
        self.duplicate = duplicate
        self.quota = quota
    }
}

/// What a revocation names.
public enum RevokeTarget: Sendable, Hashable {
    case secret(String)
    case tokenID(String)
    case license(String)
    case org(String)
    /// Every token issued to this subject, in any license.
    case subject(String)

    public var code: UInt8 {
        switch self {
        case .secret: return 0
        case .tokenID: return 1
        case .license: return 2
        case .org: return 3
        case .subject: return 4
        }
    }

    /// Revocation by the secret itself is the only kind a data-plane caller may ask for.
    public var isSecret: Bool {
        if case .secret = self { return true }
        return false
    }

    public var value: String {
        switch self {
        case .secret(let v), .tokenID(let v), .license(let v), .org(let v), .subject(let v): return v
        }
    }

    public init?(code: UInt8, value: String) {
        switch code {
        case 0: self = .secret(value)
        case 1: self = .tokenID(value)
        case 2: self = .license(value)
        case 3: self = .org(value)
        case 4: self = .subject(value)
        default: return nil
        }
    }
}

public struct RevokeRequest: Sendable, Hashable {
    public var target: RevokeTarget
    public var reason: String
    /// Who asks (an operator's name, a system's id); the daemon adds the caller's uid. Recorded in the journal.
    public var actor: String
    public init(target: RevokeTarget, reason: String = "", actor: String = "") {
        self.target = target
        self.reason = reason
        self.actor = actor
    }
}

/// A new secret for the same token identity. The previous secret stays valid for `graceSeconds` (0: revoked at
/// once), then is refused as revoked.
public struct RotateRequest: Sendable, Hashable {
    public var tokenID: String
    public var graceSeconds: UInt32
    public init(tokenID: String, graceSeconds: UInt32) {
        self.tokenID = tokenID
        self.graceSeconds = graceSeconds
    }
}

/// Exchanges a token (presented by its secret) for a short-lived child with a subset of its scopes.
public struct DeriveRequest: Sendable, Hashable {
    public var parent: String
    /// Must be a subset of the parent's scopes; empty: the parent's scopes.
    public var scopes: [String]
    /// The child's lifetime; capped by the daemon's maximum for derived tokens, the plan's maximum lifetime and the
    /// parent's expiry.
    public var ttlSeconds: UInt32
    public init(parent: String, scopes: [String] = [], ttlSeconds: UInt32) {
        self.parent = parent
        self.scopes = scopes
        self.ttlSeconds = ttlSeconds
    }
}

/// Charges the actual cost of a reserved check and releases the rest of the reservation.
public struct SettleRequest: Sendable, Hashable {
    public var reservationID: UInt64
    public var actualCost: UInt64
    public init(reservationID: UInt64, actualCost: UInt64) {
        self.reservationID = reservationID
        self.actualCost = actualCost
    }
}

/// Adds prepaid credits to a pool (a license, a token or an organisation).
public struct CreditsGrant: Sendable, Hashable {
    public var pool: PoolLevel
    public var owner: String
    public var amount: UInt64
    public var reason: String
    public init(pool: PoolLevel, owner: String, amount: UInt64, reason: String = "") {
        self.pool = pool
        self.owner = owner
        self.amount = amount
        self.reason = reason
    }
}

/// Which usage to export: ledger rows whose hour starts in [from, to), optionally of one organisation or license.
public struct UsageQuery: Sendable, Hashable {
    public var from: UnixMillis
    public var to: UnixMillis
    public var org: String
    public var licenseID: String
    /// Rows summed per hour, day or month (months are UTC calendar months).
    public var granularity: Period
    public init(from: UnixMillis, to: UnixMillis, org: String = "", licenseID: String = "", granularity: Period = .hour) {
        self.from = from
        self.to = to
        self.org = org
        self.licenseID = licenseID
        self.granularity = granularity
    }
}

/// One row of the usage ledger: exact usage of a meter by a token in one period.
public struct UsageRow: Sendable, Hashable {
    public var org: String
    public var project: String
    public var licenseID: String
    public var tokenID: String
    public var meter: String
    public var periodStart: UnixMillis
    public var quantity: UInt64
    /// The part of `quantity` that exceeded a quota or the credits and was allowed by the plan's overage policy.
    public var overage: UInt64
    public init(org: String, project: String, licenseID: String, tokenID: String, meter: String, periodStart: UnixMillis, quantity: UInt64, overage: UInt64) {
        self.org = org
        self.project = project
        self.licenseID = licenseID
        self.tokenID = tokenID
        self.meter = meter
        self.periodStart = periodStart
        self.quantity = quantity
        self.overage = overage
    }
}

/// A threshold crossed, recorded once.
public struct LicensingEvent: Sendable, Hashable {
    public enum Kind: UInt8, Sendable, CaseIterable, Hashable {
        case quota80 = 0
        case quota100 = 1
        case creditsLow = 2
        case tokenExpiring = 3

        public var name: String {
            switch self {
            case .quota80: return "quota_80"
            case .quota100: return "quota_100"
            case .creditsLow: return "credits_low"
            case .tokenExpiring: return "token_expiring"
            }
        }
    }

    /// Position in the event log, from 1.
    public var sequence: UInt64
    public var at: UnixMillis
    public var kind: Kind
    /// A token id, license id or organisation id.
    public var owner: String
    /// The rule (`quota:…`, `credits:…`) or, for `token_expiring`, the expiry time in milliseconds.
    public var detail: String

    public init(sequence: UInt64, at: UnixMillis, kind: Kind, owner: String, detail: String) {
        self.sequence = sequence
        self.at = at
        self.kind = kind
        self.owner = owner
        self.detail = detail
    }
}

public struct IssueRequest: Sendable, Hashable {
    public var licenseID: String
    public var subject: String
    /// Empty means `["*"]`: whatever the license's plan grants.
    public var scopes: [String]
    /// 0: now.
    public var notBefore: UnixMillis
    /// 0: never.
    public var expiresAt: UnixMillis
    public var metadata: [KeyValue]
    public var environment: TokenEnvironment

    public init(
        licenseID: String, subject: String, scopes: [String] = [], notBefore: UnixMillis = 0, expiresAt: UnixMillis = 0,
        metadata: [KeyValue] = [], environment: TokenEnvironment = .live
    ) {
        self.licenseID = licenseID
        self.subject = subject
        self.scopes = scopes
        self.notBefore = notBefore
        self.expiresAt = expiresAt
        self.metadata = metadata
        self.environment = environment
    }
}

public struct TokenListRequest: Sendable, Hashable {
    /// Empty: all licenses.
    public var licenseID: String
    /// Start after this token id; empty: from the start.
    public var after: String
    /// 0: the server's default.
    public var limit: UInt16
    public init(licenseID: String = "", after: String = "", limit: UInt16 = 0) {
        self.licenseID = licenseID
        self.after = after
        self.limit = limit
    }
}

// MARK: - Listing and deleting policy objects (LICENSE_LIST … ORG_DELETE)

/// The objects an operator declares (`tollgate apply`) and may list and delete: licenses, plans, organisations.
/// The raw values are the journal's code for the kind (`Protocol/JOURNAL.md`, type 14).
public enum PolicyObjectKind: UInt8, Sendable, CaseIterable, Hashable {
    case license = 0
    case plan = 1
    case org = 2

    /// The word used in messages and log lines.
    public var name: String {
        switch self {
        case .license: return "license"
        case .plan: return "plan"
        case .org: return "organisation"
        }
    }
}

/// A page of a listing in ascending id order: the ids after `after` (empty: from the first), at most `limit`
/// (0: the server's default).
public struct ListPageRequest: Sendable, Hashable {
    public var after: String
    public var limit: UInt16
    public init(after: String = "", limit: UInt16 = 0) {
        self.after = after
        self.limit = limit
    }
}

/// LICENSE_LIST: a page of licenses, optionally only those of one organisation and/or on one plan.
public struct LicenseListRequest: Sendable, Hashable {
    /// Empty: any organisation (or none).
    public var org: String
    /// Empty: any plan.
    public var plan: String
    public var page: ListPageRequest
    public init(org: String = "", plan: String = "", after: String = "", limit: UInt16 = 0) {
        self.org = org
        self.plan = plan
        self.page = ListPageRequest(after: after, limit: limit)
    }
}

/// LICENSE_DELETE, PLAN_DELETE, ORG_DELETE: the object's id and who asks (an operator's name; the server appends the
/// caller's uid, as for REVOKE, and journals and logs both).
public struct DeleteRequest: Sendable, Hashable {
    public var id: String
    public var actor: String
    public init(id: String, actor: String = "") {
        self.id = id
        self.actor = actor
    }
}
