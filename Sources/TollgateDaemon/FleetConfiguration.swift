import Foundation
import TollgateFleet
import TollgateModel

/// The `fleet` section (`Protocol/FLEET.md`): several hosts sharing one state through PostgreSQL. Off unless
/// `enabled` is true; a single host needs none of it.
///
/// ```json
/// "fleet": {
///   "enabled": true, "host_id": "api-1",
///   "host": "10.0.0.5", "port": 5432,                 // or "socket_directory": "/run/postgresql"
///   "standby_hosts": ["10.0.0.6:5432"],
///   "database": "tollgate", "user": "tollgate", "password_file": "/etc/tollgate/pg-password",
///   "revocation_horizon_ms": 30000, "poll_interval_ms": 1000, "commit_timeout_ms": 5000, "query_timeout_ms": 2000
/// }
/// ```
///
/// The password is read from its file at start-up, never from the configuration itself or the command line.
public struct FleetConfiguration: Sendable, Equatable {
    public var enabled = false
    public var hostID = ""
    public var host = ""
    public var port = 5432
    public var socketDirectory = ""
    /// `HOST:PORT` of standbys, tried in order after the primary (failover).
    public var standbyHosts: [String] = []
    public var database = "tollgate"
    public var user = "tollgate"
    /// Empty: no password (trust or peer authentication).
    public var passwordFile = ""
    public var revocationHorizonMilliseconds = 30_000
    public var pollIntervalMilliseconds = 1_000
    public var commitTimeoutMilliseconds = 5_000
    public var queryTimeoutMilliseconds = 2_000

    public init() {}

    static func read(_ object: ObjectReader) throws -> FleetConfiguration {
        var reader = object
        var fleet = FleetConfiguration()
        // Every key is read even when fleet mode is off, so that a misspelt one is refused either way.
        fleet.enabled = try reader.bool("enabled") ?? false
        fleet.hostID = try reader.string("host_id") ?? ""
        fleet.host = try reader.string("host") ?? ""
        fleet.port = try reader.int("port", range: 1...65_535) ?? fleet.port
        fleet.socketDirectory = try reader.string("socket_directory") ?? ""
        fleet.standbyHosts = try reader.strings("standby_hosts") ?? []
        fleet.database = try reader.string("database") ?? fleet.database
        fleet.user = try reader.string("user") ?? fleet.user
        fleet.passwordFile = try reader.string("password_file") ?? ""
        fleet.revocationHorizonMilliseconds = try reader.int("revocation_horizon_ms", range: 1_000...86_400_000) ?? fleet.revocationHorizonMilliseconds
        fleet.pollIntervalMilliseconds = try reader.int("poll_interval_ms", range: 50...3_600_000) ?? fleet.pollIntervalMilliseconds
        fleet.commitTimeoutMilliseconds = try reader.int("commit_timeout_ms", range: 100...600_000) ?? fleet.commitTimeoutMilliseconds
        fleet.queryTimeoutMilliseconds = try reader.int("query_timeout_ms", range: 100...600_000) ?? fleet.queryTimeoutMilliseconds
        try reader.finish()
        guard fleet.enabled else { return fleet }
        do throws(ValidationError) {
            try Validation.identifier(fleet.hostID, "a fleet host id", field: "fleet.host_id")
        } catch {
            throw ConfigurationError(error)
        }
        guard fleet.host.isEmpty != fleet.socketDirectory.isEmpty else {
            throw ConfigurationError(.missingKey, "fleet needs exactly one of fleet.host and fleet.socket_directory")
        }
        guard fleet.socketDirectory.isEmpty || fleet.socketDirectory.hasPrefix("/") else {
            throw ConfigurationError("fleet.socket_directory must be an absolute path")
        }
        guard fleet.passwordFile.isEmpty || fleet.passwordFile.hasPrefix("/") else {
            throw ConfigurationError("fleet.password_file must be an absolute path")
        }
        for standby in fleet.standbyHosts where Self.hostAndPort(standby) == nil {
            throw ConfigurationError("fleet.standby_hosts: \(ValidationError.quoted(standby)) is not HOST:PORT")
        }
        // One lost poll must not make a healthy host stale (FLEET.md 7.2).
        guard fleet.pollIntervalMilliseconds * 3 <= fleet.revocationHorizonMilliseconds else {
            throw ConfigurationError(.outOfRange, "fleet.poll_interval_ms must be at most a third of fleet.revocation_horizon_ms")
        }
        return fleet
    }

    static func hostAndPort(_ text: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65_535).contains(port) else { return nil }
        let host = String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return host.isEmpty ? nil : (host, port)
    }

    /// The settings the replicator runs on, with the password read from its file (a trailing newline dropped). The
    /// error names the file, never its content.
    public func resolvedSettings() throws -> FleetSettings {
        var password: String?
        if !passwordFile.isEmpty {
            guard let data = FileManager.default.contents(atPath: passwordFile), var text = String(data: data, encoding: .utf8) else {
                throw ConfigurationError(.unreadable, "cannot read the fleet password file \(passwordFile)")
            }
            while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
            password = text
        }
        let primary: FleetSettings.Address = socketDirectory.isEmpty ? .tcp(host: host, port: port) : .unix(directory: socketDirectory, port: port)
        let standbys = standbyHosts.compactMap(Self.hostAndPort).map { FleetSettings.Address.tcp(host: $0.0, port: $0.1) }
        return FleetSettings(
            addresses: [primary] + standbys, database: database, user: user, password: password, hostID: hostID,
            horizonMillis: Int64(revocationHorizonMilliseconds), pollMillis: Int64(pollIntervalMilliseconds),
            commitTimeoutMillis: Int64(commitTimeoutMilliseconds), queryTimeoutMillis: Int64(queryTimeoutMilliseconds))
    }
}
