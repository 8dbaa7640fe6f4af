/// "May this token do this, now?" — and, if it may, charge `cost` units of `meter`.
public struct CheckRequest: Sendable, Hashable {
    public var token: String
    public var scopes: [String]
    /// Empty: charge nothing.
    public var meter: String
    public var cost: UInt64

    public init(token: String, scopes: [String] = [], meter: String = "", cost: UInt64 = 0) {
        self.token = token
        self.scopes = scopes
        self.meter = meter
        self.cost = cost
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

    public var allowed: Bool { reason == .none }

    public init(
        reason: DenyReason, tokenID: String = "", licenseID: String = "", subject: String = "",
        quota: QuotaState? = nil, retryAfterMillis: UInt32 = 0
    ) {
        self.reason = reason
        self.tokenID = tokenID
        self.licenseID = licenseID
        self.subject = subject
        self.quota = quota
        self.retryAfterMillis = retryAfterMillis
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

    public var code: UInt8 {
        switch self {
        case .secret: return 0
        case .tokenID: return 1
        case .license: return 2
        }
    }

    /// Revocation by the secret itself is the only kind a data-plane caller may ask for.
    public var isSecret: Bool {
        if case .secret = self { return true }
        return false
    }

    public var value: String {
        switch self {
        case .secret(let v), .tokenID(let v), .license(let v): return v
        }
    }

    public init?(code: UInt8, value: String) {
        switch code {
        case 0: self = .secret(value)
        case 1: self = .tokenID(value)
        case 2: self = .license(value)
        default: return nil
        }
    }
}

public struct RevokeRequest: Sendable, Hashable {
    public var target: RevokeTarget
    public var reason: String
    public init(target: RevokeTarget, reason: String = "") {
        self.target = target
        self.reason = reason
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
