import NIOConcurrencyHelpers
import TollgateCore
import TollgateProtocol

/// Who is at the other end of a Unix socket, as the kernel reports it (`SO_PEERCRED`): not forgeable by the peer.
public struct PeerCredentials: Sendable, Hashable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
    /// Supplementary groups (`SO_PEERGROUPS`; empty when the peer has more than 64).
    public var groups: [UInt32]

    public init(pid: Int32, uid: UInt32, gid: UInt32, groups: [UInt32] = []) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }

    public var description: String { "uid=\(uid) gid=\(gid) pid=\(pid)" }
}

/// Which peers may use one socket. A peer is allowed when its uid is listed, or its primary or a supplementary
/// group is listed. `nil` lists mean "anyone who can open the socket file" (the file mode decides).
public struct SocketAccess: Sendable, Hashable {
    public var uids: Set<UInt32>?
    public var gids: Set<UInt32>?

    public init(uids: Set<UInt32>? = nil, gids: Set<UInt32>? = nil) {
        self.uids = uids
        self.gids = gids
    }

    public static let anyone = SocketAccess()

    /// Whether a caller may use the socket: its credentials on the allow-list; without credentials (a TCP peer,
    /// or `SO_PEERCRED` not read yet) only an unrestricted socket may be used: fail closed.
    public func admits(_ peer: PeerCredentials?) -> Bool {
        peer.map(permits) ?? (self == .anyone)
    }

    public func permits(_ peer: PeerCredentials) -> Bool {
        if uids == nil && gids == nil { return true }
        if let uids, uids.contains(peer.uid) { return true }
        if let gids, gids.contains(peer.gid) || peer.groups.contains(where: gids.contains) { return true }
        return false
    }
}

/// The allow-lists of both sockets; a reload replaces them and every connection sees the change on its next
/// request.
public struct AccessPolicy: Sendable, Hashable {
    public var api: SocketAccess
    public var admin: SocketAccess

    public init(api: SocketAccess, admin: SocketAccess) {
        self.api = api
        self.admin = admin
    }

    public func access(for role: SocketRole) -> SocketAccess { role == .api ? api : admin }
}

/// Limits that keep one client from holding resources forever or exhausting memory.
public struct ConnectionLimits: Sendable, Hashable {
    /// Connections over both sockets; the next one is answered `unavailable` and closed.
    public var maxConnections: Int
    /// A connection with no traffic for this long is closed (0: never).
    public var idleTimeoutMilliseconds: Int64
    /// A frame begun but not finished within this long closes the connection (a stalled or slow client).
    public var frameTimeoutMilliseconds: Int64
    /// Requests of one connection awaiting the journal before the daemon stops reading from it.
    public var maxPipelined: Int
    /// Bytes of answers queued for a client that does not read before the daemon stops reading from it.
    public var maxOutputBytes: Int
    /// Data-plane requests (METER, DERIVE) waiting for the journal over all connections together; beyond it the
    /// daemon stops reading from each connection whose next request would wait (see `DurableBacklog`).
    public var maxDurableBacklog: Int

    public init(
        maxConnections: Int = 4096, idleTimeoutMilliseconds: Int64 = 600_000, frameTimeoutMilliseconds: Int64 = 10_000, maxPipelined: Int = 1024,
        maxOutputBytes: Int = 4 << 20, maxDurableBacklog: Int = 8192
    ) {
        self.maxConnections = maxConnections
        self.idleTimeoutMilliseconds = idleTimeoutMilliseconds
        self.frameTimeoutMilliseconds = frameTimeoutMilliseconds
        self.maxPipelined = maxPipelined
        self.maxOutputBytes = maxOutputBytes
        self.maxDurableBacklog = maxDurableBacklog
    }
}

/// State shared by every connection: the live access policy and the connection count.
/// One socket's open connections, connections refused over the limit, and requests refused by the allow-list.
public struct SocketConnectionCounts: Sendable, Hashable {
    public var connections = 0
    public var refusedConnections: UInt64 = 0
    public var refusedRequests: UInt64 = 0
    public init() {}
}

final class ConnectionRegistry: Sendable {
    private struct State {
        var policy: AccessPolicy
        var connections = 0
        var closedConnections: UInt64 = 0
        var refusedConnections: UInt64 = 0
        var refusedRequests: UInt64 = 0
        /// The same three by socket (`SocketRole.rawValue` as the index), for the metrics.
        var bySocket = [SocketConnectionCounts](repeating: SocketConnectionCounts(), count: 2)
    }

    private let state: NIOLockedValueBox<State>
    let limits: ConnectionLimits
    /// The daemon-wide bound on data-plane requests waiting for the journal.
    let backlog: DurableBacklog

    init(policy: AccessPolicy, limits: ConnectionLimits) {
        state = NIOLockedValueBox(State(policy: policy))
        self.limits = limits
        self.backlog = DurableBacklog(limit: limits.maxDurableBacklog)
    }

    var policy: AccessPolicy {
        get { state.withLockedValue { $0.policy } }
        set { state.withLockedValue { $0.policy = newValue } }
    }

    func permits(_ peer: PeerCredentials?, role: SocketRole) -> Bool {
        state.withLockedValue { s in
            let ok = s.policy.access(for: role).admits(peer)
            if !ok {
                s.refusedRequests &+= 1
                s.bySocket[Int(role.rawValue)].refusedRequests &+= 1
            }
            return ok
        }
    }

    /// Whether `peer` may use a socket of `role` now, without counting a refusal: lets a connection decide a batch
    /// of requests with one look at the policy (a refused request is then counted through `permits`).
    func allows(_ peer: PeerCredentials?, role: SocketRole) -> Bool {
        state.withLockedValue { $0.policy.access(for: role).admits(peer) }
    }

    /// Counts a new connection; false when the limit is reached (the caller refuses it).
    func open(role: SocketRole) -> Bool {
        state.withLockedValue { s in
            guard s.connections < limits.maxConnections else {
                s.refusedConnections &+= 1
                s.bySocket[Int(role.rawValue)].refusedConnections &+= 1
                return false
            }
            s.connections += 1
            s.bySocket[Int(role.rawValue)].connections += 1
            return true
        }
    }

    func close(role: SocketRole) {
        state.withLockedValue {
            $0.connections -= 1
            $0.closedConnections &+= 1
            $0.bySocket[Int(role.rawValue)].connections -= 1
        }
    }

    /// Connections and refusals of the api and admin sockets.
    var socketStatistics: (api: SocketConnectionCounts, admin: SocketConnectionCounts) {
        state.withLockedValue { ($0.bySocket[Int(SocketRole.api.rawValue)], $0.bySocket[Int(SocketRole.admin.rawValue)]) }
    }

    /// Connections closed since start (a burst of them is a moment to give memory back).
    var closedConnections: UInt64 { state.withLockedValue { $0.closedConnections } }

    var statistics: (connections: Int, refusedConnections: UInt64, refusedRequests: UInt64) {
        state.withLockedValue { ($0.connections, $0.refusedConnections, $0.refusedRequests) }
    }
}
