import Logging
import ServiceLifecycle
import TollgateCore
import TollgateGRPC
import TollgateHTTP
import TollgateServer
import TollgateSystemd
import UnixSignals

#if canImport(Glibc)
import Glibc
#endif

/// Running under systemd: READY once serving, STATUS kept current, WATCHDOG pings while the loops answer,
/// RELOADING/READY around a SIGHUP reload, STOPPING on the way out.
extension Daemon {
    /// How often STATUS= is refreshed.
    static let statusInterval: Duration = .seconds(5)

    func serveUntilShutdown() async throws {
        let notifier = dependencies.notifier
        notifier.ready(status: core?.statusLine() ?? "ready")
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask { await self.refreshStatus(notifier) }
            if let interval = dependencies.watchdogInterval {
                tasks.addTask { await self.feedWatchdog(notifier, interval: interval) }
            }
            tasks.addTask { await self.reloadOnHangup(notifier) }
            try? await gracefulShutdown()
            tasks.cancelAll()
        }
        notifier.stopping(status: "stopping: draining connections and flushing the journal")
    }

    private func refreshStatus(_ notifier: SystemdNotifier) async {
        guard notifier.isActive else { return }
        while !Task.isCancelled {
            try? await Task.sleep(for: Self.statusInterval)
            if Task.isCancelled { return }
            if let line = core?.statusLine() { notifier.status(line) }
        }
    }

    /// Pings at half the interval, and only when every event loop ran a task and the state lock could be taken
    /// within that half, and every epoll loop of the api socket ran the probe sent half an interval earlier: a
    /// stuck daemon goes quiet and systemd restarts it.
    private func feedWatchdog(_ notifier: SystemdNotifier, interval: Duration) async {
        guard let group = eventLoopGroup, let core else { return }
        let server = self.server
        let probe = LivenessProbe(group: group, extraProbe: { core.withState { _ in true } && server?.apiLoopsAnsweredLastProbe() ?? true })
        let half = interval / 2
        logger.info("watchdog enabled", metadata: ["tollgate.watchdog.interval_ms": "\(interval.components.seconds * 1000 + interval.components.attoseconds / 1_000_000_000_000_000)"])
        while !Task.isCancelled {
            let started = ContinuousClock.now
            if await probe.isAlive(deadline: half) {
                notifier.watchdog()
            } else {
                logger.error("an event loop or the state lock did not answer; withholding the watchdog ping")
            }
            try? await Task.sleep(until: started + half, clock: .continuous)
        }
    }

    private func reloadOnHangup(_ notifier: SystemdNotifier) async {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        for await _ in hangups {
            if Task.isCancelled { return }
            notifier.reloading(status: "reloading the configuration")
            await reload()
            notifier.ready(status: core?.statusLine() ?? "ready")
        }
    }

    /// Re-reads the configuration file and applies what can change live: plans (seeded when missing), store limits and the
    /// log level. Anything invalid is rejected as a whole and the running configuration stays in force.
    public func reload() async {
        let candidate: DaemonConfiguration
        do {
            if let path = dependencies.configurationPath {
                candidate = try DaemonConfiguration.load(path: path)
            } else {
                candidate = .embeddedDefault()
            }
            guard Logger.Level(rawValue: candidate.logLevel) != nil else { throw ConfigurationError("unknown log level") }
        } catch {
            logger.error("reload rejected; the running configuration stays in force", metadata: ["tollgate.error": "\(error)"])
            return
        }
        var applied = candidate
        // The command line wins over the file, as at start-up.
        applied.stateDirectory = configuration.stateDirectory
        applied.apiSocket = configuration.apiSocket
        applied.adminSocket = configuration.adminSocket
        if let override = dependencies.logLevelOverride { applied.logLevel = override }
        for (name, old, new) in [
            ("max_frame_bytes", "\(configuration.maxFrameBytes)", "\(applied.maxFrameBytes)"),
            ("journal", "\(configuration.journalFsync)/\(configuration.snapshotAfterBytes)", "\(applied.journalFsync)/\(applied.snapshotAfterBytes)"),
            ("socket modes", "\(configuration.apiSocketMode)/\(configuration.adminSocketMode)", "\(applied.apiSocketMode)/\(applied.adminSocketMode)"),
        ] where old != new {
            logger.warning("changing \(name) needs a restart; the new value is ignored until then")
        }
        guard let core else { return }
        let seeding: PlanSeeding
        do {
            // Seeds only plans that do not exist yet; the journal's plans stay (Daemon+PlanSeeding).
            seeding = try await seedPlans(applied.plans, into: core, occasion: "reload")
        } catch {
            logger.error("reload could not seed a plan; plans seeded before it stay", metadata: ["tollgate.error": "\(error)"])
            return
        }
        core.updateLimits(maxTokens: applied.maxTokens, maxLicenses: applied.maxLicenses)
        installIdentity(applied.identity, into: core)
        do {
            _ = try await seedRoles(applied.identity?.roles ?? [], into: core, occasion: "reload")
        } catch {
            logger.error("reload could not seed an identity role; roles seeded before it stay", metadata: ["tollgate.error": "\(error)"])
        }
        server?.updateAccess(applied.access)
        // The HTTP routes, token sources and allow-list apply from the next request; its sockets and limits do not.
        if let httpServer {
            let http = applied.http ?? HTTPConfiguration()
            do {
                httpServer.updatePolicy(try http.resolvedPolicy())
            } catch {
                logger.error("reload could not read the Stripe signing secrets; the http routes and secrets in use stay", metadata: ["tollgate.error": "\(error)"])
            }
            httpServer.updateAccess(http.access)
            let running = configuration.http ?? HTTPConfiguration()
            if http.socket != running.socket || http.socketMode != running.socketMode || http.tcp?.host != running.tcp?.host
                || http.tcp?.port != running.tcp?.port || http.limits != running.limits
            {
                logger.warning("changing the http sockets or limits needs a restart; the new values are ignored until then")
            }
        } else if applied.http != nil {
            logger.warning("an http section added by a reload needs a restart to open its listener")
        }
        // Envoy's gRPC front end reads the same routes and token sources; its allow-list applies to new connections.
        if let grpcServer {
            grpcServer.updatePolicy((applied.http ?? HTTPConfiguration()).policy.authorization)
            let grpc = applied.grpc ?? GRPCConfiguration()
            grpcServer.updateAccess(grpc.access)
            let running = configuration.grpc ?? GRPCConfiguration()
            if grpc.socket != running.socket || grpc.socketMode != running.socketMode {
                logger.warning("changing the grpc socket needs a restart; the new value is ignored until then")
            }
        } else if applied.grpc != nil {
            logger.warning("a grpc section added by a reload needs a restart to open its listener")
        }
        if applied.connectionLimits != configuration.connectionLimits {
            logger.warning("changing connection limits needs a restart; the new values are ignored until then")
        }
        dependencies.logLevelControl?.level = Logger.Level(rawValue: applied.logLevel)!
        logger.notice("configuration reloaded", metadata: [
            "tollgate.plans_seeded": "\(seeding.created.joined(separator: ","))", "tollgate.plans_kept": "\(seeding.differing.joined(separator: ","))",
            "tollgate.log_level": "\(applied.logLevel)",
        ])
    }
}
