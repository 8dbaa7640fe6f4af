import Logging
import TollgateFleet
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Synchronization
import ServiceLifecycle
import TollgateEngine
import TollgateJournal
import TollgateModel
import TollgateProtocol
import TollgateCore
import TollgateAuthorization
import TollgateGRPC
import TollgateHTTP
import TollgateIdentity
import TollgateMetrics
import TollgateServer
import TollgateSystemd

#if canImport(Glibc)
import Glibc
#endif

/// The composition root shared by `tollgated` and the tests: it opens the state directory, replays the journal,
/// seeds the configured plans that do not exist yet, and starts the server. Tests start the real daemon in-process with it.
public final class Daemon: Service, Sendable {
    public struct Dependencies: Sendable {
        public var clock: any WallClock
        public var fileSystem: any JournalFileSystem
        /// Listening sockets to adopt instead of binding the configured paths (socket activation, tests).
        public var inheritedListeners: TollgateServer.Listeners?
        /// The HTTP listeners passed by socket activation (`http`, `http-tcp`); they start the HTTP front end even
        /// without an `http` section (which then takes its defaults).
        public var inheritedHTTPListeners: TollgateHTTPServer.Listeners?
        /// The gRPC listener passed by socket activation (`grpc`); it starts Envoy's ext_authz front end even without
        /// a `grpc` section.
        public var inheritedGRPCListener: ListenerSource?
        /// Overrides the configuration's `event_loop_threads` (tests).
        public var eventLoopThreads: Int?
        /// The file a SIGHUP re-reads; nil: the embedded default.
        public var configurationPath: String?
        /// A log level given on the command line, which a reload must not undo.
        public var logLevelOverride: String?
        /// The daemon-wide log level, changed by a reload.
        public var logLevelControl: LogLevelControl?
        public var notifier: SystemdNotifier
        /// From `WATCHDOG_USEC`; nil: no watchdog.
        public var watchdogInterval: Duration?
        /// How long a graceful stop waits for the journal's backlog before dropping it unacknowledged.
        public var shutdownFlushTimeout: Duration

        public init(
            clock: any WallClock = SystemWallClock(), fileSystem: any JournalFileSystem = PosixFileSystem(),
            inheritedListeners: TollgateServer.Listeners? = nil, eventLoopThreads: Int? = nil,
            configurationPath: String? = nil, logLevelOverride: String? = nil, logLevelControl: LogLevelControl? = nil,
            notifier: SystemdNotifier = SystemdNotifier(environment: [:]), watchdogInterval: Duration? = nil,
            shutdownFlushTimeout: Duration = .seconds(10), inheritedHTTPListeners: TollgateHTTPServer.Listeners? = nil,
            inheritedGRPCListener: ListenerSource? = nil
        ) {
            self.inheritedGRPCListener = inheritedGRPCListener
            self.inheritedHTTPListeners = inheritedHTTPListeners
            self.shutdownFlushTimeout = shutdownFlushTimeout
            self.clock = clock
            self.fileSystem = fileSystem
            self.inheritedListeners = inheritedListeners
            self.eventLoopThreads = eventLoopThreads
            self.configurationPath = configurationPath
            self.logLevelOverride = logLevelOverride
            self.logLevelControl = logLevelControl
            self.notifier = notifier
            self.watchdogInterval = watchdogInterval
        }
    }

    public let configuration: DaemonConfiguration
    let dependencies: Dependencies
    let logger: Logger

    /// What `start` sets up and `stop` takes down, read meanwhile by the status, watchdog and reload tasks (and by
    /// tests): under one lock, so that no read races a start or a stop. Nothing is awaited while it is held.
    struct Lifecycle {
        var core: ApplicationCore?
        var server: TollgateServer?
        var httpServer: TollgateHTTPServer?
        var grpcServer: TollgateGRPCServer?
        var group: MultiThreadedEventLoopGroup?
        var journal: Journal?
        var lockDescriptor: CInt = -1
        var boundPaths: [String] = []
        var decisionLog: DecisionLog?
        var fleet: FleetReplicator?
        var fleetTask: Task<Void, Never>?
    }
    private let lifecycle = Mutex(Lifecycle())

    public var core: ApplicationCore? { lifecycle.withLock { $0.core } }
    /// Fleet mode's replicator, when `fleet.enabled`.
    public var fleet: FleetReplicator? { lifecycle.withLock { $0.fleet } }
    func setFleet(_ fleet: FleetReplicator, task: Task<Void, Never>) { lifecycle.withLock { ($0.fleet, $0.fleetTask) = (fleet, task) } }
    func takeFleetTask() -> Task<Void, Never>? { lifecycle.withLock { running in defer { running.fleetTask = nil }; return running.fleetTask } }
    var server: TollgateServer? { lifecycle.withLock { $0.server } }
    /// The HTTP forward-auth front end, when configured or socket-activated.
    public var httpServer: TollgateHTTPServer? { lifecycle.withLock { $0.httpServer } }
    /// Envoy's gRPC ext_authz front end, when configured or socket-activated.
    public var grpcServer: TollgateGRPCServer? { lifecycle.withLock { $0.grpcServer } }
    var eventLoopGroup: MultiThreadedEventLoopGroup? { lifecycle.withLock { $0.group } }
    /// Prometheus metrics of this daemon (`Daemon+Observability`), served by the HTTP listener.
    public let metrics = TollgateMetrics()
    /// What `/metrics` and `/readyz` read, handed over under a lock: the daemon's own properties belong to the
    /// lifecycle, and a scrape runs on an event loop.
    let observed = ObservedParts()

    public init(configuration: DaemonConfiguration, dependencies: Dependencies = .init(), logger: Logger) {
        self.configuration = configuration
        self.dependencies = dependencies
        self.logger = logger
    }

    /// Runs until graceful shutdown (SIGTERM/SIGINT through the service group), then stops in order: stop
    /// accepting, flush pending usage, fsync the journal, close connections.
    public func run() async throws {
        try await start()
        try await serveUntilShutdown()
        try await stop()
    }

    /// Everything before READY: when this returns, the journal is replayed and both sockets accept.
    public func start() async throws {
        try prepareStateDirectory()
        var options = JournalOptions(
            segmentTargetBytes: configuration.snapshotAfterBytes,
            // The core already batches check consumption for `usage_flush_interval_ms`; the journal must then write
            // that batch promptly, or a crash could lose two intervals instead of one.
            flushInterval: .milliseconds(min(10, configuration.usageFlushIntervalMilliseconds)),
            fsync: configuration.journalFsync)
        let metrics = self.metrics
        options.batchObserver = { metrics.observe($0) }
        let (journal, recovered): (Journal, RecoveredState)
        do {
            (journal, recovered) = try Journal.open(directory: configuration.journalDirectory, options: options, fileSystem: dependencies.fileSystem)
        } catch let error as JournalError where error.code == .corruption {
            throw DaemonError(
                .journal,
                "the journal in \(configuration.journalDirectory) is corrupt in the middle, not just torn at its end: \(error.message). "
                    + "Refusing to start, because skipping the damage could lose acknowledged changes or resurrect revoked tokens; "
                    + "restore the directory from a backup, or move the damaged file aside if losing the records after the damage is acceptable")
        } catch let error as JournalError {
            throw DaemonError(.journal, "cannot open the journal in \(configuration.journalDirectory): \(error.message)")
        }
        lifecycle.withLock { $0.journal = journal }
        let state: LicensingState
        do {
            state = try ApplicationCore.rebuildState(from: recovered)
        } catch {
            throw DaemonError(.journal, "\(error); refusing to start")
        }
        let report = recovered.report
        if report.tornTailRepaired {
            logger.warning("journal had a torn tail; cut back to the last valid record", metadata: [
                "tollgate.journal.file": "\(report.repairedFile ?? "?")", "tollgate.journal.offset": "\(report.repairedOffset ?? -1)",
                "tollgate.journal.truncated_bytes": "\(report.truncatedBytes)",
            ])
        }
        logger.info("journal replayed", metadata: [
            "tollgate.journal.snapshot": "\(report.snapshotSequence.map(String.init) ?? "none")",
            "tollgate.journal.records": "\(report.recordsReplayed)", "tollgate.journal.last_seq": "\(report.lastSequence)",
            "tollgate.tokens": "\(state.tokens.count)", "tollgate.licenses": "\(state.licenses.count)",
        ])

        let core = ApplicationCore(
            state: state, journal: journal, recovery: report, fileSystem: dependencies.fileSystem, clock: dependencies.clock,
            options: .init(
                maxFrameSize: configuration.maxFrameBytes, maxTokens: configuration.maxTokens, maxLicenses: configuration.maxLicenses,
                usageFlushInterval: .milliseconds(Int64(configuration.usageFlushIntervalMilliseconds)),
                maxDerivedLifetimeMillis: Int64(configuration.maxDerivedLifetimeSeconds) * 1000,
                reservationLifetimeMillis: Int64(configuration.reservationLifetimeSeconds) * 1000,
                sweepInterval: .seconds(Int64(configuration.sweepIntervalSeconds)),
                tokenRetentionMillis: Int64(configuration.tokenRetentionDays) * 86_400_000,
                idempotencyRetentionMillis: Int64(configuration.idempotencyRetentionHours) * 3_600_000,
                expiryWarningMillis: Int64(configuration.expiryWarningHours) * 3_600_000,
                ledgerRetentionMillis: Int64(configuration.ledgerRetentionDays) * 86_400_000),
            logger: logger)
        lifecycle.withLock { $0.core = core }
        installIdentity(configuration.identity, into: core)
        core.observeCheckLatency { metrics.observeCheckLatency(nanosecondsPerCheck: $0, checks: $1) }
        let fleet = try await startFleet(core: core, journalSequenceAtStart: report.lastSequence)
        // The journal is the truth: the configuration only seeds plans that do not exist yet (Daemon+PlanSeeding).
        // A fleet host that cannot reach the log yet seeds nothing: the fleet's plans arrive when it catches up.
        if fleet?.acceptsChanges ?? true {
            _ = try await seedPlans(configuration.plans, into: core, occasion: "start")
            // Roles likewise (Daemon+RoleSeeding): after the verifier is installed, so their issuers are known.
            _ = try await seedRoles(configuration.identity?.roles ?? [], into: core, occasion: "start")
        }

        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, dependencies.eventLoopThreads ?? configuration.eventLoopThreads))
        lifecycle.withLock { $0.group = group }
        let server = TollgateServer(core: core, group: group, access: configuration.access, limits: configuration.connectionLimits,
            apiIO: configuration.apiIO, logger: logger)
        lifecycle.withLock { $0.server = server }
        observed.set { $0.core = core; $0.server = server }
        let decisionLog = DecisionLog()
        if configuration.decisionLog.sampleEvery > 0 {
            decisionLog.start(core: core, configuration: configuration.decisionLog, clock: dependencies.clock, logger: logger)
            lifecycle.withLock { $0.decisionLog = decisionLog }
        }
        core.setExtraStatistics(Self.statistics(server: server, http: nil, decisionLog: decisionLog, fleet: fleet))
        let listeners = dependencies.inheritedListeners ?? TollgateServer.Listeners(
            api: .path(configuration.resolvedAPISocket, mode: mode_t(configuration.apiSocketMode)),
            admin: .path(configuration.resolvedAdminSocket, mode: mode_t(configuration.adminSocketMode)))
        for case .path(let path, _) in [listeners.api, listeners.admin] { try refuseIfServed(path) }
        try await server.start(listeners)
        let paths = [listeners.api, listeners.admin].compactMap { if case .path(let p, _) = $0 { return p } else { return nil } }
        lifecycle.withLock { $0.boundPaths = paths }
        try await startHTTP(core: core, group: group)
        try await startGRPC(core: core, group: group)
        observed.set { $0.accepting = true }
        logger.notice("tollgated ready", metadata: [
            "tollgate.api_socket": "\(configuration.resolvedAPISocket)", "tollgate.admin_socket": "\(configuration.resolvedAdminSocket)",
        ])
    }

    /// Graceful stop, bounded whatever the backlog: stop accepting; journal check consumption; wait up to
    /// `shutdownFlushTimeout` (10 s: inside the 20 s the service group allows and systemd's `TimeoutStopSec=30s`) for what is queued to become durable, then close the journal (with what is still
    /// queued, if it made it in time, or dropping it unacknowledged: those clients get `unavailable` or see the
    /// connection close, and retry); then close the connections. Nothing acknowledged is lost. Idempotent.
    public func stop() async throws {
        observed.set { $0 = ObservedParts.Parts() }
        let (server, httpServer, decisionLog, grpcServer) = lifecycle.withLock { running in
            defer { (running.server, running.httpServer, running.decisionLog, running.grpcServer) = (nil, nil, nil, nil) }
            return (running.server, running.httpServer, running.decisionLog, running.grpcServer)
        }
        decisionLog?.stop()
        await server?.stopAccepting()
        await httpServer?.stopAccepting()
        await grpcServer?.stop()
        await stopFleet()
        let core = self.core
        core?.flushPendingUsage()
        let journal = lifecycle.withLock { running in
            running.journal = core?.currentJournal ?? running.journal
            return running.journal
        }
        var firstError: Error?
        var closePolicy = Journal.ClosePolicy.writeQueued
        do {
            try journal?.flush(timeout: dependencies.shutdownFlushTimeout)
            core?.flushPendingUsage()
        } catch let error as JournalError where error.code == .timedOut {
            closePolicy = .abandonQueued
            logger.warning("the journal did not write its backlog in time; dropping what is queued, unacknowledged", metadata: [
                "tollgate.journal.pending": "\(journal?.statistics.pendingRecords ?? 0)", "tollgate.timeout_ms": "\(dependencies.shutdownFlushTimeout.components.seconds * 1000 + dependencies.shutdownFlushTimeout.components.attoseconds / 1_000_000_000_000_000)",
            ])
        } catch {
            firstError = error
            logger.error("final journal flush failed", metadata: ["tollgate.error": "\(error)"])
        }
        // Closed while the event loops still run, so that the answers of dropped records reach their connections.
        do { try journal?.close(closePolicy) } catch { if closePolicy == .writeQueued { firstError = firstError ?? error } }
        let (group, paths, lockDescriptor) = lifecycle.withLock { running in
            defer { (running.journal, running.group, running.boundPaths, running.lockDescriptor) = (nil, nil, [], -1) }
            return (running.group, running.boundPaths, running.lockDescriptor)
        }
        await server?.shutdown()
        if let group { try? await group.shutdownGracefully() }
        for path in paths { unlink(path) }
        if lockDescriptor >= 0 { close(lockDescriptor) }
        logger.notice("tollgated stopped")
        if let firstError { throw firstError }
    }

    /// Gives the core the verifier for `identity` (or none): at start-up and on reload. Key caches start empty. The
    /// roles are not the configuration's but the state's (seeded from it: `seedRoles`), passed per exchange; a role
    /// may name only an issuer a provider is configured for.
    func installIdentity(_ identity: IdentityConfiguration?, into core: ApplicationCore) {
        guard let identity else { return core.setExchangeVerifier(nil, issuers: []) }
        let clock = dependencies.clock
        let verifier = identity.verifier(clock: { clock.now().millis }, logger: logger)
        core.setExchangeVerifier({ await verifier.grant(for: $0, roles: $1) }, issuers: Set(identity.providers.map(\.issuer)))
    }

    /// Starts the HTTP front end on the same event loops and core, when the configuration has an `http` section or
    /// systemd passed its socket.
    private func startHTTP(core: ApplicationCore, group: MultiThreadedEventLoopGroup) async throws {
        guard configuration.http != nil || dependencies.inheritedHTTPListeners != nil else { return }
        let http = configuration.http ?? HTTPConfiguration()
        let listeners = dependencies.inheritedHTTPListeners ?? TollgateHTTPServer.Listeners(
            unix: .path(http.resolvedSocket(stateDirectory: configuration.stateDirectory), mode: mode_t(http.socketMode)),
            tcp: http.tcp.map { .address(host: $0.host, port: $0.port) })
        if case .path(let path, _)? = listeners.unix { try refuseIfServed(path) }
        let server = TollgateHTTPServer(
            core: core, group: group, clock: dependencies.clock, policy: try http.resolvedPolicy(), access: http.access, limits: http.limits, logger: logger,
            endpoints: http.observability ? observabilityEndpoints() : [:])
        try await server.start(listeners)
        lifecycle.withLock { running in
            running.httpServer = server
            if case .path(let path, _)? = listeners.unix { running.boundPaths.append(path) }
        }
        observed.set { $0.http = server }
        // Handed to the core under its lock, so STATS on any event loop sees the HTTP server without a race.
        if let binary = self.server {
            let decisionLog = lifecycle.withLock { $0.decisionLog }
            core.setExtraStatistics(Self.statistics(server: binary, http: server, decisionLog: decisionLog, fleet: self.fleet))
        }
    }

    /// Starts Envoy's gRPC ext_authz front end on the same event loops and core, with the `http` section's routes
    /// and token sources, when the configuration has a `grpc` section or systemd passed its socket.
    private func startGRPC(core: ApplicationCore, group: MultiThreadedEventLoopGroup) async throws {
        guard configuration.grpc != nil || dependencies.inheritedGRPCListener != nil else { return }
        let grpc = configuration.grpc ?? GRPCConfiguration()
        let source = dependencies.inheritedGRPCListener ?? .path(grpc.resolvedSocket(stateDirectory: configuration.stateDirectory), mode: mode_t(grpc.socketMode))
        if case .path(let path, _) = source { try refuseIfServed(path) }
        let policy = (configuration.http ?? HTTPConfiguration()).policy.authorization
        let server = TollgateGRPCServer(core: core, group: group, clock: dependencies.clock, policy: policy, access: grpc.access, logger: logger)
        try await server.start(source)
        lifecycle.withLock { running in
            running.grpcServer = server
            if case .path(let path, _) = source { running.boundPaths.append(path) }
        }
    }

    /// What STATS adds to the core's counters: the binary front end's connections and durable backlog and, when it
    /// runs, the HTTP front end's connections (its checks are in checks_total like every other). Both are held
    /// weakly: a stopped daemon answers without them.
    static func statistics(server: TollgateServer, http: TollgateHTTPServer?, decisionLog: DecisionLog?, fleet: FleetReplicator?) -> @Sendable () -> [KeyValue] {
        { [weak server, weak http, weak fleet] in
            guard let stats = server?.connectionStatistics, let backlog = server?.backlogStatistics else { return [] }
            // The sampled decision log (`decision_log`): lines written, sampled decisions over the per-second cap,
            // decisions lost because the log fell behind the ring.
            let log = decisionLog?.statistics ?? DecisionLog.Counts()
            var extra = [
                KeyValue("decision_log_lines", "\(log.written)"), KeyValue("decision_log_over_cap", "\(log.overCap)"),
                KeyValue("decision_log_lost", "\(log.lost)"),
                KeyValue("connections", "\(stats.connections)"), KeyValue("connections_refused", "\(stats.refusedConnections)"),
                KeyValue("requests_refused", "\(stats.refusedRequests)"),
                KeyValue("durable_backlog", "\(backlog.waiting)"), KeyValue("durable_backlog_peak", "\(backlog.peak)"),
                KeyValue("durable_backlog_holds", "\(backlog.holds)"),
            ]
            if let counts = http?.statistics {
                extra += [KeyValue("http_connections", "\(counts.connections)"), KeyValue("http_connections_refused", "\(counts.refused)")]
            }
            if let stripe = http?.stripeStatistics {
                extra += [
                    KeyValue("stripe_events_applied", "\(stripe.applied)"), KeyValue("stripe_events_duplicate", "\(stripe.duplicates)"),
                    KeyValue("stripe_events_stale", "\(stripe.stale)"), KeyValue("stripe_events_unchanged", "\(stripe.unchanged)"),
                    KeyValue("stripe_events_unknown_type", "\(stripe.unknownTypes)"), KeyValue("stripe_events_unmapped", "\(stripe.unmapped)"),
                    KeyValue("stripe_events_refused", "\(stripe.refused)"), KeyValue("stripe_bad_signatures", "\(stripe.badSignatures)"),
                ]
            }
            return extra + fleetStatistics(fleet)
        }
    }

    private func prepareStateDirectory() throws {
        let dir = configuration.stateDirectory
        if mkdir(dir, 0o700) != 0 && errno != EEXIST {
            throw DaemonError(.stateDirectory, "cannot create the state directory \(dir): \(String(cString: strerror(errno)))")
        }
        let lockPath = dir + "/LOCK"
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw DaemonError(.stateDirectory, "cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw DaemonError(.stateDirectory, "the state directory \(dir) is in use by another tollgated")
        }
        lifecycle.withLock { $0.lockDescriptor = fd }
    }

    /// Refuses to take over a socket path on which another process still answers.
    private func refuseIfServed(_ path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw DaemonError(.socket, "the socket path \(path) is longer than \(MemoryLayout.size(ofValue: address.sun_path) - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if connected == 0 { throw DaemonError(.socket, "another process is serving \(path)") }
    }
}

/// Why the daemon cannot start. Compare by `code`; the description is for the operator (it names paths).
public struct DaemonError: Error, CustomStringConvertible, Hashable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let description: String
        /// The state directory cannot be created or locked, or another tollgated holds it.
        public static let stateDirectory = Code(description: "state_directory")
        /// The journal cannot be opened, or its records do not rebuild a state.
        public static let journal = Code(description: "journal")
        /// A socket path cannot be used (too long, or another process serves it).
        public static let socket = Code(description: "socket")
    }

    public var code: Code
    public var description: String
    public init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }
}
