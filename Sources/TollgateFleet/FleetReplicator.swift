import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Synchronization
import TollgateCore
import TollgateEngine
import TollgateModel

/// Fleet mode's running part (`Protocol/FLEET.md` 4 and 5): the core's `ChangeReplicator`, a writer that commits
/// what the core queued to the fleet log in batches, and a reader that applies everyone else's records in sequence
/// order, woken by NOTIFY and by a poll, and confirms catch-ups to the core's horizon. Two connections, each made
/// again with backoff (and failover through the standby addresses) whenever it fails.
public final class FleetReplicator: ChangeReplicator, Sendable {
    public let settings: FleetSettings
    public let incarnation: UInt64
    let core: ApplicationCore
    let clock: any WallClock
    let logger: Logger
    let queue: OutboundQueue
    private let writerKick = Wakeup()
    private let readerKick = Wakeup()

    struct Shared {
        var cursor: LogCursor
        var horizon: FleetHorizon
        var writerConnected = false
        var caughtUpOnce = false
        var gaps: UInt64 = 0
        var catchUps: UInt64 = 0
        var liveHosts = 1
        var lastError: String?
    }
    let shared: NIOLockedValueBox<Shared>
    private let acceptingChanges = Atomic<Bool>(false)
    /// Raised when the host is first ready (caught up, and the writer connected); nil from then on.
    private let firstCatchUp = NIOLockedValueBox<[Wakeup]?>([])

    /// `journalSequenceAtStart`: the local journal's last sequence after replay; the core's state holds the position.
    public init(settings: FleetSettings, core: ApplicationCore, journalSequenceAtStart: UInt64, clock: any WallClock, logger: Logger) {
        self.settings = settings
        var incarnation: UInt64 = 0
        while incarnation == 0 { incarnation = UInt64.random(in: .min ... .max) }
        self.incarnation = incarnation
        self.core = core
        self.clock = clock
        self.logger = logger
        let kick = writerKick
        queue = OutboundQueue(wake: { kick.raise() })
        shared = NIOLockedValueBox(Shared(
            cursor: LogCursor(hostID: settings.hostID, incarnation: incarnation, journalSequenceAtStart: journalSequenceAtStart, position: core.fleetPosition),
            horizon: FleetHorizon(horizonMillis: settings.horizonMillis, startedAt: clock.now())))
        core.attachReplicator(self, staleAt: shared.withLockedValue { $0.horizon.staleAt })
    }

    // MARK: ChangeReplicator

    public var acceptsChanges: Bool { acceptingChanges.load(ordering: .relaxed) }

    public func enqueue(type: UInt8, payload: [UInt8], reference: UInt64, completion: (@Sendable (Bool) -> Void)?) {
        let deadline = clock.now().nanoseconds + settings.commitTimeoutMillis * 1_000_000
        var answer: (@Sendable (OutboundQueue.Outcome) -> Void)?
        if let completion { answer = { completion($0 == .committed) } }
        queue.enqueue(type: type, payload: payload, reference: reference, deadline: deadline, completion: answer)
    }

    public func enqueueUsage(payload: [UInt8], reference: UInt64, idempotencyKey: String, completion: @escaping @Sendable (UsageCommit) -> Void) {
        let deadline = clock.now().nanoseconds + settings.commitTimeoutMillis * 1_000_000
        queue.enqueue(type: LogCursor.usageType, payload: payload, reference: reference, key: idempotencyKey.isEmpty ? nil : idempotencyKey, deadline: deadline) { outcome in
            switch outcome {
            case .committed: completion(.counted)
            case .refused: completion(.duplicate)
            case .timedOut: completion(.unconfirmed)
            }
        }
    }

    // MARK: Running

    /// Runs the writer, the reader and the poll until the task is cancelled.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.writerLoop() }
            group.addTask { await self.readerLoop() }
            group.addTask { await self.tick() }
            await group.waitForAll()
        }
    }

    /// Returns once the first catch-up is confirmed and changes can be committed, or after `timeoutMillis` (the
    /// caller's bound on start-up).
    public func waitForFirstCatchUp(timeoutMillis: Int64) async {
        let wake = Wakeup()
        let waiting = firstCatchUp.withLockedValue { waiters -> Bool in
            guard waiters != nil else { return false }
            waiters!.append(wake)
            return true
        }
        guard waiting else { return }
        let timer = Task {
            try? await Task.sleep(for: .milliseconds(timeoutMillis))
            wake.raise()
        }
        await wake.wait()
        timer.cancel()
    }

    /// The poll: answers waits past their deadline, wakes the reader (catch-up even without NOTIFY) and the writer
    /// (heartbeat).
    private func tick() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(settings.pollMillis))
            // Here, not in the writer: a writer reconnecting (backing off) must not keep waiting requests unanswered.
            queue.expire(now: clock.now().nanoseconds)
            readerKick.raise()
            writerKick.raise()
        }
    }

    private func connectWithBackoff(role: String) async -> PostgresConnection? {
        var backoff = ReconnectBackoff(addresses: settings.addresses.count)
        while !Task.isCancelled {
            let (index, delay) = backoff.next
            if delay > 0 { try? await Task.sleep(for: .milliseconds(delay)) }
            let address = settings.addresses[index]
            do {
                let connection = try await PostgresFleetLog.connect(to: address, settings: settings, timeoutMillis: settings.queryTimeoutMillis, logger: logger)
                try await bounded(connection, millis: settings.queryTimeoutMillis) {
                    try await PostgresFleetLog.ensureSchema(connection, logger: self.logger)
                }
                logger.notice("fleet log connected", metadata: ["tollgate.fleet.role": "\(role)", "tollgate.fleet.address": "\(address)"])
                return connection
            } catch {
                // The error names the address and PostgreSQL's reason, never the password.
                if backoff.failures == 0 || backoff.failures % 20 == 0 {
                    logger.warning("fleet log unreachable", metadata: [
                        "tollgate.fleet.role": "\(role)", "tollgate.fleet.address": "\(address)", "tollgate.error": "\(String(reflecting: error).prefix(300))",
                    ])
                }
                shared.withLockedValue { $0.lastError = "\(address): \(error)" }
                backoff.failed()
            }
        }
        return nil
    }

    // MARK: Writer

    private func setWriterConnected(_ connected: Bool) {
        let accepts = shared.withLockedValue { s -> Bool in
            s.writerConnected = connected
            return connected && s.caughtUpOnce
        }
        acceptingChanges.store(accepts, ordering: .relaxed)
        // Ready for the first time (caught up and able to commit): start-up may go on.
        if accepts {
            let waiters = firstCatchUp.withLockedValue { w -> [Wakeup] in
                defer { w = nil }
                return w ?? []
            }
            for waiter in waiters { waiter.raise() }
        }
    }

    private func writerLoop() async {
        while !Task.isCancelled {
            guard let connection = await connectWithBackoff(role: "writer") else { return }
            do {
                // What a lost answer may have committed already is not committed twice (FLEET.md 4.1).
                let last = try await bounded(connection, millis: settings.queryTimeoutMillis) {
                    try await PostgresFleetLog.lastReference(hostID: self.settings.hostID, incarnation: self.incarnation, on: connection, logger: self.logger)
                }
                // A keyed METER of those commits that the log does not hold was refused for its key (FLEET.md 10.3).
                let keyed = queue.keyedReferences(upTo: last)
                var held = Set<UInt64>()
                if !keyed.isEmpty {
                    held = try await bounded(connection, millis: settings.queryTimeoutMillis) {
                        try await PostgresFleetLog.heldReferences(keyed, hostID: self.settings.hostID, incarnation: self.incarnation, on: connection, logger: self.logger)
                    }
                }
                queue.committed(upTo: last, refused: Set(keyed).subtracting(held))
                setWriterConnected(true)
                var lastBeat: Int64?
                while !Task.isCancelled {
                    // The heartbeat every poll, also under a load that never leaves the queue empty: the other hosts
                    // count this one live by it, and divide their rate limits by that count (FLEET.md 9).
                    let now = clock.now().nanoseconds
                    if lastBeat.map({ now - $0 >= settings.pollMillis * 1_000_000 }) ?? true {
                        try await beat(on: connection)
                        lastBeat = now
                    }
                    let batch = queue.takeBatch(limit: 512)
                    if batch.isEmpty {
                        await writerKick.wait()
                        continue
                    }
                    do {
                        let refused = try await bounded(connection, millis: settings.queryTimeoutMillis) {
                            try await PostgresFleetLog.commit(batch, hostID: self.settings.hostID, incarnation: self.incarnation, on: connection, logger: self.logger)
                        }
                        queue.committed(batch, refused: refused)
                    } catch {
                        queue.failed()
                        throw error
                    }
                }
            } catch {
                logger.warning("fleet log writer lost its connection", metadata: ["tollgate.error": "\(String(reflecting: error).prefix(300))"])
            }
            setWriterConnected(false)
            try? await connection.close()
        }
    }

    /// Upserts this host's row and reads how many hosts are live; the rate rules are divided by that count.
    private func beat(on connection: PostgresConnection) async throws {
        let position = core.fleetPosition
        let live = try await bounded(connection, millis: settings.queryTimeoutMillis) {
            try await PostgresFleetLog.heartbeat(
                hostID: self.settings.hostID, incarnation: self.incarnation, position: position, liveWithinMillis: self.settings.liveWindowMillis,
                on: connection, logger: self.logger)
        }
        shared.withLockedValue { $0.liveHosts = live }
        core.setRateShare(hosts: live)
    }

    // MARK: Reader

    private func readerLoop() async {
        while !Task.isCancelled {
            guard let connection = await connectWithBackoff(role: "reader") else { return }
            do {
                try await connection.listen(on: PostgresFleetLog.channel) { notifications in
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        // Every notification wakes the catch-up; the poll wakes it too (NOTIFY is never trusted alone).
                        group.addTask {
                            for try await _ in notifications { self.readerKick.raise() }
                            throw FleetLogError("the notification stream ended")
                        }
                        group.addTask {
                            while !Task.isCancelled {
                                try await self.catchUp(on: connection)
                                await self.readerKick.wait()
                            }
                        }
                        defer { group.cancelAll() }
                        try await group.next()
                    }
                }
            } catch {
                logger.warning("fleet log reader lost its connection", metadata: ["tollgate.error": "\(String(reflecting: error).prefix(300))"])
            }
            try? await connection.close()
        }
    }

    /// Reads and applies everything after the position; confirms the catch-up (at the time it was sent) when the end
    /// of the log was reached with nothing left unapplied.
    private func catchUp(on connection: PostgresConnection) async throws {
        let sentAt = clock.now()
        let pageSize = 1_000
        while true {
            let position = shared.withLockedValue { $0.cursor.position }
            let rows = try await bounded(connection, millis: settings.queryTimeoutMillis) {
                try await PostgresFleetLog.read(after: position, limit: pageSize, on: connection, logger: self.logger)
            }
            let (changes, error, reached) = shared.withLockedValue { s -> ([StateChange], LogCursorError?, UInt64) in
                let (changes, error) = s.cursor.advance(over: rows)
                return (changes, error, s.cursor.position)
            }
            core.applyFleetRecords(changes, position: reached)
            if let error {
                shared.withLockedValue { $0.gaps &+= 1 }
                logger.error("fleet log cannot be applied past this point; retrying on the next poll", metadata: ["tollgate.fleet.error": "\(error)"])
                return
            }
            if rows.count < pageSize { break }
        }
        let (staleAt, first) = shared.withLockedValue { s -> (Timestamp, Bool) in
            s.horizon.confirm(sentAt: sentAt)
            s.catchUps &+= 1
            defer { s.caughtUpOnce = true }
            return (s.horizon.staleAt, !s.caughtUpOnce)
        }
        core.confirmFleetCatchUp(staleAt: staleAt)
        if first { setWriterConnected(shared.withLockedValue { $0.writerConnected }) }
    }
}
