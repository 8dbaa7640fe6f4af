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
    case featureNotEntitled = 11
    case creditsExhausted = 12
    case concurrencyLimited = 13
    case trialEnded = 14
    case paymentOverdue = 15
    case licenseExpired = 16
    case licenseNotYetValid = 17
    case orgSuspended = 18
    /// Fleet mode: this host has not confirmed a catch-up with the fleet log for the revocation horizon
    /// (`Protocol/FLEET.md` 7), so it admits no token until it does.
    case fleetStale = 19

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
        case .featureNotEntitled: return "feature_not_entitled"
        case .creditsExhausted: return "credits_exhausted"
        case .concurrencyLimited: return "concurrency_limited"
        case .trialEnded: return "trial_ended"
        case .paymentOverdue: return "payment_overdue"
        case .licenseExpired: return "license_expired"
        case .licenseNotYetValid: return "license_not_yet_valid"
        case .orgSuspended: return "org_suspended"
        case .fleetStale: return "fleet_stale"
        }
    }
}

/// A license's standing with the subscription system, as synced from it. `active` lets checks through;
/// `trialing` until the license's trial end; `past_due` for the plan's grace period after the license became
/// past due; `canceled` and `expired` never.
public enum LicenseStatus: UInt8, Sendable, CaseIterable, Hashable {
    case active = 0
    case trialing = 1
    case pastDue = 2
    case canceled = 3
    case expired = 4

    public var name: String {
        switch self {
        case .active: return "active"
        case .trialing: return "trialing"
        case .pastDue: return "past_due"
        case .canceled: return "canceled"
        case .expired: return "expired"
        }
    }

    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = match
    }
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
    /// The token this one was derived from (empty: issued directly). Revoking the parent revokes it.
    public var parentID: String
    /// Who revoked the token (the operator's name and the uid of the process that asked).
    public var revokedBy: String
    /// When the secret was last rotated (0: never).
    public var rotatedAt: UnixMillis
    /// The previous secret is accepted until then (0: no previous secret is accepted).
    public var previousSecretValidUntil: UnixMillis
    /// Observations kept in memory, not journaled: the last check that presented the current secret, and the last
    /// that presented the previous one (so that a rotation's overlap can be ended once it is no longer used).
    public var lastUsedAt: UnixMillis
    public var previousSecretLastUsedAt: UnixMillis

    public init(
        id: String, licenseID: String, subject: String, scopes: [String], issuedAt: UnixMillis,
        notBefore: UnixMillis, expiresAt: UnixMillis, revokedAt: UnixMillis = 0, revokeReason: String = "",
        metadata: [KeyValue] = [], environment: TokenEnvironment, parentID: String = "", revokedBy: String = "",
        rotatedAt: UnixMillis = 0, previousSecretValidUntil: UnixMillis = 0, lastUsedAt: UnixMillis = 0, previousSecretLastUsedAt: UnixMillis = 0
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
        self.parentID = parentID
        self.revokedBy = revokedBy
        self.rotatedAt = rotatedAt
        self.previousSecretValidUntil = previousSecretValidUntil
        self.lastUsedAt = lastUsedAt
        self.previousSecretLastUsedAt = previousSecretLastUsedAt
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
