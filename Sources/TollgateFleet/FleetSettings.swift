/// Fleet mode's settings, as the daemon's configuration resolved them (`fleet` in the configuration reference).
/// The password was read from its file by the daemon; it is never logged nor put in an error message.
public struct FleetSettings: Sendable {
    /// Where PostgreSQL listens: TCP, or the directory of its Unix socket (`<directory>/.s.PGSQL.<port>`).
    public enum Address: Sendable, Hashable, CustomStringConvertible {
        case tcp(host: String, port: Int)
        case unix(directory: String, port: Int)

        public var description: String {
            switch self {
            case .tcp(let host, let port): return "\(host):\(port)"
            case .unix(let directory, let port): return "\(directory)/.s.PGSQL.\(port)"
            }
        }
    }

    /// The primary first, then the standbys, tried in this order on every reconnect.
    public var addresses: [Address]
    public var database: String
    public var user: String
    public var password: String?
    /// This host's id in the fleet log and the hosts table: unique in the fleet.
    public var hostID: String
    /// H: how long after its last confirmed catch-up a host still admits from memory.
    public var horizonMillis: Int64
    /// The catch-up poll that backs up NOTIFY, and the heartbeat.
    public var pollMillis: Int64
    /// How long a change waits for the log's commit before it is answered `fleet_unconfirmed`.
    public var commitTimeoutMillis: Int64
    /// Any one query; on timeout the connection is closed and made again (a half-open TCP session is noticed).
    public var queryTimeoutMillis: Int64

    /// How recently a host's heartbeat must have been seen for it to count as live (FLEET.md 2.3): three polls, and
    /// never less than the longest a live host's heartbeats can be apart (a poll, a commit that ran to its query
    /// timeout, and the heartbeat's own query), so that a busy host never drops out of the count and back, each
    /// change of which restarts every rate limiter full (FLEET.md 9.2).
    public var liveWindowMillis: Int64 {
        max(3 * pollMillis, pollMillis + 2 * queryTimeoutMillis)
    }

    public init(
        addresses: [Address], database: String, user: String, password: String?, hostID: String,
        horizonMillis: Int64 = 30_000, pollMillis: Int64 = 1_000, commitTimeoutMillis: Int64 = 5_000, queryTimeoutMillis: Int64 = 2_000
    ) {
        self.addresses = addresses
        self.database = database
        self.user = user
        self.password = password
        self.hostID = hostID
        self.horizonMillis = horizonMillis
        self.pollMillis = pollMillis
        self.commitTimeoutMillis = commitTimeoutMillis
        self.queryTimeoutMillis = queryTimeoutMillis
    }
}
