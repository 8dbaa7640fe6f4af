import CSHA256
import DequeModule
import HeapModule
import TollgateModel

/// The whole licensing state of one Tollgate: plans, organisations, licenses, tokens, usage. A plain value with no
/// I/O and no clock: time comes in as arguments, randomness as an argument, and every durable change goes through
/// `apply(_:)`, the same function that replays the journal.
///
/// Two parts are not journaled, by design: rate limiter state (after a restart every pool starts with a full
/// burst) and leases and reservations (a restart closes every connection, which releases its leases; an unsettled
/// reservation is released, as if it had expired).
public struct LicensingState: Sendable {
    public internal(set) var plans: [String: Plan] = [:]
    public internal(set) var orgs: [String: OrgRecord] = [:]
    public internal(set) var licenses: [String: LicenseRecord] = [:]
    /// Tokens by the hash of their secret (the check path's only lookup), by id, and by license in issue order.
    public internal(set) var tokens = TokenStore()
    /// Parent token id → the ids of tokens derived from it.
    public internal(set) var children: [String: [String]] = [:]
    /// Usage counters, the ledger, credits, idempotency keys, rotation overlaps and events.
    public internal(set) var book = UsageBook()
    /// Billing events seen and the subscriptions they concern (`applyBilling`).
    public internal(set) var billing = BillingBook()
    /// Subjects deprovisioned at their identity provider (SCIM), and since when: their exchanges are refused until
    /// they are reactivated (`StateChange.subjectStatus`).
    public internal(set) var deprovisioned: [String: UnixMillis] = [:]
    /// Identity roles by name (`StateChange.rolePut`): what EXCHANGE verifies against. The configuration's roles
    /// only seed names this state has never held (`deletedRoles`); see `LicensingState+Roles`.
    public internal(set) var roles: [String: IdentityRole] = [:]
    /// Role names deleted through ROLE_DELETE and not put since: the configuration does not seed them again.
    public internal(set) var deletedRoles: Set<String> = []
    /// Fleet mode: the fleet log's sequence up to which this state has every record (`Protocol/FLEET.md` 5.2);
    /// 0 on a single host.
    public internal(set) var fleetPosition: UInt64 = 0

    // Not journaled.
    var rateLimiters: [PoolKey: RateLimiterState] = [:]
    /// Fleet mode (`Protocol/FLEET.md` 9): the live hosts this host shares every rate rule with, as its heartbeat last
    /// read them; 1 on a single host. Not journaled: it is the fleet's present, read again at every heartbeat.
    public var rateShare: UInt32 = 1
    var limits = LiveLimits()
    /// Events recorded live and not yet handed out for journaling (`takeUnjournaledEvents`).
    var unjournaledEvents: [LicensingEvent] = []
    /// When each secret was last presented (see `UseObservations`).
    let observations = UseObservations()

    // Indexes for the sweep, derived by `apply` (so rebuilt by replay), so that it never scans every token or key.
    /// Tokens with an expiry whose warning is still to come, by expiry.
    var expiryWatch = Heap<Deadline>()
    /// Tokens that have stopped (or will stop) working, by when: forgotten after the retention.
    var stopped = Heap<Deadline>()
    /// Idempotency keys in the order they were recorded.
    var keyOrder = Deque<(at: UnixMillis, key: String)>()
    /// The calendar counters some plan's quota reads: one bit per (pool level, period), derived from the plans by
    /// `apply(.planPut)` (so rebuilt by replay). `recordUsage` counts only these, not every level × period.
    var countedWindows = CountedWindows()
    /// The distinct scope lists of the tokens, so that tokens with the same scopes share one array (memory per
    /// token). Never shrinks, so it is bounded: past `maxSharedScopeLists` distinct lists, new ones are not shared.
    var scopeSets = Set<[String]>()
    static let maxSharedScopeLists = 4096

    /// A time and where the token it concerns is stored (16 bytes, not a copy of the id: a million tokens have one
    /// each). A token forgotten by the sweep leaves its deadlines behind and its place may hold another token later:
    /// whoever takes a deadline checks the token found there against it, so a stale one changes nothing. Places
    /// differ between a replayed state and one loaded from a snapshot, so whatever is done for several deadlines
    /// in an order that shows (events) is ordered by token id.
    struct Deadline: Comparable, Sendable {
        var at: UnixMillis
        var token: TokenStore.Handle
        static func < (l: Deadline, r: Deadline) -> Bool { (l.at, l.token) < (r.at, r.token) }
    }

    /// At most this many events are kept (the oldest are dropped).
    public static let maxEvents = 10_000

    public init() {}

    /// GCRA state of one pool, with the policy it was computed under.
    struct RateLimiterState: Sendable, Hashable {
        var tat: Int64
        var interval: Int64
        var tolerance: Int64
    }

    /// A license as stored: an immutable box, so that the license table's slots are 8 bytes instead of the 136 of
    /// the record (the table keeps up to 2.6 slots per license; 100 000 licenses took 40 MB inline, 22 MB boxed).
    /// Licenses change only by being replaced whole (`apply(.licensePut)`), so sharing the box between copies of
    /// the state is safe.
    public struct LicenseRecord: Sendable, Hashable {
        private final class Box: Sendable {
            let spec: LicenseSpec
            let updatedAt: UnixMillis
            let pastDueSince: UnixMillis

            init(spec: LicenseSpec, updatedAt: UnixMillis, pastDueSince: UnixMillis) {
                self.spec = spec
                self.updatedAt = updatedAt
                self.pastDueSince = pastDueSince
            }
        }

        private let box: Box
        public var spec: LicenseSpec { box.spec }
        public var updatedAt: UnixMillis { box.updatedAt }
        public var pastDueSince: UnixMillis { box.pastDueSince }

        init(spec: LicenseSpec, updatedAt: UnixMillis, pastDueSince: UnixMillis) {
            box = Box(spec: spec, updatedAt: updatedAt, pastDueSince: pastDueSince)
        }

        public static func == (l: LicenseRecord, r: LicenseRecord) -> Bool {
            l.box === r.box || (l.spec, l.updatedAt, l.pastDueSince) == (r.spec, r.updatedAt, r.pastDueSince)
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(spec)
            hasher.combine(updatedAt)
            hasher.combine(pastDueSince)
        }
    }

    public struct OrgRecord: Sendable, Hashable {
        public var spec: OrgSpec
        public var updatedAt: UnixMillis
    }

    // MARK: - The one mutation entry point

    /// Applies one journaled change. Must be deterministic: replaying the same changes in the same order gives
    /// the same state. Changes were validated when they were decided, so applying never fails; facts that no
    /// longer match (a revoked token that is gone) are skipped.
    public mutating func apply(_ change: StateChange) {
        switch change {
        case .planPut(let plan, _):
            plans[plan.id] = plan
            countedWindows = CountedWindows(plans: plans.values)
        case .orgPut(let spec, let at):
            orgs[spec.id] = OrgRecord(spec: spec, updatedAt: at)
        case .licensePut(let spec, let at, let pastDueSince):
            licenses[spec.id] = LicenseRecord(spec: spec, updatedAt: at, pastDueSince: pastDueSince)
        case .tokenIssued(var record):
            // Tokens of a license mostly carry the same scopes: one shared array each, not one per token.
            if !record.info.scopes.isEmpty, scopeSets.count < Self.maxSharedScopeLists || scopeSets.contains(record.info.scopes) {
                record.info.scopes = scopeSets.insert(record.info.scopes).memberAfterInsert
            }
            let (handle, isNew) = tokens.insert(record)
            if isNew, !record.info.parentID.isEmpty {
                children[record.info.parentID, default: []].append(record.info.id)
            }
            if record.info.expiresAt != 0 { expiryWatch.insert(Deadline(at: record.info.expiresAt, token: handle)) }
            if record.info.revokedAt != 0 { stopped.insert(Deadline(at: record.info.revokedAt, token: handle)) }
        case .tokensRevoked(let ids, let reason, let actor, let at):
            for id in ids where tokens.revokedAt(id: id) == 0 {
                let handle = tokens.update(id: id) { record in
                    record.info.revokedAt = at
                    record.info.revokeReason = reason
                    record.info.revokedBy = actor
                }
                stopped.insert(Deadline(at: at, token: handle!))
            }
        case .tokenRotated(let id, let newHash, let previousHash, let previousValidUntil, let at):
            guard tokens.hash(id: id) == previousHash,
                let handle = tokens.update(id: id, { record in
                    record.hash = newHash
                    record.info.rotatedAt = at
                    record.info.previousSecretValidUntil = previousValidUntil
                })
            else { return }
            observations.previous[id] = observations.takeCurrentSecretUse(handle)
            book.retiredSecrets[previousHash] = RetiredSecret(tokenID: id, validUntil: previousValidUntil)
        case .rotationEnded(let id, let at):
            guard tokens.update(id: id, { $0.info.previousSecretValidUntil = min($0.info.previousSecretValidUntil, at) }) != nil else { return }
            for (secret, retired) in book.retiredSecrets where retired.tokenID == id && retired.validUntil > at {
                book.retiredSecrets[secret]!.validUntil = at
            }
        case .metered(let entry, let key):
            recordUsage(entry)
            remember(idempotencyKey: key, at: entry.at)
        case .consumed(let entries):
            for entry in entries { recordUsage(entry) }
        case .creditsGranted(let pool, let owner, let amount, _, _):
            book.prepaid[PoolKey(pool, owner), default: PrepaidCredits()].granted.saturatingAdd(amount)
        case .countersRestored(let restored):
            book = restored
            keyOrder = Deque(book.idempotencyKeys.map { (at: $0.value, key: $0.key) }.sorted { ($0.at, $0.key) < ($1.at, $1.key) })
        case .swept(let at, let tokenRetention, let keyRetention, let expiryWarning, let ledgerRetention):
            sweep(at: at, tokenRetention: tokenRetention, keyRetention: keyRetention, expiryWarning: expiryWarning, ledgerRetention: ledgerRetention)
        case .eventsRecorded(let events):
            for event in events where !book.events.contains(where: { $0.sequence == event.sequence }) {
                let index = book.events.firstIndex { $0.sequence > event.sequence } ?? book.events.endIndex
                book.events.insert(event, at: index)
                book.nextEventSequence = max(book.nextEventSequence, event.sequence + 1)
            }
            if book.events.count > Self.maxEvents { book.events.removeFirst(book.events.count - Self.maxEvents) }
        case .objectDeleted(let kind, let id, _, _):
            switch kind {
            case .license: licenses[id] = nil
            case .plan:
                plans[id] = nil
                countedWindows = CountedWindows(plans: plans.values)
            case .org: orgs[id] = nil
            }
        case .billingApplied(let record):
            licenses[record.license.id] = LicenseRecord(spec: record.license, updatedAt: record.at, pastDueSince: record.pastDueSince)
            billing.record(record)
        case .billingRestored(let seen, let subscriptions):
            billing = BillingBook(seen: seen, subscriptions: subscriptions)
        case .subjectStatus(let subject, let active, let ids, let actor, let at):
            if active {
                deprovisioned[subject] = nil
            } else {
                deprovisioned[subject] = at
                if !ids.isEmpty { apply(.tokensRevoked(tokenIDs: ids, reason: "deprovisioned", actor: actor, at: at)) }
            }
        case .rolePut(let role, _):
            roles[role.name] = role
            deletedRoles.remove(role.name)
        case .roleDeleted(let name, _, _):
            roles[name] = nil
            deletedRoles.insert(name)
        case .fleetPosition(let sequence):
            fleetPosition = max(fleetPosition, sequence)
        case .fleetApplied(let sequence, let inner):
            apply(inner)
            fleetPosition = max(fleetPosition, sequence)
        case .fleetUsageSent:
            break
        }
    }

    // MARK: - Pools

    /// The owner of `level`'s pool for a token of `license`.
    static func poolKey(_ level: PoolLevel, tokenID: String, license: LicenseSpec) -> PoolKey {
        switch level {
        case .token: return PoolKey(.token, tokenID)
        case .license: return PoolKey(.license, license.id)
        case .org: return PoolKey(.org, license.orgPoolOwner)
        }
    }

    /// The start of the calendar period containing `time` for counters of `level` (monthly counters of tokens and
    /// licenses start on the license's billing anchor day; an organisation's on the 1st).
    static func periodBounds(_ period: Period, level: PoolLevel, license: LicenseSpec, at time: UnixMillis) -> (start: UnixMillis, end: UnixMillis) {
        UTCCalendar.bounds(of: period, containing: time, anchorDay: level == .org ? 1 : license.billingAnchorDay)
    }

    // MARK: - Usage

    /// Usage counted live (by a check, a settlement or a meter event): counts it, and records the threshold events
    /// it crossed, to be journaled with the next batch.
    /// - Parameter idempotencyKey: a METER's key (nil: a check's or a settlement's usage, journaled later in a
    ///   batch). With it, this does what applying the METER's change (`.metered(entry, key)`) does.
    /// - Parameter context: the token's license and plan when the caller has them already (the check and meter
    ///   paths), so that they are not looked up again; they must be what `recordUsage` would look up.
    /// - Parameter crossable: the threshold readings before the usage, as the caller read them deciding it, and
    ///   only those this entry can take across a threshold (`mayCross`): the others cannot record an event, so they
    ///   are neither read again nor built (nil: read here). On the check path this spares the counter lookups a
    ///   second time: −2.0 k instructions per CHECK with a cost (callgrind, Benchmarks/SCALE.md, issue 19).
    mutating func recordUsageLive(
        _ entry: UsageEntry, idempotencyKey: String? = nil, context: (license: LicenseSpec, plan: Plan)? = nil, crossable: [ThresholdReading]? = nil
    ) {
        let license: LicenseSpec
        let plan: Plan
        if let context {
            (license, plan) = context
        } else {
            guard let licenseID = tokens.licenseID(id: entry.tokenID), let found = licenses[licenseID]?.spec,
                let foundPlan = plans[found.plan]
            else {
                recordUsage(entry)
                if let idempotencyKey { remember(idempotencyKey: idempotencyKey, at: entry.at) }
                return
            }
            (license, plan) = (found, foundPlan)
        }
        func record() {
            recordUsage(entry, license: license, plan: plan)
            if let idempotencyKey { remember(idempotencyKey: idempotencyKey, at: entry.at) }
        }
        guard plan.credits != nil || plan.quotas.contains(where: { $0.meter == entry.meter }) else { return record() }
        let before: [ThresholdReading]
        // Debug builds (the tests) read every counter before and after, check that a caller kept exactly the
        // crossable readings, and that the readings derived after are the counters' (only in `assert`s: release
        // builds read nothing more).
        var kept: [Bool] = []
        if let crossable {
            assert({
                let all = thresholdReadings(plan: plan, tokenID: entry.tokenID, license: license, meter: entry.meter, at: entry.at)
                kept = all.map { Self.mayCross($0.used, adding: $0.credits ? entry.includedCredits : entry.quantity, limit: $0.limit, credits: $0.credits) }
                return crossable.map(\.comparable) == zip(all, kept).filter(\.1).map(\.0.comparable)
            }(), "the threshold readings a caller passed differ from the counters")
            before = crossable
        } else {
            before = thresholdReadings(plan: plan, tokenID: entry.tokenID, license: license, meter: entry.meter, at: entry.at)
        }
        guard !before.isEmpty else { return record() }
        record()
        // Every counter read is one `recordUsage` just added to (a quota's counter: the quantity; the included
        // credits: what was paid from them), so the readings after are derived instead of read again.
        var after = before
        for i in after.indices {
            after[i].used.saturatingAdd(after[i].credits ? entry.includedCredits : entry.quantity)
        }
        assert({
            let all = thresholdReadings(plan: plan, tokenID: entry.tokenID, license: license, meter: entry.meter, at: entry.at)
            return after.map(\.used) == (crossable == nil ? all : zip(all, kept).filter(\.1).map(\.0)).map(\.used)
        }(), "threshold readings after recording usage differ from the derived ones")
        recordCrossings(before: before, after: after, at: entry.at)
    }

    /// Remembers a METER's idempotency key (none when empty), so that a repeat is answered as a duplicate.
    mutating func remember(idempotencyKey key: String, at time: UnixMillis) {
        guard !key.isEmpty else { return }
        book.idempotencyKeys[key] = time
        keyOrder.append((time, key))
    }

    /// Events recorded live since the last call, as the change that journals them (nil: none).
    public mutating func takeUnjournaledEvents() -> StateChange? {
        guard !unjournaledEvents.isEmpty else { return nil }
        defer { unjournaledEvents.removeAll() }
        return .eventsRecorded(unjournaledEvents)
    }

    /// Counts usage in the calendar counters some plan reads (`countedWindows`), in the rolling windows of the
    /// plan's rules, in the ledger, and in credits.
    ///
    /// Only the (pool level, period) pairs that a quota of some plan uses are counted, not all nine: a pair no plan
    /// uses is not counted, and starts counting when a plan first uses it (from that change on; it does not see
    /// earlier usage); a pair no plan uses any more stops counting (its counters stay until the sweep drops them).
    /// Replay is exact all the same: the set is derived from the plans by `apply`, in journal order. The ledger,
    /// which billing and the usage export read, records every entry.
    mutating func recordUsage(_ entry: UsageEntry) {
        guard let licenseID = tokens.licenseID(id: entry.tokenID),
            let license = licenses[licenseID]?.spec
        else { return }
        recordUsage(entry, license: license, plan: plans[license.plan])
    }

    /// `recordUsage(_:)` with the token's license and plan already looked up.
    mutating func recordUsage(_ entry: UsageEntry, license: LicenseSpec, plan: Plan?) {
        let licenseID = license.id
        if !countedWindows.isEmpty {
            for level in PoolLevel.allCases where countedWindows.counts(level) {
                let pool = Self.poolKey(level, tokenID: entry.tokenID, license: license)
                for period in Period.allCases where countedWindows.counts(level, period) {
                    let start = Self.periodBounds(period, level: level, license: license, at: entry.at).start
                    book.add(entry.quantity, to: CounterKey(pool: pool, meter: entry.meter, period: period, start: start))
                }
            }
        }
        if let plan {
            for rule in plan.quotas where rule.meter == entry.meter {
                guard case .rolling(let seconds) = rule.window else { continue }
                let pool = Self.poolKey(rule.pool, tokenID: entry.tokenID, license: license)
                book.rolling[RollingKey(pool: pool, meter: entry.meter, seconds: seconds), default: RollingCounter()].add(entry.quantity, seconds: seconds, at: entry.at)
            }
        }
        let hour = UTCCalendar.bounds(of: .hour, containing: entry.at).start
        let ledgerKey = LedgerKey(licenseID: licenseID, tokenID: entry.tokenID, meter: entry.meter, hourStart: hour)
        book.ledger[hour, default: [:]][ledgerKey, default: LedgerValue()].quantity.saturatingAdd(entry.quantity)
        if entry.overage > 0 { book.ledger[hour]![ledgerKey]!.overage.saturatingAdd(entry.overage) }

        let creditPool = Self.poolKey(entry.creditPool, tokenID: entry.tokenID, license: license)
        if entry.includedCredits > 0, let credits = plan?.credits {
            let start = Self.periodBounds(credits.period, level: entry.creditPool, license: license, at: entry.at).start
            book.includedSpent[IncludedCreditsKey(pool: creditPool, start: start), default: 0].saturatingAdd(entry.includedCredits)
        }
        if entry.prepaidCredits > 0 { book.prepaid[creditPool, default: PrepaidCredits()].spent.saturatingAdd(entry.prepaidCredits) }
    }

    /// A counter a threshold is defined on (a quota on the meter, or the credits), with the window it counts in.
    struct ThresholdReading {
        var owner: String
        /// The quota (nil: the credits, of `creditsPool`) and the start of its window (nil: a rolling window). The
        /// event's detail is formatted from them only when a threshold is crossed.
        var quota: QuotaRule?
        var creditsPool: PoolLevel = .license
        var windowStart: UnixMillis?
        var used: UInt64
        var limit: UInt64
        var credits: Bool { quota == nil }
        /// What two readings of the same counter agree on (debug checks).
        var comparable: [String] { [owner, detail, "\(used)", "\(limit)"] }

        /// `RULE@WINDOW`: the rule's name and the start of its window (`rolling` for rolling windows);
        /// `credits:LEVEL@START` for credits.
        var detail: String {
            let window = windowStart.map { "\($0)" } ?? "rolling"
            return quota.map { "\($0.name)@\(window)" } ?? "credits:\(creditsPool.name)@\(window)"
        }
    }

    func thresholdReadings(plan: Plan, tokenID: String, license: LicenseSpec, meter: String, at time: UnixMillis) -> [ThresholdReading] {
        var readings: [ThresholdReading] = []
        for rule in plan.quotas where rule.meter == meter && rule.limit > 0 {
            let pool = Self.poolKey(rule.pool, tokenID: tokenID, license: license)
            let (used, windowStart, _) = quotaUsage(rule, pool: pool, license: license, at: time)
            readings.append(ThresholdReading(owner: pool.owner, quota: rule, windowStart: windowStart, used: used, limit: rule.limit))
        }
        if let credits = plan.credits, credits.included > 0 {
            let pool = Self.poolKey(credits.pool, tokenID: tokenID, license: license)
            let start = Self.periodBounds(credits.period, level: credits.pool, license: license, at: time).start
            let spent = book.includedSpent[IncludedCreditsKey(pool: pool, start: start)] ?? 0
            readings.append(ThresholdReading(owner: pool.owner, quota: nil, creditsPool: credits.pool, windowStart: start, used: spent, limit: credits.included))
        }
        return readings
    }

    /// Records each threshold crossed between two readings, once per counter and window: 80 % and 100 % of a
    /// quota; 90 % of the period's included credits spent (credits low).
    mutating func recordCrossings(before: [ThresholdReading], after: [ThresholdReading], at time: UnixMillis) {
        for (old, new) in zip(before, after) {
            func crossed(_ percent: UInt64) -> Bool {
                !Self.reaches(old.used, percent, of: new.limit) && Self.reaches(new.used, percent, of: new.limit)
            }
            if new.credits {
                if crossed(90) { recordEvent(.creditsLow, owner: new.owner, detail: new.detail, at: time) }
            } else {
                if crossed(80) { recordEvent(.quota80, owner: new.owner, detail: new.detail, at: time) }
                if crossed(100) { recordEvent(.quota100, owner: new.owner, detail: new.detail, at: time) }
            }
        }
    }

    /// Whether adding `amount` to a counter at `used` can take it across one of its thresholds (a quota's 80 % or
    /// 100 %, the included credits' 90 %): only then is its reading needed. A limit of 0 has none to cross.
    @inline(__always)
    static func mayCross(_ used: UInt64, adding amount: UInt64, limit: UInt64, credits: Bool) -> Bool {
        guard limit > 0, amount > 0 else { return false }
        var after = used
        after.saturatingAdd(amount)
        func crosses(_ percent: UInt64) -> Bool { !reaches(used, percent, of: limit) && reaches(after, percent, of: limit) }
        return credits ? crosses(90) : crosses(80) || crosses(100)
    }

    /// Whether `used` is at least `percent` % of `limit`, exactly: `used × 100 ≥ percent × limit`. A threshold
    /// rounded down fired early (a quota of 3 reported 80 % at 2 used, 67 %); the 128-bit products neither round
    /// nor overflow for any `UInt64` limit, and cost two multiplications and no division on the usage path.
    @inline(__always)
    static func reaches(_ used: UInt64, _ percent: UInt64, of limit: UInt64) -> Bool {
        let lhs = used.multipliedFullWidth(by: 100)
        let rhs = limit.multipliedFullWidth(by: percent)
        return lhs.high != rhs.high ? lhs.high > rhs.high : lhs.low >= rhs.low
    }

    /// Records an event (live) unless the same one (kind, owner, detail) is already recorded.
    mutating func recordEvent(_ kind: LicensingEvent.Kind, owner: String, detail: String, at time: UnixMillis) {
        guard !book.events.contains(where: { $0.kind == kind && $0.owner == owner && $0.detail == detail }) else { return }
        let event = LicensingEvent(sequence: book.nextEventSequence, at: time, kind: kind, owner: owner, detail: detail)
        apply(.eventsRecorded([event]))
        unjournaledEvents.append(event)
    }

    /// Usage counted by `rule` for `pool` in the window containing `time`, the window's start (nil: a rolling
    /// window), and when the window ends (for a rolling window: when one slice leaves it). The calendar period is
    /// computed once for both (~350 instructions each time under callgrind, for a month).
    func quotaUsage(_ rule: QuotaRule, pool: PoolKey, license: LicenseSpec, at time: UnixMillis) -> (used: UInt64, windowStart: UnixMillis?, resetAt: UnixMillis) {
        switch rule.window {
        case .calendar(let period):
            let (start, end) = Self.periodBounds(period, level: rule.pool, license: license, at: time)
            return (book.counter(CounterKey(pool: pool, meter: rule.meter, period: period, start: start)), start, end)
        case .rolling(let seconds):
            let slice = RollingCounter.sliceMillis(seconds)
            let used = book.rolling[RollingKey(pool: pool, meter: rule.meter, seconds: seconds)]?.sum(seconds: seconds, at: time) ?? 0
            return (used, nil, (UTCCalendar.floorDiv(time, slice) + 1) * slice)
        }
    }

    // MARK: - Housekeeping

    /// Records (live) a `token_expiring` event for each token that expires within `expiryWarning` of `now` and
    /// has not been warned about (from the expiry index: only the tokens concerned are visited). They move on to
    /// the stopped index, as the sweep that follows would move them.
    mutating func recordExpiryWarnings(at now: UnixMillis, expiryWarning: Int64) {
        guard expiryWarning > 0 else { return }
        var due: [Deadline] = []
        while let next = expiryWatch.min, next.at <= now + expiryWarning {
            due.append(next)
            stopped.insert(expiryWatch.removeMin())
        }
        var expiring: [(at: UnixMillis, id: String)] = []
        for deadline in due where deadline.at > now {
            guard let info = tokens.record(deadline.token)?.info, info.revokedAt == 0, info.expiresAt == deadline.at else { continue }
            expiring.append((deadline.at, info.id))
        }
        // Events are numbered in the order they are recorded: by time, then id, whatever the tokens' places.
        for (at, id) in expiring.sorted(by: { ($0.at, $0.id) < ($1.at, $1.id) }) {
            recordEvent(.tokenExpiring, owner: id, detail: "expires_at@\(at)", at: now)
        }
    }

    /// The journaled part of the sweep. Everything it visits comes from an index ordered by time, so its cost is
    /// proportional to what it removes, not to the size of the state.
    mutating func sweep(at now: UnixMillis, tokenRetention: Int64, keyRetention: Int64, expiryWarning: Int64, ledgerRetention: Int64) {
        // Tokens past their warning horizon move to the stopped index, at their expiry.
        while let next = expiryWatch.min, next.at <= now + max(expiryWarning, 0) {
            stopped.insert(expiryWatch.removeMin())
        }
        // Tokens stopped for longer than the retention are forgotten (afterwards they are unknown).
        if tokenRetention > 0 {
            let cutoff = now - tokenRetention
            var rotated = Set<String>()
            var gone: [(handle: TokenStore.Handle, info: TokenInfo)] = []
            var goneIDs = Set<String>()
            while let next = stopped.min, next.at < cutoff {
                _ = stopped.removeMin()
                guard let info = tokens.record(next.token)?.info, !goneIDs.contains(info.id) else { continue }
                let stoppedAt: UnixMillis = [info.revokedAt, info.expiresAt].filter { $0 != 0 }.min() ?? Int64.max
                guard stoppedAt < cutoff else { continue }
                gone.append((next.token, info))
                goneIDs.insert(info.id)
                if info.rotatedAt != 0 { rotated.insert(info.id) }
            }
            forget(gone)
            // Secrets retired by rotations of forgotten tokens, in one pass however many were forgotten.
            if !rotated.isEmpty { book.retiredSecrets = book.retiredSecrets.filter { !rotated.contains($0.value.tokenID) } }
        }
        // Counters of windows that ended more than one window ago (a month counts as 62 days).
        book.counters = book.counters.filter { window, _ in
            let length: Int64 = window.period == .hour ? UTCCalendar.millisPerHour : window.period == .day ? UTCCalendar.millisPerDay : 62 * UTCCalendar.millisPerDay
            return window.start + 2 * length > now
        }
        book.includedSpent = book.includedSpent.filter { $0.key.start + 62 * UTCCalendar.millisPerDay > now }
        book.rolling = book.rolling.filter { $0.value.sum(seconds: $0.key.seconds, at: now) > 0 }
        if ledgerRetention > 0 { book.ledger = book.ledger.filter { $0.key >= now - ledgerRetention } }
        if keyRetention > 0 {
            while let first = keyOrder.first, first.at < now - keyRetention {
                keyOrder.removeFirst()
                if book.idempotencyKeys[first.key] == first.at { book.idempotencyKeys[first.key] = nil }
            }
        }
    }

    /// Removes tokens and their index entries, all at once, so that a license losing many tokens has its list
    /// filtered once (the caller drops the secrets their rotations retired).
    mutating func forget(_ gone: [(handle: TokenStore.Handle, info: TokenInfo)]) {
        for (handle, info) in gone {
            _ = observations.takeCurrentSecretUse(handle)
            observations.previous[info.id] = nil
            if !info.parentID.isEmpty {
                children[info.parentID]?.removeAll { $0 == info.id }
                if children[info.parentID]?.isEmpty == true { children[info.parentID] = nil }
            }
            children[info.id] = nil
        }
        tokens.remove(ids: gone.map(\.info.id))
    }

    // MARK: - Reads

    public static func hash(of token: String) -> TokenHash {
        var token = token
        return token.withUTF8 { hash(utf8: $0) }
    }

    /// SHA-256 of the bytes, through `tollgate_sha256` (one call into BoringSSL, no digest objects: −1.1 k
    /// instructions per hash against swift-crypto's `SHA256.hash(data:)`, callgrind, Benchmarks/SCALE.md).
    public static func hash(utf8: UnsafeBufferPointer<UInt8>) -> TokenHash {
        var digest: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &digest) { raw in
            tollgate_sha256(utf8.baseAddress, utf8.count, raw.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        // Big-endian words, so that writing them big-endian gives the digest's bytes in order.
        return TokenHash(UInt64(bigEndian: digest.0), UInt64(bigEndian: digest.1), UInt64(bigEndian: digest.2), UInt64(bigEndian: digest.3))
    }

    /// The stored token with its observations (last use of each secret) filled in.
    public func token(id: String) -> TokenRecord? {
        guard var record = tokens.record(id: id) else { return nil }
        record.info.lastUsedAt = tokens.handle(id: id).map(observations.currentSecretUse) ?? 0
        record.info.previousSecretLastUsedAt = observations.previous[id] ?? 0
        return record
    }

    public func licenseInfo(id: String) -> LicenseInfo? {
        guard let record = licenses[id] else { return nil }
        return LicenseInfo(
            spec: record.spec, updatedAt: record.updatedAt, activeTokens: activeTokenCount(licenseID: id, at: nil),
            pastDueSince: record.pastDueSince, prepaidCredits: book.prepaid[PoolKey(.license, id)]?.balance ?? 0)
    }

    /// Unrevoked tokens of a license (and, given a time, unexpired at that time).
    func activeTokenCount(licenseID: String, at time: UnixMillis?) -> UInt32 {
        UInt32(clamping: tokens.count(license: licenseID) { revokedAt, expiresAt in
            guard revokedAt == 0 else { return false }
            if let time, expiresAt != 0, expiresAt <= time { return false }
            return true
        })
    }

    /// Usage of `meter` by `licenseID` in the period of kind `period` that contains `time`.
    public func usage(licenseID: String, meter: String, period: Period, at time: UnixMillis) -> UInt64 {
        guard let license = licenses[licenseID]?.spec else { return 0 }
        let start = Self.periodBounds(period, level: .license, license: license, at: time).start
        return book.counter(CounterKey(pool: PoolKey(.license, licenseID), meter: meter, period: period, start: start))
    }

    /// Usage of `meter` by the token, summed over the ledger.
    public func usage(tokenID: String, meter: String) -> UInt64 {
        book.ledger.values.reduce(into: 0) { sum, bucket in
            for (key, value) in bucket where key.tokenID == tokenID && key.meter == meter { sum.saturatingAdd(value.quantity) }
        }
    }

    /// Tokens in ascending id order, optionally of one license, starting after `after`.
    public func listTokens(licenseID: String, after: String, limit: Int) -> (tokens: [TokenInfo], more: Bool) {
        let ids: [String]
        if licenseID.isEmpty {
            ids = tokens.allIDs.filter { $0 > after }.sorted()
        } else {
            ids = tokens.ids(license: licenseID).filter { $0 > after }.sorted()
        }
        let page = ids.prefix(limit).compactMap { token(id: $0)?.info }
        return (page, ids.count > limit)
    }
}

extension UInt64 {
    /// Usage counters stop at the maximum instead of wrapping: a wrapped counter would hand a caller a fresh quota.
    @inline(__always)
    mutating func saturatingAdd(_ other: UInt64) {
        let (sum, overflow) = addingReportingOverflow(other)
        self = overflow ? .max : sum
    }
}

/// The set of (pool level, period) pairs whose calendar counters some plan's quota reads: one bit each.
struct CountedWindows: Sendable, Hashable {
    private var bits: UInt16 = 0

    init() {}

    init(plans: some Sequence<Plan>) {
        for plan in plans {
            for rule in plan.quotas {
                guard case .calendar(let period) = rule.window else { continue }
                bits |= Self.bit(rule.pool, period)
            }
        }
    }

    var isEmpty: Bool { bits == 0 }

    func counts(_ level: PoolLevel) -> Bool {
        bits & (0b111 << (UInt16(level.rawValue) * 3)) != 0
    }

    func counts(_ level: PoolLevel, _ period: Period) -> Bool {
        bits & Self.bit(level, period) != 0
    }

    private static func bit(_ level: PoolLevel, _ period: Period) -> UInt16 {
        1 << (UInt16(level.rawValue) * 3 + UInt16(period.rawValue))
    }
}

/// When each secret was last presented: the current secret by where its token is stored (one 8-byte slot a token,
/// written in place by every check: no hashing, no table growing under the check), a rotated-out one by its token's
/// id. Observations, not state: not journaled, not in snapshots, not compared. The table is a reference that copies
/// of the state share on purpose: a check writes it, and were it part of the value (in the token table, say), the
/// first check while the snapshot encoder holds a copy of the state would copy the whole token table. (Two copies
/// of a state that diverge would share it; the daemon never keeps two live copies, only the snapshot encoder's,
/// which never reads it.) Accessed only by the state's owner, under its lock.
final class UseObservations: @unchecked Sendable {
    private var current: [UnixMillis] = []
    var previous: [String: UnixMillis] = [:]

    func noteCurrentSecretUsed(_ handle: TokenStore.Handle, at time: UnixMillis) {
        let index = Int(handle.number)
        if index >= current.count { current.append(contentsOf: repeatElement(0, count: max(index + 1 - current.count, current.count / 2))) }
        current[index] = time
    }

    func currentSecretUse(_ handle: TokenStore.Handle) -> UnixMillis {
        Int(handle.number) < current.count ? current[Int(handle.number)] : 0
    }

    /// The last use of the current secret, forgotten (the secret was rotated out, or the token forgotten).
    func takeCurrentSecretUse(_ handle: TokenStore.Handle) -> UnixMillis {
        guard Int(handle.number) < current.count else { return 0 }
        defer { current[Int(handle.number)] = 0 }
        return current[Int(handle.number)]
    }
}
