import TollgateAuthorization
import TollgateModel

/// RFC 8693 token exchange over HTTP, as values: the form a client posts, read into the core's `ExchangeRequest`,
/// and the core's answer written as RFC 8693 §2.2 JSON. No I/O; the front end only moves bytes.
public enum TokenExchangeForm {
    public static let grantType = "urn:ietf:params:oauth:grant-type:token-exchange"
    public static let jwtType = "urn:ietf:params:oauth:token-type:jwt"
    /// OIDC ID tokens are JWTs; RFC 8693 §3 names them too.
    public static let idTokenType = "urn:ietf:params:oauth:token-type:id_token"
    public static let accessTokenType = "urn:ietf:params:oauth:token-type:access_token"

    /// An RFC 6749 §5.2 / RFC 8693 §2.2.2 error: its code, a description safe to show (never the token), the status.
    public struct OAuthError: Error, Sendable, Hashable {
        public var error: String
        public var description: String
        public var status: UInt
        public init(_ error: String, _ description: String, status: UInt = 400) {
            self.error = error
            self.description = description
            self.status = status
        }

        /// `{"error":"…","error_description":"…"}`.
        public var body: String { #"{"error":"# + JSONText.quoted(error) + #","error_description":"# + JSONText.quoted(description) + "}" }
    }

    /// Reads an `application/x-www-form-urlencoded` body. Each parameter at most once (RFC 6749 §3.2).
    public static func request(from body: [UInt8]) -> Result<ExchangeRequest, OAuthError> {
        guard let fields = parse(body) else { return .failure(OAuthError("invalid_request", "the body is not a form (application/x-www-form-urlencoded) with each parameter once")) }
        guard let grant = fields["grant_type"] else { return .failure(OAuthError("invalid_request", "grant_type is required")) }
        guard grant == grantType else { return .failure(OAuthError("unsupported_grant_type", "only \(grantType) is served here")) }
        guard let token = fields["subject_token"], !token.isEmpty else { return .failure(OAuthError("invalid_request", "subject_token is required")) }
        guard let type = fields["subject_token_type"] else { return .failure(OAuthError("invalid_request", "subject_token_type is required")) }
        guard type == jwtType || type == idTokenType else {
            return .failure(OAuthError("invalid_request", "subject_token_type must be \(jwtType) (or \(idTokenType))"))
        }
        if let requested = fields["requested_token_type"], requested != accessTokenType {
            return .failure(OAuthError("invalid_request", "requested_token_type may only be \(accessTokenType)"))
        }
        if fields["actor_token"] != nil { return .failure(OAuthError("invalid_request", "actor_token (delegation) is not supported")) }
        let scopes = (fields["scope"] ?? "").split(separator: " ").map(String.init)
        return .success(ExchangeRequest(subjectToken: token, role: fields["role"] ?? "", scopes: scopes, ttlSeconds: 0))
    }

    /// RFC 8693 §2.2.1: the token, its type, `Bearer`, its lifetime from `nowMillis`, and its scopes.
    public static func successBody(secret: String, token: TokenInfo, nowMillis: Int64) -> String {
        let expiresIn = max(0, (token.expiresAt - nowMillis) / 1000)
        return #"{"access_token":"# + JSONText.quoted(secret) + #","issued_token_type":"# + JSONText.quoted(accessTokenType)
            + #","token_type":"Bearer","expires_in":"# + String(expiresIn) + #","scope":"# + JSONText.quoted(token.scopes.joined(separator: " ")) + "}"
    }

    /// The OAuth error for a refusal of the core: a bad or unacceptable subject token is `invalid_request` (RFC 8693
    /// §2.2.2), a scope `invalid_scope`, keys out of reach 503 `temporarily_unavailable`.
    public static func error(forRefusal code: ExchangeRefusal.Code, message: String) -> OAuthError {
        switch code {
        case .invalidScope: return OAuthError("invalid_scope", message)
        // Both clear up by themselves: the provider answers again; the role changed mid-verification.
        case .keysUnavailable, .roleChanged: return OAuthError("temporarily_unavailable", message, status: 503)
        case .notConfigured: return OAuthError("invalid_request", message, status: 404)
        default: return OAuthError("invalid_request", message)
        }
    }

    /// Parses `a=b&c=d` with `+` as space and percent-escapes; nil on a bad escape, invalid UTF-8 or a repeat.
    static func parse(_ body: [UInt8]) -> [String: String]? {
        var fields: [String: String] = [:]
        for pair in body.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let parts = pair.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = decode(parts[0]), let value = decode(parts.count > 1 ? parts[1] : []) else { return nil }
            guard fields.updateValue(value, forKey: name) == nil else { return nil }
        }
        return fields
    }

    static func decode(_ bytes: ArraySlice<UInt8>) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let b = bytes[i]
            if b == UInt8(ascii: "+") {
                out.append(0x20)
            } else if b == UInt8(ascii: "%") {
                guard bytes.endIndex - i >= 3, let hi = hex(bytes[i + 1]), let lo = hex(bytes[i + 2])
                else { return nil }
                out.append(hi << 4 | lo)
                i += 2
            } else {
                out.append(b)
            }
            i += 1
        }
        return String(validating: out, as: UTF8.self)
    }

    static func hex(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
