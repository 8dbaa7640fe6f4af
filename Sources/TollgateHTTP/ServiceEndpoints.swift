import NIOCore
import NIOHTTP1
import TollgateAuthorization

/// The answer of a reserved path of the HTTP listener (`/metrics`, `/healthz`, `/readyz`): the daemon's own
/// endpoints, not forward auth. The front end only writes it; what it says is the metrics module's.
public struct ServiceAnswer: Sendable {
    public var status: HTTPResponseStatus
    public var contentType: String
    public var body: [UInt8]

    public init(status: HTTPResponseStatus, contentType: String, body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }
}

/// Answers a GET or HEAD of one reserved path.
public typealias ServiceEndpoint = @Sendable () -> ServiceAnswer

extension HTTPFrontEnd {
    /// The reserved endpoint `head` asks for, if any: matched on the path alone (a query is ignored). Looked up
    /// before the forward-auth translation, so those paths never reach the route table.
    func serviceEndpoint(for head: HTTPRequestHead) -> ServiceEndpoint? {
        guard !endpoints.isEmpty else { return nil }
        return endpoints[String(head.uri.prefix { $0 != "?" })]
    }

    /// The answer of a reserved path: GET and HEAD only (405 otherwise, with `Allow`).
    static func serve(_ endpoint: ServiceEndpoint, method: HTTPMethod) -> ServiceAnswer {
        guard method == .GET || method == .HEAD else {
            return ServiceAnswer(status: .methodNotAllowed, contentType: "text/plain; charset=utf-8", body: Array("use GET\n".utf8))
        }
        return endpoint()
    }
}

extension ForwardAuthHandler {
    /// Writes a reserved path's answer (the body left out for HEAD); counted apart from forward-auth answers.
    func writeService(_ answer: ServiceAnswer, head: HTTPRequestHead, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: answer.contentType)
        headers.add(name: "Cache-Control", value: "no-store")
        headers.add(name: "Content-Length", value: "\(answer.body.count)")
        if answer.status == .methodNotAllowed { headers.add(name: "Allow", value: "GET, HEAD") }
        if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
        let version = head.version.major == 1 && head.version.minor == 0 ? head.version : .http1_1
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: answer.status, headers: headers))), promise: nil)
        if head.method != .HEAD && !answer.body.isEmpty {
            var body = context.channel.allocator.buffer(capacity: answer.body.count)
            body.writeBytes(answer.body)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !head.isKeepAlive {
            written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }
}
