/// Milliseconds since the Unix epoch, UTC. Where a field documents it, `0` means "none".
///
/// Milliseconds are what callers put in rate-limit headers and what the wire carries; they are exact
/// in an `Int64` for the next 292 million years.
public typealias UnixMillis = Int64

/// Why a check or a meter event was denied. The raw values are the wire codes of `Protocol/PROTOCOL.md`.
public enum DenyReason: UInt8, Sendable, CaseIterable, Hashable {
    case none = 0
    case malformedToken = 1
    case unknownToken = 2
    case revoked = 3
    case notYetValid = 4
    case expired = 5
    case licenseInactive = 6
    case insufficientScope = 7
    case quotaExceeded = 8
    case rateLimited = 9
    case callerNotAllowed = 10

    /// The stable, machine-readable name used in logs, JSON output and the spec.
    public var name: String {
        switch self {
        case .none: return "none"
        case .malformedToken: return "malformed_token"
        case .unknownToken: return "unknown_token"
        case .revoked: return "revoked"
        case .notYetValid: return "not_yet_valid"
        case .expired: return "expired"
        case .licenseInactive: return "license_inactive"
        case .insufficientScope: return "insufficient_scope"
        case .quotaExceeded: return "quota_exceeded"
        case .rateLimited: return "rate_limited"
        case .callerNotAllowed: return "caller_not_allowed"
        }
    }
}

/// A license's standing with the subscription system. Only `active` and `trialing` let checks through.
public enum LicenseStatus: UInt8, Sendable, CaseIterable, Hashable {
    case active = 0
    case trialing = 1
    case pastDue = 2
    case canceled = 3

    public var name: String {
        switch self {
        case .active: return "active"
        case .trialing: return "trialing"
        case .pastDue: return "past_due"
        case .canceled: return "canceled"
        }
    }

    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = match
    }

    /// Whether a license in this status may be used at all.
    public var permitsUse: Bool { self == .active || self == .trialing }
}

/// A calendar period in UTC over which a quota counts usage.
public enum Period: UInt8, Sendable, CaseIterable, Hashable {
    case hour = 0
    case day = 1
    case month = 2

    public var name: String {
        switch self {
        case .hour: return "hour"
        case .day: return "day"
        case .month: return "month"
        }
    }

    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = match
    }
}

/// Whether a token is for production traffic or for testing; it is part of the token string.
public enum TokenEnvironment: UInt8, Sendable, CaseIterable, Hashable {
    case live = 0
    case test = 1

    public var name: String { self == .live ? "live" : "test" }

    public init?(name: String) {
        switch name {
        case "live": self = .live
        case "test": self = .test
        default: return nil
        }
    }
}

/// A free-form key/value pair (token metadata, statistics).
public struct KeyValue: Sendable, Hashable {
    public var key: String
    public var value: String
    public init(_ key: String, _ value: String) {
        self.key = key
        self.value = value
    }
}

/// At most `limit` units of `meter` per calendar `period`, pooled over every token of a license.
public struct QuotaRule: Sendable, Hashable {
    public var meter: String
    public var period: Period
    public var limit: UInt64
    public init(meter: String, period: Period, limit: UInt64) {
        self.meter = meter
        self.period = period
        self.limit = limit
    }
}

/// A plan (tier): what every license on it, and so every token of those licenses, may do.
public struct Plan: Sendable, Hashable {
    public var id: String
    /// Scopes the plan grants; `*` grants every scope.
    public var entitlements: [String]
    public var quotas: [QuotaRule]
    /// Requests per second per license; 0 means no rate limit.
    public var ratePerSecond: UInt32
    /// Requests that may arrive at once beyond the steady rate.
    public var burst: UInt32

    public init(id: String, entitlements: [String], quotas: [QuotaRule] = [], ratePerSecond: UInt32 = 0, burst: UInt32 = 0) {
        self.id = id
        self.entitlements = entitlements
        self.quotas = quotas
        self.ratePerSecond = ratePerSecond
        self.burst = burst
    }

    public func quota(for meter: String) -> QuotaRule? {
        quotas.first { $0.meter == meter }
    }
}

/// What LICENSE_PUT sets.
public struct LicenseSpec: Sendable, Hashable {
    public var id: String
    public var customer: String
    public var plan: String
    public var status: LicenseStatus
    /// 0: open-ended.
    public var validUntil: UnixMillis

    public init(id: String, customer: String, plan: String, status: LicenseStatus, validUntil: UnixMillis = 0) {
        self.id = id
        self.customer = customer
        self.plan = plan
        self.status = status
        self.validUntil = validUntil
    }
}

/// A license as shown to operators.
public struct LicenseInfo: Sendable, Hashable {
    public var spec: LicenseSpec
    public var updatedAt: UnixMillis
    public var activeTokens: UInt32

    public init(spec: LicenseSpec, updatedAt: UnixMillis, activeTokens: UInt32) {
        self.spec = spec
        self.updatedAt = updatedAt
        self.activeTokens = activeTokens
    }
}

/// A token as shown to operators. Never carries the secret.
public struct TokenInfo: Sendable, Hashable {
    public var id: String
    public var licenseID: String
    public var subject: String
    public var scopes: [String]
    public var issuedAt: UnixMillis
    /// 0: valid from issue.
    public var notBefore: UnixMillis
    /// 0: never expires.
    public var expiresAt: UnixMillis
    /// 0: not revoked.
    public var revokedAt: UnixMillis
    public var revokeReason: String
    public var metadata: [KeyValue]
    public var environment: TokenEnvironment

    public init(
        id: String, licenseID: String, subject: String, scopes: [String], issuedAt: UnixMillis,
        notBefore: UnixMillis, expiresAt: UnixMillis, revokedAt: UnixMillis = 0, revokeReason: String = "",
        metadata: [KeyValue] = [], environment: TokenEnvironment
    ) {
        self.id = id
        self.licenseID = licenseID
        self.subject = subject
        self.scopes = scopes
        self.issuedAt = issuedAt
        self.notBefore = notBefore
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
        self.revokeReason = revokeReason
        self.metadata = metadata
        self.environment = environment
    }
}

/// The state of a quota after a request, so the caller can set rate-limit headers.
public struct QuotaState: Sendable, Hashable {
    public var limit: UInt64
    public var remaining: UInt64
    /// When the current period ends.
    public var resetAt: UnixMillis

    public init(limit: UInt64, remaining: UInt64, resetAt: UnixMillis) {
        self.limit = limit
        self.remaining = remaining
        self.resetAt = resetAt
    }
}
