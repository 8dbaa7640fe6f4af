import NIOHTTP1
import TollgateCore
import TollgateModel
import TollgateProtocol

/// Where a token may be found besides `Authorization: Bearer`, and the route table: what both proxy front ends (the
/// HTTP forward-auth listener and Envoy's gRPC `ext_authz`) read for every request. A SIGHUP reload replaces it as a
/// whole; each request reads it once.
public struct AuthorizationPolicy: Sendable, Hashable {
    public var routes: RouteTable
    /// A header that carries the bare token (`X-Api-Key`), tried after `Authorization: Bearer`; nil: none.
    public var tokenHeader: String?
    /// A query parameter of the original request that carries the token (`api_key`), tried last; nil: none. Tokens
    /// in URLs end up in access logs: prefer a header.
    public var tokenQueryParameter: String?

    public init(routes: RouteTable = RouteTable(), tokenHeader: String? = nil, tokenQueryParameter: String? = nil) {
        self.routes = routes
        self.tokenHeader = tokenHeader
        self.tokenQueryParameter = tokenQueryParameter
    }
}

/// The request headers a front end received, however it holds them (NIOHTTP1's `HTTPHeaders`, Envoy's header map):
/// the translation only ever asks for the first value of a name, case-insensitively.
public protocol AuthorizationHeaders {
    func firstValue(name: String) -> String?
}

extension HTTPHeaders: AuthorizationHeaders {
    public func firstValue(name: String) -> String? { first(name: name) }
}

/// The translation both proxy front ends share, pure but for the one call into the core: a request's method, target
/// (path and query) and headers, with the token found in them, into the core's CHECK by the route rules; and the
/// core's answer back into a status, headers and the JSON body (`ForwardAuthAnswer`). The front ends only carry
/// these in and out of their wire formats (HTTP/1.1, Envoy's protobuf); no policy is decided anywhere else.
public enum Authorization {
    public enum Decision: Sendable, Hashable {
        /// Ask the core this CHECK (the route's scopes, features, meter and cost, or none for `allow_unmetered`).
        /// `route`: the matched rule as `METHOD PATTERN` (empty: none matched), for the decision stream.
        case check(CheckRequest, route: String = "")
        /// Answer without asking the core.
        case answer(status: HTTPResponseStatus, reason: String)
    }

    /// Decides what to do with the original request `method` `target` carrying `headers`: the route's CHECK, or an
    /// answer made here (a path that is not one, no route under `deny`, no token). No route under `deny` is
    /// answered before the token is looked at; a request with no route under `allow_unmetered` is never metered.
    public static func decide(method: String, target: String, headers: some AuthorizationHeaders, policy: AuthorizationPolicy) -> Decision {
        guard let path = RequestPath.normalize(Substring(target)) else {
            return .answer(status: .badRequest, reason: ForwardAuthProblem.badPath.rawValue)
        }
        let route = policy.routes.match(method: method, path: path)
        if route == nil, policy.routes.fallback == .deny {
            return .answer(status: .forbidden, reason: ForwardAuthProblem.noRoute.rawValue)
        }
        guard let token = token(in: headers, target: target, policy: policy) else {
            return .answer(status: .unauthorized, reason: ForwardAuthProblem.missingToken.rawValue)
        }
        // `details`: the plan and the tightest rate limit, for the identity and RateLimit headers.
        guard let route else { return .check(CheckRequest(token: token, options: .details)) }
        return .check(
            CheckRequest(
                token: token, scopes: route.scopes, meter: route.meter, cost: route.meter.isEmpty ? 0 : route.cost, features: route.features,
                options: .details),
            route: routeName(route))
    }

    /// The matched rule as the decision stream names it, `METHOD PATTERN`: appended, not interpolated (the
    /// interpolation went through `CustomStringConvertible`, ~1 k instructions per request).
    static func routeName(_ route: RouteRule) -> String {
        var name = route.method
        name += " "
        name += route.path.description
        return name
    }

    /// The answer to `decision`: made here, or the core's answer to its CHECK, asked through the operation table as
    /// `caller` (the api socket's role: the same door as the binary front end's). `nowMillis` is read only when the
    /// core has answered, for the RateLimit and Retry-After headers.
    public static func answer(_ decision: Decision, core: ApplicationCore, caller: Caller, nowMillis: () -> Int64) -> ForwardAuthAnswer {
        switch decision {
        case .answer(let status, let reason):
            return .refused(status, reason: reason)
        case .check(let check, let route):
            var caller = caller
            caller.route = route
            return answer(to: core.handle(.check(check), from: caller, completion: { _ in }), nowMillis: nowMillis)
        }
    }

    /// The core's response to a CHECK as an answer: the decision with its headers, 400 for a request the core
    /// refused as invalid, 500 for anything else (the core has no other answer to a CHECK).
    public static func answer(to response: Response?, nowMillis: () -> Int64) -> ForwardAuthAnswer {
        switch response {
        case .checkDetailed(let result, let details)?:
            return .decided(result, details: details, nowMillis: nowMillis())
        case .check(let result)?:
            return .decided(result, nowMillis: nowMillis())
        case .error(.invalidArgument, _)?:
            return .refused(.badRequest, reason: ForwardAuthProblem.invalidRequest.rawValue)
        default:
            return .refused(.internalServerError, reason: ForwardAuthProblem.internalError.rawValue)
        }
    }

    /// The token: `Authorization: Bearer …`, else the configured header, else the configured query parameter of
    /// the original request's `target`. Nil when none is there (an empty value counts as none).
    public static func token(in headers: some AuthorizationHeaders, target: String, policy: AuthorizationPolicy) -> String? {
        if let authorization = headers.firstValue(name: "authorization"), let token = bearerToken(in: authorization) {
            return token
        }
        if let name = policy.tokenHeader, let value = headers.firstValue(name: name)?.trimmingSpaces, !value.isEmpty {
            return String(value)
        }
        if let name = policy.tokenQueryParameter, let value = queryParameter(name, in: target), !value.isEmpty {
            return value
        }
        return nil
    }

    /// The credentials of an `Authorization` value whose scheme is `Bearer` (any case): after spaces, the scheme,
    /// one space, then the rest without the spaces and tabs around it; nil when that is empty or the scheme is
    /// another. Read over the value's bytes, without splitting or lower-casing copies (`Authorization.token` 7.1 k →
    /// 2.1 k instructions per forward-auth request with the header lookup's own change; callgrind, Benchmarks/SCALE.md).
    static func bearerToken(in value: String) -> String? {
        var value = value
        return value.withUTF8 { bytes -> String? in
            let space = UInt8(ascii: " "), tab = UInt8(ascii: "\t")
            var index = 0
            while index < bytes.count, bytes[index] == space { index += 1 }
            let schemeStart = index
            while index < bytes.count, bytes[index] != space { index += 1 }
            guard index < bytes.count, index - schemeStart == 6 else { return nil }
            for (offset, expected) in "bearer".utf8.enumerated() {
                let byte = bytes[schemeStart + offset]
                guard byte | (byte >= 0x41 && byte <= 0x5A ? 0x20 : 0) == expected else { return nil }
            }
            var start = index + 1
            var end = bytes.count
            while start < end, bytes[start] == space || bytes[start] == tab { start += 1 }
            while end > start, bytes[end - 1] == space || bytes[end - 1] == tab { end -= 1 }
            return start == end ? nil : String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
        }
    }

    /// The first value of `name` in the query of `target`, percent-decoded; nil when absent or not decodable.
    public static func queryParameter(_ name: String, in target: String) -> String? {
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
    /// The original URI came without its method (400; over gRPC: a CheckRequest without the HTTP method).
    case missingMethod = "missing_method"
    /// The original path is not a path, a bad escape, or climbs above the root (400).
    case badPath = "bad_path"
    /// No route matches and the configured default is `deny` (403).
    case noRoute = "no_route"
    /// No token in `Authorization: Bearer`, the token header or the query parameter (401).
    case missingToken = "missing_token"
    /// The peer is not on the socket's allow-list (403).
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
