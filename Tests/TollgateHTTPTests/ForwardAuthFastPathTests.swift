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

/// The fast path for the proxies' forward-auth calls: the parser accepts only a subset of what NIOHTTP1 accepts and
/// reads it as NIOHTTP1 does (checked against NIOHTTP1's own decoder), declines everything else, and the pipeline
/// hands such a connection to NIOHTTP1 mid-stream with nothing lost, answering exactly as NIOHTTP1's path does.
final class ForwardAuthFastPathTests: XCTestCase {
    private let parser = ForwardAuthRequestParser(maxHeaderBytes: 8192, maxHeaderFields: 256)

    private func parse(_ text: String, _ parser: ForwardAuthRequestParser? = nil) -> (ForwardAuthRequestParser.Outcome, [String: String]) {
        var fields: [ForwardAuthRequestParser.Field] = []
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { raw in
            let outcome = (parser ?? self.parser).parse(raw, into: &fields)
            var values: [String: String] = [:]
            let headers = ForwardAuthRequestHeaders(bytes: raw, fields: fields)
            for name in ["host", "x-original-uri", "x-original-method", "authorization", "connection", "x-padding"] {
                values[name] = headers.firstValue(name: name)
            }
            return (outcome, values)
        }
    }

    private let nginx = "GET /v1/forward-auth HTTP/1.1\r\nHost: tollgate\r\nX-Original-URI: /v1/items/1?a=b\r\nX-Original-Method: GET\r\n"
        + "Authorization: Bearer tg_test_abc\r\n\r\n"

    func testReadsNginxsRequestInPlace() {
        let (outcome, values) = parse(nginx + "GET /next")
        XCTAssertEqual(outcome, .complete(.init(isHead: false, keepAlive: true, length: nginx.utf8.count)), "the length is the head's alone")
        XCTAssertEqual(values["x-original-uri"], "/v1/items/1?a=b")
        XCTAssertEqual(values["authorization"], "Bearer tg_test_abc")
        XCTAssertEqual(values["host"], "tollgate")
        XCTAssertNil(values["connection"])
    }

    func testNamesAnyCaseTheFirstValueWinsAndLeadingSpacesAreDropped() {
        let (_, values) = parse("HEAD /v1/forward-auth?x=1 HTTP/1.1\r\nx-ORIGINAL-uri:\t /a \t\r\nX-Original-Uri: /b\r\nConnection: Close\r\n\r\n")
        XCTAssertEqual(values["x-original-uri"], "/a \t", "trailing spaces kept, as NIOHTTP1 keeps them")
        let close = "HEAD /v1/forward-auth HTTP/1.1\r\nConnection: close\r\n\r\n"
        XCTAssertEqual(parse(close).0, .complete(.init(isHead: true, keepAlive: false, length: close.utf8.count)))
        XCTAssertEqual(parse("GET /v1/forward-auth HTTP/1.1\r\nConnection: keep-alive\r\nX-Padding:\r\n\r\n").1["x-padding"], "", "an empty value")
    }

    /// Fed byte by byte: every proper prefix of a request it serves needs more; the whole is complete.
    func testEveryPrefixNeedsMoreBytes() {
        let bytes = Array(nginx.utf8)
        for end in 0..<bytes.count {
            XCTAssertEqual(parse(String(decoding: bytes[..<end], as: UTF8.self)).0, .incomplete, "prefix of \(end) bytes")
        }
        XCTAssertEqual(parse(nginx).0, .complete(.init(isHead: false, keepAlive: true, length: bytes.count)))
    }

    func testDeclinesEverythingButABodilessForwardAuthCall() {
        let declined = [
            "POST /v1/forward-auth HTTP/1.1\r\n\r\n",
            "PUT /v1/forward-auth HTTP/1.1\r\n\r\n",
            "get /v1/forward-auth HTTP/1.1\r\n\r\n",
            "GET /v1/items/1 HTTP/1.1\r\n\r\n",
            "GET /v1/forward-authx HTTP/1.1\r\n\r\n",
            "GET /v1/forward-auth/ HTTP/1.1\r\n\r\n",
            "GET /v1/forward-auth#x HTTP/1.1\r\n\r\n",
            "GET /v1/forward-auth?a=\"b\" HTTP/1.1\r\n\r\n",
            "GET /v1/forward-auth HTTP/1.0\r\n\r\n",
            "GET /v1/forward-auth HTTP/1.1\n\r\n",
            "GET  /v1/forward-auth HTTP/1.1\r\n\r\n",
            "GET /v1/forward-auth HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET /v1/forward-auth HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET /v1/forward-auth HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET /v1/forward-auth HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET /v1/forward-auth HTTP/1.1\r\nConnection: upgrade\r\n\r\n",
            "GET /v1/forward-auth HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n",
            "GET /v1/forward-auth HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n",
            "GET /v1/forward-auth HTTP/1.1\r\nX-A : 1\r\n\r\n",
            "GET /v1/forward-auth HTTP/1.1\r\n: 1\r\n\r\n",
            "GET /v1/forward-auth HTTP/1.1\r\nX-A\r\n\r\n",
            "GET /v1/forward-auth HTTP/1.1\r\nX-A: 1\n\r\n",
            "GET /v1/forward-auth HTTP/1.1\r\nX-A: a\u{1}b\r\n\r\n",
            "GET /v1/forward-auth HTTP/1.1\r\nX-A: a\rb\r\n\r\n",
            "GET /v1/forward-auth HTTP/1.1\r\nX-Subject: é\r\n\r\n",
            "GET /v1/forward-auth HTTP/1.1\r\n\r\r\n",
            "THIS IS NOT HTTP\r\n\r\n",
        ]
        for text in declined { XCTAssertEqual(parse(text).0, .unsupported, text.debugDescription) }
    }

    func testDeclinesHeadsBeyondTheBoundsSoNIOHTTP1RefusesThem() {
        let small = ForwardAuthRequestParser(maxHeaderBytes: 64, maxHeaderFields: 2)
        XCTAssertEqual(parse("GET /v1/forward-auth HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n", small).0, .complete(.init(isHead: false, keepAlive: true, length: 45)))
        XCTAssertEqual(parse("GET /v1/forward-auth HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", small).0, .unsupported, "a third field")
        let long = "GET /v1/forward-auth HTTP/1.1\r\nX-Padding: " + String(repeating: "a", count: 40)
        XCTAssertEqual(parse(long, small).0, .unsupported, "64 bytes without the end of the head: never held for more")
        XCTAssertEqual(parse(String(decoding: long.utf8.prefix(63), as: UTF8.self), small).0, .incomplete)
    }

    /// What the parser accepts, NIOHTTP1's decoder accepts too and reads the same: method, target, keep-alive, and the
    /// first value of each field.
    func testReadsWhatItAcceptsAsNIOHTTP1Does() throws {
        let accepted = [
            nginx,
            "HEAD /v1/forward-auth?a=1&b=%20c HTTP/1.1\r\nConnection: close\r\nX-Original-URI:   /x  \r\nX-Original-URI: /y\r\n\r\n",
            "GET /v1/forward-auth HTTP/1.1\r\nx-forwarded-uri: /v1/items/2\r\nX-Forwarded-Method: GET\r\nX-Padding:\t\r\n\r\n",
            "GET /v1/forward-auth HTTP/1.1\r\nConnection: Keep-Alive\r\nAuthorization:  bearer  tok \r\n\r\n",
        ]
        for text in accepted {
            var fields: [ForwardAuthRequestParser.Field] = []
            let bytes = Array(text.utf8)
            let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder()))
            try channel.writeInbound(ByteBuffer(bytes: bytes))
            guard case .head(let head)? = try channel.readInbound(as: HTTPServerRequestPart.self) else { return XCTFail("NIOHTTP1 read no head: \(text)") }
            bytes.withUnsafeBytes { raw in
                guard case .complete(let request) = parser.parse(raw, into: &fields) else { return XCTFail("declined: \(text)") }
                XCTAssertEqual(request.isHead, head.method == .HEAD, text)
                XCTAssertTrue(head.uri.hasPrefix(ForwardAuth.endpointPath), text)
                XCTAssertEqual(request.keepAlive, head.isKeepAlive, text)
                let headers = ForwardAuthRequestHeaders(bytes: raw, fields: fields)
                XCTAssertEqual(fields.count, head.headers.count, text)
                for (name, _) in head.headers {
                    XCTAssertEqual(headers.firstValue(name: name.lowercased()), head.headers.first(name: name), "\(name) in \(text)")
                    XCTAssertTrue(headers.contains(name: name.uppercased()))
                }
                XCTAssertFalse(headers.contains(name: "x-absent"))
                XCTAssertEqual(ForwardAuth.originalRequest(method: request.isHead ? "HEAD" : "GET", uri: head.uri, headers: headers),
                    ForwardAuth.originalRequest(of: head), text)
            }
        }
    }

    // MARK: - The pipeline

    private var fixture: OneTokenCore!
    private var core: ApplicationCore { fixture.core }
    private var secret: String { fixture.secret }

    override func setUp() async throws {
        fixture = try await OneTokenCore(label: "fast-path-tests")
    }

    override func tearDown() async throws {
        fixture?.close()
    }

    private func channel(_ limits: HTTPLimits = HTTPLimits()) throws -> EmbeddedChannel {
        let table = RouteTable(rules: [
            RouteRule(method: "GET", path: try Validation.pathPattern("/v1/items/{id}"), scopes: ["read"], meter: "requests", cost: 1),
            RouteRule(method: "*", path: try Validation.pathPattern("/v1/admin/*"), scopes: ["write"]),
            RouteRule(method: "GET", path: try Validation.pathPattern("/v1/open"), scopes: ["read"]),
        ])
        let frontEnd = HTTPFrontEnd(
            core: core, clock: SystemWallClock(), policy: ForwardAuthPolicy(routes: table), access: .anyone, limits: limits,
            logger: Logger(label: "h") { _ in SwiftLogNoOpLogHandler() })
        return try embeddedChannel(frontEnd)
    }

    private func usesFastPath(_ channel: EmbeddedChannel) -> Bool {
        (try? channel.pipeline.syncOperations.handler(type: ForwardAuthFastPath.self)) != nil
    }

    private func forwardAuth(_ uri: String, token: String?, shape: String = "Original", extra: String = "") -> String {
        "GET /v1/forward-auth HTTP/1.1\r\nHost: t\r\nX-\(shape)-URI: \(uri)\r\nX-\(shape)-Method: GET\r\n"
            + (token.map { "Authorization: Bearer \($0)\r\n" } ?? "") + extra + "\r\n"
    }

    /// The same requests answered by the fast path and, on a connection handed to NIOHTTP1 first, by NIOHTTP1's path:
    /// byte for byte the same answers.
    func testAnswersByteForByteAsNIOHTTP1sPathDoes() throws {
        let requests = [
            forwardAuth("/v1/open", token: secret), forwardAuth("/v1/admin/x", token: secret), forwardAuth("/v1/open", token: nil),
            forwardAuth("/v1/open", token: "tg_live_notatoken"), forwardAuth("/v1/unrouted", token: secret),
            forwardAuth("/v1/admin/x", token: secret, shape: "Forwarded"), forwardAuth("/v1/open", token: secret, shape: "Forwarded"),
            "GET /v1/forward-auth HTTP/1.1\r\nX-Original-URI: /v1/open\r\n\r\n", "GET /v1/forward-auth HTTP/1.1\r\n\r\n",
            forwardAuth("/../..", token: secret), "HEAD /v1/forward-auth HTTP/1.1\r\nX-Forwarded-Uri: /v1/admin/x\r\nX-Forwarded-Method: GET\r\n\r\n",
        ]
        let fast = try channel()
        let general = try channel()
        // A request the fast path declines (Envoy's shape): the connection is NIOHTTP1's from then on.
        write(general, "GET /v1/unrouted HTTP/1.1\r\n\r\n")
        XCTAssertFalse(usesFastPath(general))
        XCTAssertEqual(statusLines(try output(general)), ["HTTP/1.1 403 Forbidden"])
        for request in requests {
            write(fast, request)
            write(general, request)
            let answer = try output(fast)
            XCTAssertFalse(answer.isEmpty, request)
            XCTAssertEqual(answer, try output(general), request)
        }
        XCTAssertTrue(usesFastPath(fast), "every request was the fast path's")
        XCTAssertTrue(fast.isActive)
    }

    func testHandsOverMidStreamWithNothingLostAndInOrder() throws {
        let channel = try channel()
        write(channel, forwardAuth("/v1/items/1", token: secret) + "POST /v1/items/2 HTTP/1.1\r\nContent-Length: 4\r\nAuthorization: Bearer \(secret)\r\n\r\nbody"
            + forwardAuth("/v1/items/3", token: secret) + forwardAuth("/v1/admin/x", token: secret))
        let text = try output(channel)
        XCTAssertEqual(statusLines(text), ["HTTP/1.1 200 OK", "HTTP/1.1 403 Forbidden", "HTTP/1.1 200 OK", "HTTP/1.1 403 Forbidden"])
        XCTAssertTrue(text.contains("RateLimit-Remaining: 98\r\n"), "both metered requests counted once each: \(text)")
        XCTAssertFalse(usesFastPath(channel), "NIOHTTP1 has the connection")
        XCTAssertNotNil(try? channel.pipeline.syncOperations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self))
        XCTAssertTrue(channel.isActive)
    }

    func testARequestInPiecesIsAnsweredOnceWhole() throws {
        let channel = try channel()
        for byte in forwardAuth("/v1/items/1", token: secret).utf8 {
            XCTAssertTrue(try output(channel).isEmpty)
            _ = try? channel.writeInbound(ByteBuffer(bytes: [byte]))
        }
        XCTAssertEqual(statusLines(try output(channel)), ["HTTP/1.1 200 OK"])
        XCTAssertTrue(usesFastPath(channel))
    }

    /// A head trickled one byte at a time is parsed on each of its first `eagerlyParsedBytes` bytes and then only
    /// where the new bytes could end it, not once per byte (which is O(max_header_bytes²)); it is answered the same.
    func testAHeadInPiecesIsParsedOnlyWhereItCouldEnd() throws {
        let channel = try channel()
        let padding = (0..<16).map { "X-Padding-\($0): " + String(repeating: "p", count: 40) + "\r\n" }.joined()
        let request = forwardAuth("/v1/items/1", token: secret, extra: padding)
        XCTAssertGreaterThan(request.utf8.count, 900)
        let fastPath = try channel.pipeline.syncOperations.handler(type: ForwardAuthFastPath.self)
        for byte in request.utf8 { _ = try? channel.writeInbound(ByteBuffer(bytes: [byte])) }
        XCTAssertEqual(statusLines(try output(channel)), ["HTTP/1.1 200 OK"])
        XCTAssertTrue(usesFastPath(channel))
        XCTAssertLessThanOrEqual(fastPath.parses, ForwardAuthFastPath.eagerlyParsedBytes + 2, "parsed \(fastPath.parses) times for \(request.utf8.count) bytes")
    }

    /// Heads the parser declines, trickled: one ended by a bare LF is handed to NIOHTTP1 as it ends, one that grows
    /// past the bound when it does; each is answered as when it arrives whole.
    func testDeclinedHeadsInPiecesAreAnsweredAsWhole() throws {
        let heads = [
            "GET /v1/forward-auth HTTP/1.1\r\nHost: t\r\nX-Original-URI: /v1/open\r\nX-Original-Method: GET\r\nX-Long: " + String(repeating: "v", count: 80) + "\n\n",
            "GET /v1/forward-auth HTTP/1.1\r\nHost: t\r\nX-Bad: \u{01}" + String(repeating: "v", count: 80) + "\r\n\r\n",
            "GET /v1/forward-auth HTTP/1.1\r\nX-Padding: " + String(repeating: "a", count: 600),
        ]
        for head in heads {
            let whole = try channel(HTTPLimits(maxHeaderBytes: 512))
            write(whole, head)
            let expected = try output(whole)
            XCTAssertFalse(expected.isEmpty, head)
            let pieces = try channel(HTTPLimits(maxHeaderBytes: 512))
            for byte in head.utf8 { _ = try? pieces.writeInbound(ByteBuffer(bytes: [byte])) }
            XCTAssertEqual(try output(pieces), expected, head)
            XCTAssertEqual(pieces.isActive, whole.isActive, head)
        }
    }

    func testMalformedInputAfterAnsweredRequestsIs400AndCloses() throws {
        let channel = try channel()
        write(channel, forwardAuth("/v1/items/1", token: secret) + "GET /v1/forward-auth HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n")
        XCTAssertEqual(statusLines(try output(channel)), ["HTTP/1.1 200 OK", "HTTP/1.1 400 Bad Request"])
        XCTAssertFalse(channel.isActive)
    }

    func testAHeadGrowingPastTheLimitInPiecesIs431AndCloses() throws {
        let channel = try channel(HTTPLimits(maxHeaderBytes: 512))
        write(channel, "GET /v1/forward-auth HTTP/1.1\r\nX-Padding: ")
        for _ in 0..<9 { write(channel, String(repeating: "a", count: 64)) }
        let text = try output(channel)
        XCTAssertEqual(statusLines(text), ["HTTP/1.1 431 Request Header Fields Too Large"])
        XCTAssertTrue(text.contains("headers_too_large"))
        XCTAssertFalse(channel.isActive)
    }

    func testConnectionCloseIsHonouredAndNothingAfterItIsRead() throws {
        let channel = try channel()
        write(channel, forwardAuth("/v1/items/1", token: secret, extra: "Connection: close\r\n") + forwardAuth("/v1/items/2", token: secret))
        let text = try output(channel)
        XCTAssertEqual(statusLines(text), ["HTTP/1.1 200 OK"])
        XCTAssertTrue(text.contains("Connection: close\r\n"))
        XCTAssertFalse(channel.isActive)
    }

    func testTheBearerSchemeIsReadAsTheSplittingReaderDid() {
        /// The reader before `bearerToken`: split on the first run of spaces, the scheme lower-cased.
        func reference(_ value: String) -> String? {
            let parts = value.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
            var token = Substring(parts[1])
            while token.first == " " || token.first == "\t" { token.removeFirst() }
            while token.last == " " || token.last == "\t" { token.removeLast() }
            return token.isEmpty ? nil : String(token)
        }
        let values = [
            "Bearer abc", "bearer abc", "BEARER abc", "  Bearer   abc  ", "Bearer\tabc", "Bearer", "Bearer ", "Bearer  \t ", "Basic abc",
            "Bearerx abc", "Beare abc", "Bearer a b", "", "   ", " Bearer \tabc\t", "Bearér abc", "Bearer é",
        ]
        for value in values { XCTAssertEqual(Authorization.bearerToken(in: value), reference(value), value.debugDescription) }
    }
}
