import TollgateModel

/// The SHA-256 of a token string, the only form in which a token is ever stored.
public struct TokenHash: Hashable, Sendable {
    public var bytes: (UInt64, UInt64, UInt64, UInt64)

    public init(_ a: UInt64, _ b: UInt64, _ c: UInt64, _ d: UInt64) {
        bytes = (a, b, c, d)
    }

    public static func == (l: TokenHash, r: TokenHash) -> Bool {
        l.bytes.0 == r.bytes.0 && l.bytes.1 == r.bytes.1 && l.bytes.2 == r.bytes.2 && l.bytes.3 == r.bytes.3
    }

    public func hash(into hasher: inout Hasher) {
        // The value is already uniformly distributed: one word is enough for the table.
        hasher.combine(bytes.0)
    }
}

/// A stored token: everything but the secret.
public struct TokenRecord: Sendable, Hashable {
    public var hash: TokenHash
    public var info: TokenInfo
    /// The uids that may present the token (from the reserved metadata key `tollgate.bind_uids`); nil: anyone.
    /// Derived from `info`, so it is not stored separately.
    public var boundUIDs: [UInt32]?

    public init(hash: TokenHash, info: TokenInfo) {
        self.hash = hash
        self.info = info
        self.boundUIDs = info.metadata.first { $0.key == TokenBinding.metadataKey }.flatMap { TokenBinding.parse($0.value) }
    }
}

/// Binding a token to the processes that may present it: metadata `tollgate.bind_uids` = `1000,1001` makes the
/// token usable only by callers whose uid (from the socket's peer credentials) is listed, so a secret leaked to
/// another process on the host is useless there.
public enum TokenBinding {
    public static let metadataKey = "tollgate.bind_uids"
    /// Metadata keys with this prefix are reserved for the daemon.
    public static let reservedPrefix = "tollgate."

    /// The uids of a binding value, or nil when it is not a comma-separated list of 1–16 uids.
    public static func parse(_ value: String) -> [UInt32]? {
        let parts = value.split(separator: ",", omittingEmptySubsequences: false)
        guard (1...16).contains(parts.count) else { return nil }
        let uids = parts.compactMap { UInt32(String($0.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())) }
        return uids.count == parts.count ? uids : nil
    }
}

/// Usage of one meter by one token, at one time.
public struct UsageEntry: Sendable, Hashable {
    public var tokenID: String
    public var meter: String
    public var quantity: UInt64
    public var at: UnixMillis

    public init(tokenID: String, meter: String, quantity: UInt64, at: UnixMillis) {
        self.tokenID = tokenID
        self.meter = meter
        self.quantity = quantity
        self.at = at
    }
}

/// One change to the licensing state: the unit of the write-ahead journal, of replay, and (later) of
/// replication. `LicensingState.apply(_:)` is the only code that turns one into state, live and in replay.
///
/// Every change carries the facts it needs to be applied deterministically (resolved ids, timestamps),
/// never a decision that depends on the state at replay time, and never a token secret.
public enum StateChange: Sendable, Hashable {
    case planPut(Plan, at: UnixMillis)
    case licensePut(LicenseSpec, at: UnixMillis)
    case tokenIssued(TokenRecord)
    /// Revocation of tokens resolved when the request was decided (by secret, id or license).
    case tokensRevoked(tokenIDs: [String], reason: String, at: UnixMillis)
    /// An explicit METER event; its idempotency key (if any) is recorded in the same record as the usage.
    case metered(UsageEntry, idempotencyKey: String)
    /// Usage consumed by allowed checks, batched between journal flushes.
    case consumed([UsageEntry])
    /// Snapshot only: restores usage counters and idempotency keys that are not derivable from other records.
    case countersRestored(CounterSnapshot)

    /// The journal record type code (`Protocol/JOURNAL.md`, "Record payloads").
    public var typeCode: UInt8 {
        switch self {
        case .planPut: return 1
        case .licensePut: return 2
        case .tokenIssued: return 3
        case .tokensRevoked: return 4
        case .metered: return 5
        case .consumed: return 6
        case .countersRestored: return 7
        }
    }
}

/// Usage counters and idempotency keys as stored in a snapshot.
public struct CounterSnapshot: Sendable, Hashable {
    public var licenseUsage: [(key: LicenseUsageKey, value: UInt64)]
    public var tokenUsage: [(key: TokenUsageKey, value: UInt64)]
    public var idempotencyKeys: [(key: String, at: UnixMillis)]

    public init(licenseUsage: [(key: LicenseUsageKey, value: UInt64)], tokenUsage: [(key: TokenUsageKey, value: UInt64)], idempotencyKeys: [(key: String, at: UnixMillis)]) {
        self.licenseUsage = licenseUsage
        self.tokenUsage = tokenUsage
        self.idempotencyKeys = idempotencyKeys
    }

    public static func == (l: CounterSnapshot, r: CounterSnapshot) -> Bool {
        l.licenseUsage.elementsEqual(r.licenseUsage, by: { $0.key == $1.key && $0.value == $1.value })
            && l.tokenUsage.elementsEqual(r.tokenUsage, by: { $0.key == $1.key && $0.value == $1.value })
            && l.idempotencyKeys.elementsEqual(r.idempotencyKeys, by: { $0.key == $1.key && $0.at == $1.at })
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(licenseUsage.count)
        hasher.combine(tokenUsage.count)
        hasher.combine(idempotencyKeys.count)
    }
}

/// Usage of a meter by a license in one calendar period.
public struct LicenseUsageKey: Hashable, Sendable {
    public var licenseID: String
    public var meter: String
    public var period: Period
    public var periodStart: UnixMillis

    public init(licenseID: String, meter: String, period: Period, periodStart: UnixMillis) {
        self.licenseID = licenseID
        self.meter = meter
        self.period = period
        self.periodStart = periodStart
    }
}

/// Usage of a meter by a token in one calendar month (and so, summed, in all time).
public struct TokenUsageKey: Hashable, Sendable {
    public var tokenID: String
    public var meter: String
    public var monthStart: UnixMillis

    public init(tokenID: String, meter: String, monthStart: UnixMillis) {
        self.tokenID = tokenID
        self.meter = meter
        self.monthStart = monthStart
    }
}
