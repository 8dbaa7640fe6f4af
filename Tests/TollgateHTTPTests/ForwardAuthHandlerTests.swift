import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import TollgateCore
import TollgateEngine
@testable import TollgateHTTP
@testable import TollgateAuthorization
import TollgateJournal
import TollgateModel
import TollgateProtocol
import XCTest

/// The HTTP front end's pipeline (NIOHTTP1's codec and the forward-auth handler) on `EmbeddedChannel`s over a real
/// core: keep-alive, every limit, malformed input, the idle timeout driven by the embedded loop's clock. Nothing
/// here sleeps.
final class ForwardAuthHandlerTests: XCTestCase {
    private var fixture: OneTokenCore!
    private var core: ApplicationCore { fixture.core }
    private var secret: String { fixture.secret }

    override func setUp() async throws {
        fixture = try await OneTokenCore(label: "http-tests")
    }

    override func tearDown() async throws {
        fixture?.close()
    }

    private func frontEnd(_ limits: HTTPLimits = HTTPLimits(), routes: RouteTable? = nil) throws -> HTTPFrontEnd {
        let table = try routes ?? RouteTable(rules: [
            RouteRule(method: "GET", path: Validation.pathPattern("/v1/items/{id}"), scopes: ["read"], meter: "requests", cost: 1),
            RouteRule(method: "*", path: Validation.pathPattern("/v1/admin/*"), scopes: ["write"]),
        ])
        return HTTPFrontEnd(
            core: core, clock: SystemWallClock(), policy: ForwardAuthPolicy(routes: table), access: .anyone, limits: limits,
            logger: Logger(label: "h") { _ in SwiftLogNoOpLogHandler() })
    }

    private func channel(_ frontEnd: HTTPFrontEnd) throws -> EmbeddedChannel {
        try embeddedChannel(frontEnd)
    }

    private func nginxRequest(_ uri: String, token: String?, method: String = "GET") -> String {
        "GET /v1/forward-auth HTTP/1.1\r\nHost: tollgate\r\nX-Original-URI: \(uri)\r\nX-Original-Method: \(method)\r\n"
            + (token.map { "Authorization: Bearer \($0)\r\n" } ?? "") + "\r\n"
    }

    func testKeepAliveAnswersPipelinedRequestsInOrder() throws {
        let channel = try channel(try frontEnd())
        write(channel, nginxRequest("/v1/items/1", token: secret) + nginxRequest("/v1/admin/x", token: secret) + nginxRequest("/v1/items/2", token: nil)
            + nginxRequest("/v1/items/3", token: "tg_live_notatoken"))
        let text = try output(channel)
        XCTAssertEqual(statusLines(text), ["HTTP/1.1 200 OK", "HTTP/1.1 403 Forbidden", "HTTP/1.1 401 Unauthorized", "HTTP/1.1 401 Unauthorized"])
        XCTAssertTrue(text.contains("X-Tollgate-Subject: svc\r\n"))
        XCTAssertTrue(text.contains("RateLimit-Remaining: 99\r\n"))
        XCTAssertEqual(text.components(separatedBy: "Cache-Control: no-store\r\n").count - 1, 4, "every answer says no-store")
        XCTAssertTrue(text.contains("X-Tollgate-Reason: insufficient_scope\r\n"))
        XCTAssertTrue(text.contains("X-Tollgate-Reason: missing_token\r\n"))
        XCTAssertEqual(text.components(separatedBy: "Content-Length: 0\r\n").count - 1, 4, "nginx's shape: no bodies, so nginx keeps the connection")
        XCTAssertFalse(text.contains("decision"))
        XCTAssertFalse(text.contains(secret), "the secret is never echoed")
        XCTAssertTrue(channel.isActive, "keep-alive")
    }

    func testOtherShapesGetTheJSONBody() throws {
        let channel = try channel(try frontEnd())
        write(channel, "GET /v1/forward-auth HTTP/1.1\r\nX-Forwarded-Uri: /v1/admin/x\r\nX-Forwarded-Method: GET\r\nAuthorization: Bearer \(secret)\r\n\r\n"
            + "GET /v1/items/7 HTTP/1.1\r\nAuthorization: Bearer \(secret)\r\n\r\n")
        let text = try output(channel)
        XCTAssertEqual(statusLines(text), ["HTTP/1.1 403 Forbidden", "HTTP/1.1 200 OK"])
        XCTAssertTrue(text.contains("Content-Type: application/json\r\n"))
        XCTAssertTrue(text.contains(#"{"decision":"deny","reason":"insufficient_scope"}"#))
        XCTAssertTrue(text.contains(#"{"decision":"allow"}"#))
    }

    /// The answers' bytes are written by hand (`ResponseBytes`), so an independent parser reads them back: NIOHTTP1's
    /// response decoder sees each answer whole, with its status, headers and a body of its Content-Length, and a
    /// HEAD's answer without a body.
    func testAnswersParseWithNIOsOwnResponseDecoder() throws {
        let channel = try channel(try frontEnd())
        write(channel, "GET /v1/items/7 HTTP/1.1\r\nAuthorization: Bearer \(secret)\r\n\r\n"
            + "GET /v1/admin/x HTTP/1.1\r\nAuthorization: Bearer \(secret)\r\n\r\n"
            + nginxRequest("/v1/items/8", token: secret))
        let client = EmbeddedChannel(handler: ByteToMessageHandler(HTTPResponseDecoder()))
        for _ in 0..<3 {
            var request = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
            request.headers.add(name: "Host", value: "t")
            try client.writeOutbound(HTTPClientRequestPart.head(request))  // tells the decoder a GET is outstanding
        }
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { try client.writeInbound(buffer) }
        var answers: [(head: HTTPResponseHead, body: String)] = []
        while let part = try client.readInbound(as: HTTPClientResponsePart.self) {
            switch part {
            case .head(let head): answers.append((head, ""))
            case .body(let body): answers[answers.count - 1].body += String(buffer: body)
            case .end: break
            }
        }
        XCTAssertEqual(answers.map(\.head.status), [.ok, .forbidden, .ok])
        XCTAssertEqual(answers[0].head.headers["X-Tollgate-Subject"], ["svc"])
        XCTAssertEqual(answers[0].head.headers["Cache-Control"], ["no-store"])
        XCTAssertEqual(answers[0].body, #"{"decision":"allow"}"#)
        XCTAssertEqual(answers[1].head.headers["X-Tollgate-Reason"], ["insufficient_scope"])
        XCTAssertEqual(answers[1].body, #"{"decision":"deny","reason":"insufficient_scope"}"#)
        XCTAssertEqual(answers[2].head.headers["Content-Length"], ["0"])
        XCTAssertEqual(answers[2].body, "")

        write(channel, "HEAD /v1/items/9 HTTP/1.1\r\nAuthorization: Bearer \(secret)\r\n\r\n")
        let headAnswer = try output(channel)
        // No route takes HEAD here: a 403 whose JSON body is counted but not sent.
        XCTAssertTrue(headAnswer.hasPrefix("HTTP/1.1 403 Forbidden\r\n"))
        let body = #"{"decision":"deny","reason":"no_route"}"#
        XCTAssertTrue(headAnswer.contains("Content-Length: \(body.utf8.count)\r\n"), "the length of the body a GET would get")
        XCTAssertTrue(headAnswer.hasSuffix("\r\n\r\n"), "no body after a HEAD's headers")
    }

    /// A subject is any text: whatever it holds, it is one header value, percent-encoded, never a second header.
    func testASubjectCannotAddAHeaderLine() {
        let value = ForwardAuthHeaders.headerSafe("svc\r\nX-Injected: 1 100%é")
        XCTAssertEqual(value, "svc%0D%0AX-Injected: 1 100%25%C3%A9")
        XCTAssertEqual(ForwardAuthHeaders.headerSafe("plain-subject@example.com"), "plain-subject@example.com")
    }

    func testMalformedHTTPIsAnswered400AndClosedWithoutDisturbingOthers() throws {
        let frontEnd = try frontEnd()
        let bystander = try channel(frontEnd)
        let bad = try channel(frontEnd)
        write(bad, "THIS IS NOT HTTP\r\n\r\n")
        XCTAssertEqual(statusLines(try output(bad)), ["HTTP/1.1 400 Bad Request"])
        XCTAssertFalse(bad.isActive)
        write(bystander, nginxRequest("/v1/items/1", token: secret))
        XCTAssertEqual(statusLines(try output(bystander)), ["HTTP/1.1 200 OK"])
        XCTAssertTrue(bystander.isActive)
    }

    func testHeadersOverTheLimitAre431AndClose() throws {
        let channel = try channel(try frontEnd(HTTPLimits(maxHeaderBytes: 1024)))
        write(channel, "GET /v1/forward-auth HTTP/1.1\r\nX-Padding: \(String(repeating: "a", count: 2000))\r\n\r\n")
        let text = try output(channel)
        XCTAssertEqual(statusLines(text), ["HTTP/1.1 431 Request Header Fields Too Large"])
        XCTAssertTrue(text.contains("headers_too_large"))
        XCTAssertFalse(channel.isActive)

        let longTarget = try self.channel(try frontEnd(HTTPLimits(maxHeaderBytes: 1024)))
        write(longTarget, "GET /\(String(repeating: "a", count: 1100)) HTTP/1.1\r\n\r\n")
        XCTAssertEqual(statusLines(try output(longTarget)), ["HTTP/1.1 431 Request Header Fields Too Large"], "the target counts against the same limit")
        XCTAssertFalse(longTarget.isActive)
    }

    func testBodiesOverTheLimitAre413AndClose() throws {
        let declared = try channel(try frontEnd(HTTPLimits(maxBodyBytes: 10)))
        write(declared, "POST /v1/items/1 HTTP/1.1\r\nContent-Length: 11\r\nAuthorization: Bearer \(secret)\r\n\r\n")
        XCTAssertEqual(statusLines(try output(declared)), ["HTTP/1.1 413 Payload Too Large"])
        XCTAssertFalse(declared.isActive)

        let chunked = try channel(try frontEnd(HTTPLimits(maxBodyBytes: 10)))
        write(chunked, "POST /v1/items/1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n")
        XCTAssertTrue(try output(chunked).isEmpty, "6 of 10 bytes: still reading")
        write(chunked, "6\r\nabcdef\r\n0\r\n\r\n")
        XCTAssertEqual(statusLines(try output(chunked)), ["HTTP/1.1 413 Payload Too Large"])
        XCTAssertFalse(chunked.isActive)

        let within = try channel(try frontEnd(HTTPLimits(maxBodyBytes: 10)))
        write(within, "GET /v1/items/1 HTTP/1.1\r\nContent-Length: 4\r\nAuthorization: Bearer \(secret)\r\n\r\nbody")
        XCTAssertEqual(statusLines(try output(within)), ["HTTP/1.1 200 OK"], "a body within the limit is read and ignored")
    }

    func testConnectionsOverTheLimitGet503AndClose() throws {
        let frontEnd = try frontEnd(HTTPLimits(maxConnections: 1))
        let first = try channel(frontEnd)
        let second = try channel(frontEnd)
        write(second, nginxRequest("/v1/items/1", token: secret))
        let text = try output(second)
        XCTAssertEqual(statusLines(text), ["HTTP/1.1 503 Service Unavailable"])
        XCTAssertTrue(text.contains("too_many_connections") && text.contains("Connection: close"))
        XCTAssertFalse(second.isActive)
        write(first, nginxRequest("/v1/items/1", token: secret))
        XCTAssertEqual(statusLines(try output(first)), ["HTTP/1.1 200 OK"], "the connection within the limit is served")
        _ = try first.finish()
        let third = try channel(frontEnd)
        write(third, nginxRequest("/v1/items/1", token: secret))
        XCTAssertEqual(statusLines(try output(third)), ["HTTP/1.1 200 OK"], "a closed connection frees its place")
        XCTAssertEqual(frontEnd.counts.withLockedValue { $0.refused }, 1)
    }

    func testAnIdleConnectionIsClosedAfterTheIdleTimeoutAndActivityDefersIt() throws {
        let channel = try channel(try frontEnd(HTTPLimits(idleTimeoutMilliseconds: 1_000)))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(600))
        write(channel, nginxRequest("/v1/items/1", token: secret))
        XCTAssertEqual(statusLines(try output(channel)), ["HTTP/1.1 200 OK"])
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(999))
        XCTAssertTrue(channel.isActive, "999 ms after the last request it is not idle yet")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        XCTAssertFalse(channel.isActive, "1 000 ms after it, it is closed")
    }

    func testHTTP10WithoutKeepAliveIsClosedAfterTheAnswer() throws {
        let channel = try channel(try frontEnd())
        write(channel, "GET /v1/items/1 HTTP/1.0\r\nAuthorization: Bearer \(secret)\r\n\r\n")
        let text = try output(channel)
        XCTAssertEqual(statusLines(text), ["HTTP/1.0 200 OK"])
        XCTAssertTrue(text.contains("Connection: close"))
        XCTAssertFalse(channel.isActive)
    }

    func testAMeteredRouteCountsEachRequestOnce() throws {
        let channel = try channel(try frontEnd())
        for _ in 0..<5 { write(channel, nginxRequest("/v1/items/1", token: secret)) }
        let text = try output(channel)
        XCTAssertEqual(statusLines(text).count, 5)
        XCTAssertTrue(text.contains("RateLimit-Remaining: 95\r\n"))
        write(channel, nginxRequest("/v1/unrouted", token: secret))
        XCTAssertTrue(try output(channel).contains("no_route"))
    }
}
