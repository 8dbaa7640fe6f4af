import NIOHTTP1
import TollgateAuthorization
import TollgateHTTP
@testable import TollgateModel
import XCTest

/// The pure parts of the HTTP front end: path patterns and route matching, path normalization, the three request
/// shapes, token sources, the status table over every DenyReason, and the header mapping.
final class RouteAndAnswerTests: XCTestCase {
    private func pattern(_ text: String) throws -> PathPattern { try Validation.pathPattern(text) }

    private func table(_ rules: [(String, String)], fallback: RouteFallback = .deny) throws -> RouteTable {
        RouteTable(rules: try rules.map { RouteRule(method: $0.0, path: try pattern($0.1), scopes: [$0.1]) }, fallback: fallback)
    }

    func testExactPrefixAndParameterPatternsMatchAsDocumented() throws {
        let routes = try table([("GET", "/v1/items/{id}"), ("*", "/v1/admin/*"), ("POST", "/v1/items"), ("*", "/")])
        XCTAssertEqual(routes.match(method: "GET", path: "/v1/items/42")?.scopes, ["/v1/items/{id}"])
        XCTAssertNil(routes.match(method: "GET", path: "/v1/items/42/more"), "a parameter is one segment")
        XCTAssertNil(routes.match(method: "GET", path: "/v1/items/"), "a parameter is never empty")
        XCTAssertNil(routes.match(method: "DELETE", path: "/v1/items/42"), "the method must match")
        XCTAssertEqual(routes.match(method: "DELETE", path: "/v1/admin")?.scopes, ["/v1/admin/*"], "a prefix matches itself")
        XCTAssertEqual(routes.match(method: "PUT", path: "/v1/admin/a/b/c")?.scopes, ["/v1/admin/*"])
        XCTAssertNil(routes.match(method: "PUT", path: "/v1/administrator"), "a prefix ends at a segment boundary")
        XCTAssertEqual(routes.match(method: "POST", path: "/v1/items")?.scopes, ["/v1/items"])
        XCTAssertNil(routes.match(method: "GET", path: "/v1/items"), "exact patterns are exact, method included")
        XCTAssertEqual(routes.match(method: "GET", path: "/")?.scopes, ["/"])
        XCTAssertNil(routes.match(method: "GET", path: "/other"))
        XCTAssertEqual(try table([("*", "/*")]).match(method: "GET", path: "/anything/at/all")?.scopes, ["/*"])
    }

    func testTheFirstMatchingRuleWins() throws {
        let routes = try table([("GET", "/v1/items/special"), ("GET", "/v1/items/{id}"), ("*", "/v1/*")])
        XCTAssertEqual(routes.match(method: "GET", path: "/v1/items/special")?.scopes, ["/v1/items/special"])
        XCTAssertEqual(routes.match(method: "GET", path: "/v1/items/7")?.scopes, ["/v1/items/{id}"])
        XCTAssertEqual(routes.match(method: "POST", path: "/v1/items/7")?.scopes, ["/v1/*"])
    }

    func testRejectsMalformedPatternsMethodsAndRoutesWithStableCodes() {
        for bad in ["v1/items", "/v1/*/x", "/v1/it*", "/v1/{}", "/v1/{a b}", "/v1/{id}/{id}", "/v1/x?y=1", "/v1/../x", "/v1/{id"] {
            XCTAssertThrowsError(try Validation.pathPattern(bad, field: "p"), bad) { error in
                XCTAssertEqual((error as? ValidationError)?.code, .invalidValue, bad)
                XCTAssertEqual((error as? ValidationError)?.field, "p")
            }
        }
        for bad in ["get", "", "G ET", "GETTTTTTTTTTTTTTTTTTTTTTT"] {
            XCTAssertThrowsError(try Validation.httpMethod(bad), bad)
        }
        XCTAssertNoThrow(try Validation.httpMethod("*"))
        let costWithoutMeter = RouteRule(method: "GET", path: try! pattern("/x"), cost: 3)
        XCTAssertThrowsError(try Validation.route(costWithoutMeter)) { XCTAssertEqual(($0 as? ValidationError)?.field, "cost") }
        let badMeter = RouteRule(method: "GET", path: try! pattern("/x"), meter: "a b", cost: 1)
        XCTAssertThrowsError(try Validation.route(badMeter)) { XCTAssertEqual(($0 as? ValidationError)?.field, "meter") }
        let twice = RouteTable(rules: [RouteRule(method: "GET", path: try! pattern("/x")), RouteRule(method: "GET", path: try! pattern("/x"))])
        XCTAssertThrowsError(try Validation.routes(twice)) { XCTAssertEqual(($0 as? ValidationError)?.field, "routes[1]") }
    }

    func testReadsRoutesFromADocumentWithDefaultsAndRefusesUnknownKeys() throws {
        let node = DocumentNode.mapping([
            DocumentEntry("routes", .list([
                .mapping([DocumentEntry("path", .string("/v1/items/{id}")), DocumentEntry("meter", .string("requests"))]),
                .mapping([DocumentEntry("method", .string("POST")), DocumentEntry("path", .string("/v1/*")), DocumentEntry("scopes", .list([.string("write")]))]),
            ])),
            DocumentEntry("default", .string("allow_unmetered")),
        ])
        var reader = try DocumentReader(node, path: "http")
        let table = try RouteDocument.readTable(&reader)
        XCTAssertEqual(table.fallback, .allowUnmetered)
        XCTAssertEqual(table.rules.map(\.method), ["*", "POST"])
        XCTAssertEqual(table.rules[0].cost, 1, "a meter without a cost charges 1")
        XCTAssertEqual(table.rules[1].cost, 0)

        let misspelt = DocumentNode.mapping([DocumentEntry("routes", .list([.mapping([DocumentEntry("path", .string("/x")), DocumentEntry("scope", .list([]))])]))])
        var bad = try DocumentReader(misspelt, path: "http")
        XCTAssertThrowsError(try RouteDocument.readTable(&bad)) { error in
            let error = error as! ValidationError
            XCTAssertEqual(error.code, .unknownKey)
            XCTAssertEqual(error.field, "http.routes[0].scope")
            XCTAssertEqual(error.suggestion, "scopes")
        }
        let badDefault = DocumentNode.mapping([DocumentEntry("default", .string("allow"))])
        var reader3 = try DocumentReader(badDefault, path: "http")
        XCTAssertThrowsError(try RouteDocument.readTable(&reader3)) { XCTAssertEqual(($0 as? ValidationError)?.code, .invalidName) }
    }

    func testPathsAreNormalizedAsTheProxyRoutesThem() {
        XCTAssertEqual(RequestPath.normalize("/v1/items/42?x=1"), "/v1/items/42")
        XCTAssertEqual(RequestPath.normalize("/public/../admin"), "/admin")
        XCTAssertEqual(RequestPath.normalize("/public/%2e%2e/admin"), "/admin", "escapes are decoded before dot segments are resolved")
        XCTAssertEqual(RequestPath.normalize("//v1///items/./x"), "/v1/items/x")
        XCTAssertEqual(RequestPath.normalize("/v1/items/"), "/v1/items/")
        XCTAssertEqual(RequestPath.normalize("/"), "/")
        XCTAssertNil(RequestPath.normalize("/.."), "above the root")
        XCTAssertNil(RequestPath.normalize("/a%zz"))
        XCTAssertNil(RequestPath.normalize("/a%00b"))
        XCTAssertNil(RequestPath.normalize("http://host/x"), "origin form only")
    }

    /// The one-pass check for paths already in normal form must agree with the general normalization on every
    /// path it lets through: every path of up to 7 bytes over the bytes that matter (`/`, `.`, `%`, hex digits, a
    /// letter) is normalized both ways.
    func testTheFastPathAgreesWithTheGeneralNormalization() {
        let alphabet = Array("/.%2ea".utf8)
        var fast = 0
        func visit(_ path: [UInt8]) {
            let text = String(decoding: path, as: UTF8.self)
            if RequestPath.isAlreadyNormal(Substring(text).utf8) {
                fast += 1
                XCTAssertEqual(RequestPath.normalizeInGeneral(Substring(text)), text, "\(text) is taken as normal but is not")
            }
            XCTAssertEqual(RequestPath.normalize(Substring(text)), RequestPath.normalizeInGeneral(Substring(text)), text)
            guard path.count < 7 else { return }
            for byte in alphabet { visit(path + [byte]) }
        }
        visit([UInt8(ascii: "/")])
        visit([UInt8(ascii: "a")])
        XCTAssertGreaterThan(fast, 1000, "the fast path takes the common paths")
    }

    /// Patterns are matched in place (`PathPattern.matches(afterSlash:)`); the split segments are the reference: every
    /// path of up to 7 bytes over `/`, `a`, `b` against patterns of each kind.
    func testInPlaceMatchingAgreesWithMatchingSplitSegments() throws {
        let patterns = try ["/", "/*", "/a", "/a/", "/a/*", "/a/{x}", "/{x}", "/{x}/b", "/a//b", "/ab/{x}/*", "/{x}/{y}"].map(pattern)
        let alphabet = Array("/ab".utf8)
        var compared = 0
        func visit(_ path: [UInt8]) {
            let rest = Substring(String(decoding: path, as: UTF8.self))
            let segments = rest.split(separator: "/", omittingEmptySubsequences: false)
            for pattern in patterns {
                XCTAssertEqual(pattern.matches(afterSlash: rest.utf8), pattern.matches(segments), "\(pattern.description) against /\(rest)")
                compared += 1
            }
            guard path.count < 7 else { return }
            for byte in alphabet { visit(path + [byte]) }
        }
        visit([])
        XCTAssertGreaterThan(compared, 30_000)
    }

    func testLoopbackEndpointsOnly() throws {
        XCTAssertEqual(try Validation.loopbackEndpoint("127.0.0.1:8181").port, 8181)
        XCTAssertEqual(try Validation.loopbackEndpoint("[::1]:80").host, "::1")
        for bad in ["0.0.0.0:80", "10.0.0.1:80", "localhost:80", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "[::]:80", "example.com:80"] {
            XCTAssertThrowsError(try Validation.loopbackEndpoint(bad), bad)
        }
    }

    // MARK: Request shapes and tokens

    private func head(_ method: HTTPMethod = .GET, _ uri: String, _ headers: [(String, String)] = []) -> HTTPRequestHead {
        HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: HTTPHeaders(headers))
    }

    func testReadsTheThreeRequestShapes() throws {
        let nginx = try ForwardAuth.originalRequest(of: head(.GET, "/v1/forward-auth", [("X-Original-URI", "/v1/items/1"), ("X-Original-Method", "DELETE")])).get()
        XCTAssertEqual([nginx.method, nginx.target], ["DELETE", "/v1/items/1"])
        XCTAssertEqual(nginx.shape, .original)
        let caddy = try ForwardAuth.originalRequest(
            of: head(.GET, "/v1/forward-auth", [("X-Forwarded-Uri", "/v1/items/2"), ("X-Forwarded-Method", "PUT"), ("X-Forwarded-Host", "api.example")])
        ).get()
        XCTAssertEqual([caddy.method, caddy.target, caddy.host], ["PUT", "/v1/items/2", "api.example"])
        let envoy = try ForwardAuth.originalRequest(of: head(.PATCH, "/v1/items/3?q=1", [("X-Original-URI", "/spoofed")])).get()
        XCTAssertEqual([envoy.method, envoy.target], ["PATCH", "/v1/items/3?q=1"], "off the endpoint, the request line is the request; headers are ignored")
        XCTAssertEqual(envoy.shape, .requestLine)
        XCTAssertEqual(try? ForwardAuth.originalRequest(of: head(.GET, "/v1/forward-auth")).get(), nil)
        XCTAssertEqual(ForwardAuth.decide(head(.GET, "/v1/forward-auth"), policy: ForwardAuthPolicy()), .answer(status: .badRequest, reason: "no_original_request"))
        XCTAssertEqual(
            ForwardAuth.decide(head(.GET, "/v1/forward-auth", [("X-Original-URI", "/x")]), policy: ForwardAuthPolicy()),
            .answer(status: .badRequest, reason: "missing_method"))
    }

    func testFindsTheTokenInTheBearerHeaderTheNamedHeaderOrTheQuery() throws {
        let policy = ForwardAuthPolicy(routes: RouteTable(fallback: .allowUnmetered), tokenHeader: "X-Api-Key", tokenQueryParameter: "api_key")
        XCTAssertEqual(ForwardAuth.decide(head(.GET, "/x", [("Authorization", "Bearer  tg_a ")]), policy: policy), .check(CheckRequest(token: "tg_a", options: .details)))
        XCTAssertEqual(ForwardAuth.decide(head(.GET, "/x", [("authorization", "bearer tg_b")]), policy: policy), .check(CheckRequest(token: "tg_b", options: .details)))
        XCTAssertEqual(ForwardAuth.decide(head(.GET, "/x", [("X-API-KEY", "tg_c")]), policy: policy), .check(CheckRequest(token: "tg_c", options: .details)))
        XCTAssertEqual(ForwardAuth.decide(head(.GET, "/x?a=1&api_key=tg_d"), policy: policy), .check(CheckRequest(token: "tg_d", options: .details)))
        let viaNginx = head(.GET, "/v1/forward-auth", [("X-Original-URI", "/x?api_key=tg%5Fe"), ("X-Original-Method", "GET")])
        XCTAssertEqual(ForwardAuth.decide(viaNginx, policy: policy), .check(CheckRequest(token: "tg_e", options: .details)), "the query is the original request's")
        XCTAssertEqual(ForwardAuth.decide(head(.GET, "/x", [("Authorization", "Basic abc")]), policy: policy), .answer(status: .unauthorized, reason: "missing_token"))
        XCTAssertEqual(
            ForwardAuth.decide(head(.GET, "/x?api_key=tg_f"), policy: ForwardAuthPolicy(routes: RouteTable(fallback: .allowUnmetered))),
            .answer(status: .unauthorized, reason: "missing_token"), "no query parameter unless one is configured")
    }

    func testTheRouteDecidesTheCheckAndNoRouteIsNeverMetered() throws {
        let rule = RouteRule(method: "GET", path: try pattern("/v1/items/{id}"), scopes: ["read"], features: ["api"], meter: "requests", cost: 2)
        let auth = [("Authorization", "Bearer tg_x")]
        var policy = ForwardAuthPolicy(routes: RouteTable(rules: [rule], fallback: .deny))
        XCTAssertEqual(
            ForwardAuth.decide(head(.GET, "/v1/items/9", auth), policy: policy),
            .check(CheckRequest(token: "tg_x", scopes: ["read"], meter: "requests", cost: 2, features: ["api"], options: .details), route: "GET /v1/items/{id}"))
        XCTAssertEqual(ForwardAuth.decide(head(.GET, "/v1/other", auth), policy: policy), .answer(status: .forbidden, reason: "no_route"))
        XCTAssertEqual(ForwardAuth.decide(head(.GET, "/v1/other"), policy: policy), .answer(status: .forbidden, reason: "no_route"), "deny before the token")
        policy.routes.fallback = .allowUnmetered
        XCTAssertEqual(ForwardAuth.decide(head(.GET, "/v1/other", auth), policy: policy), .check(CheckRequest(token: "tg_x", options: .details)), "no scope, no meter")
        XCTAssertEqual(
            ForwardAuth.decide(head(.GET, "/v1/x/%2e%2e/items/./9", auth), policy: policy),
            .check(CheckRequest(token: "tg_x", scopes: ["read"], meter: "requests", cost: 2, features: ["api"], options: .details), route: "GET /v1/items/{id}"))
        XCTAssertEqual(ForwardAuth.decide(head(.GET, "/..", auth), policy: policy), .answer(status: .badRequest, reason: "bad_path"))
    }

    // MARK: Answers

    /// Every reason, spelled out: a new DenyReason fails to compile in `DenyStatus` and fails here until it is placed.
    func testEveryDenyReasonHasItsStatus() {
        let expected: [DenyReason: HTTPResponseStatus] = [
            .none: .ok,
            .malformedToken: .unauthorized, .unknownToken: .unauthorized, .revoked: .unauthorized, .notYetValid: .unauthorized, .expired: .unauthorized,
            .licenseInactive: .forbidden, .insufficientScope: .forbidden, .callerNotAllowed: .forbidden, .featureNotEntitled: .forbidden,
            .trialEnded: .forbidden, .paymentOverdue: .forbidden, .licenseExpired: .forbidden, .licenseNotYetValid: .forbidden, .orgSuspended: .forbidden, .fleetStale: .serviceUnavailable,
            .quotaExceeded: .tooManyRequests, .rateLimited: .tooManyRequests, .creditsExhausted: .tooManyRequests, .concurrencyLimited: .tooManyRequests,
        ]
        XCTAssertEqual(Set(expected.keys), Set(DenyReason.allCases))
        for reason in DenyReason.allCases {
            XCTAssertEqual(DenyStatus.status(for: reason), expected[reason], reason.name)
            let answer = ForwardAuthAnswer.decided(CheckResult(reason: reason), nowMillis: 0)
            XCTAssertEqual(answer.status, expected[reason])
            XCTAssertEqual(answer.body, reason == .none ? #"{"decision":"allow"}"# : #"{"decision":"deny","reason":"\#(reason.name)"}"#)
        }
    }

    private func names(_ list: [(name: String, value: String)]) -> [String] { list.map { "\($0.name): \($0.value)" } }

    func testHeaderMappingOfAnAllowWithAQuota() {
        let result = CheckResult(
            reason: .none, tokenID: "tok_1", licenseID: "lic_1", subject: "svc\r\nX-Evil: 1 ü%", quota: QuotaState(limit: 100, remaining: 40, resetAt: 10_500))
        XCTAssertEqual(names(ForwardAuthHeaders.list(for: result, nowMillis: 1_000)), [
            "X-Tollgate-Token-Id: tok_1", "X-Tollgate-License: lic_1", "X-Tollgate-Subject: svc%0D%0AX-Evil: 1 %C3%BC%25",
            "RateLimit-Limit: 100", "RateLimit-Remaining: 40", "RateLimit-Reset: 10",
        ])
    }

    func testHeaderMappingOfDenials() {
        XCTAssertEqual(names(ForwardAuthHeaders.list(for: CheckResult(reason: .rateLimited, tokenID: "t", retryAfterMillis: 1_001), nowMillis: 0)), ["Retry-After: 2", "X-Tollgate-Reason: rate_limited"])
        XCTAssertEqual(names(ForwardAuthHeaders.list(for: CheckResult(reason: .rateLimited, retryAfterMillis: 1), nowMillis: 0)), ["Retry-After: 1", "X-Tollgate-Reason: rate_limited"])
        XCTAssertEqual(
            names(ForwardAuthHeaders.list(for: CheckResult(reason: .quotaExceeded, quota: QuotaState(limit: 5, remaining: 0, resetAt: 60_000)), nowMillis: 30_500)),
            ["RateLimit-Limit: 5", "RateLimit-Remaining: 0", "RateLimit-Reset: 30", "Retry-After: 30", "X-Tollgate-Reason: quota_exceeded"])
        XCTAssertEqual(names(ForwardAuthHeaders.list(for: CheckResult(reason: .concurrencyLimited), nowMillis: 0)), ["Retry-After: 1", "X-Tollgate-Reason: concurrency_limited"])
        XCTAssertEqual(names(ForwardAuthHeaders.list(for: CheckResult(reason: .revoked, tokenID: "tok_1", licenseID: "l"), nowMillis: 0)), ["X-Tollgate-Reason: revoked"], "no identity on a denial")
        XCTAssertEqual(names(ForwardAuthHeaders.list(for: CheckResult(reason: .insufficientScope, tokenID: "tok_1"), nowMillis: 0)), ["X-Tollgate-Reason: insufficient_scope"])
    }

    /// With `details`: the plan goes upstream, and RateLimit-* describe whichever limit has fewer requests left.
    func testHeaderMappingWithDetailsTakesTheTighterLimit() {
        let quota = QuotaState(limit: 100, remaining: 40, resetAt: 10_500)
        let tightRate = CheckDetails(rateLimit: RateLimitState(limit: 10, remaining: 3, resetMillis: 1_400), planID: "pro")
        XCTAssertEqual(names(ForwardAuthHeaders.list(for: CheckResult(reason: .none, tokenID: "t", licenseID: "l", subject: "s", quota: quota), details: tightRate, nowMillis: 1_000)), [
            "X-Tollgate-Token-Id: t", "X-Tollgate-License: l", "X-Tollgate-Subject: s", "X-Tollgate-Plan: pro",
            "RateLimit-Limit: 10", "RateLimit-Remaining: 3", "RateLimit-Reset: 2",
        ])
        let roomyRate = CheckDetails(rateLimit: RateLimitState(limit: 1_000, remaining: 999, resetMillis: 1), planID: "pro")
        XCTAssertEqual(names(ForwardAuthHeaders.list(for: CheckResult(reason: .none, tokenID: "t", quota: quota), details: roomyRate, nowMillis: 1_000)).filter { $0.hasPrefix("RateLimit") }, [
            "RateLimit-Limit: 100", "RateLimit-Remaining: 40", "RateLimit-Reset: 10",
        ])
        XCTAssertEqual(names(ForwardAuthHeaders.list(for: CheckResult(reason: .rateLimited, tokenID: "t", retryAfterMillis: 500), details: CheckDetails(rateLimit: RateLimitState(limit: 10, remaining: 0, resetMillis: 5_000), planID: "pro"), nowMillis: 0)), [
            "RateLimit-Limit: 10", "RateLimit-Remaining: 0", "RateLimit-Reset: 5", "Retry-After: 1", "X-Tollgate-Reason: rate_limited",
        ], "a denial shows the limit that denied, and no identity")
    }
}
