import NIOHTTP1
import TollgateModel

/// What the forward-auth endpoint needs besides the request: the live route table and where a token may be found.
/// A SIGHUP reload replaces it as a whole; each request reads it once.
public struct ForwardAuthPolicy: Sendable, Hashable {
    public var routes: RouteTable
    /// A header that carries the bare token (`X-Api-Key`), tried after `Authorization: Bearer`; nil: none.
    public var tokenHeader: String?
    /// A query parameter of the original request that carries the token (`api_key`), tried last; nil: none. Tokens
    /// in URLs end up in access logs: prefer a header.
    public var tokenQueryParameter: String?
    /// The Stripe webhook endpoint (nil: none). A request to its path is a webhook, not a forward-auth request.
    public var stripe: StripeWebhookSettings?
    /// The RFC 8693 token exchange endpoint's path (nil: none). A POST there is an EXCHANGE, not forward auth.
    public var tokenExchangePath: String?
    /// The SCIM endpoint (nil: none). Requests below its base path are SCIM's, not forward auth.
    public var scim: SCIMSettings?

    public init(routes: RouteTable = RouteTable(), tokenHeader: String? = nil, tokenQueryParameter: String? = nil, stripe: StripeWebhookSettings? = nil) {
        self.routes = routes
        self.tokenHeader = tokenHeader
        self.tokenQueryParameter = tokenQueryParameter
        self.stripe = stripe
    }
}

/// The request a proxy asks about, in whichever of the three shapes it was sent.
public struct OriginalRequest: Sendable, Hashable {
    public enum Shape: String, Sendable, Hashable {
        /// `X-Original-Method` / `X-Original-URI` (nginx `auth_request`).
        case original
        /// `X-Forwarded-Method` / `X-Forwarded-Uri` / `X-Forwarded-Host` (Traefik, Caddy, HAProxy configurations).
        case forwarded
        /// The request line itself (Envoy's HTTP `ext_authz`): any path but the endpoint's is the original request.
        case requestLine
    }

    public var method: String
    /// Path and query, as sent (origin form).
    public var target: String
    public var host: String?
    public var shape: Shape
}

/// The forward-auth front end's translation, pure: an HTTP request in, either a CHECK for the core or an answer
/// decided without it (a malformed request, no route, no token). It owns no policy: what a route requires is the
/// configuration's, and whether the token may do it is the core's.
public enum ForwardAuth {
    /// The endpoint proxies that send the original request in headers call. Every other path is the original
    /// request itself (Envoy's shape); headers naming an original request are ignored there, so that a client
    /// cannot steer the route through a proxy that passes its headers on.
    public static let endpointPath = "/v1/forward-auth"

    public enum Decision: Sendable, Hashable {
        /// Ask the core this CHECK (the route's scopes, features, meter and cost, or none for `allow_unmetered`).
        /// `route`: the matched rule as `METHOD PATTERN` (empty: none matched), for the decision stream.
        case check(CheckRequest, route: String = "")
        /// Answer without asking the core.
        case answer(status: HTTPResponseStatus, reason: String)
    }

    /// Which shape `head` has and the original request it names, or the reason it names none.
    public static func originalRequest(of head: HTTPRequestHead) -> Result<OriginalRequest, ForwardAuthProblem> {
        let path = head.uri.prefix { $0 != "?" }
        guard path == endpointPath else {
            return .success(OriginalRequest(method: head.method.rawValue, target: head.uri, host: head.headers.first(name: "host"), shape: .requestLine))
        }
        if let uri = head.headers.first(name: "x-original-uri") {
            let method = head.headers.first(name: "x-original-method") ?? ""
            guard !method.isEmpty else { return .failure(.missingMethod) }
            return .success(OriginalRequest(method: method, target: uri, host: head.headers.first(name: "host"), shape: .original))
        }
        if let uri = head.headers.first(name: "x-forwarded-uri") {
            let method = head.headers.first(name: "x-forwarded-method") ?? ""
            guard !method.isEmpty else { return .failure(.missingMethod) }
            return .success(OriginalRequest(method: method, target: uri, host: head.headers.first(name: "x-forwarded-host"), shape: .forwarded))
        }
        return .failure(.noOriginalRequest)
    }

    /// Whether the answer to `head` goes without a body: nginx's shape. `auth_request` reads only the status and
    /// headers of its subrequest, and nginx keeps its connection to Tollgate open only when the answer has no body
    /// (with one, it closes the connection after every request: measured, one accept per request). The reason
    /// still travels in `X-Tollgate-Reason`, from which the shipped `@tollgate_denied` location writes the JSON body
    /// for the client.
    public static func answersWithoutBody(_ head: HTTPRequestHead) -> Bool {
        head.uri.utf8.starts(with: endpointPath.utf8) && head.headers.contains(name: "x-original-uri")
    }

    /// The token: `Authorization: Bearer …`, else the configured header, else the configured query parameter of
    /// the original request. Nil when none is there (an empty value counts as none).
    public static func token(in head: HTTPRequestHead, original: OriginalRequest, policy: ForwardAuthPolicy) -> String? {
        if let authorization = head.headers.first(name: "authorization") {
            let parts = authorization.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            if parts.count == 2, parts[0].lowercased() == "bearer" {
                let token = parts[1].trimmingSpaces
                if !token.isEmpty { return String(token) }
            }
        }
        if let name = policy.tokenHeader, let value = head.headers.first(name: name)?.trimmingSpaces, !value.isEmpty {
            return String(value)
        }
        if let name = policy.tokenQueryParameter, let value = queryParameter(name, in: original.target), !value.isEmpty {
            return value
        }
        return nil
    }

    /// Decides what to do with `head`: the route's CHECK, or an answer made here.
    public static func decide(_ head: HTTPRequestHead, policy: ForwardAuthPolicy) -> Decision {
        let original: OriginalRequest
        switch originalRequest(of: head) {
        case .success(let request): original = request
        case .failure(let problem): return .answer(status: .badRequest, reason: problem.rawValue)
        }
        guard let path = RequestPath.normalize(Substring(original.target)) else {
            return .answer(status: .badRequest, reason: ForwardAuthProblem.badPath.rawValue)
        }
        let route = policy.routes.match(method: original.method, path: path)
        if route == nil, policy.routes.fallback == .deny {
            return .answer(status: .forbidden, reason: ForwardAuthProblem.noRoute.rawValue)
        }
        guard let token = token(in: head, original: original, policy: policy) else {
            return .answer(status: .unauthorized, reason: ForwardAuthProblem.missingToken.rawValue)
        }
        // `details`: the plan and the tightest rate limit, for the identity and RateLimit headers.
        guard let route else { return .check(CheckRequest(token: token, options: .details)) }
        return .check(
            CheckRequest(
                token: token, scopes: route.scopes, meter: route.meter, cost: route.meter.isEmpty ? 0 : route.cost, features: route.features,
                options: .details),
            route: "\(route.method) \(route.path.description)")
    }

    /// The first value of `name` in the query of `target`, percent-decoded; nil when absent or not decodable.
    static func queryParameter(_ name: String, in target: String) -> String? {
        guard let question = target.firstIndex(of: "?") else { return nil }
        let query = target[target.index(after: question)...].prefix { $0 != "#" }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard percentDecoded(parts[0]) == name else { continue }
            return parts.count == 2 ? percentDecoded(parts[1]) : ""
        }
        return nil
    }

    static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else { return nil }
                bytes.append(high << 4 | low)
            } else if byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// Why a request was answered without asking the core: the `reason` of the JSON body. Stable names, like
/// `DenyReason`'s, so that scripts and dashboards can match them.
public enum ForwardAuthProblem: String, Error, Sendable, Hashable, CaseIterable {
    /// The endpoint was called with neither `X-Original-URI` nor `X-Forwarded-Uri` (400).
    case noOriginalRequest = "no_original_request"
    /// The original URI came without its method (400).
    case missingMethod = "missing_method"
    /// The original path is not a path, a bad escape, or climbs above the root (400).
    case badPath = "bad_path"
    /// No route matches and the configured default is `deny` (403).
    case noRoute = "no_route"
    /// No token in `Authorization: Bearer`, the token header or the query parameter (401).
    case missingToken = "missing_token"
    /// The peer is not on the HTTP socket's allow-list (403).
    case peerNotAllowed = "peer_not_allowed"
    /// The connection limit is reached (503, then the connection closes).
    case tooManyConnections = "too_many_connections"
    /// A body longer than the limit (413, then the connection closes).
    case bodyTooLarge = "body_too_large"
    /// Headers longer than the limit (431, then the connection closes).
    case headersTooLarge = "headers_too_large"
    /// Not HTTP/1.1 as the parser reads it (400, then the connection closes).
    case malformedRequest = "malformed_request"
    /// The core refused the request (a meter name too long): 400.
    case invalidRequest = "invalid_request"
    /// The core could not answer (500).
    case internalError = "internal"
}

extension StringProtocol {
    fileprivate var trimmingSpaces: Substring {
        var view = Substring(self)
        while view.first == " " || view.first == "\t" { view.removeFirst() }
        while view.last == " " || view.last == "\t" { view.removeLast() }
        return view
    }
}
