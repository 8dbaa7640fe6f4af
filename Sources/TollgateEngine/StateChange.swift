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

    /// A record whose binding was derived from its metadata before (the token store keeps it).
    init(hash: TokenHash, info: TokenInfo, boundUIDs: [UInt32]?) {
        self.hash = hash
        self.info = info
        self.boundUIDs = boundUIDs
    }
}

/// Usage of one meter by one token, at one time, with the decisions taken when it was admitted: how much of it was
/// overage and how it was paid from credits. Recording the decision (not re-deciding it in replay) keeps replay
/// exact whatever order batched usage lands in the journal.
public struct UsageEntry: Sendable, Hashable {
    public var tokenID: String
    public var meter: String
    public var quantity: UInt64
    public var at: UnixMillis
    /// The part of `quantity` beyond a quota or the credits, allowed by the plan's overage policy.
    public var overage: UInt64
    /// Credits paid from the period's included credits and from prepaid credits, at `creditPool` level.
    public var includedCredits: UInt64
    public var prepaidCredits: UInt64
    public var creditPool: PoolLevel

    public init(
        tokenID: String, meter: String, quantity: UInt64, at: UnixMillis, overage: UInt64 = 0,
        includedCredits: UInt64 = 0, prepaidCredits: UInt64 = 0, creditPool: PoolLevel = .license
    ) {
        self.tokenID = tokenID
        self.meter = meter
        self.quantity = quantity
        self.at = at
        self.overage = overage
        self.includedCredits = includedCredits
        self.prepaidCredits = prepaidCredits
        self.creditPool = creditPool
    }
}

/// One change to the licensing state: the unit of the write-ahead journal, of replay, and (later) of
/// replication. `LicensingState.apply(_:)` is the only code that turns one into state, live and in replay.
///
/// Every change carries the facts it needs to be applied deterministically (resolved ids, timestamps, decided
/// amounts), never a decision that depends on the state at replay time, and never a token secret.
public enum StateChange: Sendable, Hashable {
    case planPut(Plan, at: UnixMillis)
    /// `pastDueSince` is decided when the change is made: when the license became past due (0: it is not).
    case licensePut(LicenseSpec, at: UnixMillis, pastDueSince: UnixMillis)
    case tokenIssued(TokenRecord)
    /// Revocation of tokens resolved when the request was decided (by secret, id, license, org or subject, with the
    /// tokens derived from them).
    case tokensRevoked(tokenIDs: [String], reason: String, actor: String, at: UnixMillis)
    /// An explicit METER event; its idempotency key (if any) is recorded in the same record as the usage.
    case metered(UsageEntry, idempotencyKey: String)
    /// Usage consumed by allowed checks and settled reservations, batched between journal flushes.
    case consumed([UsageEntry])
    /// Snapshot only: restores what is not derivable from the other records (usage, credits, keys, events).
    case countersRestored(UsageBook)
    case orgPut(OrgSpec, at: UnixMillis)
    /// A new secret for a token: `newHash` replaces `previousHash`, which is accepted until `previousValidUntil`.
    case tokenRotated(tokenID: String, newHash: TokenHash, previousHash: TokenHash, previousValidUntil: UnixMillis, at: UnixMillis)
    /// The rotation overlap of a token ended early: its previous secret is refused from `at`.
    case rotationEnded(tokenID: String, at: UnixMillis)
    case creditsGranted(pool: PoolLevel, owner: String, amount: UInt64, reason: String, at: UnixMillis)
    /// Housekeeping at `at`: tokens expired or revoked before `at - tokenRetention` are forgotten, counters of
    /// ended periods, ledger hours older than `ledgerRetention` and idempotency keys older than `keyRetention` are
    /// dropped (a retention of 0 keeps everything of its kind). (`expiryWarning` is kept for the
    /// record: the `token_expiring` events the sweep found are journaled as `eventsRecorded`.)
    case swept(at: UnixMillis, tokenRetention: Int64, keyRetention: Int64, expiryWarning: Int64, ledgerRetention: Int64)
    /// Threshold events, numbered when they happened. They are facts of their own (not derived again from usage in
    /// replay), because batched usage reaches the journal in another order than it was counted live.
    case eventsRecorded([LicensingEvent])
    /// A license, plan or organisation deleted by an operator (LICENSE_DELETE, PLAN_DELETE, ORG_DELETE), with who
    /// asked: the actor and the caller's uid, as for revocations. Decided only when nothing used the object
    /// (`Validation.deletion`), so applying it leaves no license on a missing plan and no token on a missing license
    /// that was not already revoked or expired. A journal written before this type existed never holds it.
    case objectDeleted(PolicyObjectKind, id: String, actor: String, at: UnixMillis)
    /// A billing event (a Stripe webhook) applied: the license it put and, in the same record, the event's id (so a
    /// repeat is recognised, also after a restart) and its creation time (so an older event of the subscription is
    /// not applied after it). A journal written before this type existed never holds it.
    case billingApplied(BillingRecord)
    /// Snapshot only: the billing events seen within their retention and the last event applied per subscription.
    case billingRestored(seen: [BillingSeenEvent], subscriptions: [BillingSubscription])
    /// A subject deprovisioned (`active` false: its exchanges refused, and `tokenIDs`, every live token issued to it
    /// with those derived from them, revoked in the same record) or reactivated (`active` true, no token ids: it may
    /// exchange again; what was revoked stays revoked). Issue 17's SCIM endpoint and SUBJECT_STATUS write it; a
    /// snapshot writes one per deprovisioned subject. A journal written before this type existed never holds it.
    case subjectStatus(subject: String, active: Bool, tokenIDs: [String], actor: String, at: UnixMillis)
    /// An identity role put (ROLE_PUT, `tollgate apply`, or seeded from the configuration): it replaces the role of
    /// that name. A journal written before this type existed never holds it.
    case rolePut(IdentityRole, at: UnixMillis)
    /// An identity role deleted (ROLE_DELETE), with who asked. The name is remembered as deleted, so that the
    /// configuration does not seed it again (`LicensingState.deletedRoles`); a snapshot writes one per such name
    /// (actor empty, `at` 0). A journal written before this type existed never holds it.
    case roleDeleted(name: String, actor: String, at: UnixMillis)
    /// Fleet mode (`Protocol/FLEET.md` 5.2): the host has applied the fleet log up to `sequence` (its own records
    /// came back, or a snapshot records where it is). Never in the fleet log itself.
    case fleetPosition(sequence: UInt64)
    /// Fleet mode: another host's change, read from the fleet log at `sequence`, applied and journaled here. One
    /// record holds both, so a crash never keeps the change without the position or the position without it.
    indirect case fleetApplied(sequence: UInt64, StateChange)
    /// Fleet mode (`Protocol/FLEET.md` 10): a METER was handed to the fleet log, not counted here. Applying it changes
    /// nothing; its journal sequence is the METER's reference in the log (`origin_ref`), which must grow in the order
    /// records are queued. The METER itself is counted when read back from the log (type 21), on every host alike.
    case fleetUsageSent

    /// The record types the fleet log carries (`Protocol/FLEET.md` 3): every change a client asks for; not the
    /// host-local housekeeping (12, 13), the snapshot-only types (7, 16) nor the fleet's own (20, 21).
    public static let replicatedTypes: Set<UInt8> = [1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 14, 15, 17, 18, 19]

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
        case .orgPut: return 8
        case .tokenRotated: return 9
        case .rotationEnded: return 10
        case .creditsGranted: return 11
        case .swept: return 12
        case .eventsRecorded: return 13
        case .objectDeleted: return 14
        case .billingApplied: return 15
        case .billingRestored: return 16
        case .subjectStatus: return 17
        case .rolePut: return 18
        case .roleDeleted: return 19
        case .fleetPosition: return 20
        case .fleetApplied: return 21
        case .fleetUsageSent: return 22
        }
    }
}

/// Whose counter: a pool level and its owner (a token id, a license id, or an organisation).
public struct PoolKey: Hashable, Sendable {
    public var level: PoolLevel
    public var owner: String

    public init(_ level: PoolLevel, _ owner: String) {
        self.level = level
        self.owner = owner
    }
}

/// A calendar window: the outer key of the usage counters, so that a whole ended window is dropped at once.
public struct WindowKey: Hashable, Sendable {
    public var period: Period
    public var start: UnixMillis
    public init(_ period: Period, _ start: UnixMillis) {
        self.period = period
        self.start = start
    }
}

/// Usage of a meter by a pool in one calendar period.
public struct CounterKey: Hashable, Sendable {
    public var pool: PoolKey
    public var meter: String
    public var period: Period
    public var start: UnixMillis

    public init(pool: PoolKey, meter: String, period: Period, start: UnixMillis) {
        self.pool = pool
        self.meter = meter
        self.period = period
        self.start = start
    }
}

/// A rolling-window counter of a pool and meter.
public struct RollingKey: Hashable, Sendable {
    public var pool: PoolKey
    public var meter: String
    public var seconds: UInt32

    public init(pool: PoolKey, meter: String, seconds: UInt32) {
        self.pool = pool
        self.meter = meter
        self.seconds = seconds
    }
}

/// Usage of a rolling window, in 60 slices: a slice leaves the window as a whole.
public struct RollingCounter: Hashable, Sendable {
    public static let slices = 60
    /// Absolute slice numbers (time / slice length) and what each holds; 0…60 entries, oldest first.
    public var slices: [(index: Int64, value: UInt64)] = []

    public init() {}

    static func sliceMillis(_ seconds: UInt32) -> Int64 { max(1, Int64(seconds) * 1000 / Int64(slices)) }

    /// Usage in the window that ends at `now`.
    public func sum(seconds: UInt32, at now: UnixMillis) -> UInt64 {
        let current = UTCCalendar.floorDiv(now, Self.sliceMillis(seconds))
        var total: UInt64 = 0
        for slice in slices where slice.index > current - Int64(Self.slices) && slice.index <= current { total.saturatingAdd(slice.value) }
        return total
    }

    mutating func add(_ quantity: UInt64, seconds: UInt32, at time: UnixMillis) {
        let index = UTCCalendar.floorDiv(time, Self.sliceMillis(seconds))
        if let i = slices.firstIndex(where: { $0.index == index }) {
            slices[i].value.saturatingAdd(quantity)
        } else {
            slices.append((index, quantity))
            slices.sort { $0.index < $1.index }
        }
        let newest = slices.last!.index
        slices.removeAll { $0.index <= newest - Int64(Self.slices) }
    }

    public static func == (l: RollingCounter, r: RollingCounter) -> Bool {
        l.slices.elementsEqual(r.slices) { $0.index == $1.index && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for slice in slices {
            hasher.combine(slice.index)
            hasher.combine(slice.value)
        }
    }
}

/// One row of the usage ledger: a token's usage of a meter in one UTC hour. The license is part of the key so
/// that rows outlive the token (billing needs them after the sweep forgets it).
public struct LedgerKey: Hashable, Sendable {
    public var licenseID: String
    public var tokenID: String
    public var meter: String
    public var hourStart: UnixMillis

    public init(licenseID: String, tokenID: String, meter: String, hourStart: UnixMillis) {
        self.licenseID = licenseID
        self.tokenID = tokenID
        self.meter = meter
        self.hourStart = hourStart
    }
}

public struct LedgerValue: Hashable, Sendable {
    public var quantity: UInt64
    public var overage: UInt64

    public init(quantity: UInt64 = 0, overage: UInt64 = 0) {
        self.quantity = quantity
        self.overage = overage
    }
}

/// Prepaid credits of a pool: granted in total, and spent in total (the balance is the difference).
public struct PrepaidCredits: Hashable, Sendable {
    public var granted: UInt64 = 0
    public var spent: UInt64 = 0
    public init(granted: UInt64 = 0, spent: UInt64 = 0) {
        self.granted = granted
        self.spent = spent
    }
    public var balance: UInt64 { granted > spent ? granted - spent : 0 }
}

/// A secret replaced by a rotation.
public struct RetiredSecret: Hashable, Sendable {
    public var tokenID: String
    /// Accepted before this time, refused as revoked from it.
    public var validUntil: UnixMillis
    public init(tokenID: String, validUntil: UnixMillis) {
        self.tokenID = tokenID
        self.validUntil = validUntil
    }
}

/// Included credits spent by a pool in one period.
public struct IncludedCreditsKey: Hashable, Sendable {
    public var pool: PoolKey
    public var start: UnixMillis
    public init(pool: PoolKey, start: UnixMillis) {
        self.pool = pool
        self.start = start
    }
}

/// Everything `apply` built from usage, grants, rotations and events: the part of the state that is not plans,
/// organisations, licenses or tokens. A snapshot stores it whole (`countersRestored`).
public struct UsageBook: Sendable, Hashable {
    /// Counters by window, then by pool, meter and window.
    public var counters: [WindowKey: [CounterKey: UInt64]]
    public var rolling: [RollingKey: RollingCounter]
    /// Ledger rows by hour, then by license, token and meter.
    public var ledger: [UnixMillis: [LedgerKey: LedgerValue]]
    public var prepaid: [PoolKey: PrepaidCredits]
    public var includedSpent: [IncludedCreditsKey: UInt64]
    public var idempotencyKeys: [String: UnixMillis]
    /// Secrets replaced by a rotation: still accepted until their end, then answered as revoked.
    public var retiredSecrets: [TokenHash: RetiredSecret]
    public var events: [LicensingEvent]
    public var nextEventSequence: UInt64

    public init(
        counters: [WindowKey: [CounterKey: UInt64]] = [:], rolling: [RollingKey: RollingCounter] = [:], ledger: [UnixMillis: [LedgerKey: LedgerValue]] = [:],
        prepaid: [PoolKey: PrepaidCredits] = [:], includedSpent: [IncludedCreditsKey: UInt64] = [:], idempotencyKeys: [String: UnixMillis] = [:],
        retiredSecrets: [TokenHash: RetiredSecret] = [:], events: [LicensingEvent] = [], nextEventSequence: UInt64 = 1
    ) {
        self.counters = counters
        self.rolling = rolling
        self.ledger = ledger
        self.prepaid = prepaid
        self.includedSpent = includedSpent
        self.idempotencyKeys = idempotencyKeys
        self.retiredSecrets = retiredSecrets
        self.events = events
        self.nextEventSequence = nextEventSequence
    }
}

extension UsageBook {
    public func counter(_ key: CounterKey) -> UInt64 {
        counters[WindowKey(key.period, key.start)]?[key] ?? 0
    }

    mutating func add(_ quantity: UInt64, to key: CounterKey) {
        counters[WindowKey(key.period, key.start), default: [:]][key, default: 0].saturatingAdd(quantity)
    }

    /// Every counter, flattened (snapshots, tests).
    public var allCounters: [CounterKey: UInt64] {
        counters.values.reduce(into: [:]) { all, bucket in all.merge(bucket) { a, _ in a } }
    }

    /// Every ledger row, flattened (snapshots, tests).
    public var allLedgerRows: [LedgerKey: LedgerValue] {
        ledger.values.reduce(into: [:]) { all, bucket in all.merge(bucket) { a, _ in a } }
    }
}

/// One applied billing event as journaled (record type 15).
public struct BillingRecord: Sendable, Hashable {
    public var eventID: String
    public var subscription: String
    /// The event's creation time at the billing system.
    public var eventCreated: UnixMillis
    /// Event ids recorded longer than this before `at` are forgotten when this record is applied (milliseconds;
    /// 0: kept until the next snapshot's retention). Recorded, so replay forgets exactly what the live state did.
    public var retention: Int64
    public var license: LicenseSpec
    public var pastDueSince: UnixMillis
    public var at: UnixMillis

    public init(eventID: String, subscription: String, eventCreated: UnixMillis, retention: Int64, license: LicenseSpec, pastDueSince: UnixMillis, at: UnixMillis) {
        self.eventID = eventID
        self.subscription = subscription
        self.eventCreated = eventCreated
        self.retention = retention
        self.license = license
        self.pastDueSince = pastDueSince
        self.at = at
    }
}

/// A billing event id and when it was applied.
public struct BillingSeenEvent: Sendable, Hashable {
    public var eventID: String
    public var at: UnixMillis
    public init(eventID: String, at: UnixMillis) {
        self.eventID = eventID
        self.at = at
    }
}

/// A subscription of the billing system: its license and the creation time of the last event applied to it.
public struct BillingSubscription: Sendable, Hashable {
    public var subscription: String
    public var licenseID: String
    public var lastEventCreated: UnixMillis
    public init(subscription: String, licenseID: String, lastEventCreated: UnixMillis) {
        self.subscription = subscription
        self.licenseID = licenseID
        self.lastEventCreated = lastEventCreated
    }
}
