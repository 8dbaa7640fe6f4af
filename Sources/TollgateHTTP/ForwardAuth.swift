import NIOHTTP1
import TollgateAuthorization
import TollgateModel

/// What the HTTP listener needs besides the request: the route table and token sources it shares with the gRPC
/// front end (`AuthorizationPolicy`), and the Stripe webhook endpoint. A SIGHUP reload replaces it as a whole; each
/// request reads it once.
public struct ForwardAuthPolicy: Sendable, Hashable {
    public var authorization: AuthorizationPolicy
    /// The Stripe webhook endpoint (nil: none). A request to its path is a webhook, not a forward-auth request.
    public var stripe: StripeWebhookSettings?
    /// The RFC 8693 token exchange endpoint's path (nil: none). A POST there is an EXCHANGE, not forward auth.
    public var tokenExchangePath: String?
    /// The SCIM endpoint (nil: none). Requests below its base path are SCIM's, not forward auth.
    public var scim: SCIMSettings?

    public var routes: RouteTable {
        get { authorization.routes }
        set { authorization.routes = newValue }
    }
    public var tokenHeader: String? {
        get { authorization.tokenHeader }
        set { authorization.tokenHeader = newValue }
    }
    public var tokenQueryParameter: String? {
        get { authorization.tokenQueryParameter }
        set { authorization.tokenQueryParameter = newValue }
    }

    public init(routes: RouteTable = RouteTable(), tokenHeader: String? = nil, tokenQueryParameter: String? = nil, stripe: StripeWebhookSettings? = nil) {
        self.authorization = AuthorizationPolicy(routes: routes, tokenHeader: tokenHeader, tokenQueryParameter: tokenQueryParameter)
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

/// The HTTP listener's side of the translation: which of the three shapes a request has and the original request
/// it names; the rest (route, token, CHECK, answer) is `Authorization`'s, shared with the gRPC front end.
public enum ForwardAuth {
    /// The endpoint proxies that send the original request in headers call. Every other path is the original
    /// request itself (Envoy's shape); headers naming an original request are ignored there, so that a client
    /// cannot steer the route through a proxy that passes its headers on.
    public static let endpointPath = "/v1/forward-auth"

    public typealias Decision = Authorization.Decision
    /// Which shape `head` has and the original request it names, or the reason it names none.
    public static func originalRequest(of head: HTTPRequestHead) -> Result<OriginalRequest, ForwardAuthProblem> {
        originalRequest(method: head.method.rawValue, uri: head.uri, headers: head.headers)
    }

    /// The same for a request read without NIOHTTP1 (`ForwardAuthRequestParser`): its method, target and headers.
    public static func originalRequest(method: String, uri: String, headers: some AuthorizationHeaders) -> Result<OriginalRequest, ForwardAuthProblem> {
        // Compared in place: no String of the path is made for the comparison.
        guard uri.utf8.prefix(while: { $0 != UInt8(ascii: "?") }).elementsEqual(endpointPath.utf8) else {
            return .success(OriginalRequest(method: method, target: uri, host: headers.firstValue(name: "host"), shape: .requestLine))
        }
        if let uri = headers.firstValue(name: "x-original-uri") {
            let method = headers.firstValue(name: "x-original-method") ?? ""
            guard !method.isEmpty else { return .failure(.missingMethod) }
            return .success(OriginalRequest(method: method, target: uri, host: headers.firstValue(name: "host"), shape: .original))
        }
        if let uri = headers.firstValue(name: "x-forwarded-uri") {
            let method = headers.firstValue(name: "x-forwarded-method") ?? ""
            guard !method.isEmpty else { return .failure(.missingMethod) }
            return .success(OriginalRequest(method: method, target: uri, host: headers.firstValue(name: "x-forwarded-host"), shape: .forwarded))
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

    /// The token of `head` (`Authorization.token`), the query parameter read from the original request's target.
    public static func token(in head: HTTPRequestHead, original: OriginalRequest, policy: ForwardAuthPolicy) -> String? {
        Authorization.token(in: head.headers, target: original.target, policy: policy.authorization)
    }

    /// Decides what to do with `head`: the route's CHECK, or an answer made here.
    public static func decide(_ head: HTTPRequestHead, policy: ForwardAuthPolicy) -> Decision {
        decide(method: head.method.rawValue, uri: head.uri, headers: head.headers, policy: policy)
    }

    /// The same for a request read without NIOHTTP1 (`ForwardAuthRequestParser`).
    public static func decide(method: String, uri: String, headers: some AuthorizationHeaders, policy: ForwardAuthPolicy) -> Decision {
        let original: OriginalRequest
        switch originalRequest(method: method, uri: uri, headers: headers) {
        case .success(let request): original = request
        case .failure(let problem): return .answer(status: .badRequest, reason: problem.rawValue)
        }
        return Authorization.decide(method: original.method, target: original.target, headers: headers, policy: policy.authorization)
    }
}
