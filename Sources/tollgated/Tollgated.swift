import ArgumentParser
import Logging
import ServiceLifecycle
import TollgateBuildInfo
import TollgateDaemon
import TollgateHTTP
import TollgateServer
import TollgateSystemd

#if canImport(Glibc)
import Glibc
#endif

/// `tollgated`: the daemon. A thin shell over `Daemon`: read the configuration, apply the command-line
/// overrides, set up logging, and run until SIGTERM or SIGINT.
@main
struct Tollgated: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tollgated",
        abstract: "Tollgate: the local enforcement point for API tokens and licenses.",
        discussion: """
            With no options it runs on the embedded default configuration, with its state in ./state. Every \
            configuration key is described in tollgated.json(5); the packaged service reads /etc/tollgate/tollgated.json \
            and keeps its state in /var/lib/tollgate. Under systemd the sockets come from tollgated.socket (api) and \
            tollgated-admin.socket (admin), by name. SIGHUP re-reads the configuration; SIGTERM and SIGINT stop \
            cleanly (journal flushed, exit 0).
            """,
        version: "tollgated \(BuildInfo.description)")

    @Option(name: .long, help: "A JSON configuration file (default: the embedded configuration).")
    var config: String?

    @Option(name: .customLong("state-dir"), help: "Directory of the journal and the sockets (default: ./state).")
    var stateDir: String?

    @Option(name: .long, help: "Path of the api socket (default: <state-dir>/tollgate.sock).")
    var socket: String?

    @Option(name: .customLong("admin-socket"), help: "Path of the admin socket (default: <state-dir>/tollgate-admin.sock).")
    var adminSocket: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String?

    @Flag(name: .customLong("print-default-config"), help: "Print the embedded default configuration and exit.")
    var printDefaultConfig = false

    @Flag(name: .customLong("check-config"), help: "Validate the configuration and exit.")
    var checkConfig = false

    func run() async throws {
        if printDefaultConfig {
            print(DaemonConfiguration.embeddedDefaultJSON)
            return
        }
        var configuration: DaemonConfiguration
        do {
            configuration = try config.map(DaemonConfiguration.load(path:)) ?? .embeddedDefault()
        } catch {
            Self.fail("\(error)")
        }
        if let stateDir { configuration.stateDirectory = stateDir }
        if let socket { configuration.apiSocket = socket }
        if let adminSocket { configuration.adminSocket = adminSocket }
        if let logLevel { configuration.logLevel = logLevel }
        guard let level = Logger.Level(rawValue: configuration.logLevel) else { Self.fail("unknown log level \(configuration.logLevel)") }
        if checkConfig {
            // The Stripe signing secrets are read as the daemon would read them (never printed).
            do { _ = try configuration.http?.resolvedPolicy() } catch { Self.fail("\(error)") }
            print("configuration OK")
            return
        }

        // Structured entries straight to journald when standard error is the journal; readable lines otherwise.
        let levelControl = LogLevelControl(level)
        let toJournal = JournaldLogHandler.standardErrorIsJournal()
        LoggingSystem.bootstrap { label -> any LogHandler in
            if toJournal { return JournaldLogHandler(identifier: "tollgated", control: levelControl) }
            return ControlledStreamLogHandler(label: label, control: levelControl)
        }
        let logger = Logger(label: "tollgated")

        var inherited: TollgateServer.Listeners?
        var inheritedHTTP: TollgateHTTPServer.Listeners?
        var inheritedGRPC: ListenerSource?
        if let activation = ListenDescriptors.takeFromEnvironment() {
            do {
                inherited = .init(api: .descriptor(try activation.descriptor(named: "api")), admin: .descriptor(try activation.descriptor(named: "admin")))
                // tollgated-http.socket (and a TCP socket unit named http-tcp) are optional.
                let http = try activation.optionalDescriptor(named: "http")
                let httpTCP = try activation.optionalDescriptor(named: "http-tcp", unix: false)
                if http != nil || httpTCP != nil {
                    inheritedHTTP = .init(unix: http.map { .descriptor($0) }, tcp: httpTCP.map { .descriptor($0) })
                }
                // tollgated-grpc.socket (Envoy's ext_authz over gRPC) is optional too.
                inheritedGRPC = try activation.optionalDescriptor(named: "grpc").map { .descriptor($0) }
            } catch {
                Self.fail("\(error)")
            }
        }
        let dependencies = Daemon.Dependencies(
            inheritedListeners: inherited, configurationPath: config, logLevelOverride: logLevel, logLevelControl: levelControl,
            notifier: SystemdNotifier(), watchdogInterval: SystemdNotifier.watchdogInterval(), inheritedHTTPListeners: inheritedHTTP,
            inheritedGRPCListener: inheritedGRPC)
        let daemon = Daemon(configuration: configuration, dependencies: dependencies, logger: logger)
        var groupConfiguration = ServiceGroupConfiguration(
            services: [.init(service: daemon)], gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger)
        // Graceful stop is bounded: after this the service is cancelled (systemd's TimeoutStopSec is the outer bound).
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(20)
        let group = ServiceGroup(configuration: groupConfiguration)
        do {
            try await group.run()
        } catch {
            Self.fail("\(Self.unwrap(error))")
        }
    }

    /// ServiceGroup wraps a failing service's error; show the cause.
    static func unwrap(_ error: Error) -> Error {
        if let error = error as? DaemonError { return error }
        let mirror = Mirror(reflecting: error)
        for child in mirror.children { if let inner = child.value as? Error { return unwrap(inner) } }
        return error
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardErrorWrite("tollgated: \(message)\n")
        Glibc.exit(1)
    }
}

enum FileHandle {
    static func standardErrorWrite(_ text: String) {
        var text = text
        text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    }
}
