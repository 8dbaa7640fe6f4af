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
        // Compared in place: a String of the path and its hash for a lookup among three keys cost ~7 k
        // instructions per forward-auth request (callgrind, Benchmarks/SCALE.md, "Forward auth").
        return serviceEndpoint(path: head.uri.utf8.prefix { $0 != UInt8(ascii: "?") })
    }

    /// The reserved endpoint at `path` (without a query), if any.
    func serviceEndpoint(path: some Collection<UInt8>) -> ServiceEndpoint? {
        for (reserved, endpoint) in endpoints where reserved.utf8.elementsEqual(path) { return endpoint }
        return nil
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
        var bytes = ResponseBytes(status: answer.status, requestVersion: head.version, allocator: context.channel.allocator)
        bytes.header("Content-Type", answer.contentType)
        bytes.header("Cache-Control", "no-store")
        bytes.header("Content-Length", answer.body.count)
        if answer.status == .methodNotAllowed { bytes.header("Allow", "GET, HEAD") }
        if !head.isKeepAlive { bytes.header("Connection", "close") }
        let written = context.writeAndFlush(wrapOutboundOut(bytes.finish(body: head.method == .HEAD ? [] : answer.body).0))
        if !head.isKeepAlive {
            written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }
}
