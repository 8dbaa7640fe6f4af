import NIOHTTP1
import TollgateModel

/// An answer before a front end writes it (HTTP/1.1, or Envoy's CheckResponse): status, headers, and the small JSON
/// body.
public struct ForwardAuthAnswer: Sendable, Equatable {
    public var status: HTTPResponseStatus
    public var headers: [(name: String, value: String)]
    public var body: String

    public init(status: HTTPResponseStatus, headers: [(name: String, value: String)], body: String) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func == (l: ForwardAuthAnswer, r: ForwardAuthAnswer) -> Bool {
        l.status == r.status && l.body == r.body && l.headers.map(\.name) == r.headers.map(\.name) && l.headers.map(\.value) == r.headers.map(\.value)
    }

    /// The answer to a decided CHECK: the status of `DenyStatus`, the headers of `ForwardAuthHeaders`, and the
    /// decision in the body.
    public static func decided(_ result: CheckResult, details: CheckDetails? = nil, nowMillis: Int64) -> ForwardAuthAnswer {
        ForwardAuthAnswer(
            status: DenyStatus.status(for: result.reason), headers: ForwardAuthHeaders.list(for: result, details: details, nowMillis: nowMillis),
            body: body(allowed: result.allowed, reason: result.reason.name))
    }

    /// An answer made by the front end itself (no token, no route, a malformed request).
    public static func refused(_ status: HTTPResponseStatus, reason: String) -> ForwardAuthAnswer {
        ForwardAuthAnswer(status: status, headers: [(ForwardAuthHeaders.reason, reason)], body: body(allowed: false, reason: reason))
    }

    /// The same answer with an empty body (`ForwardAuth.answersWithoutBody`).
    public func withoutBody() -> ForwardAuthAnswer {
        ForwardAuthAnswer(status: status, headers: headers, body: "")
    }

    /// `{"decision":"allow"}` or `{"decision":"deny","reason":"<name>"}`; names are fixed ASCII words, never input.
    static func body(allowed: Bool, reason: String) -> String {
        allowed ? #"{"decision":"allow"}"# : #"{"decision":"deny","reason":""# + reason + #""}"#
    }
}

/// The one table from a decision to an HTTP status: 401 when the token itself is no good (the client must get
/// another), 403 when the token is good but may not do this (scope, feature, license standing, caller binding),
/// 429 when it may, but not now or not this much (rate limit, quota, credits, concurrency: retry later).
public enum DenyStatus {
    public static func status(for reason: DenyReason) -> HTTPResponseStatus {
        switch reason {
        case .none:
            return .ok
        case .malformedToken, .unknownToken, .revoked, .notYetValid, .expired:
            return .unauthorized
        case .licenseInactive, .insufficientScope, .callerNotAllowed, .featureNotEntitled, .trialEnded, .paymentOverdue, .licenseExpired,
            .licenseNotYetValid, .orgSuspended:
            return .forbidden
        case .quotaExceeded, .rateLimited, .creditsExhausted, .concurrencyLimited:
            return .tooManyRequests
        // Fleet mode: this host is cut off from the fleet log for longer than the revocation horizon; another host
        // (or this one, once it catches up) may admit the same request.
        case .fleetStale:
            return .serviceUnavailable
        }
    }
}

/// The headers of a decided CHECK, as one small pure function from `CheckResult` to a header list: the only place
/// to extend when the check answer grows (a plan id, the tightest rate limit's limit and remaining).
///
/// - On allow, for the upstream: `X-Tollgate-Token-Id`, `X-Tollgate-License`, `X-Tollgate-Subject`,
///   `X-Tollgate-Plan` (the proxy copies them onto the proxied request, after removing any the client sent).
/// - For the client: `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds, rounded up), as the
///   IETF draft spells them, of the tighter of the two limits the check reports: the quota it counted against
///   (reset: its window's end) and the plan's tightest rate limit (`details`, reset: when its burst is full again).
///   Fewer requests left decides; on a tie the quota, whose reset is the longer wait.
/// - On 429: `Retry-After` in whole seconds, rounded up: the rate limit's wait, else the quota's reset, else 1.
/// - On a denial: `X-Tollgate-Reason`, the reason's name, because a proxy's auth subrequest (nginx) drops the body.
public enum ForwardAuthHeaders {
    public static let tokenID = "X-Tollgate-Token-Id"
    public static let license = "X-Tollgate-License"
    public static let subject = "X-Tollgate-Subject"
    public static let plan = "X-Tollgate-Plan"
    /// Only on denials, for the proxy's error page; never sent upstream (a denied request does not get there).
    public static let reason = "X-Tollgate-Reason"
    /// Every header Tollgate sets for the upstream: what a proxy must strip from client requests.
    public static let upstream = [tokenID, license, subject, plan]

    public static func list(for result: CheckResult, details: CheckDetails? = nil, nowMillis: Int64) -> [(name: String, value: String)] {
        var headers: [(name: String, value: String)] = []
        // The most an answer carries: four identity headers and three RateLimit ones (one allocation, no regrowing).
        headers.reserveCapacity(8)
        if result.allowed {
            headers.append((tokenID, headerSafe(result.tokenID)))
            headers.append((license, headerSafe(result.licenseID)))
            headers.append((subject, headerSafe(result.subject)))
            if let plan = details?.planID, !plan.isEmpty { headers.append((Self.plan, headerSafe(plan))) }
        }
        if let limit = tightestLimit(of: result, rateLimit: details?.rateLimit, nowMillis: nowMillis) {
            headers.append(("RateLimit-Limit", String(limit.limit)))
            headers.append(("RateLimit-Remaining", String(limit.remaining)))
            headers.append(("RateLimit-Reset", String(secondsRoundedUp(limit.resetMillis))))
        }
        if DenyStatus.status(for: result.reason) == .tooManyRequests {
            let wait: Int64
            if result.retryAfterMillis > 0 {
                wait = secondsRoundedUp(Int64(result.retryAfterMillis))
            } else if let quota = result.quota, quota.remaining == 0 || result.reason == .quotaExceeded {
                wait = secondsRoundedUp(quota.resetAt - nowMillis)
            } else {
                wait = 1
            }
            headers.append(("Retry-After", String(max(1, wait))))
        }
        if !result.allowed { headers.append((reason, result.reason.name)) }
        return headers
    }

    /// The quota or the rate limit with fewer requests left (the quota on a tie), as limit, remaining and
    /// milliseconds until it resets.
    static func tightestLimit(of result: CheckResult, rateLimit: RateLimitState?, nowMillis: Int64) -> (limit: UInt64, remaining: UInt64, resetMillis: Int64)? {
        let quota = result.quota.map { (limit: $0.limit, remaining: $0.remaining, resetMillis: $0.resetAt - nowMillis) }
        let rate = rateLimit.map { (limit: $0.limit, remaining: $0.remaining, resetMillis: Int64($0.resetMillis)) }
        guard let rate else { return quota }
        guard let quota else { return rate }
        return rate.remaining < quota.remaining ? rate : quota
    }

    static func secondsRoundedUp(_ millis: Int64) -> Int64 {
        millis <= 0 ? 0 : (millis + 999) / 1000
    }

    /// A value made safe for a header line: ids are already plain ASCII, but a subject is any UTF-8 text, so
    /// control characters, `%` and non-ASCII bytes are percent-encoded (a subject with a line break must not
    /// become a second header).
    ///
    /// Values that need no encoding (every id, nearly every subject) are returned as they are, sharing their
    /// storage: building a copy scalar by scalar cost ~19 k instructions per forward-auth answer (callgrind,
    /// Benchmarks/SCALE.md, "Forward auth").
    static func headerSafe(_ value: String) -> String {
        if value.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "%") }) { return value }
        var out = ""
        out.reserveCapacity(value.utf8.count)
        for byte in value.utf8 {
            if byte >= 0x20 && byte < 0x7F && byte != UInt8(ascii: "%") {
                out.unicodeScalars.append(UnicodeScalar(byte))
            } else {
                out += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
            }
        }
        return out
    }
}
