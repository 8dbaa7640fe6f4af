import Logging
import NIOCore
import NIOHTTP1
import TollgateAuthorization
import TollgateServer

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
        /// A webhook request is complete, with its body: answer it (later, after the journal) and close.
        case webhook(HTTPRequestHead, [UInt8])
    }

    private enum Phase: Equatable {
        case waitingForHead
        case readingBody(HTTPRequestHead, received: Int)
        /// A request to the webhook path: its body is kept (up to `webhook.maxBodyBytes`), since it is signed.
        case readingWebhook(HTTPRequestHead, [UInt8])
        /// The webhook's answer is on its way; nothing more is read on this connection.
        case answeringWebhook
        case refused
    }

    /// The webhook endpoint's path and body limit (nil: no webhook endpoint), read when the connection opens.
    var webhook: (path: String, maxBodyBytes: Int)?

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

    mutating func receivedHead(_ head: HTTPRequestHead) -> Action {
        guard phase == .waitingForHead else { return phase == .refused || phase == .answeringWebhook ? .none : refuse(.badRequest, .malformedRequest) }
        guard admitted else { return refuse(.serviceUnavailable, .tooManyConnections) }
        // The decoder bounds the header fields; the request target is bounded here, against the same budget.
        guard head.uri.utf8.count <= maxHeaderBytes else { return refuse(.requestHeaderFieldsTooLarge, .headersTooLarge) }
        let lengths = head.headers[canonicalForm: "content-length"]
        if lengths.count > 1 { return refuse(.badRequest, .malformedRequest) }
        let isWebhook = webhook.map { head.uri.prefix { $0 != "?" } == $0.path } ?? false
        let limit = isWebhook ? webhook!.maxBodyBytes : maxBodyBytes
        if let text = lengths.first {
            guard let length = Int(text), length >= 0 else { return refuse(.badRequest, .malformedRequest) }
            if length > limit { return refuse(.payloadTooLarge, .bodyTooLarge) }
        }
        phase = isWebhook ? .readingWebhook(head, []) : .readingBody(head, received: 0)
        return .none
    }

    /// A body part: a webhook's is kept up to its limit; any other is dropped (forward auth decides on the head).
    mutating func receivedBody(_ part: ByteBuffer) -> Action {
        guard case .readingWebhook(let head, var body) = phase else { return receivedBody(bytes: part.readableBytes) }
        guard body.count + part.readableBytes <= webhook!.maxBodyBytes else { return refuse(.payloadTooLarge, .bodyTooLarge) }
        phase = .answeringWebhook  // while `body` is uniquely referenced
        body.append(contentsOf: part.readableBytesView)
        phase = .readingWebhook(head, body)
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
        if case .readingWebhook(let head, let body) = phase {
            phase = .answeringWebhook
            return .webhook(head, body)
        }
        guard case .readingBody(let head, _) = phase else { return .none }
        phase = .waitingForHead
        return .decide(head)
    }

    /// The parser gave up on the bytes: 431 for headers over the limit, 400 for anything else.
    mutating func parserFailed(_ error: HTTPParserError) -> Action {
        guard phase != .refused, phase != .answeringWebhook else { return .none }
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
    typealias OutboundOut = HTTPServerResponsePart

    private let frontEnd: HTTPFrontEnd
    private var state: HTTPConnectionState
    private var peer: PeerCredentials?
    private var counted = false
    private var idleTimer: Scheduled<Void>?
    private var lastActivity = NIODeadline.uptimeNanoseconds(0)
    private var active = false

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
        state.webhook = frontEnd.live.withLockedValue { $0.policy.stripe.map { ($0.path, $0.maxBodyBytes) } }
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
            write(answer, version: head.version, keepAlive: head.isKeepAlive, context: context)
        case .refuse(let answer):
            write(answer, version: .http1_1, keepAlive: false, context: context)
        case .webhook(let head, let body):
            // Answered when the core has decided (after the journal for an applied event), on this loop; the
            // connection then closes (a webhook is one request; nothing is read meanwhile).
            let loop = context.eventLoop
            let handler = NIOLoopBound(self, eventLoop: loop)
            let bound = NIOLoopBound(context, eventLoop: loop)
            frontEnd.stripeWebhook(head, body: body, peer: peer) { answer in
                loop.execute {
                    guard handler.value.active else { return }
                    handler.value.write(answer, version: head.version, keepAlive: false, context: bound.value)
                }
            }
        }
    }

    private func write(_ answer: ForwardAuthAnswer, version: HTTPVersion, keepAlive: Bool, context: ChannelHandlerContext) {
        frontEnd.count(answer.status)
        var headers = HTTPHeaders()
        headers.reserveCapacity(answer.headers.count + 4)
        for header in answer.headers { headers.add(name: header.name, value: header.value) }
        headers.add(name: "Cache-Control", value: "no-store")
        if !answer.body.isEmpty { headers.add(name: "Content-Type", value: "application/json") }
        headers.add(name: "Content-Length", value: "\(answer.body.utf8.count)")
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let responseVersion = version.major == 1 && version.minor == 0 ? version : .http1_1
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: responseVersion, status: answer.status, headers: headers))), promise: nil)
        if !answer.body.isEmpty {
            var body = context.channel.allocator.buffer(capacity: answer.body.utf8.count)
            body.writeString(answer.body)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
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
