import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import TollgateAuthorization
import TollgateCore
import TollgateEngine
import TollgateModel
import TollgateProtocol
import TollgateServer

#if canImport(Glibc)
import Glibc
#endif

/// The HTTP front end of tollgated: forward auth for reverse proxies (nginx `auth_request`, Caddy `forward_auth`,
/// Traefik ForwardAuth, HAProxy, Envoy's HTTP `ext_authz`). It translates an HTTP request into the core's CHECK and
/// the result back into a status and headers; every decision is the core's (through the operation table, as the
/// api socket's caller) and the route table's, none is made here.
///
/// Built on SwiftNIO's own HTTP/1.1 codec (`NIOHTTP1`), which the package already has through swift-nio: no new
/// package and no extra build time. A framework such as Hummingbird would add minutes to every CI build for a
/// router, middleware and request context this front end does not need: it serves one endpoint. The one request
/// every proxy sends for every request it protects (a bodiless `GET` of `/v1/forward-auth`) is read by a
/// purpose-built parser first (`ForwardAuthFastPath`), which hands anything else to NIOHTTP1.
public final class TollgateHTTPServer: Sendable {
    /// Where to listen: a Unix socket (a path to bind, or a descriptor from socket activation) and, optionally, a
    /// loopback TCP port (for proxies that cannot reach a Unix socket, such as Traefik).
    public struct Listeners: Sendable, Hashable {
        public var unix: ListenerSource?
        public var tcp: TCPSource?
        public init(unix: ListenerSource?, tcp: TCPSource? = nil) {
            self.unix = unix
            self.tcp = tcp
        }
    }

    public enum TCPSource: Sendable, Hashable {
        /// Host (validated loopback by `Validation.loopbackEndpoint`) and port.
        case address(host: String, port: Int)
        case descriptor(CInt)
    }

    let frontEnd: HTTPFrontEnd
    let group: EventLoopGroup
    private let channels = NIOLockedValueBox<[Channel]>([])

    /// `endpoints`: reserved paths (`/metrics`, `/healthz`, `/readyz`) answered before forward auth.
    public init(
        core: ApplicationCore, group: EventLoopGroup, clock: any WallClock, policy: ForwardAuthPolicy, access: SocketAccess, limits: HTTPLimits, logger: Logger,
        endpoints: [String: ServiceEndpoint] = [:]
    ) {
        self.frontEnd = HTTPFrontEnd(core: core, clock: clock, policy: policy, access: access, limits: limits, logger: logger, endpoints: endpoints)
        self.group = group
    }

    /// Replaces the routes and token sources (a reload); each request reads them once, the next one sees the change.
    public func updatePolicy(_ policy: ForwardAuthPolicy) { frontEnd.live.withLockedValue { $0.policy = policy } }

    /// Replaces the allow-list of the Unix socket (a reload).
    public func updateAccess(_ access: SocketAccess) { frontEnd.live.withLockedValue { $0.access = access } }

    /// Open connections and connections answered 503 for being over the limit.
    public var statistics: (connections: Int, refused: UInt64) { frontEnd.counts.withLockedValue { ($0.open, $0.refused) } }

    /// Forward-auth answers by HTTP status code since start (refusals included; reserved paths not).
    public var answerStatistics: [UInt: UInt64] { frontEnd.counts.withLockedValue { $0.answers } }
    /// What became of Stripe webhook requests.
    public var stripeStatistics: StripeWebhookCounters { frontEnd.stripeCounters.withLockedValue { $0 } }

    /// The port the TCP listener is bound to (useful with port 0 in tests), or nil.
    public var tcpPort: Int? {
        channels.withLockedValue { $0.compactMap { channel -> Int? in
            if case .v4 = channel.localAddress { return channel.localAddress?.port }
            if case .v6 = channel.localAddress { return channel.localAddress?.port }
            return nil
        }.first }
    }

    /// Binds (or adopts) the listeners; when this returns they accept connections.
    public func start(_ listeners: Listeners) async throws {
        let frontEnd = self.frontEnd
        let decoderLimits = frontEnd.decoderLimits
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 1024)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try HTTPFrontEnd.configure(channel.pipeline.syncOperations, frontEnd: frontEnd, decoderLimits: decoderLimits)
                }
            }
        var opened: [Channel] = []
        do {
            switch listeners.unix {
            case .path(let path, let mode):
                let channel = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
                opened.append(channel)
                guard chmod(path, mode) == 0 else {
                    throw HTTPListenerError(description: "cannot set the mode of \(path): \(String(cString: strerror(errno)))")
                }
                frontEnd.logger.info("listening", metadata: ["tollgate.socket": "http", "tollgate.path": "\(path)"])
            case .descriptor(let fd):
                opened.append(try await bootstrap.withBoundSocket(fd).get())
                frontEnd.logger.info("listening on an inherited socket", metadata: ["tollgate.socket": "http", "tollgate.fd": "\(fd)"])
            case nil:
                break
            }
            switch listeners.tcp {
            case .address(let host, let port):
                let channel = try await bootstrap.bind(host: host, port: port).get()
                opened.append(channel)
                frontEnd.logger.info("listening", metadata: ["tollgate.socket": "http-tcp", "tollgate.address": "\(channel.localAddress.map { "\($0)" } ?? host)"])
            case .descriptor(let fd):
                opened.append(try await bootstrap.withBoundSocket(fd).get())
                frontEnd.logger.info("listening on an inherited socket", metadata: ["tollgate.socket": "http-tcp", "tollgate.fd": "\(fd)"])
            case nil:
                break
            }
        } catch {
            for channel in opened { try? await channel.close() }
            throw error
        }
        channels.withLockedValue { $0 = opened }
    }

    /// Stops accepting; connections already open are served until the event loops shut down.
    public func stopAccepting() async {
        let open = channels.withLockedValue { channels in
            defer { channels = [] }
            return channels
        }
        for channel in open { try? await channel.close() }
    }
}

/// The HTTP listener could not be set up (the socket file's mode could not be set).
public struct HTTPListenerError: Error, CustomStringConvertible, Hashable {
    public var description: String
}

/// Bounds that keep one HTTP client from holding resources or memory.
public struct HTTPLimits: Sendable, Hashable {
    /// The request target, each header field and all header fields together (bytes); beyond it: 431 and close.
    public var maxHeaderBytes: Int
    /// A request body (forward auth reads none; Envoy may send one); beyond it: 413 and close.
    public var maxBodyBytes: Int
    /// Open connections over both HTTP listeners; the next one's request is answered 503 and it is closed.
    public var maxConnections: Int
    /// A connection without traffic for this long is closed (0: never).
    public var idleTimeoutMilliseconds: Int64

    public init(maxHeaderBytes: Int = 8192, maxBodyBytes: Int = 65536, maxConnections: Int = 1024, idleTimeoutMilliseconds: Int64 = 60_000) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
        self.maxConnections = maxConnections
        self.idleTimeoutMilliseconds = idleTimeoutMilliseconds
    }
}

/// What every HTTP connection shares: the core, the clock, the live policy and allow-list (a reload replaces them),
/// the limits and the connection count. Every mutable part is behind a lock.
final class HTTPFrontEnd: Sendable {
    struct Live {
        var policy: ForwardAuthPolicy
        var access: SocketAccess
    }

    struct Counts {
        var open = 0
        var refused: UInt64 = 0
        /// Answers by status code, indexed by the code (100–599): counting one hashes nothing.
        var byStatus = [UInt64](repeating: 0, count: 600)

        /// The codes answered at least once, with their counts.
        var answers: [UInt: UInt64] {
            var answers: [UInt: UInt64] = [:]
            for (code, count) in byStatus.enumerated() where count > 0 { answers[UInt(code)] = count }
            return answers
        }
    }

    let core: ApplicationCore
    let clock: any WallClock
    let limits: HTTPLimits
    let logger: Logger
    let live: NIOLockedValueBox<Live>
    let counts = NIOLockedValueBox(Counts())
    let endpoints: [String: ServiceEndpoint]
    let stripeCounters = NIOLockedValueBox(StripeWebhookCounters())

    init(
        core: ApplicationCore, clock: any WallClock, policy: ForwardAuthPolicy, access: SocketAccess, limits: HTTPLimits, logger: Logger,
        endpoints: [String: ServiceEndpoint] = [:]
    ) {
        self.endpoints = endpoints
        self.core = core
        self.clock = clock
        self.limits = limits
        self.logger = logger
        self.live = NIOLockedValueBox(Live(policy: policy, access: access))
    }

    /// The decoder's bounds, checked before it allocates: each header field and all of them together within
    /// `maxHeaderBytes`, at most 256 fields.
    var decoderLimits: NIOHTTPDecoderLimitConfiguration {
        var decoderLimits = NIOHTTPDecoderLimitConfiguration()
        decoderLimits.maxHeaderFieldSize = limits.maxHeaderBytes
        decoderLimits.maxHeaderListSize = limits.maxHeaderBytes
        decoderLimits.maxHeaderFieldCount = 256
        return decoderLimits
    }

    /// The fast path for the proxies' forward-auth calls (`ForwardAuthFastPath`), then the forward-auth handler,
    /// which writes its answers' bytes itself (`ResponseBytes`). NIOHTTP1's request decoder, with our header limits,
    /// is put between them at the first request the fast path declines. No response encoder, no header validator
    /// (every header this front end writes is a constant name with a safe value), no error handler (ours adds
    /// `Cache-Control` and the JSON body), no pipelining assistance (every request is answered synchronously when its
    /// end is read, so answers already leave in request order, and the assistance's buffering would only add work
    /// per request).
    static func configure(_ pipeline: ChannelPipeline.SynchronousOperations, frontEnd: HTTPFrontEnd, decoderLimits: NIOHTTPDecoderLimitConfiguration) throws {
        let connection = ForwardAuthHandler(frontEnd: frontEnd)
        try pipeline.addHandler(
            ForwardAuthFastPath(connection: connection, limits: frontEnd.limits, maxHeaderFields: decoderLimits.maxHeaderFieldCount) {
                ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .drop, limitConfiguration: decoderLimits))
            })
        try pipeline.addHandler(connection)
    }

    /// Counts a connection; false when the limit is reached.
    func openConnection() -> Bool {
        counts.withLockedValue { counts in
            guard counts.open < limits.maxConnections else {
                counts.refused &+= 1
                return false
            }
            counts.open += 1
            return true
        }
    }

    func closeConnection() { counts.withLockedValue { $0.open -= 1 } }

    /// Counts one forward-auth answer by status, for the metrics.
    func count(_ status: HTTPResponseStatus) {
        let code = Int(status.code)
        guard code < 600 else { return }
        counts.withLockedValue { $0.byStatus[code] &+= 1 }
    }

    /// The answer to one complete request from `peer`, without a body for nginx (`ForwardAuth.answersWithoutBody`).
    func answer(_ head: HTTPRequestHead, peer: PeerCredentials?) -> ForwardAuthAnswer {
        let answer = decide(peer: peer) { ForwardAuth.decide(head, policy: $0) }
        return ForwardAuth.answersWithoutBody(head) ? answer.withoutBody() : answer
    }

    /// The allow-list first, then the translation (`translate`, given the live policy), then the core.
    func decide(peer: PeerCredentials?, _ translate: (ForwardAuthPolicy) -> Authorization.Decision) -> ForwardAuthAnswer {
        let live = self.live.withLockedValue { $0 }
        // Without credentials (TCP) only an unrestricted listener may be used: fail closed, as the api socket does.
        guard live.access.admits(peer) else {
            return .refused(.forbidden, reason: ForwardAuthProblem.peerNotAllowed.rawValue)
        }
        // Through the operation table, as the api socket's caller: the same door as the binary front end's.
        let answer = Authorization.answer(
            translate(live.policy), core: core, caller: Caller(role: .api, uid: peer?.uid), nowMillis: { clock.now().millis })
        if answer.status == .internalServerError { logger.error("the core gave no check answer to an http request") }
        return answer
    }
}
