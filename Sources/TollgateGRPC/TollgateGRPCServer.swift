import GRPCCore
import GRPCNIOTransportCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TollgateAuthorization
import TollgateCore
import TollgateEngine
import TollgateModel
import TollgateServer

#if canImport(Glibc)
import Glibc
#endif

/// The gRPC front end of tollgated: Envoy's external authorization service (`envoy.service.auth.v3.Authorization`,
/// `ext_authz` over gRPC) on a Unix socket. Each `Check` is translated by `EnvoyCheck` into the shared translation
/// (`Authorization`: the same route rules and token sources as the HTTP listener) and asked of the core through the
/// operation table, as the api socket's caller; nothing is decided here.
///
/// grpc-swift 2 over its SwiftNIO HTTP/2 transport. The listening socket is ours (`UnixListener`): bound at a path
/// with its mode, or inherited from systemd, and every connection's peer credentials (`SO_PEERCRED`) are checked
/// against the allow-list before gRPC sees a byte of it. A peer not on the list is disconnected (Envoy then fails
/// closed: `failure_mode_allow: false`).
public final class TollgateGRPCServer: Sendable {
    /// Bounds on one request: Envoy's CheckRequest is a few hundred bytes plus the headers it was told to send.
    public static let maxRequestBytes = 65536

    let frontEnd: GRPCFrontEnd
    let group: MultiThreadedEventLoopGroup
    private let running = NIOLockedValueBox<(server: GRPCServer<HTTP2ServerTransport.Custom<UnixListener>>, task: Task<Void, Error>)?>(nil)

    public init(core: ApplicationCore, group: MultiThreadedEventLoopGroup, clock: any WallClock, policy: AuthorizationPolicy, access: SocketAccess, logger: Logger) {
        self.frontEnd = GRPCFrontEnd(core: core, clock: clock, policy: policy, access: access, logger: logger)
        self.group = group
    }

    /// Replaces the routes and token sources (a reload): the next Check sees them.
    public func updatePolicy(_ policy: AuthorizationPolicy) { frontEnd.live.withLockedValue { $0.policy = policy } }

    /// Replaces the allow-list (a reload): checked on each new connection.
    public func updateAccess(_ access: SocketAccess) { frontEnd.live.withLockedValue { $0.access = access } }

    /// Check answers by HTTP status (200 for OK), connections refused by the allow-list, malformed requests.
    public var statistics: GRPCStatistics { frontEnd.counts.withLockedValue { $0 } }

    /// Binds (or adopts) the socket; when this returns it accepts connections. Throws when the socket cannot be set up.
    public func start(_ source: ListenerSource) async throws {
        let listener = UnixListener(eventLoopGroup: group, source: source, frontEnd: frontEnd)
        var config = HTTP2ServerTransport.Custom<UnixListener>.Config.defaults
        config.rpc.maxRequestPayloadSize = Self.maxRequestBytes
        let transport = HTTP2ServerTransport.Custom(listenerFactory: listener, config: config)
        let server = GRPCServer(transport: transport, services: [EnvoyAuthorizationService(frontEnd: frontEnd)])
        let task = Task { try await server.serve() }
        // Nil: the listener could not be made; `serve` has thrown why.
        guard await transport.listeningAddress != nil else {
            server.beginGracefulShutdown()
            try await task.value
            throw GRPCListenerError(description: "the gRPC listener stopped before it listened")
        }
        running.withLockedValue { $0 = (server, task) }
        switch source {
        case .path(let path, _):
            frontEnd.logger.info("listening", metadata: ["tollgate.socket": "grpc", "tollgate.path": "\(path)"])
        case .descriptor(let fd):
            frontEnd.logger.info("listening on an inherited socket", metadata: ["tollgate.socket": "grpc", "tollgate.fd": "\(fd)"])
        }
    }

    /// Stops accepting and lets the RPCs in flight finish.
    public func stop() async {
        guard let stopping = running.withLockedValue({ running in defer { running = nil }; return running }) else { return }
        stopping.server.beginGracefulShutdown()
        do { try await stopping.task.value } catch { frontEnd.logger.debug("grpc server stopped", metadata: ["tollgate.error": "\(error)"]) }
    }
}

/// The gRPC listener could not be set up.
public struct GRPCListenerError: Error, CustomStringConvertible, Hashable {
    public var description: String
}

/// What the gRPC front end has answered since start.
public struct GRPCStatistics: Sendable, Hashable {
    /// Check answers by the HTTP status they carry (200: OK).
    public var answers: [UInt: UInt64] = [:]
    /// Connections closed at once because the peer is not on the allow-list.
    public var refusedPeers: UInt64 = 0
    /// Checks answered with a gRPC error (INVALID_ARGUMENT) because they carried no HTTP request.
    public var malformed: UInt64 = 0
}

/// What every connection and RPC shares: the core, the clock, the live policy and allow-list (a reload replaces
/// them) and the counters, each mutable part behind a lock.
final class GRPCFrontEnd: Sendable {
    struct Live {
        var policy: AuthorizationPolicy
        var access: SocketAccess
    }

    let core: ApplicationCore
    let clock: any WallClock
    let logger: Logger
    let live: NIOLockedValueBox<Live>
    let counts = NIOLockedValueBox(GRPCStatistics())

    init(core: ApplicationCore, clock: any WallClock, policy: AuthorizationPolicy, access: SocketAccess, logger: Logger) {
        self.core = core
        self.clock = clock
        self.logger = logger
        self.live = NIOLockedValueBox(Live(policy: policy, access: access))
    }

    /// One Check: the shared translation and the core, or a gRPC error for a request with no HTTP request in it.
    /// The caller's uid is not known per RPC (the allow-list was checked when the connection opened).
    func check(_ request: Envoy_Service_Auth_V3_CheckRequest) throws(RPCError) -> Envoy_Service_Auth_V3_CheckResponse {
        let policy = live.withLockedValue { $0.policy }
        switch EnvoyCheck.decide(request, policy: policy) {
        case .failure(let problem):
            counts.withLockedValue { $0.malformed &+= 1 }
            throw RPCError(code: .invalidArgument, message: problem.description)
        case .success(let decision):
            let answer = Authorization.answer(decision, core: core, caller: Caller(role: .api, uid: nil), nowMillis: { clock.now().millis })
            if answer.status == .internalServerError { logger.error("the core gave no check answer to a grpc request") }
            counts.withLockedValue { $0.answers[answer.status.code, default: 0] &+= 1 }
            return EnvoyCheck.response(answer)
        }
    }

    /// Whether a new connection from `peer` may stay: on the allow-list (a socket without credentials only when
    /// the list is unrestricted). Counted when not.
    func admits(_ peer: PeerCredentials?) -> Bool {
        let access = live.withLockedValue { $0.access }
        guard access.admits(peer) else {
            counts.withLockedValue { $0.refusedPeers &+= 1 }
            logger.warning("grpc connection from a peer not on the allow-list closed", metadata: ["tollgate.peer": "\(peer.map { "\($0)" } ?? "unknown")"])
            return false
        }
        return true
    }
}

/// The generated service's one method, handed to the front end.
struct EnvoyAuthorizationService: Envoy_Service_Auth_V3_Authorization.SimpleServiceProtocol {
    let frontEnd: GRPCFrontEnd

    func check(request: Envoy_Service_Auth_V3_CheckRequest, context: ServerContext) async throws -> Envoy_Service_Auth_V3_CheckResponse {
        try frontEnd.check(request)
    }
}

/// The listening Unix socket for grpc-swift's HTTP/2 transport: bound at a path (then given its mode) or adopted from
/// systemd; each accepted connection's peer credentials are read and checked before the gRPC pipeline is set up on
/// it. A refused connection is closed and never reaches gRPC.
struct UnixListener: HTTP2ServerTransport.ListenerFactory {
    let eventLoopGroup: any EventLoopGroup
    let source: ListenerSource
    let frontEnd: GRPCFrontEnd

    init(eventLoopGroup: any EventLoopGroup, source: ListenerSource, frontEnd: GRPCFrontEnd) {
        self.eventLoopGroup = eventLoopGroup
        self.source = source
        self.frontEnd = frontEnd
    }

    func makeListeningChannel(
        listenerConfigurator: HTTP2ServerTransport.ListenerConfigurator, connectionConfigurator: HTTP2ServerTransport.ConnectionConfigurator
    ) async throws -> NIOAsyncChannel<HTTP2ServerTransport.ConnectionConfigurator.ConnectionChannel, Never> {
        let frontEnd = self.frontEnd
        let bootstrap = ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(ChannelOptions.backlog, value: 1024)
            .serverChannelInitializer { listenerConfigurator.configure(channel: $0) }
        let initializer: @Sendable (any Channel) -> EventLoopFuture<HTTP2ServerTransport.ConnectionConfigurator.ConnectionChannel> = { channel in
            PeerCredentials.read(from: channel).flatMap { peer in
                guard frontEnd.admits(peer) else {
                    channel.close(promise: nil)
                    return channel.eventLoop.makeFailedFuture(GRPCListenerError(description: "peer not on the allow-list"))
                }
                return connectionConfigurator.configure(channel: channel, tls: .none)
            }
        }
        switch source {
        case .path(let path, let mode):
            let channel = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true, childChannelInitializer: initializer)
            guard chmod(path, mode) == 0 else {
                let reason = String(cString: strerror(errno))
                try? await channel.channel.close()
                throw GRPCListenerError(description: "cannot set the mode of \(path): \(reason)")
            }
            return channel
        case .descriptor(let fd):
            return try await bootstrap.bind(fd, cleanupExistingSocketFile: false, childChannelInitializer: initializer)
        }
    }
}
