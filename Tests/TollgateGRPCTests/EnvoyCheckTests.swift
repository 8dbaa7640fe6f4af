import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging
import NIOHTTP1
import NIOPosix
import TollgateAuthorization
import TollgateCore
import TollgateEngine
@testable import TollgateGRPC
import TollgateJournal
import TollgateModel
import TollgateProtocol
import TollgateServer
import XCTest

/// Envoy's CheckRequest through the shared translation (the same route rules and token sources as the HTTP
/// listener) and the CheckResponse as Envoy's API defines it; then the service itself over a real Unix socket with
/// grpc-swift's own client and a real core. Nothing sleeps.
final class EnvoyCheckTests: XCTestCase {
    private var directory: String!
    private var core: ApplicationCore!
    private var secret = ""
    private var tokenID = ""

    private let policy = AuthorizationPolicy(
        routes: RouteTable(rules: [
            RouteRule(method: "GET", path: try! Validation.pathPattern("/v1/items/{id}"), scopes: ["read"], meter: "requests", cost: 1),
            RouteRule(method: "*", path: try! Validation.pathPattern("/v1/admin/*"), scopes: ["write"]),
        ], fallback: .deny),
        tokenHeader: "X-Api-Key", tokenQueryParameter: "api_key")

    override func setUp() async throws {
        directory = NSTemporaryDirectory() + "tollgate-grpc-tests-" + UUID().uuidString
        let (journal, recovered) = try Journal.open(directory: directory, options: JournalOptions(fsync: false))
        core = ApplicationCore(
            state: try ApplicationCore.rebuildState(from: recovered), journal: journal, recovery: recovered.report,
            clock: SystemWallClock(), options: .init(), logger: Logger(label: "grpc-tests") { _ in SwiftLogNoOpLogHandler() })
        _ = await send(.planPut(Plan(id: "p", entitlements: ["read"], quotas: [QuotaRule(meter: "requests", period: .month, limit: 3)])))
        _ = await send(.licensePut(LicenseSpec(id: "lic", customer: "c", plan: "p", status: .active)))
        guard case .issue(let secret, let token) = await send(.issue(IssueRequest(licenseID: "lic", subject: "svc", scopes: ["read"]))) else {
            return XCTFail("could not issue a token")
        }
        self.secret = secret
        self.tokenID = token.id
    }

    override func tearDown() async throws {
        try? core.currentJournal.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func send(_ request: Request) async -> Response {
        await withCheckedContinuation { continuation in
            if let now = core.handle(request, from: .daemon, completion: { continuation.resume(returning: $0) }) {
                continuation.resume(returning: now)
            }
        }
    }

    private func request(_ method: String, _ path: String, _ headers: [String: String] = [:]) -> Envoy_Service_Auth_V3_CheckRequest {
        var request = Envoy_Service_Auth_V3_CheckRequest()
        request.attributes.request.http.method = method
        request.attributes.request.http.path = path
        request.attributes.request.http.headers = headers
        return request
    }

    private func decision(_ request: Envoy_Service_Auth_V3_CheckRequest) throws -> Authorization.Decision {
        try EnvoyCheck.decide(request, policy: policy).get()
    }

    // MARK: - The translation

    func testTheRequestGoesThroughTheSameRulesAsForwardAuth() throws {
        XCTAssertEqual(
            try decision(request("GET", "/v1/items/9?x=1", ["authorization": "Bearer tg_a"])),
            .check(CheckRequest(token: "tg_a", scopes: ["read"], meter: "requests", cost: 1, options: .details), route: "GET /v1/items/{id}"))
        XCTAssertEqual(try decision(request("POST", "/v1/admin/users", ["x-api-key": "tg_b"])), .check(CheckRequest(token: "tg_b", scopes: ["write"], options: .details), route: "* /v1/admin/*"))
        XCTAssertEqual(try decision(request("DELETE", "/v1/admin/x?api_key=tg_c"))  , .check(CheckRequest(token: "tg_c", scopes: ["write"], options: .details), route: "* /v1/admin/*"))
        XCTAssertEqual(try decision(request("GET", "/elsewhere", ["authorization": "Bearer tg_a"])), .answer(status: .forbidden, reason: "no_route"))
        XCTAssertEqual(try decision(request("GET", "/v1/items/1")), .answer(status: .unauthorized, reason: "missing_token"))
        XCTAssertEqual(try decision(request("GET", "/v1/x/%2e%2e/items/1", ["authorization": "Bearer tg_a"])),
            .check(CheckRequest(token: "tg_a", scopes: ["read"], meter: "requests", cost: 1, options: .details), route: "GET /v1/items/{id}"), "normalized as the proxy routes it")
        XCTAssertEqual(try decision(request("GET", "/..", ["authorization": "Bearer tg_a"])), .answer(status: .badRequest, reason: "bad_path"))
        // The same request through the HTTP listener's translation gives the same decision: one translation.
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/v1/items/9?x=1", headers: ["Authorization": "Bearer tg_a"])
        XCTAssertEqual(Authorization.decide(method: "GET", target: head.uri, headers: head.headers, policy: policy), try decision(request("GET", "/v1/items/9?x=1", ["authorization": "Bearer tg_a"])))
    }

    func testRawHeaderMapIsReadWhenEnvoyEncodesRawHeaders() throws {
        var request = request("GET", "/v1/items/1")
        var header = Envoy_Config_Core_V3_HeaderValue()
        header.key = "authorization"
        header.rawValue = Data("Bearer tg_raw".utf8)
        request.attributes.request.http.headerMap.headers = [header]
        XCTAssertEqual(try decision(request), .check(CheckRequest(token: "tg_raw", scopes: ["read"], meter: "requests", cost: 1, options: .details), route: "GET /v1/items/{id}"))
    }

    func testARequestWithoutAnHTTPRequestIsMalformed() {
        XCTAssertThrowsError(try EnvoyCheck.decide(Envoy_Service_Auth_V3_CheckRequest(), policy: policy).get())
        XCTAssertThrowsError(try EnvoyCheck.decide(request("", "/v1/items/1"), policy: policy).get(), "no method")
        XCTAssertThrowsError(try EnvoyCheck.decide(request("GET", ""), policy: policy).get(), "no path")
    }

    func testAnAllowBecomesAnOkResponseWithIdentityUpstreamAndRateLimitForTheClient() {
        let result = CheckResult(reason: .none, tokenID: "tok_1", licenseID: "lic_1", subject: "svc", quota: QuotaState(limit: 10, remaining: 4, resetAt: 5_000))
        let response = EnvoyCheck.response(.decided(result, nowMillis: 1_000))
        XCTAssertEqual(response.status.code, 0, "OK: Envoy lets the request through")
        guard case .okResponse(let ok)? = response.httpResponse else { return XCTFail("no ok_response") }
        XCTAssertEqual(ok.headers.map { "\($0.header.key): \($0.header.value)" }, ["x-tollgate-token-id: tok_1", "x-tollgate-license: lic_1", "x-tollgate-subject: svc"])
        XCTAssertTrue(ok.headers.allSatisfy { $0.appendAction == .overwriteIfExistsOrAdd }, "a client's copy is replaced, not appended to")
        XCTAssertEqual(ok.headersToRemove, ["x-tollgate-plan"], "the identity header Tollgate did not set is removed from the client's request")
        XCTAssertEqual(ok.responseHeadersToAdd.map { "\($0.header.key): \($0.header.value)" }, ["ratelimit-limit: 10", "ratelimit-remaining: 4", "ratelimit-reset: 4"])
    }

    func testDenialsCarryTheHTTPStatusHeadersAndBodyAndADenyingGRPCCode() {
        let cases: [(DenyReason, Envoy_Type_V3_StatusCode, Int32)] = [
            (.revoked, .unauthorized, 16), (.insufficientScope, .forbidden, 7), (.quotaExceeded, .tooManyRequests, 8), (.rateLimited, .tooManyRequests, 8),
        ]
        for (reason, status, code) in cases {
            let response = EnvoyCheck.response(.decided(CheckResult(reason: reason, retryAfterMillis: reason == .rateLimited ? 2_500 : 0), nowMillis: 0))
            XCTAssertEqual(response.status.code, code, reason.name)
            XCTAssertEqual(response.status.message, reason.name)
            guard case .deniedResponse(let denied)? = response.httpResponse else { return XCTFail("no denied_response for \(reason.name)") }
            XCTAssertEqual(denied.status.code, status, reason.name)
            XCTAssertEqual(denied.body, #"{"decision":"deny","reason":"\#(reason.name)"}"#)
            let headers = Dictionary(denied.headers.map { ($0.header.key, $0.header.value) }, uniquingKeysWith: { a, _ in a })
            XCTAssertEqual(headers["cache-control"], "no-store")
            XCTAssertEqual(headers["content-type"], "application/json")
            XCTAssertEqual(headers["x-tollgate-reason"], reason.name)
            if reason == .rateLimited { XCTAssertEqual(headers["retry-after"], "3") }
        }
        let refused = EnvoyCheck.response(.refused(.badRequest, reason: "bad_path"))
        XCTAssertEqual(refused.status.code, 3)
        guard case .deniedResponse(let denied)? = refused.httpResponse else { return XCTFail("no denied_response") }
        XCTAssertEqual(denied.status.code, .badRequest)
    }

    // MARK: - The service over a Unix socket, with grpc-swift's client

    private func withServer(access: SocketAccess = .anyone, _ body: (Envoy_Service_Auth_V3_Authorization.Client<HTTP2ClientTransport.Posix>, TollgateGRPCServer) async throws -> Void) async throws {
        let path = directory + "/grpc.sock"
        let server = TollgateGRPCServer(
            core: core, group: .singletonMultiThreadedEventLoopGroup, clock: SystemWallClock(), policy: policy, access: access,
            logger: Logger(label: "g") { _ in SwiftLogNoOpLogHandler() })
        try await server.start(.path(path, mode: 0o600))
        do {
            try await withGRPCClient(transport: .http2NIOPosix(target: .unixDomainSocket(path: path), transportSecurity: .plaintext)) { client in
                try await body(Envoy_Service_Auth_V3_Authorization.Client(wrapping: client), server)
            }
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    func testTheServiceAnswersChecksAndCountsTheMeteredRouteOnce() async throws {
        try await withServer { client, server in
            var statuses: [Int32] = []
            for index in 1...4 {
                let response = try await client.check(request("GET", "/v1/items/\(index)", ["authorization": "Bearer \(secret)"]))
                statuses.append(response.status.code)
                if index == 1 {
                    guard case .okResponse(let ok)? = response.httpResponse else { return XCTFail("no ok_response") }
                    XCTAssertTrue(ok.headers.contains { $0.header.key == "x-tollgate-token-id" && $0.header.value == tokenID })
                }
                if index == 4 {
                    guard case .deniedResponse(let denied)? = response.httpResponse else { return XCTFail("no denied_response") }
                    XCTAssertEqual(denied.status.code, .tooManyRequests)
                    XCTAssertTrue(denied.headers.contains { $0.header.key == "retry-after" })
                }
            }
            XCTAssertEqual(statuses, [0, 0, 0, 8], "a quota of 3: three allowed, the fourth over it: each Check counted once (twice would deny the second)")
            let scope = try await client.check(request("POST", "/v1/admin/x", ["authorization": "Bearer \(secret)"]))
            XCTAssertEqual(scope.status.code, 7)
            XCTAssertEqual(server.statistics.answers, [200: 3, 429: 1, 403: 1])
        }
    }

    func testAMalformedRequestIsAGRPCErrorAndTheServiceKeepsServing() async throws {
        try await withServer { client, server in
            do {
                _ = try await client.check(Envoy_Service_Auth_V3_CheckRequest())
                XCTFail("an empty CheckRequest was answered")
            } catch let error as RPCError {
                XCTAssertEqual(error.code, .invalidArgument)
            }
            let response = try await client.check(request("GET", "/v1/items/1", ["authorization": "Bearer \(secret)"]))
            XCTAssertEqual(response.status.code, 0)
            XCTAssertEqual(server.statistics.malformed, 1)
        }
    }

    func testAPeerNotOnTheAllowListIsDisconnected() async throws {
        try await withServer(access: SocketAccess(uids: [geteuid() &+ 1])) { client, server in
            // Not waiting for a connection that will not be kept: the call fails as soon as the connection closes.
            var options = CallOptions.defaults
            options.waitForReady = false
            do {
                _ = try await client.check(request("GET", "/v1/items/1", ["authorization": "Bearer \(secret)"]), options: options)
                XCTFail("a peer not on the allow-list was answered")
            } catch let error as RPCError {
                XCTAssertEqual(error.code, .unavailable)
            }
            XCTAssertGreaterThan(server.statistics.refusedPeers, 0)
        }
    }
}
