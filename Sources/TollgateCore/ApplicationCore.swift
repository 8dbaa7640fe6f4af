import Logging
import Synchronization
import NIOConcurrencyHelpers
import NIOCore
import TollgateEngine
import TollgateJournal
import TollgateModel
import TollgateProtocol

/// The application: one `LicensingState` under one lock, the journal, the clock. Every front end calls
/// `handle(_:from:completion:)` (or, for a read's worth of CHECKs, `checkBatch`) with a request and its caller;
/// what each operation may do, and when it is answered, is the `Operation` table's.
///
/// Every request is decided and applied under the lock, and the change it made is appended to the journal under
/// the same lock, so the journal's order is exactly the order in which changes became visible. Durable requests
/// are answered only once the journal reports the record fsynced (group commit batches them). CHECK never waits
/// for I/O: its consumption is applied at once and journaled in batches every `usageFlushInterval`.
///
/// No socket or channel appears here: the whole request path is tested without one.
public final class ApplicationCore: @unchecked Sendable {
    /// Fixed at start-up; the store limits in it are the initial ones (a reload may change them: `updateLimits`).
    public let options: Options
    let clock: any WallClock
    let logger: Logger
    let recovery: RecoveryReport
    let startedAt: Timestamp
    let outage: JournalOutageRecovery
    let snapshots = SnapshotScheduler()

    // MARK: Guarded by `lock`
    let lock = NIOLock()
    /// Replaced when a failed journal is recovered; read it through `currentJournal` off the lock.
    var journal: Journal
    var state: LicensingState
    var pendingUsage: [UsageEntry] = []
    /// The pending count at which a check flushes early: `usageFlushBatch`, raised while the journal cannot write
    /// so that checks do not retry a flush that cannot happen.
    var nextFlushAt: Int
    /// Idempotency keys whose METER record is appended but not yet durable, with the repeats waiting on it.
    var keysInFlight: [String: [@Sendable (Bool) -> Void]] = [:]
    var counters = CoreCounters()
    var rng = SystemRandomNumberGenerator()
    var decisionLog = DecisionLogSampler(perSecond: 20)
    var extraStatistics: (@Sendable () -> [KeyValue])?
    /// Told the time per CHECK of one sampled batch, and how many CHECKs it had (`observeCheckLatency`).
    var checkLatencyObserver: (@Sendable (Int64, Int) -> Void)?
    /// Counts check batches, to time one in `checkLatencySampleInterval`. Atomic: read before the lock is taken.
    let checkLatencySamples = Atomic<UInt64>(0)
    /// Subscriptions to the decision stream: while it is 0 a check only loads it (one relaxed load per batch).
    let decisionWatchers = Atomic<Int>(0)
    /// Where decisions go while someone watches; made with the first subscription and kept.
    var decisionRing: DecisionRing?
    var maxTokens: Int
    var maxLicenses: Int
    var lastStatus: (at: Timestamp, checks: UInt64)?
    /// Verifies EXCHANGE's subject tokens (`TollgateIdentity`, set by the daemon); nil: exchange is not configured.
    var exchangeVerifier: ExchangeVerifier?
    /// The issuers a role may name (the configured providers'), checked by ROLE_PUT; nil: not checked.
    var roleIssuers: Set<String>?
    /// Fleet mode (`ChangeReplicator`): nil on a single host.
    var replicator: (any ChangeReplicator)?
    /// Fleet mode: from this instant (the clock's nanoseconds) every check is denied `fleet_stale`; never on a single host.
    var fleetStaleAt: Int64 = .max

    public init(
        state: LicensingState, journal: Journal, recovery: RecoveryReport, fileSystem: any JournalFileSystem = PosixFileSystem(),
        clock: any WallClock, options: Options, logger: Logger
    ) {
        self.state = state
        self.journal = journal
        self.outage = JournalOutageRecovery(fileSystem: fileSystem)
        self.recovery = recovery
        self.clock = clock
        self.options = options
        self.nextFlushAt = options.usageFlushBatch
        self.maxTokens = options.maxTokens
        self.maxLicenses = options.maxLicenses
        self.logger = logger
        self.startedAt = clock.now()
    }

    /// Reads the state under the lock (tests, STATUS lines, seeding).
    public func withState<T>(_ body: (LicensingState) throws -> T) rethrows -> T {
        try lock.withLock { try body(state) }
    }

    // MARK: - Dispatch

    /// Answers `request` from `caller`. Returns the response when it is ready now; otherwise returns nil and calls
    /// `completion` (on the journal's thread) once the change is durable or has failed. A role the operation does
    /// not admit is answered `not_permitted`.
    public func handle(_ request: Request, from caller: Caller, completion: @escaping @Sendable (Response) -> Void) -> Response? {
        let operation = Operation.of(request.opcode)
        guard operation.permits(caller.role) else {
            return .error(.notPermitted, "\(request.opcode.name) is served on the admin socket only")
        }
        return operation.handler(self, request, caller, completion)
    }

    func hello(_ hello: HelloRequest, caller: Caller) -> Response {
        guard hello.minVersion <= tollgateProtocolVersion, tollgateProtocolVersion <= hello.maxVersion else {
            return .error(.unsupportedVersion, "this server speaks protocol version \(tollgateProtocolVersion) only")
        }
        return .hello(HelloResponse(version: tollgateProtocolVersion, role: caller.role, maxFrameSize: UInt32(options.maxFrameSize), server: options.serverName))
    }

    /// Applies a state change and waits until it is durable (start-up seeding and reloads, as the daemon itself).
    public func putDurably(_ request: Request) async throws {
        let response: Response = await withCheckedContinuation { continuation in
            if let immediate = handle(request, from: .daemon, completion: { continuation.resume(returning: $0) }) {
                continuation.resume(returning: immediate)
            }
        }
        if case .error(let status, let message) = response {
            throw CoreError(status: status, message: message)
        }
    }

    // MARK: - Journal

    /// Appends a change to the journal. Must be called with the lock held so journal order equals apply order.
    ///
    /// A `completion` goes to the journal as it is, not wrapped in a closure of this type's (one allocation less per
    /// durable request): it must report a failure through `journalWriteFailed(_:)`. Without one, failures are
    /// reported here.
    @discardableResult
    func appendLocked(_ change: StateChange, durability: Durability, completion: (@Sendable (Result<UInt64, JournalError>) -> Void)?) -> UInt64 {
        let payload: [UInt8]
        do {
            payload = try change.encodedPayload()
        } catch {
            // Lengths are validated before a change is made, so this is a bug; fail the request, not the process.
            logger.critical("a state change could not be encoded", metadata: ["tollgate.error": "\(error)"])
            completion?(.failure(JournalError(code: .io, message: "the change could not be encoded")))
            return 0
        }
        if durability == .durable { counters.durableWrites &+= 1 }
        // Fleet mode: the record is also committed to the fleet log, and a durable change waits for both.
        let replicated = replicator != nil && StateChange.replicatedTypes.contains(change.typeCode)
        let join = replicated ? completion.map(FleetCommitJoin.init) : nil
        // Unwrapped with `if let`, not `??`: through `??`'s generic autoclosure the closure was wrapped in two
        // reabstraction thunks, each an allocation. A completion (or the fleet's join, which ends in it) reports a
        // failure through `journalWriteFailed` itself.
        let done: @Sendable (Result<UInt64, JournalError>) -> Void
        if let join {
            done = { join.journalDone($0) }
        } else if let completion {
            done = completion
        } else {
            done = { [weak self] result in
                if case .failure(let error) = result { self?.journalWriteFailed(error) }
            }
        }
        let sequence = journal.append(type: change.typeCode, payload: payload, durability: durability, completion: done)
        if replicated {
            replicator!.enqueue(
                type: change.typeCode, payload: payload, reference: sequence,
                completion: join.map { join -> @Sendable (Bool) -> Void in { join.fleetDone($0) } })
        }
        return sequence
    }

    /// The answer to a durable change whose append completed with `error`: in fleet mode `timedOut` means the change
    /// is made here but the fleet log has not confirmed it (`fleet_unconfirmed`); anything else is a journal failure,
    /// logged and counted here, the change not made. The one mapping for every durable operation's completion.
    func answerToFailedAppend(_ error: JournalError) -> Response {
        if error.code == .timedOut {
            return .error(
                .fleetUnconfirmed,
                "the change is made on this host, but the fleet log did not confirm it in time; it is committed when the log is reachable. Retry with the same idempotency key, or read it back")
        }
        // The journal's error (paths, errno) is logged, never sent to a client.
        journalWriteFailed(error)
        return Self.notDurable
    }

    /// A durable change the journal could not make durable (also when the core is gone before its append completed).
    static let notDurable = Response.error(.unavailable, "the change could not be made durable; it was not made. Retry later")

    /// Logs and counts a record the journal could not make durable (called from its completion, off the lock).
    func journalWriteFailed(_ error: JournalError) {
        logger.error("journal write failed", metadata: ["tollgate.error": "\(error)"])
        lock.withLock { counters.durableFailures &+= 1 }
    }

    /// The journal in use (it changes only when a failed one is recovered).
    public var currentJournal: Journal { lock.withLock { journal } }

    /// One audit line per change made: notice level, `tollgate.audit=1` (journald: `TOLLGATE_AUDIT=1`) and the
    /// caller's uid from the socket's peer credentials, beside the journal record itself.
    func audit(_ message: Logger.Message, caller: UInt32?, _ metadata: Logger.Metadata) {
        var metadata = metadata
        metadata["tollgate.audit"] = "1"
        metadata["tollgate.uid"] = "\(caller.map(String.init) ?? "unknown")"
        logger.notice(message, metadata: metadata)
    }

    // MARK: - Configuration

    /// Applies new limits from a reloaded configuration.
    public func updateLimits(maxTokens: Int, maxLicenses: Int) {
        lock.withLock {
            self.maxTokens = maxTokens
            self.maxLicenses = maxLicenses
        }
    }
}

/// A request that a caller inside the daemon (seeding, reload) made failed: its wire status and message.
public struct CoreError: Error, CustomStringConvertible {
    public var status: Status
    public var message: String
    public var description: String { "\(status.name): \(message)" }
}
