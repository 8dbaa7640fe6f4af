import Logging
import NIOConcurrencyHelpers
import NIOCore
import TollgateEngine
import TollgateJournal
import TollgateModel
import TollgateProtocol

/// The daemon's state machine behind the sockets: one `LicensingState` under one lock, the journal, the clock.
///
/// Every request is decided and applied under the lock, and the change it made is appended to the journal under
/// the same lock, so the journal's order is exactly the order in which changes became visible. Durable requests
/// are answered only once the journal reports the record fsynced (group commit batches them). CHECK never waits
/// for I/O: its consumption is applied at once and journaled in batches every `usageFlushInterval`.
///
/// No NIO channel appears here, so the whole request path can be tested without sockets.
public final class TollgateCore: @unchecked Sendable {
    public struct Options: Sendable {
        public var maxFrameSize: Int
        public var maxTokens: Int
        public var maxLicenses: Int
        /// Check consumption is journaled at least this often; a crash may forget at most this window.
        public var usageFlushInterval: TimeAmount
        /// Pending check consumption entries that trigger a flush before the interval elapses.
        public var usageFlushBatch: Int
        public var serverName: String
        /// The longest lifetime of a token made by DERIVE.
        public var maxDerivedLifetimeMillis: Int64
        /// How long a reservation is held before it is released unsettled.
        public var reservationLifetimeMillis: Int64
        /// How often the journaled sweep runs (expiry events, forgetting long-gone tokens, pruning counters).
        public var sweepInterval: TimeAmount
        /// Revoked or expired tokens are forgotten (answered as unknown) this long after they stopped working.
        public var tokenRetentionMillis: Int64
        /// Idempotency keys are remembered this long.
        public var idempotencyRetentionMillis: Int64
        /// Tokens expiring within this time get a `token_expiring` event.
        public var expiryWarningMillis: Int64
        /// Ledger hours older than this are dropped by the sweep (0: never).
        public var ledgerRetentionMillis: Int64

        public init(
            maxFrameSize: Int = 65536, maxTokens: Int = 10_000_000, maxLicenses: Int = 1_000_000,
            usageFlushInterval: TimeAmount = .milliseconds(100), usageFlushBatch: Int = 4096, serverName: String = "tollgated/0.1.0",
            maxDerivedLifetimeMillis: Int64 = 3_600_000, reservationLifetimeMillis: Int64 = 60_000, sweepInterval: TimeAmount = .seconds(60),
            tokenRetentionMillis: Int64 = 30 * 86_400_000, idempotencyRetentionMillis: Int64 = 86_400_000, expiryWarningMillis: Int64 = 86_400_000,
            ledgerRetentionMillis: Int64 = 100 * 86_400_000
        ) {
            self.ledgerRetentionMillis = ledgerRetentionMillis
            self.maxDerivedLifetimeMillis = maxDerivedLifetimeMillis
            self.reservationLifetimeMillis = reservationLifetimeMillis
            self.sweepInterval = sweepInterval
            self.tokenRetentionMillis = tokenRetentionMillis
            self.idempotencyRetentionMillis = idempotencyRetentionMillis
            self.expiryWarningMillis = expiryWarningMillis
            self.maxFrameSize = maxFrameSize
            self.maxTokens = maxTokens
            self.maxLicenses = maxLicenses
            self.usageFlushInterval = usageFlushInterval
            self.usageFlushBatch = usageFlushBatch
            self.serverName = serverName
        }
    }

    /// Counters reported by STATS. Guarded by `lock`.
    struct Counters {
        var checks: UInt64 = 0
        var checksDenied: UInt64 = 0
        var meters: UInt64 = 0
        var meterDuplicates: UInt64 = 0
        var durableWrites: UInt64 = 0
        var durableFailures: UInt64 = 0
        var snapshots: UInt64 = 0
        var snapshotFailures: UInt64 = 0
        var usageDropped: UInt64 = 0
    }

    /// Check consumption entries kept in memory while the journal cannot write (about 100 bytes each).
    static let maxUsageHeldDuringOutage = 1_000_000

    /// Fixed at start-up; the store limits in it are the initial ones (a reload may change them: `updateLimits`).
    public let options: Options
    /// Replaced (under the lock) when a failed journal is recovered; read it through `currentJournal` off the lock.
    private var journal: Journal
    private let fileSystem: any JournalFileSystem
    private var nextRecoveryAttempt: Timestamp?
    private var recoveryBackoffMillis: Int64 = 250
    let clock: any WallClock
    let logger: Logger
    let recovery: RecoveryReport
    let startedAt: Timestamp

    private let lock = NIOLock()
    private var state: LicensingState
    private var pendingUsage: [UsageEntry] = []
    /// The pending count at which a check flushes early: `usageFlushBatch`, raised while the journal cannot write
    /// so that checks do not retry a flush that cannot happen.
    private var nextFlushAt: Int
    /// Idempotency keys whose METER record is appended but not yet durable, with the repeats waiting on it.
    private var keysInFlight: [String: [@Sendable (Bool) -> Void]] = [:]
    private var counters = Counters()
    private var snapshotInProgress = false
    /// Paces snapshot retries and their log lines while snapshots keep failing (a full disk).
    private var snapshotFailures = RepeatedFailure()
    private var rng = SystemRandomNumberGenerator()
    private var decisionLog = DecisionLogSampler(perSecond: 20)
    private var extraStatistics: (@Sendable () -> [KeyValue])?
    private var maxTokens: Int
    private var maxLicenses: Int
    private var lastStatus: (at: Timestamp, checks: UInt64)?

    public init(
        state: LicensingState, journal: Journal, recovery: RecoveryReport, fileSystem: any JournalFileSystem = PosixFileSystem(),
        clock: any WallClock, options: Options, logger: Logger
    ) {
        self.state = state
        self.journal = journal
        self.fileSystem = fileSystem
        self.recovery = recovery
        self.clock = clock
        self.options = options
        self.nextFlushAt = options.usageFlushBatch
        self.maxTokens = options.maxTokens
        self.maxLicenses = options.maxLicenses
        self.logger = logger
        self.startedAt = clock.now()
    }

    /// Reads the state under the lock (tests, STATUS lines).
    public func withState<T>(_ body: (LicensingState) throws -> T) rethrows -> T {
        try lock.withLock { try body(state) }
    }

    // MARK: - Dispatch

    /// Answers `request` arriving on a socket of `role`. Returns the response when it is ready now; otherwise
    /// returns nil and calls `completion` (on the journal's thread) once the change is durable or has failed.
    /// `caller` is the peer's uid (from `SO_PEERCRED`), which tokens bound to callers are checked against.
    public func handle(_ request: Request, role: SocketRole, caller: UInt32? = nil, completion: @escaping @Sendable (Response) -> Void) -> Response? {
        if role == .api {
            guard request.opcode.isDataPlane else {
                return .error(.notPermitted, "\(request.opcode.name) is served on the admin socket only")
            }
            if case .revoke(let revoke) = request, !revoke.target.isSecret {
                return .error(.notPermitted, "on the api socket REVOKE accepts a secret only; revoke by id or license on the admin socket")
            }
        }
        switch request {
        case .hello(let hello):
            guard hello.minVersion <= tollgateProtocolVersion, tollgateProtocolVersion <= hello.maxVersion else {
                return .error(.unsupportedVersion, "this server speaks protocol version \(tollgateProtocolVersion) only")
            }
            return .hello(HelloResponse(version: tollgateProtocolVersion, role: role, maxFrameSize: UInt32(options.maxFrameSize), server: options.serverName))
        case .ping:
            return .pong
        case .check(let check):
            if let refusal = Self.refusal(of: check) { return refusal }
            return .check(self.check(check, caller: caller))
        case .release(let leaseID):
            return .released(lock.withLock { state.release(leaseID: leaseID) })
        case .settle(let settle):
            return self.settle(settle)
        case .orgGet(let id):
            return lock.withLock { state.orgs[id]?.spec }.map(Response.org) ?? .error(.notFound, "organisation \(LicensingState.printable(id)) does not exist")
        case .usageExport(let export):
            return usageExport(export)
        case .events(let after, let limit):
            return eventsPage(after: after, limit: limit)
        case .stats:
            return .stats(statistics())
        case .licenseGet(let id):
            return lock.withLock { state.licenseInfo(id: id) }.map(Response.license) ?? .error(.notFound, "license \(LicensingState.printable(id)) does not exist")
        case .planGet(let id):
            return lock.withLock { state.plans[id] }.map(Response.plan) ?? .error(.notFound, "plan \(LicensingState.printable(id)) does not exist")
        case .tokenGet(let id):
            return lock.withLock { state.token(id: id)?.info }.map(Response.token) ?? .error(.notFound, "token \(LicensingState.printable(id)) does not exist")
        case .tokenList(let list):
            return listTokens(list)
        case .meter, .revoke, .issue, .licensePut, .planPut, .derive, .rotate, .rotationEnd, .orgPut, .creditsGrant:
            return mutate(request, caller: caller, completion: completion)
        }
    }

    /// Charges a reservation's actual cost; like check consumption, it is journaled with the next batch.
    func settle(_ request: SettleRequest) -> Response {
        let now = clock.now()
        do {
            let (result, flushNeeded) = try lock.withLock { () throws -> (CheckResult, Bool) in
                let (result, consumed) = try state.settle(request, at: now)
                if let consumed { pendingUsage.append(consumed) }
                return (result, pendingUsage.count >= nextFlushAt)
            }
            if flushNeeded { flushPendingUsage() }
            return .check(result)
        } catch let error as EngineError {
            return .error(error.code == .notFound ? .notFound : .invalidArgument, error.message)
        } catch {
            return .error(.internal, "the request failed inside the server")
        }
    }

    /// Releases leases a connection still held when it closed.
    public func releaseLeases(_ ids: some Sequence<UInt64>) {
        lock.withLock {
            for id in ids { _ = state.release(leaseID: id) }
        }
    }

    /// One page of the usage export. The rows are computed per request (the ledger is not ordered), so a page
    /// costs a scan of the ledger in the range; exports are rare and run off the hot path's lock for the sort.
    func usageExport(_ export: UsageExportRequest) -> Response {
        guard export.query.from < export.query.to else { return .error(.invalidArgument, "from must be earlier than to") }
        let rows = lock.withLock { state.usageRows(export.query) }
        let limit = export.limit == 0 ? 100 : Int(export.limit)
        let start = min(Int(export.offset), rows.count)
        let page = rows[start..<min(start + limit, rows.count)]
        // A page ends early (and `next` points at the rest) when the next row would not fit in the frame.
        let end = start + countFittingFrame(page, fixedBytes: 2 + 4) { try $0.writeUsageRow($1) }
        return .usage(rows: Array(rows[start..<end]), next: end < rows.count ? UInt32(clamping: end) : 0)
    }

    /// Events after a sequence number, as many as fit in one frame (the caller asks again after the last one).
    func eventsPage(after: UInt64, limit: UInt16) -> Response {
        let events = lock.withLock { state.events(after: after, limit: limit == 0 ? 200 : Int(limit)) }
        return .events(Array(events.prefix(countFittingFrame(events, fixedBytes: 2) { try $0.writeEvent($1) })))
    }

    /// How many of `items`, from the first, fit in one answer frame beside `fixedBytes` of the body (list count,
    /// trailing fields), each measured with the encoder that will write it; at least one, so paging moves on.
    private func countFittingFrame<Items: Collection>(_ items: Items, fixedBytes: Int, encode: (inout ByteBuffer, Items.Element) throws -> Void) -> Int {
        var scratch = ByteBufferAllocator().buffer(capacity: 512)
        var size = FrameHeader.size + fixedBytes
        var count = 0
        for item in items {
            scratch.clear()
            try? encode(&scratch, item)
            size += scratch.readableBytes
            if size > options.maxFrameSize && count > 0 { break }
            count += 1
        }
        return count
    }

    /// Periodic work off the request path: releases expired reservations, and every `sweepInterval` journals a
    /// sweep (expiry events, forgetting long-gone tokens, pruning ended counters and old idempotency keys).
    public func housekeeping(sweep: Bool) {
        let now = clock.now()
        lock.withLock {
            state.expireReservations(at: now.millis)
            guard sweep, !journal.statistics.failed else { return }
            flushPendingUsageLocked()
            let change = state.sweep(
                at: now, tokenRetention: options.tokenRetentionMillis, keyRetention: options.idempotencyRetentionMillis,
                expiryWarning: options.expiryWarningMillis, ledgerRetention: options.ledgerRetentionMillis)
            appendLocked(change, durability: .buffered, completion: nil)
            flushPendingUsageLocked()
        }
    }

    /// The hot path: decide and consume under the lock, no I/O.
    public func check(_ request: CheckRequest, caller: UInt32? = nil) -> CheckResult {
        let now = clock.now()
        let (result, flushNeeded, logDecision) = lock.withLock { () -> (CheckResult, Bool, Bool) in
            let (result, logDecision) = checkLocked(request, now: now, caller: caller)
            return (result, pendingUsage.count >= nextFlushAt, logDecision)
        }
        if flushNeeded { flushPendingUsage() }
        if logDecision { logDenial(result) }
        return result
    }

    /// Answers consecutive CHECKs cut from one read of one connection, in order, under a single acquisition of the
    /// lock: on a pipelined connection the lock, the clock read and the dispatch through `handle` are paid once per
    /// read instead of once per request. Each check is decided exactly as `handle` decides a lone CHECK (counters,
    /// consumption, early usage flush, sampled denial log), all at one instant, the time the batch is decided.
    /// Every request must have passed `refusal(of:)` (the answer to one that did not is that error, not a
    /// decision). `results` receives one result per request, in order, after what it held.
    public func checkBatch(_ requests: [CheckRequest], caller: UInt32?, into results: inout [CheckResult]) {
        let now = clock.now()
        // Indices of denials the sampler admitted: logged after the lock is released. Empty (no allocation) unless
        // a denial is logged, which the sampler allows at most `perSecond` times a second.
        var logged: [Int] = []
        lock.withLock {
            // Through a buffer pointer: each request is lent to the engine in place, not copied out of the array.
            requests.withUnsafeBufferPointer { requests in
                for index in requests.indices {
                    assert(Self.admits(requests[index]), "checkBatch was given a CHECK that refusal(of:) refuses")
                    let (result, logDecision) = checkLocked(requests[index], now: now, caller: caller)
                    if logDecision { logged.append(results.count) }
                    results.append(result)
                    if pendingUsage.count >= nextFlushAt { flushPendingUsageLocked() }
                }
            }
        }
        for index in logged { logDenial(results[index]) }
    }

    /// The error a CHECK is answered with before the engine sees it (a meter name longer than the wire allows), or
    /// nil when it is to be decided.
    public static func refusal(of check: CheckRequest) -> Response? {
        admits(check) ? nil : meterNameTooLong
    }

    /// Whether `refusal(of:)` lets `check` through to the engine (without building the answer).
    @inlinable
    public static func admits(_ check: CheckRequest) -> Bool {
        check.meter.utf8.count <= Limits.maxMeterName
    }

    /// The answer to a CHECK whose meter name is longer than the wire allows.
    static let meterNameTooLong = Response.error(.invalidArgument, "the meter name must be at most \(Limits.maxMeterName) bytes")

    /// Decides one check and counts it. Called with the lock held; returns whether the decision is to be logged.
    private func checkLocked(_ request: CheckRequest, now: Timestamp, caller: UInt32?) -> (CheckResult, Bool) {
        let (result, consumed) = state.check(request, at: now, caller: caller, reservationLifetime: options.reservationLifetimeMillis)
        counters.checks &+= 1
        var logDecision = false
        if !result.allowed {
            counters.checksDenied &+= 1
            logDecision = decisionLog.admit(at: now)
        }
        if let consumed { pendingUsage.append(consumed) }
        return (result, logDecision)
    }

    /// Sampled: at most `perSecond` lines, so a flood of bad tokens cannot slow the hot path or fill the disk.
    private func logDenial(_ result: CheckResult) {
        logger.info("check denied", metadata: [
            "tollgate.decision": "deny", "tollgate.reason": "\(result.reason.name)",
            "tollgate.token_id": "\(result.tokenID)", "tollgate.license": "\(result.licenseID)",
        ])
    }

    /// Journals the check consumption gathered since the last flush, as one buffered record.
    public func flushPendingUsage() {
        lock.withLock { flushPendingUsageLocked() }
    }

    private func flushPendingUsageLocked() {
        // Threshold events counted live are journaled with the batch (their own record, numbered when they happened).
        if !journal.statistics.failed, let events = state.takeUnjournaledEvents() {
            appendLocked(events, durability: .buffered, completion: nil)
        }
        guard !pendingUsage.isEmpty else { return }
        // While the journal cannot write, keep the consumption: recovery re-applies it to the rebuilt state and
        // journals it then. Bounded, so that a long outage cannot exhaust memory.
        if journal.statistics.failed {
            if pendingUsage.count > Self.maxUsageHeldDuringOutage {
                counters.usageDropped &+= UInt64(pendingUsage.count - Self.maxUsageHeldDuringOutage)
                pendingUsage.removeFirst(pendingUsage.count - Self.maxUsageHeldDuringOutage)
            }
            nextFlushAt = pendingUsage.count + options.usageFlushBatch
            return
        }
        nextFlushAt = options.usageFlushBatch
        let change = StateChange.consumed(pendingUsage)
        pendingUsage.removeAll(keepingCapacity: true)
        appendLocked(change, durability: .buffered, completion: nil)
    }

    private func mutate(_ request: Request, caller: UInt32?, completion: @escaping @Sendable (Response) -> Void) -> Response? {
        let now = clock.now()
        // While the journal cannot write, refuse changes before applying them: an applied-but-lost change could
        // otherwise answer a retry (an idempotency key seen) with a false ok.
        if currentJournal.statistics.failed {
            return .error(.unavailable, "the journal cannot write (disk full or I/O error); the change was not made. It recovers by itself; retry later")
        }
        enum Outcome {
            case now(Response)
            case later
        }
        let outcome: Outcome
        do {
            outcome = try lock.withLock { () throws -> Outcome in
                let (response, change) = try decideLocked(request, now: now, caller: caller)
                guard let change else {
                    // A repeated idempotency key whose first record is not durable yet is answered only when that
                    // record is: if it fails, the repeat must not have been told "ok, already counted".
                    if case .meter(let meter) = request, case .meter(let result) = response, result.duplicate,
                        keysInFlight[meter.idempotencyKey] != nil
                    {
                        keysInFlight[meter.idempotencyKey]!.append { durable in
                            completion(durable ? response : .error(.unavailable, "the first request with this idempotency key could not be made durable; retry"))
                        }
                        return .later
                    }
                    return .now(response)
                }
                let key: String? = if case .metered(_, let key) = change, !key.isEmpty { key } else { nil }
                if let key { keysInFlight[key] = [] }
                appendLocked(change, durability: .durable) { [weak self] result in
                    let waiters = key.flatMap { key in self?.lock.withLock { self?.keysInFlight.removeValue(forKey: key) } } ?? []
                    switch result {
                    case .success: completion(response)
                    case .failure(let error): completion(.error(.unavailable, "the change could not be made durable: \(error.message)"))
                    }
                    let durable = (try? result.get()) != nil
                    for waiter in waiters { waiter(durable) }
                }
                return .later
            }
        } catch let error as EngineError {
            return .error(error.code == .notFound ? .notFound : .invalidArgument, error.message)
        } catch {
            logger.error("request failed", metadata: ["tollgate.opcode": "\(request.opcode.name)", "tollgate.error": "\(error)"])
            return .error(.internal, "the request failed inside the server")
        }
        guard case .now(let response) = outcome else {
            maybeSnapshot()
            return nil
        }
        return response
    }

    /// Decides a control- or data-plane change and applies it to the state. Called with the lock held.
    private func decideLocked(_ request: Request, now: Timestamp, caller: UInt32?) throws -> (Response, StateChange?) {
        switch request {
        case .meter(let meter):
            let (result, change) = try state.meter(meter, at: now, caller: caller)
            counters.meters &+= 1
            if result.duplicate { counters.meterDuplicates &+= 1 }
            return (.meter(result), change)
        case .revoke(var revoke):
            // The journal records who asked: the operator's name (admin socket) and the kernel's word on the uid.
            revoke.actor = String((revoke.actor.isEmpty ? "" : revoke.actor + " ") + "uid=\(caller.map(String.init) ?? "unknown")")
            let (count, change) = try state.revoke(revoke, at: now)
            if let change, case .tokensRevoked(let ids, _, let actor, _) = change {
                audit("tokens revoked", caller: caller, [
                    "tollgate.revoke.by": "\(["secret", "token_id", "license", "org", "subject"][Int(revoke.target.code)])",
                    "tollgate.actor": "\(actor)",
                    "tollgate.token_ids": "\(ids.prefix(10).joined(separator: ","))\(ids.count > 10 ? ",…" : "")",
                    "tollgate.count": "\(ids.count)",
                ])
            }
            return (.revoke(revoked: count), change)
        case .issue(let issue):
            guard state.tokens.count < maxTokens else {
                throw EngineError(.invalidArgument, "the token store is full (\(maxTokens) tokens); raise limits.max_tokens")
            }
            let (secret, token, change) = try state.issue(issue, at: now, using: &rng)
            audit("token issued", caller: caller, ["tollgate.token_id": "\(token.id)", "tollgate.license": "\(token.licenseID)"])
            return (.issue(secret: secret, token: token), change)
        case .licensePut(let spec):
            guard state.licenses[spec.id] != nil || state.licenses.count < maxLicenses else {
                throw EngineError(.invalidArgument, "the license store is full (\(maxLicenses) licenses); raise limits.max_licenses")
            }
            // Usage counted under the old license (its organisation, its billing anchor) is journaled before the change,
            // so that replay counts it the same way.
            flushPendingUsageLocked()
            let (info, change) = try state.putLicense(spec, at: now)
            audit("license put", caller: caller, ["tollgate.license": "\(spec.id)", "tollgate.plan": "\(spec.plan)", "tollgate.status": "\(spec.status.name)"])
            return (.license(info), change)
        case .planPut(let plan):
            flushPendingUsageLocked()
            let (stored, change) = try state.putPlan(plan, at: now)
            if change != nil { audit("plan put", caller: caller, ["tollgate.plan": "\(plan.id)"]) }
            return (.plan(stored), change)
        case .derive(let derive):
            guard state.tokens.count < maxTokens else {
                throw EngineError(.invalidArgument, "the token store is full (\(maxTokens) tokens); raise limits.max_tokens")
            }
            let (result, secret, token, change) = try state.derive(derive, at: now, caller: caller, maxLifetime: options.maxDerivedLifetimeMillis, using: &rng)
            if let token { audit("token derived", caller: caller, ["tollgate.token_id": "\(token.id)", "tollgate.parent_id": "\(token.parentID)"]) }
            return (.derive(result, secret: secret, token: token), change)
        case .rotate(let rotate):
            let (secret, token, change) = try state.rotate(rotate, at: now, using: &rng)
            audit("token rotated", caller: caller, ["tollgate.token_id": "\(token.id)", "tollgate.grace_s": "\(rotate.graceSeconds)"])
            return (.issue(secret: secret, token: token), change)
        case .rotationEnd(let id):
            let (token, change) = try state.endRotation(tokenID: id, at: now)
            if change != nil { audit("rotation overlap ended", caller: caller, ["tollgate.token_id": "\(id)"]) }
            return (.token(token), change)
        case .orgPut(let org):
            let (stored, change) = try state.putOrg(org, at: now)
            if change != nil { audit("organisation put", caller: caller, ["tollgate.org": "\(org.id)", "tollgate.suspended": "\(org.suspended)"]) }
            return (.org(stored), change)
        case .creditsGrant(let grant):
            let (balance, change) = try state.grantCredits(grant, at: now)
            audit("credits granted", caller: caller, ["tollgate.pool": "\(grant.pool.name)", "tollgate.owner": "\(grant.owner)", "tollgate.amount": "\(grant.amount)"])
            return (.credits(balance: balance), change)
        default:
            preconditionFailure("\(request.opcode.name) is not a state change")
        }
    }

    /// One audit line per change made: notice level, `tollgate.audit=1` (journald: `TOLLGATE_AUDIT=1`) and the
    /// caller's uid from the socket's peer credentials, beside the journal record itself.
    private func audit(_ message: Logger.Message, caller: UInt32?, _ metadata: Logger.Metadata) {
        var metadata = metadata
        metadata["tollgate.audit"] = "1"
        metadata["tollgate.uid"] = "\(caller.map(String.init) ?? "unknown")"
        logger.notice(message, metadata: metadata)
    }

    /// Appends a change to the journal. Must be called with the lock held so journal order equals apply order.
    private func appendLocked(_ change: StateChange, durability: Durability, completion: (@Sendable (Result<UInt64, JournalError>) -> Void)?) {
        let payload: [UInt8]
        do {
            payload = try change.encodedPayload()
        } catch {
            // Lengths are validated before a change is made, so this is a bug; fail the request, not the process.
            logger.critical("a state change could not be encoded", metadata: ["tollgate.error": "\(error)"])
            completion?(.failure(JournalError(code: .io, message: "the change could not be encoded")))
            return
        }
        if durability == .durable { counters.durableWrites &+= 1 }
        let logger = self.logger
        journal.append(type: change.typeCode, payload: payload, durability: durability) { [weak self] result in
            if case .failure(let error) = result {
                logger.error("journal write failed", metadata: ["tollgate.error": "\(error)"])
                self?.lock.withLock { self?.counters.durableFailures &+= 1 }
            }
            completion?(result)
        }
    }

    /// Adds counters kept outside the core (connections) to STATS.
    public func setExtraStatistics(_ provider: @escaping @Sendable () -> [KeyValue]) {
        lock.withLock { extraStatistics = provider }
    }

    /// Applies new limits from a reloaded configuration.
    public func updateLimits(maxTokens: Int, maxLicenses: Int) {
        lock.withLock {
            self.maxTokens = maxTokens
            self.maxLicenses = maxLicenses
        }
    }

    /// One line for systemd's STATUS=: sizes, the check rate since the previous call, the journal's health.
    public func statusLine() -> String {
        let now = clock.now()
        let journalStats = currentJournal.statistics
        return lock.withLock {
            var rate = 0.0
            if let last = lastStatus, now.nanoseconds > last.at.nanoseconds {
                rate = Double(counters.checks &- last.checks) * 1e9 / Double(now.nanoseconds - last.at.nanoseconds)
            }
            lastStatus = (now, counters.checks)
            let journalState = journalStats.failed ? "FAILED" : (recovery.tornTailRepaired ? "ok (torn tail repaired at start)" : "ok")
            return "tokens=\(state.tokens.count) licenses=\(state.licenses.count) checks/s=\(Int(rate.rounded())) journal=\(journalState) seq=\(journalStats.lastSequence)"
        }
    }

    /// The journal in use (it changes only when a failed one is recovered).
    public var currentJournal: Journal { lock.withLock { journal } }

    // MARK: - Journal failure and recovery

    /// When the journal has failed (disk full, I/O error), tries to recover: reopen it, which cuts it back to the
    /// last durable record, and rebuild the state from it, so that memory again equals what is durable. Changes that
    /// were answered `unavailable` are dropped by the rebuild; check consumption not yet journaled is kept. Retries
    /// with backoff (up to 5 s) until the disk accepts writes again. Called periodically; cheap when healthy.
    public func recoverJournalIfFailed() {
        let now = clock.now()
        lock.withLock {
            guard journal.statistics.failed else { return }
            if let next = nextRecoveryAttempt, now < next { return }
            do {
                // Reopening only reads; prove first that the disk takes a write and an fsync again.
                try Self.probeWritable(directory: journal.directory, fileSystem: fileSystem)
                try? journal.close()
                let (reopened, recovered) = try Journal.open(directory: journal.directory, options: journal.options, fileSystem: fileSystem)
                var rebuilt = try Self.rebuildState(from: recovered)
                if !pendingUsage.isEmpty { rebuilt.apply(.consumed(pendingUsage)) }
                journal = reopened
                state = rebuilt
                nextRecoveryAttempt = nil
                recoveryBackoffMillis = 250
                logger.notice("journal recovered; state rebuilt from the durable records", metadata: [
                    "tollgate.journal.last_seq": "\(recovered.report.lastSequence)", "tollgate.tokens": "\(rebuilt.tokens.count)",
                ])
            } catch {
                nextRecoveryAttempt = now.adding(millis: recoveryBackoffMillis)
                recoveryBackoffMillis = min(recoveryBackoffMillis * 2, 5000)
                logger.error("journal still cannot be recovered", metadata: ["tollgate.error": "\(error)", "tollgate.retry_ms": "\(recoveryBackoffMillis)"])
            }
        }
    }

    static func probeWritable(directory: String, fileSystem: any JournalFileSystem) throws {
        let path = directory + "/write-probe.tmp"
        let file = try fileSystem.open(path, mode: .createTruncate)
        defer {
            try? fileSystem.close(file)
            try? fileSystem.unlink(path)
        }
        let bytes: [UInt8] = Array(repeating: 0, count: 4096)
        let written = try bytes.withUnsafeBytes { try fileSystem.write(file, $0, at: 0) }
        guard written == bytes.count else { throw JournalError(code: .io, message: "short write while probing the disk") }
        try fileSystem.fdatasync(file)
    }

    /// Rebuilds a state from a snapshot and the records after it. A record that passed its checksum but does not
    /// decode is refused: skipping it could resurrect a revoked token.
    public static func rebuildState(from recovered: RecoveredState) throws -> LicensingState {
        var state = LicensingState()
        if let snapshot = recovered.snapshot {
            do {
                state = try LicensingState.decodeSnapshot(snapshot.payload)
            } catch {
                throw RebuildError(description: "the snapshot at sequence \(snapshot.sequence) does not decode: \(error)")
            }
        }
        for record in recovered.records {
            do {
                state.apply(try StateChange.decode(type: record.type, payload: ByteBuffer(bytes: record.payload)))
            } catch {
                throw RebuildError(description: "journal record \(record.sequence) does not decode: \(error)")
            }
        }
        return state
    }

    public struct RebuildError: Error, CustomStringConvertible {
        public var description: String
    }

    // MARK: - Snapshots

    /// Starts a snapshot when the journal has grown past its target, off the request path.
    public func maybeSnapshot(force: Bool = false) {
        guard force || currentJournal.needsSnapshot else { return }
        let started = clock.now()
        let taken: (LicensingState, UInt64, Journal)? = lock.withLock {
            guard !snapshotInProgress, force || snapshotFailures.mayAttempt(at: started) else { return nil }
            snapshotInProgress = true
            // Consumption applied in memory but not yet journaled must land before the snapshot's sequence,
            // or replay would count it twice (once in the snapshot, once in the later record).
            flushPendingUsageLocked()
            return (state, journal.lastSequence, journal)
        }
        guard let (copy, sequence, journal) = taken else { return }
        let now = clock.now().millis
        let logger = self.logger
        journal.snapshot(upTo: sequence, encode: {
            // Every stored value was validated to fit its encoding, so this cannot fail.
            try! copy.encodeSnapshot(now: now)
        }) { [weak self] result in
            guard let self else { return }
            let finished = self.clock.now()
            let (report, endedStreak): (RepeatedFailure.Report, Int) = self.lock.withLock {
                self.snapshotInProgress = false
                switch result {
                case .success:
                    self.counters.snapshots &+= 1
                    return (.quiet, self.snapshotFailures.succeeded())
                case .failure:
                    self.counters.snapshotFailures &+= 1
                    return (self.snapshotFailures.failed(at: finished), 0)
                }
            }
            switch result {
            case .success:
                var metadata: Logger.Metadata = ["tollgate.journal.sequence": "\(sequence)"]
                if endedStreak > 0 { metadata["tollgate.failures_before"] = "\(endedStreak)" }
                logger.info("snapshot written", metadata: metadata)
            case .failure(let error):
                // The first failure of a streak, then one line a minute at most with the count since the last.
                guard case .log(let failures, let first) = report else { break }
                logger.error(first ? "snapshot failed; retrying with backoff" : "snapshots still failing", metadata: [
                    "tollgate.error": "\(error)", "tollgate.failures": "\(failures)",
                ])
            }
        }
    }

    // MARK: - Reads

    private func listTokens(_ request: TokenListRequest) -> Response {
        let limit = request.limit == 0 ? 100 : min(Int(request.limit), 500)
        var (tokens, more) = lock.withLock { state.listTokens(licenseID: request.licenseID, after: request.after, limit: limit) }
        // Keep the answer within one frame (the trailing `next` is a token id: at most 2 + 128 bytes).
        let fitting = countFittingFrame(tokens, fixedBytes: 2 + 2 + Limits.maxIdentifier) { try $0.writeTokenInfo($1) }
        if fitting < tokens.count {
            tokens.removeLast(tokens.count - fitting)
            more = true
        }
        return .tokenList(tokens: tokens, next: more ? (tokens.last?.id ?? "") : "")
    }

    public func statistics() -> [KeyValue] {
        let journalStats = currentJournal.statistics
        let now = clock.now()
        let extra = lock.withLock { extraStatistics }?() ?? []
        return extra + lock.withLock {
            let active = state.tokens.count { revokedAt, _ in revokedAt == 0 }
            return [
                KeyValue("tokens", "\(state.tokens.count)"),
                KeyValue("tokens_active", "\(active)"),
                KeyValue("licenses", "\(state.licenses.count)"),
                KeyValue("plans", "\(state.plans.count)"),
                KeyValue("checks_total", "\(counters.checks)"),
                KeyValue("checks_denied", "\(counters.checksDenied)"),
                KeyValue("meters_total", "\(counters.meters)"),
                KeyValue("meters_duplicate", "\(counters.meterDuplicates)"),
                KeyValue("durable_writes", "\(counters.durableWrites)"),
                KeyValue("durable_failures", "\(counters.durableFailures)"),
                KeyValue("usage_pending", "\(pendingUsage.count)"),
                KeyValue("usage_dropped", "\(counters.usageDropped)"),
                KeyValue("snapshots", "\(counters.snapshots)"),
                KeyValue("journal_last_seq", "\(journalStats.lastSequence)"),
                KeyValue("journal_durable_seq", "\(journalStats.durableSequence)"),
                KeyValue("journal_bytes", "\(journalStats.segmentBytes)"),
                KeyValue("journal_fsyncs", "\(journalStats.fsyncCount)"),
                KeyValue("journal_batches", "\(journalStats.batches)"),
                KeyValue("journal_pending", "\(journalStats.pendingRecords)"),
                KeyValue("journal_failed", journalStats.failed ? "1" : "0"),
                KeyValue("journal_repairs", recovery.tornTailRepaired ? "1" : "0"),
                KeyValue("journal_repaired_bytes", "\(recovery.truncatedBytes)"),
                KeyValue("journal_replayed_records", "\(recovery.recordsReplayed)"),
                KeyValue("uptime_seconds", "\((now.nanoseconds - startedAt.nanoseconds) / 1_000_000_000)"),
            ]
        }
    }
}

extension TollgateCore {
    /// Applies a state change and waits until it is durable (start-up provisioning from the configuration).
    public func putDurably(_ request: Request) async throws {
        let response: Response = await withCheckedContinuation { continuation in
            if let immediate = handle(request, role: .admin, completion: { continuation.resume(returning: $0) }) {
                continuation.resume(returning: immediate)
            }
        }
        if case .error(let status, let message) = response {
            throw TollgateCoreError(status: status, message: message)
        }
    }
}

public struct TollgateCoreError: Error, CustomStringConvertible {
    public var status: Status
    public var message: String
    public var description: String { "\(status.name): \(message)" }
}

/// Lets through at most `perSecond` decision log lines per wall-clock second.
struct DecisionLogSampler {
    let perSecond: Int
    var windowStart: Int64 = 0
    var admitted = 0

    init(perSecond: Int) { self.perSecond = perSecond }

    mutating func admit(at now: Timestamp) -> Bool {
        let second = now.nanoseconds / 1_000_000_000
        if second != windowStart {
            windowStart = second
            admitted = 0
        }
        guard admitted < perSecond else { return false }
        admitted += 1
        return true
    }
}
