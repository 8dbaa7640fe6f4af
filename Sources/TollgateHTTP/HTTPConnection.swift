import Logging
import NIOCore
import NIOHTTP1
import TollgateAuthorization
import TollgateServer

/// What one connection has seen, and what to do next: a value type the channel handler feeds events to, so the
/// limits are decided without a channel (and tested without one). A refusal ends the connection: after it, every
/// event is ignored until the handler has closed it.
/// The endpoints whose request body is read and kept (the Stripe webhook, RFC 8693 token exchange, SCIM), with
/// their paths and body limits: read from the policy when a connection opens.
struct BodyEndpoints: Equatable {
    enum Route: Equatable {
        case stripe
        case tokenExchange
        case scim
    }

    var stripePath: String?
    var stripeMaxBodyBytes = 0
    var tokenExchangePath: String?
    /// The SCIM base path (`/scim/v2`): requests below it are SCIM's.
    var scimPrefix: String?
    /// The limit for token exchange and SCIM bodies (`http.limits.max_body_bytes`).
    var maxBodyBytes = 0

    /// The endpoint of `uri` and its body limit; nil: a forward-auth request.
    func route(_ uri: String) -> (Route, Int)? {
        let path = uri.prefix { $0 != "?" }
        if let stripePath, path == stripePath { return (.stripe, stripeMaxBodyBytes) }
        if let tokenExchangePath, path == tokenExchangePath { return (.tokenExchange, maxBodyBytes) }
        if let scimPrefix, path.hasPrefix(scimPrefix + "/") { return (.scim, maxBodyBytes) }
        return nil
    }
}

/// What one connection has seen, and what to do next: a value type the channel handler feeds events to, so the
/// limits are decided without a channel (and tested without one). A refusal ends the connection: after it, every
/// event is ignored until the handler has closed it.
struct HTTPConnectionState {
    enum Action: Equatable {
        case none
        /// The request is complete: decide it and answer, keeping the connection open if the request allows it.
        case decide(HTTPRequestHead)
        /// Answer this and close.
        case refuse(ForwardAuthAnswer)
        /// A request to a body endpoint is complete, with its body: answer it (later, after the core) and close.
        case collected(BodyEndpoints.Route, HTTPRequestHead, [UInt8])
    }

    private enum Phase: Equatable {
        case waitingForHead
        case readingBody(HTTPRequestHead, received: Int)
        /// A request to a body endpoint: its body is kept (up to the endpoint's limit).
        case collecting(BodyEndpoints.Route, HTTPRequestHead, [UInt8], limit: Int)
        /// The endpoint's answer is on its way; nothing more is read on this connection.
        case answeringCollected
        case refused
    }

    /// The body endpoints (none by default), read when the connection opens.
    var bodyEndpoints = BodyEndpoints()

    let maxBodyBytes: Int
    let maxHeaderBytes: Int
    /// False when the connection is over the connection limit: its first request is answered 503.
    let admitted: Bool
    private var phase = Phase.waitingForHead

    init(maxBodyBytes: Int, maxHeaderBytes: Int, admitted: Bool) {
        self.maxBodyBytes = maxBodyBytes
        self.maxHeaderBytes = maxHeaderBytes
        self.admitted = admitted
    }

    var isRefused: Bool { phase == .refused }

    /// Admitted and between requests: the fast path (`ForwardAuthFastPath`) may answer the next one.
    var isAwaitingRequest: Bool { admitted && phase == .waitingForHead }

    mutating func receivedHead(_ head: HTTPRequestHead) -> Action {
        guard phase == .waitingForHead else { return phase == .refused || phase == .answeringCollected ? .none : refuse(.badRequest, .malformedRequest) }
        guard admitted else { return refuse(.serviceUnavailable, .tooManyConnections) }
        // The decoder bounds the header fields; the request target is bounded here, against the same budget.
        guard head.uri.utf8.count <= maxHeaderBytes else { return refuse(.requestHeaderFieldsTooLarge, .headersTooLarge) }
        let lengths = head.headers[canonicalForm: "content-length"]
        if lengths.count > 1 { return refuse(.badRequest, .malformedRequest) }
        let endpoint = bodyEndpoints.route(head.uri)
        let limit = endpoint?.1 ?? maxBodyBytes
        if let text = lengths.first {
            guard let length = Int(text), length >= 0 else { return refuse(.badRequest, .malformedRequest) }
            if length > limit { return refuse(.payloadTooLarge, .bodyTooLarge) }
        }
        phase = endpoint.map { .collecting($0.0, head, [], limit: $0.1) } ?? .readingBody(head, received: 0)
        return .none
    }

    /// A body part: a body endpoint's is kept up to its limit; any other is dropped (forward auth decides on the head).
    mutating func receivedBody(_ part: ByteBuffer) -> Action {
        guard case .collecting(let route, let head, var body, let limit) = phase else { return receivedBody(bytes: part.readableBytes) }
        guard body.count + part.readableBytes <= limit else { return refuse(.payloadTooLarge, .bodyTooLarge) }
        phase = .answeringCollected  // while `body` is uniquely referenced
        body.append(contentsOf: part.readableBytesView)
        phase = .collecting(route, head, body, limit: limit)
        return .none
    }

    /// A body is read and dropped (forward auth decides on the head alone), but only up to the limit.
    mutating func receivedBody(bytes: Int) -> Action {
        guard case .readingBody(let head, let received) = phase else { return .none }
        let total = received + bytes
        guard total <= maxBodyBytes else { return refuse(.payloadTooLarge, .bodyTooLarge) }
        phase = .readingBody(head, received: total)
        return .none
    }

    mutating func receivedEnd() -> Action {
        if case .collecting(let route, let head, let body, _) = phase {
            phase = .answeringCollected
            return .collected(route, head, body)
        }
        guard case .readingBody(let head, _) = phase else { return .none }
        phase = .waitingForHead
        return .decide(head)
    }

    /// The parser gave up on the bytes: 431 for headers over the limit, 400 for anything else.
    mutating func parserFailed(_ error: HTTPParserError) -> Action {
        guard phase != .refused, phase != .answeringCollected else { return .none }
        if error == .headerOverflow { return refuse(.requestHeaderFieldsTooLarge, .headersTooLarge) }
        return refuse(.badRequest, .malformedRequest)
    }

    private mutating func refuse(_ status: HTTPResponseStatus, _ problem: ForwardAuthProblem) -> Action {
        phase = .refused
        return .refuse(.refused(status, reason: problem.rawValue))
    }
}

/// Serves one HTTP connection behind NIOHTTP1's decoder, encoder and pipelining handler: feeds each request part to
/// `HTTPConnectionState`, asks `HTTPFrontEnd` for the answer of each complete request, writes it, and keeps the
/// connection open (keep-alive) unless the request or a refusal ends it. Closes a connection idle for the idle
/// timeout; the timer runs on the channel's event loop, so tests drive it with `EmbeddedEventLoop.advanceTime`.
final class ForwardAuthHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    /// The answer's bytes (`ResponseBytes`): there is no response encoder in the pipeline.
    typealias OutboundOut = ByteBuffer

    private let frontEnd: HTTPFrontEnd
    private var state: HTTPConnectionState
    private var peer: PeerCredentials?
    private var counted = false
    private var idleTimer: Scheduled<Void>?
    private var lastActivity = NIODeadline.uptimeNanoseconds(0)
    private var active = false
    /// The array each answer's bytes are gathered in (`ResponseBytes`), kept from answer to answer.
    private var responseStorage: [UInt8] = []
    /// Whether the endpoint's path is forward auth on this connection (no reserved or body endpoint took it).
    private var endpointIsForwardAuth = false

    init(frontEnd: HTTPFrontEnd) {
        self.frontEnd = frontEnd
        self.state = HTTPConnectionState(maxBodyBytes: frontEnd.limits.maxBodyBytes, maxHeaderBytes: frontEnd.limits.maxHeaderBytes, admitted: true)
    }

    func channelActive(context: ChannelHandlerContext) {
        active = true
        counted = frontEnd.openConnection()
        if !counted {
            frontEnd.logger.warning("http connection over the limit; its request is answered 503", metadata: ["tollgate.limit": "\(frontEnd.limits.maxConnections)"])
        }
        state = HTTPConnectionState(maxBodyBytes: frontEnd.limits.maxBodyBytes, maxHeaderBytes: frontEnd.limits.maxHeaderBytes, admitted: counted)
        state.bodyEndpoints = frontEnd.bodyEndpoints()
        endpointIsForwardAuth = state.bodyEndpoints.route(ForwardAuth.endpointPath) == nil && frontEnd.serviceEndpoint(path: ForwardAuth.endpointPath.utf8) == nil
        PeerCredentials.read(from: context.channel).assumeIsolated().whenSuccess { [self] peer in self.peer = peer }
        lastActivity = context.eventLoop.now
        rearmIdleTimer(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        active = false
        idleTimer?.cancel()
        idleTimer = nil
        if counted {
            frontEnd.closeConnection()
            counted = false
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastActivity = context.eventLoop.now
        let action: HTTPConnectionState.Action
        switch unwrapInboundIn(data) {
        case .head(let head): action = state.receivedHead(head)
        case .body(let body): action = state.receivedBody(body)
        case .end: action = state.receivedEnd()
        }
        perform(action, context: context)
    }

    /// Whether `ForwardAuthFastPath` may answer the next request: the connection is open, admitted and between
    /// requests, and `/v1/forward-auth` is forward auth here.
    var servesFast: Bool { active && endpointIsForwardAuth && state.isAwaitingRequest }

    /// Between `channelActive` and `channelInactive`.
    var isOpen: Bool { active }

    /// Answers a forward-auth request `ForwardAuthFastPath` read (`GET` or `HEAD` of the endpoint, no body), through
    /// the same translation and writer as a request NIOHTTP1 read; `context` is the fast path's.
    func serveFast(_ request: ForwardAuthRequestParser.Request, headers: ForwardAuthRequestHeaders, context: ChannelHandlerContext) {
        lastActivity = context.eventLoop.now
        let method = request.isHead ? "HEAD" : "GET"
        var answer = frontEnd.decide(peer: peer) { ForwardAuth.decide(method: method, uri: ForwardAuth.endpointPath, headers: headers, policy: $0) }
        // nginx's shape (`ForwardAuth.answersWithoutBody`).
        if headers.contains(name: "x-original-uri") { answer = answer.withoutBody() }
        write(answer, version: .http1_1, keepAlive: request.keepAlive, head: request.isHead, context: context)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard let parserError = error as? HTTPParserError else {
            frontEnd.logger.debug("http connection error", metadata: ["tollgate.error": "\(error)"])
            context.close(promise: nil)
            return
        }
        // Written at once: the decoder closes the channel right after this returns.
        frontEnd.logger.debug("malformed http request", metadata: ["tollgate.error": "\(parserError)"])
        perform(state.parserFailed(parserError), context: context)
        context.close(promise: nil)
    }

    private func perform(_ action: HTTPConnectionState.Action, context: ChannelHandlerContext) {
        switch action {
        case .none:
            return
        case .decide(let head):
            if let endpoint = frontEnd.serviceEndpoint(for: head) {
                writeService(HTTPFrontEnd.serve(endpoint, method: head.method), head: head, context: context)
                return
            }
            let answer = frontEnd.answer(head, peer: peer)
            write(answer, version: head.version, keepAlive: head.isKeepAlive, head: head.method == .HEAD, context: context)
        case .refuse(let answer):
            write(answer, version: .http1_1, keepAlive: false, context: context)
        case .collected(let route, let head, let body):
            // Answered when the core has decided (after the journal for a change), on this loop; the connection
            // then closes (one request per connection on these endpoints; nothing is read meanwhile).
            let loop = context.eventLoop
            let handler = NIOLoopBound(self, eventLoop: loop)
            let bound = NIOLoopBound(context, eventLoop: loop)
            let completion: @Sendable (ForwardAuthAnswer) -> Void = { answer in
                loop.execute {
                    guard handler.value.active else { return }
                    handler.value.write(answer, version: head.version, keepAlive: false, context: bound.value)
                }
            }
            switch route {
            case .stripe: frontEnd.stripeWebhook(head, body: body, peer: peer, completion: completion)
            case .tokenExchange: frontEnd.tokenExchange(head, body: body, peer: peer, completion: completion)
            case .scim: frontEnd.scim(head, body: body, peer: peer, completion: completion)
            }
        }
    }

    /// Writes `answer` (its body left out for HEAD, its length still given) and closes unless `keepAlive`.
    private func write(_ answer: ForwardAuthAnswer, version: HTTPVersion, keepAlive: Bool, head: Bool = false, context: ChannelHandlerContext) {
        frontEnd.count(answer.status)
        var bytes = ResponseBytes(status: answer.status, requestVersion: version, allocator: context.channel.allocator, storage: &responseStorage)
        for header in answer.headers { bytes.header(header.name, header.value) }
        bytes.header("Cache-Control", "no-store")
        if !answer.body.isEmpty, !answer.headers.contains(where: { $0.name == "Content-Type" }) { bytes.header("Content-Type", "application/json") }
        bytes.header("Content-Length", answer.body.utf8.count)
        if !keepAlive { bytes.header("Connection", "close") }
        let (buffer, storage) = bytes.finish(body: answer.body.utf8.prefix(head ? 0 : Int.max))
        responseStorage = storage
        // A kept connection needs no word of the write's completion: no promise is made for it.
        guard !keepAlive else { return context.writeAndFlush(wrapOutboundOut(buffer), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    /// Arms the idle timer for `idle_timeout` after the last activity; when it fires early (there was activity
    /// since), it re-arms for the rest, so a busy connection does not reschedule a timer per request.
    private func rearmIdleTimer(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        let timeout = frontEnd.limits.idleTimeoutMilliseconds
        guard timeout > 0, active else { return }
        idleTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: lastActivity + .milliseconds(timeout)) { [self] in
            guard active else { return }
            if context.eventLoop.now < lastActivity + .milliseconds(timeout) {
                rearmIdleTimer(context: context)
                return
            }
            frontEnd.logger.debug("closing an idle http connection")
            context.close(promise: nil)
        }
    }
}
