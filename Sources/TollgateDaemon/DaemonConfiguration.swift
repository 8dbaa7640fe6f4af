import Foundation
import TollgateBilling
import Synchronization
import TollgateHTTP
import TollgateModel
import TollgateServer

/// Everything `tollgated` can be told, from a JSON file or from the embedded default.
///
/// Unknown keys are rejected (a mistyped option must not be silently ignored). Paths that are relative are
/// taken relative to the working directory of the daemon.
public struct DaemonConfiguration: Sendable, Equatable {
    public var stateDirectory: String = "./state"
    /// Empty: `<state dir>/tollgate.sock`.
    public var apiSocket: String = ""
    /// Empty: `<state dir>/tollgate-admin.sock`.
    public var adminSocket: String = ""
    public var apiSocketMode: UInt32 = 0o660
    public var adminSocketMode: UInt32 = 0o600
    public var maxFrameBytes: Int = 65536
    public var usageFlushIntervalMilliseconds: Int = 100
    public var journalFsync: Bool = true
    public var snapshotAfterBytes: Int = 64 << 20
    public var maxTokens: Int = 10_000_000
    public var maxLicenses: Int = 1_000_000
    public var logLevel: String = "info"
    /// Event loops serving the sockets. One by default: every request takes the state lock, and on a small host
    /// a second loop mostly adds lock hand-offs and wake-ups, while the callers need the other cores.
    public var eventLoopThreads: Int = 1
    /// What serves the api socket's I/O (`api_io`, `api_io_threads`): the purpose-built epoll loops (the default:
    /// about half the instructions per CHECK of NIO's pipeline, Benchmarks/SCALE.md) or SwiftNIO like the admin socket.
    public var apiIO = APISocketIO.epoll(threads: 0)
    /// Who may use each socket, by peer credentials (`SO_PEERCRED`), on top of the socket files' modes.
    public var access = AccessPolicy(api: .anyone, admin: SocketAccess(uids: [0, UInt32(geteuid())]))
    public var connectionLimits = ConnectionLimits()
    /// Plans seeded at start-up and on reload when the state has no plan of that id; an existing plan (the journal's)
    /// is never overwritten by the configuration (Daemon+PlanSeeding).
    public var plans: [Plan] = []
    public var maxDerivedLifetimeSeconds = 3600
    public var reservationLifetimeSeconds = 60
    public var sweepIntervalSeconds = 60
    /// Revoked or expired tokens are forgotten this long after they stopped working (0: never).
    public var tokenRetentionDays = 30
    public var idempotencyRetentionHours = 24
    /// Tokens expiring within this many hours get a `token_expiring` event (0: none).
    public var expiryWarningHours = 24
    /// Hours of the usage ledger older than this are dropped (0: never). Export before they age out.
    public var ledgerRetentionDays = 100
    /// The HTTP forward-auth listener (`http`); nil: none, unless systemd passes a socket named `http`.
    public var http: HTTPConfiguration?
    /// Decisions written to the log (journald under systemd), sampled (`decision_log`, issue 15): one in
    /// `sampleEvery` (0: none, the default), at most `maxLinesPerSecond` lines a second.
    public var decisionLog = DecisionLogConfiguration()
    /// Identity providers and roles for EXCHANGE (`identity`); nil: exchange is refused `not_configured`.
    public var identity: IdentityConfiguration?
    /// Envoy's gRPC `ext_authz` listener (`grpc`); nil: none, unless systemd passes a socket named `grpc`.
    public var grpc: GRPCConfiguration?
    /// Fleet mode (`fleet`, `Protocol/FLEET.md`); nil or not `enabled`: a single host, no PostgreSQL.
    public var fleet: FleetConfiguration?

    public init() {}

    public var resolvedAPISocket: String { apiSocket.isEmpty ? stateDirectory + "/tollgate.sock" : apiSocket }
    public var resolvedAdminSocket: String { adminSocket.isEmpty ? stateDirectory + "/tollgate-admin.sock" : adminSocket }
    public var journalDirectory: String { stateDirectory + "/journal" }

    /// The configuration `tollgated` runs on when given none: a local `./state` directory and example plans.
    public static let embeddedDefaultJSON = #"""
    {
      "state_dir": "./state",
      "api_socket_mode": "0660",
      "admin_socket_mode": "0600",
      "max_frame_bytes": 65536,
      "usage_flush_interval_ms": 100,
      "journal": { "fsync": true, "snapshot_after_bytes": 67108864 },
      "limits": { "max_tokens": 10000000, "max_licenses": 1000000, "max_connections": 4096,
                  "idle_timeout_ms": 600000, "frame_timeout_ms": 10000,
                  "max_pipelined": 1024, "max_output_bytes": 4194304, "max_durable_backlog": 8192 },
      "access": { "admin": { "uids": [0], "allow_own_user": true } },
      "log_level": "info",
      "decision_log": { "sample_every": 0, "max_lines_per_second": 1000 },
      "event_loop_threads": 1,
      "api_io": "epoll",
      "api_io_threads": 0,
      "licensing": { "max_derived_lifetime_s": 3600, "reservation_lifetime_s": 60, "sweep_interval_s": 60,
                     "token_retention_days": 30, "idempotency_retention_hours": 24, "expiry_warning_hours": 24,
                     "ledger_retention_days": 100 },
      "plans": [
        { "id": "free", "entitlements": ["read"], "features": [],
          "quotas": [{ "meter": "requests", "window": "month", "limit": 1000 },
                     { "meter": "requests", "window": "rolling:60", "limit": 60, "pool": "token" }],
          "rate_limits": [{ "pool": "license", "rate_per_second": 5, "burst": 10 }],
          "concurrency": [{ "pool": "license", "max": 2 }],
          "max_token_lifetime_seconds": 7776000, "max_active_tokens": 5 },
        { "id": "trial", "entitlements": ["read", "write"], "features": ["exports"],
          "quotas": [{ "meter": "requests", "window": "day", "limit": 500 }],
          "rate_limits": [{ "pool": "license", "rate_per_second": 10, "burst": 20 }],
          "credits": { "pool": "license", "included": 1000, "period": "month" },
          "max_token_lifetime_seconds": 2592000, "max_active_tokens": 10 },
        { "id": "pro", "entitlements": ["read", "write", "reports"], "features": ["exports", "sso"],
          "quotas": [{ "meter": "requests", "window": "month", "limit": 1000000 },
                     { "meter": "bytes", "window": "month", "limit": 100000000000 }],
          "rate_limits": [{ "pool": "license", "rate_per_second": 200, "burst": 400 },
                          { "pool": "token", "rate_per_second": 50, "burst": 100 }],
          "concurrency": [{ "pool": "license", "max": 64 }],
          "overage": "allow_and_record", "past_due_grace_seconds": 604800 },
        { "id": "enterprise", "entitlements": ["*"], "features": ["*"], "quotas": [],
          "rate_limits": [{ "pool": "org", "rate_per_second": 5000, "burst": 10000 }],
          "overage": "allow_and_record", "past_due_grace_seconds": 2592000 }
      ]
    }
    """#

    public static func embeddedDefault() -> DaemonConfiguration {
        // The embedded default is tested; failing to parse it is a build defect.
        try! parse(json: Data(embeddedDefaultJSON.utf8))
    }

    public static func load(path: String) throws -> DaemonConfiguration {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ConfigurationError(.unreadable, "cannot read the configuration file \(path): \(error.localizedDescription)")
        }
        do {
            return try parse(json: data)
        } catch var error as ConfigurationError {
            error.message = "\(path): \(error.message)"
            throw error
        }
    }

    public static func parse(json data: Data) throws -> DaemonConfiguration {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data)
        } catch {
            // Foundation says only "The data is not in the correct format."; say where.
            if let syntax = JSONSyntaxError.locate(Array(data)) {
                throw ConfigurationError(.syntax, "not valid JSON: line \(syntax.line), column \(syntax.column): \(syntax.problem)")
            }
            throw ConfigurationError(.syntax, "not valid JSON: \(error.localizedDescription)")
        }
        var reader = try ObjectReader(object, path: "")
        var config = DaemonConfiguration()
        config.stateDirectory = try reader.string("state_dir") ?? config.stateDirectory
        config.apiSocket = try reader.string("api_socket") ?? ""
        config.adminSocket = try reader.string("admin_socket") ?? ""
        config.apiSocketMode = try reader.mode("api_socket_mode") ?? config.apiSocketMode
        config.adminSocketMode = try reader.mode("admin_socket_mode") ?? config.adminSocketMode
        config.maxFrameBytes = try reader.int("max_frame_bytes", range: 1024...(16 << 20)) ?? config.maxFrameBytes
        config.usageFlushIntervalMilliseconds = try reader.int("usage_flush_interval_ms", range: 1...60_000) ?? config.usageFlushIntervalMilliseconds
        config.logLevel = try reader.string("log_level") ?? config.logLevel
        config.eventLoopThreads = try reader.int("event_loop_threads", range: 1...256) ?? config.eventLoopThreads
        switch try reader.string("api_io") ?? "epoll" {
        case "epoll": config.apiIO = .epoll(threads: try reader.int("api_io_threads", range: 0...256) ?? 0)
        case "nio":
            _ = try reader.int("api_io_threads", range: 0...256)
            config.apiIO = .nio
        case let other: throw ConfigurationError("api_io must be epoll or nio, not \(other)")
        }
        guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(config.logLevel) else {
            throw ConfigurationError("log_level must be one of trace, debug, info, notice, warning, error, critical")
        }
        if var journal = try reader.object("journal") {
            config.journalFsync = try journal.bool("fsync") ?? config.journalFsync
            config.snapshotAfterBytes = try journal.int("snapshot_after_bytes", range: 4096...(1 << 40)) ?? config.snapshotAfterBytes
            try journal.finish()
        }
        if var limits = try reader.object("limits") {
            config.maxTokens = try limits.int("max_tokens", range: 1...(1 << 32)) ?? config.maxTokens
            config.maxLicenses = try limits.int("max_licenses", range: 1...(1 << 32)) ?? config.maxLicenses
            var c = config.connectionLimits
            c.maxConnections = try limits.int("max_connections", range: 1...1_000_000) ?? c.maxConnections
            c.idleTimeoutMilliseconds = Int64(try limits.int("idle_timeout_ms", range: 0...86_400_000) ?? Int(c.idleTimeoutMilliseconds))
            c.frameTimeoutMilliseconds = Int64(try limits.int("frame_timeout_ms", range: 0...3_600_000) ?? Int(c.frameTimeoutMilliseconds))
            c.maxPipelined = try limits.int("max_pipelined", range: 1...1_000_000) ?? c.maxPipelined
            c.maxOutputBytes = try limits.int("max_output_bytes", range: 4096...(1 << 30)) ?? c.maxOutputBytes
            c.maxDurableBacklog = try limits.int("max_durable_backlog", range: 1...1_000_000) ?? c.maxDurableBacklog
            config.connectionLimits = c
            try limits.finish()
        }
        if var log = try reader.object("decision_log") {
            config.decisionLog.sampleEvery = try log.int("sample_every", range: 0...1_000_000_000) ?? config.decisionLog.sampleEvery
            config.decisionLog.maxLinesPerSecond = try log.int("max_lines_per_second", range: 1...1_000_000) ?? config.decisionLog.maxLinesPerSecond
            try log.finish()
        }
        if var access = try reader.object("access") {
            config.access.api = try access.object("api").map { var r = $0; return try Self.socketAccess(&r) } ?? .anyone
            config.access.admin = try access.object("admin").map { var r = $0; return try Self.socketAccess(&r) } ?? .anyone
            try access.finish()
        }
        for (index, value) in try reader.list("plans").enumerated() {
            let plan = try Self.plan(value, path: "plans[\(index)]")
            guard !config.plans.contains(where: { $0.id == plan.id }) else { throw ConfigurationError("plan \(plan.id) is defined twice") }
            config.plans.append(plan)
        }
        if let http = try reader.object("http") { config.http = try HTTPConfiguration.read(http) }
        if let identity = try reader.object("identity") { config.identity = try IdentityConfiguration.read(identity) }
        if let grpc = try reader.object("grpc") { config.grpc = try GRPCConfiguration.read(grpc) }
        if let fleet = try reader.object("fleet") { config.fleet = try FleetConfiguration.read(fleet) }
        if var licensing = try reader.object("licensing") {
            config.maxDerivedLifetimeSeconds = try licensing.int("max_derived_lifetime_s", range: 1...(30 * 86_400)) ?? config.maxDerivedLifetimeSeconds
            config.reservationLifetimeSeconds = try licensing.int("reservation_lifetime_s", range: 1...86_400) ?? config.reservationLifetimeSeconds
            config.sweepIntervalSeconds = try licensing.int("sweep_interval_s", range: 1...86_400) ?? config.sweepIntervalSeconds
            config.tokenRetentionDays = try licensing.int("token_retention_days", range: 0...36_500) ?? config.tokenRetentionDays
            config.idempotencyRetentionHours = try licensing.int("idempotency_retention_hours", range: 1...(24 * 400)) ?? config.idempotencyRetentionHours
            config.expiryWarningHours = try licensing.int("expiry_warning_hours", range: 0...(24 * 365)) ?? config.expiryWarningHours
            config.ledgerRetentionDays = try licensing.int("ledger_retention_days", range: 0...36_500) ?? config.ledgerRetentionDays
            try licensing.finish()
        }
        try reader.finish()
        return config
    }
}

extension DaemonConfiguration {
    /// A plan, read by the one plan document model (`PlanDocument`) that `tollgate apply` uses too: the JSON
    /// object becomes a `DocumentNode` and every rule is the validation source's, so a plan written here and in an
    /// apply file is the same plan, refused for the same reasons with the same messages.
    static func plan(_ value: Any, path: String) throws -> Plan {
        do throws(ValidationError) {
            var reader = try DocumentReader(JSONDocument.node(value), path: path)
            return try PlanDocument.read(&reader)
        } catch {
            throw ConfigurationError(error)
        }
    }

    /// `{ "uids": [0], "users": ["deploy"], "gids": [], "groups": ["tollgate-admin"], "allow_own_user": true }`.
    /// Names are resolved when the configuration is read; an unknown name is an error.
    static func socketAccess(_ reader: inout ObjectReader) throws -> SocketAccess {
        var uids = Set((try reader.integers("uids") ?? []).map(UInt32.init))
        var gids = Set((try reader.integers("gids") ?? []).map(UInt32.init))
        for name in try reader.strings("users") ?? [] {
            guard let entry = getpwnam(name) else { throw ConfigurationError("\(reader.path).users: no user named \(name)") }
            uids.insert(entry.pointee.pw_uid)
        }
        for name in try reader.strings("groups") ?? [] {
            guard let entry = getgrnam(name) else { throw ConfigurationError("\(reader.path).groups: no group named \(name)") }
            gids.insert(entry.pointee.gr_gid)
        }
        if try reader.bool("allow_own_user") ?? false { uids.insert(UInt32(geteuid())) }
        try reader.finish()
        return SocketAccess(uids: uids, gids: gids)
    }
}

/// The `http` section: the forward-auth listener and its route rules.
///
/// ```json
/// "http": {
///   "socket": "/run/tollgate/tollgate-http.sock", "socket_mode": "0660",
///   "tcp": "127.0.0.1:8181", "observability": true,
///   "access": { "groups": ["www-data"] },
///   "token_header": "X-Api-Key", "token_query": "api_key",
///   "limits": { "max_header_bytes": 8192, "max_body_bytes": 65536, "max_connections": 1024, "idle_timeout_ms": 60000 },
///   "default": "deny",
///   "routes": [ { "method": "GET", "path": "/v1/reports/{id}", "scopes": ["reports"], "meter": "requests", "cost": 1 } ]
/// }
/// ```
///
/// A reload (SIGHUP) applies `routes`, `default`, `token_header`, `token_query` and `access`; the sockets and limits
/// need a restart. The routes are read by the one route document model (`RouteDocument`) and checked by the
/// validation source (`Validation.routes`), so a route is refused with the same code wherever it is written.
/// The sampled decision log: which decisions of the stream (WATCH's, PROTOCOL.md 6.22) become log lines.
public struct DecisionLogConfiguration: Sendable, Equatable {
    /// Log the decisions whose sequence number is a multiple of this (1: every decision); 0: the log is off.
    public var sampleEvery = 0
    /// Lines written per second at most; the sampled decisions beyond are counted, not written.
    public var maxLinesPerSecond = 1000

    public init(sampleEvery: Int = 0, maxLinesPerSecond: Int = 1000) {
        self.sampleEvery = sampleEvery
        self.maxLinesPerSecond = maxLinesPerSecond
    }
}

public struct HTTPConfiguration: Sendable, Equatable {
    /// Empty: `<state dir>/tollgate-http.sock`.
    public var socket = ""
    public var socketMode: UInt32 = 0o660
    /// A loopback `HOST:PORT` to listen on too (port 0: any free port; tests); nil: none.
    public var tcp: (host: String, port: Int)?
    /// Who may use the Unix socket, by peer credentials; TCP has none, so a restricted list refuses TCP callers.
    public var access = SocketAccess.anyone
    public var limits = HTTPLimits()
    public var policy = ForwardAuthPolicy()
    /// Whether the listener answers `/metrics`, `/healthz` and `/readyz` itself (`observability`, default true).
    /// Off for a listener that Envoy's request-line shape uses, where those paths are original requests to check.
    public var observability = true

    public init() {}

    public func resolvedSocket(stateDirectory: String) -> String { socket.isEmpty ? stateDirectory + "/tollgate-http.sock" : socket }

    public static func == (l: HTTPConfiguration, r: HTTPConfiguration) -> Bool {
        l.socket == r.socket && l.socketMode == r.socketMode && l.tcp?.host == r.tcp?.host && l.tcp?.port == r.tcp?.port && l.access == r.access
            && l.limits == r.limits && l.policy == r.policy && l.observability == r.observability
    }

    static func read(_ object: ObjectReader) throws -> HTTPConfiguration {
        var reader = object
        var http = HTTPConfiguration()
        http.socket = try reader.string("socket") ?? ""
        http.socketMode = try reader.mode("socket_mode") ?? http.socketMode
        if let tcp = try reader.string("tcp") {
            do throws(ValidationError) {
                http.tcp = try Validation.loopbackEndpoint(tcp, field: "http.tcp", allowPortZero: true)
            } catch {
                throw ConfigurationError(error)
            }
        }
        if var access = try reader.object("access") { http.access = try DaemonConfiguration.socketAccess(&access) }
        http.observability = try reader.bool("observability") ?? http.observability
        if let name = try reader.string("token_header") {
            guard !name.isEmpty, name.utf8.count <= 64, name.utf8.allSatisfy({ Validation.isIdentifierByte($0) && $0 != UInt8(ascii: ":") && $0 != UInt8(ascii: ".") }) else {
                throw ConfigurationError("http.token_header must be a header name (1–64 characters of A-Z a-z 0-9 _ -)")
            }
            http.policy.tokenHeader = name
        }
        if let name = try reader.string("token_query") {
            guard !name.isEmpty, name.utf8.count <= 64, name.utf8.allSatisfy(Validation.isIdentifierByte) else {
                throw ConfigurationError("http.token_query must be a query parameter name (1–64 characters of A-Z a-z 0-9 _ . : -)")
            }
            http.policy.tokenQueryParameter = name
        }
        if var limits = try reader.object("limits") {
            http.limits.maxHeaderBytes = try limits.int("max_header_bytes", range: 1024...(1 << 20)) ?? http.limits.maxHeaderBytes
            http.limits.maxBodyBytes = try limits.int("max_body_bytes", range: 0...(16 << 20)) ?? http.limits.maxBodyBytes
            http.limits.maxConnections = try limits.int("max_connections", range: 1...1_000_000) ?? http.limits.maxConnections
            http.limits.idleTimeoutMilliseconds = Int64(try limits.int("idle_timeout_ms", range: 0...86_400_000) ?? Int(http.limits.idleTimeoutMilliseconds))
            try limits.finish()
        }
        if var stripe = try reader.object("stripe") { http.policy.stripe = try Self.readStripe(&stripe) }
        if let path = try reader.string("token_exchange_path") {
            do throws(ValidationError) { try Validation.webhookPath(path, field: "http.token_exchange_path") } catch { throw ConfigurationError(error) }
            http.policy.tokenExchangePath = path
        }
        if var scim = try reader.object("scim") {
            var settings = SCIMSettings()
            if let path = try scim.string("path") {
                do throws(ValidationError) { try Validation.webhookPath(path, field: "http.scim.path") } catch { throw ConfigurationError(error) }
                settings.basePath = path.hasSuffix("/") ? String(path.dropLast()) : path
            }
            settings.secretFile = try scim.string("secret_file") ?? ""
            try scim.finish()
            // Required, but checked where the file is read (`resolvedPolicy`), as Stripe's secrets are.
            guard settings.secretFile.isEmpty || settings.secretFile.hasPrefix("/") else { throw ConfigurationError("http.scim.secret_file must be an absolute path") }
            http.policy.scim = settings
        }
        // The routes and the default through the route document model, as plans go through the plan model.
        let routes = reader.value("routes")
        let fallback = reader.value("default")
        var node: [DocumentEntry] = []
        if let routes { node.append(DocumentEntry("routes", JSONDocument.node(routes))) }
        if let fallback { node.append(DocumentEntry("default", JSONDocument.node(fallback))) }
        do throws(ValidationError) {
            var document = try DocumentReader(.mapping(node), path: "http")
            http.policy.routes = try RouteDocument.readTable(&document)
        } catch {
            throw ConfigurationError(error)
        }
        try reader.finish()
        return http
    }
}

extension HTTPConfiguration {
    /// The policy with the Stripe signing secrets read from their files or credentials: at start-up (an error stops
    /// it) and on reload (an error keeps the running policy). The error names the file, never its content.
    public func resolvedPolicy() throws -> ForwardAuthPolicy {
        var policy = self.policy
        if var scim = policy.scim {
            guard !scim.secretFile.isEmpty else { throw ConfigurationError(.missingKey, "http.scim.secret_file is required") }
            // The SCIM bearer secret, like Stripe's: from its file at start and on reload, never named in an error.
            guard let data = FileManager.default.contents(atPath: scim.secretFile) else {
                throw ConfigurationError(.unreadable, "cannot read the SCIM secret \(scim.secretFile)")
            }
            var bytes = [UInt8](data)
            while let last = bytes.last, last == 0x0A || last == 0x0D || last == 0x20 || last == 0x09 { bytes.removeLast() }
            do throws(ValidationError) {
                try Validation.signingSecret(bytes, source: scim.secretFile, field: "http.scim.secret_file")
            } catch {
                throw ConfigurationError(error)
            }
            scim.secret = bytes
            policy.scim = scim
        }
        guard var stripe = policy.stripe else { return policy }
        guard (1...2).contains(stripe.secretSources.count) else {
            throw ConfigurationError(.missingKey, "http.stripe needs one signing secret, or two during a rotation (secret_files or secret_credentials)")
        }
        stripe.secrets = []
        for source in stripe.secretSources {
            guard let data = FileManager.default.contents(atPath: source.path) else {
                throw ConfigurationError(.unreadable, "cannot read the Stripe signing secret \(source.label)")
            }
            var bytes = [UInt8](data)
            while let last = bytes.last, last == 0x0A || last == 0x0D || last == 0x20 || last == 0x09 { bytes.removeLast() }
            do throws(ValidationError) {
                try Validation.signingSecret(bytes, source: source.label, field: "http.stripe.secret_files")
            } catch {
                throw ConfigurationError(error)
            }
            stripe.secrets.append(bytes)
        }
        policy.stripe = stripe
        return policy
    }

    /// `http.stripe`: the webhook endpoint, its signing secrets (files or systemd credentials, never inline) and
    /// the mapping. Every value through the validation source.
    static func readStripe(_ reader: inout ObjectReader) throws -> StripeWebhookSettings {
        func validated<T>(_ body: () throws(ValidationError) -> T) throws -> T {
            do throws(ValidationError) { return try body() } catch { throw ConfigurationError(error) }
        }
        var settings = StripeWebhookSettings(secrets: [])
        if let path = try reader.string("path") {
            try validated { () throws(ValidationError) in try Validation.webhookPath(path, field: "http.stripe.path") }
            settings.path = path
        }
        // Secrets: from files (mode 0600, owned by the daemon's user) or from systemd credentials
        // (`LoadCredential=`, read from $CREDENTIALS_DIRECTORY). Two during a rotation; never in this file.
        // Read at start and on reload (`resolvedPolicy`), so that a rotation needs no restart; counted there too.
        var sources: [(path: String, label: String)] = []
        for file in try reader.strings("secret_files") ?? [] {
            guard file.hasPrefix("/") else { throw ConfigurationError("http.stripe.secret_files must be absolute paths") }
            sources.append((file, file))
        }
        let credentials = try reader.strings("secret_credentials") ?? []
        if !credentials.isEmpty {
            guard let directory = ProcessInfo.processInfo.environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty else {
                throw ConfigurationError("http.stripe.secret_credentials needs $CREDENTIALS_DIRECTORY (systemd's LoadCredential=)")
            }
            for name in credentials {
                try validated { () throws(ValidationError) in try Validation.identifier(name, "a credential name", field: "http.stripe.secret_credentials") }
                sources.append((directory + "/" + name, "credential \(name)"))
            }
        }
        settings.secretSources = sources.map { StripeSecretSource(path: $0.path, label: $0.label) }
        settings.toleranceSeconds = Int64(try reader.int("tolerance_s", range: 1...3600) ?? Int(settings.toleranceSeconds))
        settings.eventRetentionMillis = Int64(try reader.int("event_retention_s", range: 3 * 86_400...365 * 86_400) ?? Int(settings.eventRetentionMillis / 1000)) * 1000
        settings.maxBodyBytes = try reader.int("max_body_bytes", range: 1024...(16 << 20)) ?? settings.maxBodyBytes
        if var mapping = try reader.object("mapping") {
            func table(_ key: String, values what: String) throws -> [String: String] {
                guard let value = mapping.value(key) else { return [:] }
                guard let table = value as? [String: String] else { throw ConfigurationError(.wrongType, "http.stripe.mapping.\(key) must be an object of strings") }
                for (stripeID, id) in table {
                    try validated { () throws(ValidationError) in
                        try Validation.billingKey(stripeID, field: "http.stripe.mapping.\(key)")
                        try Validation.identifier(id, what, field: "http.stripe.mapping.\(key)")
                    }
                }
                return table
            }
            settings.mapping.plansByPrice = try table("prices", values: "the plan id")
            settings.mapping.plansByProduct = try table("products", values: "the plan id")
            settings.mapping.plansByLookupKey = try table("lookup_keys", values: "the plan id")
            settings.mapping.orgsByCustomer = try table("customers", values: "the organisation id")
            for key in ["org_metadata_key", "license_metadata_key"] {
                guard let value = try mapping.string(key) else { continue }
                if !value.isEmpty { try validated { () throws(ValidationError) in try Validation.billingKey(value, field: "http.stripe.mapping.\(key)") } }
                if key == "org_metadata_key" { settings.mapping.orgMetadataKey = value } else { settings.mapping.licenseMetadataKey = value }
            }
            if let prefix = try mapping.string("license_prefix") {
                if !prefix.isEmpty { try validated { () throws(ValidationError) in try Validation.identifier(prefix, "the license prefix", field: "http.stripe.mapping.license_prefix") } }
                settings.mapping.licensePrefix = prefix
            }
            settings.mapping.periodEndSlackSeconds = Int64(try mapping.int("period_end_slack_s", range: -1...(31 * 86_400)) ?? Int(settings.mapping.periodEndSlackSeconds))
            try mapping.finish()
        }
        try reader.finish()
        return settings
    }
}

public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    /// Stable across releases (scripts and tests compare it); the wording of `message` is not.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }
        /// The file cannot be read.
        public static let unreadable = Code(rawValue: "unreadable")
        /// The file is not JSON (the message gives the line and column).
        public static let syntax = Code(rawValue: "syntax")
        /// A key the configuration does not have: a typo must not be silently ignored.
        public static let unknownKey = Code(rawValue: "unknown_key")
        public static let missingKey = Code(rawValue: "missing_key")
        /// A value of the wrong JSON type.
        public static let wrongType = Code(rawValue: "wrong_type")
        public static let outOfRange = Code(rawValue: "out_of_range")
        /// A well-typed value that breaks a rule (an unknown log level, a plan defined twice, an unknown user).
        public static let invalidValue = Code(rawValue: "invalid_value")
    }

    public var code: Code
    public var message: String
    /// For a value the validation source refused (a plan's): the rule's error, with its code and field.
    public var validation: ValidationError?
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// A well-typed value that breaks a rule (`invalid_value`).
    public init(_ message: String) { self.init(.invalidValue, message) }

    init(_ error: ValidationError) {
        self.code = Code(rawValue: error.code.rawValue)
        self.message = error.description
        self.validation = error
    }

    public var description: String { message }
}

/// The JSON side of the plan document model: `JSONSerialization`'s values as a `DocumentNode`.
enum JSONDocument {
    static func node(_ value: Any) -> DocumentNode {
        switch value {
        case is NSNull:
            return .null
        case let number as NSNumber where !(value is String):
            // `true`/`false` arrive as NSNumbers of type char ("c"); integers as "q"/"Q"; fractions as "d".
            let type = String(cString: number.objCType)
            if type == "c" || type == "B" { return .bool(number.boolValue) }
            if type == "d" || type == "f" {
                let double = number.doubleValue
                // 1000.0 was read as 1000 before this model; it still is.
                if double == double.rounded(), abs(double) < 9.2e18 { return .integer(String(Int64(double))) }
                return .other(type: "number", text: "\(double)")
            }
            return .integer(number.stringValue)
        case let bool as Bool:
            return .bool(bool)
        case let string as String:
            return .string(string)
        case let list as [Any]:
            return .list(list.map(node))
        case let object as [String: Any]:
            // JSONSerialization does not keep the order of keys; sorted, so that "the first unknown key" is stable.
            return .mapping(object.keys.sorted().map { DocumentEntry($0, node(object[$0]!)) })
        default:
            return .other(type: "value", text: "\(value)")
        }
    }
}

/// Every key the configuration parser asks for, by dotted path (`limits.max_tokens`), recorded while `recording`
/// runs. The configuration reference (README, tollgated.json(5)) is held to the parser itself by
/// `ConfigurationReferenceTests`, so a key the parser accepts cannot go undocumented.
public final class ConfigurationKeyRecorder: Sendable {
    public enum Kind: Sendable, Equatable {
        /// A value (string, number, boolean, list of scalars).
        case value
        /// An object whose keys are read one by one (`journal`, `access.api`).
        case object
        /// A list of items read by another model (`plans`: `PlanDocument`).
        case list
        /// A list of objects read by this parser (each read as `path[]`).
        case listOfObjects
    }

    @TaskLocal static var current: ConfigurationKeyRecorder?
    private let keys = Mutex<[String: Kind]>([:])

    public init() {}

    /// Runs `body` (a `DaemonConfiguration.parse`) and records the keys it asks for.
    public func recording<T>(_ body: () throws -> T) rethrows -> T {
        try Self.$current.withValue(self) { try body() }
    }

    public var recorded: [String: Kind] { keys.withLock { $0 } }

    func record(_ path: String, _ kind: Kind) {
        // `object`, `list` and `objects` read through `value` first: the more specific kind wins.
        keys.withLock { keys in
            if keys[path] == nil || kind != .value { keys[path] = kind }
        }
    }
}

/// Reads one JSON object strictly: typed fields, and every key must have been read by `finish()`.
struct ObjectReader {
    let object: [String: Any]
    let path: String
    private var seen = Set<String>()

    init(_ value: Any, path: String) throws {
        guard let object = value as? [String: Any] else { throw ConfigurationError(.wrongType, "\(path.isEmpty ? "the configuration" : path) must be an object") }
        self.object = object
        self.path = path
    }

    private func name(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    mutating func value(_ key: String) -> Any? {
        seen.insert(key)
        ConfigurationKeyRecorder.current?.record(name(key), .value)
        guard let value = object[key], !(value is NSNull) else { return nil }
        return value
    }

    mutating func string(_ key: String) throws -> String? {
        guard let value = value(key) else { return nil }
        guard let string = value as? String else { throw ConfigurationError(.wrongType, "\(name(key)) must be a string") }
        return string
    }

    mutating func bool(_ key: String) throws -> Bool? {
        guard let value = value(key) else { return nil }
        guard let bool = value as? Bool else { throw ConfigurationError(.wrongType, "\(name(key)) must be true or false") }
        return bool
    }

    mutating func int(_ key: String, range: ClosedRange<Int>) throws -> Int? {
        guard let value = value(key) else { return nil }
        guard let number = value as? NSNumber, let int = Int(exactly: number.doubleValue) else {
            throw ConfigurationError(.wrongType, "\(name(key)) must be an integer")
        }
        guard range.contains(int) else { throw ConfigurationError(.outOfRange, "\(name(key)) must be between \(range.lowerBound) and \(range.upperBound)") }
        return int
    }

    /// File modes are written as octal strings ("0660") so that they read as they do in `chmod`.
    mutating func mode(_ key: String) throws -> UInt32? {
        guard let text = try string(key) else { return nil }
        guard let mode = UInt32(text, radix: 8), mode <= 0o777 else { throw ConfigurationError("\(name(key)) must be an octal mode such as \"0660\"") }
        return mode
    }

    mutating func integers(_ key: String) throws -> [Int]? {
        guard let value = value(key) else { return nil }
        guard let numbers = value as? [NSNumber], let ints = Optional(numbers.compactMap { Int(exactly: $0.doubleValue) }), ints.count == numbers.count,
            ints.allSatisfy({ $0 >= 0 && $0 <= Int(UInt32.max) })
        else { throw ConfigurationError(.wrongType, "\(name(key)) must be a list of ids (non-negative integers)") }
        return ints
    }

    mutating func strings(_ key: String) throws -> [String]? {
        guard let value = value(key) else { return nil }
        guard let strings = value as? [String] else { throw ConfigurationError(.wrongType, "\(name(key)) must be a list of strings") }
        return strings
    }

    mutating func object(_ key: String) throws -> ObjectReader? {
        let value = value(key)
        ConfigurationKeyRecorder.current?.record(name(key), .object)
        guard let value else { return nil }
        return try ObjectReader(value, path: name(key))
    }

    mutating func list(_ key: String) throws -> [Any] {
        let value = value(key)
        ConfigurationKeyRecorder.current?.record(name(key), .list)
        guard let value else { return [] }
        guard let list = value as? [Any] else { throw ConfigurationError(.wrongType, "\(name(key)) must be a list") }
        return list
    }

    mutating func objects(_ key: String) throws -> [ObjectReader] {
        let value = value(key)
        ConfigurationKeyRecorder.current?.record(name(key), .listOfObjects)
        guard let value else { return [] }
        guard let list = value as? [Any] else { throw ConfigurationError(.wrongType, "\(name(key)) must be a list") }
        return try list.enumerated().map { try ObjectReader($0.element, path: "\(name(key))[\($0.offset)]") }
    }

    mutating func required<T>(_ read: (inout ObjectReader) throws -> T?) throws -> T {
        let before = seen
        guard let value = try read(&self) else {
            let key = seen.subtracting(before).first ?? "?"
            throw ConfigurationError(.missingKey, "\(name(key)) is required")
        }
        return value
    }

    func finish() throws {
        let unknown = Set(object.keys).subtracting(seen).sorted()
        guard unknown.isEmpty else { throw ConfigurationError(.unknownKey, "unknown key\(unknown.count > 1 ? "s" : "") \(unknown.map { name($0) }.joined(separator: ", "))") }
    }
}
