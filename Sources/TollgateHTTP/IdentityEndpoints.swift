import TollgateAuthorization
import Crypto
import NIOHTTP1
import TollgateCore
import TollgateModel
import TollgateProtocol
import TollgateServer

/// The SCIM endpoint's settings (`http.scim`): its base path and the bearer secret identity providers present,
/// read from a file (never written in the configuration); `description` never shows it.
public struct SCIMSettings: Sendable, Hashable, CustomStringConvertible {
    public var basePath: String
    public var secret: [UInt8]
    public var secretFile: String

    public init(basePath: String = "/scim/v2", secret: [UInt8] = [], secretFile: String = "") {
        self.basePath = basePath
        self.secret = secret
        self.secretFile = secretFile
    }

    public var description: String { "SCIMSettings(basePath: \(basePath), secret: redacted)" }

    /// Whether `header` is `Bearer <secret>`, compared in constant time (the HMAC of both, compared whole, so the
    /// time does not depend on where they differ nor leak the secret's length).
    public func admits(authorization header: String?) -> Bool {
        guard !secret.isEmpty, let header, header.count > 7, header.prefix(7).lowercased() == "bearer " else { return false }
        let key = SymmetricKey(size: .bits256)
        let presented = HMAC<SHA256>.authenticationCode(for: Array(header.utf8.dropFirst(7)), using: key)
        let expected = HMAC<SHA256>.authenticationCode(for: secret, using: key)
        return presented == expected  // HashedAuthenticationCode's == is constant-time
    }
}

extension HTTPFrontEnd {
    /// The body endpoints of the policy in force, for a new connection.
    func bodyEndpoints() -> BodyEndpoints {
        let policy = live.withLockedValue { $0.policy }
        return BodyEndpoints(
            stripePath: policy.stripe?.path, stripeMaxBodyBytes: policy.stripe?.maxBodyBytes ?? 0, tokenExchangePath: policy.tokenExchangePath,
            scimPrefix: policy.scim?.basePath, maxBodyBytes: limits.maxBodyBytes)
    }

    /// RFC 8693 token exchange: the form into the core's EXCHANGE (as a data-plane caller, like forward auth), the
    /// answer into RFC 8693's JSON. Decides nothing itself.
    func tokenExchange(_ head: HTTPRequestHead, body: [UInt8], peer: PeerCredentials?, completion: @escaping @Sendable (ForwardAuthAnswer) -> Void) {
        let live = self.live.withLockedValue { $0 }
        guard live.access.admits(peer) else { return completion(.refused(.forbidden, reason: ForwardAuthProblem.peerNotAllowed.rawValue)) }
        guard head.method == .POST else {
            return completion(Self.oauth(TokenExchangeForm.OAuthError("invalid_request", "token exchange is a POST", status: 405), extra: [("Allow", "POST")]))
        }
        let type = head.headers.first(name: "content-type")?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased()
        guard type == "application/x-www-form-urlencoded" else {
            return completion(Self.oauth(TokenExchangeForm.OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")))
        }
        let request: ExchangeRequest
        switch TokenExchangeForm.request(from: body) {
        case .failure(let error): return completion(Self.oauth(error))
        case .success(let parsed): request = parsed
        }
        let clock = self.clock
        let answer: @Sendable (Response) -> Void = { response in
            switch response {
            case .issue(let secret, let token):
                completion(ForwardAuthAnswer(
                    status: .ok, headers: [("Pragma", "no-cache")],
                    body: TokenExchangeForm.successBody(secret: secret, token: token, nowMillis: clock.now().millis)))
            case .error(let status, let message):
                if let refusal = ExchangeRefusal(wire: message), status == .exchangeRefused || status == .identityUnavailable {
                    completion(Self.oauth(TokenExchangeForm.error(forRefusal: refusal.code, message: message)))
                } else {
                    let unavailable = status == .unavailable
                    completion(Self.oauth(TokenExchangeForm.OAuthError(unavailable ? "temporarily_unavailable" : "server_error", message, status: unavailable ? 503 : 500)))
                }
            default:
                completion(Self.oauth(TokenExchangeForm.OAuthError("server_error", "the request failed inside the server", status: 500)))
            }
        }
        if let now = core.handle(.exchange(request), from: Caller(role: .api, uid: peer?.uid), completion: answer) { answer(now) }
    }

    /// SCIM: the bearer secret (constant-time), then the request into SUBJECT_STATUS with actor `scim` (the
    /// admin role: the secret is the authority here), the answer into SCIM's statuses and bodies.
    func scim(_ head: HTTPRequestHead, body: [UInt8], peer: PeerCredentials?, completion: @escaping @Sendable (ForwardAuthAnswer) -> Void) {
        let live = self.live.withLockedValue { $0 }
        guard live.access.admits(peer) else { return completion(.refused(.forbidden, reason: ForwardAuthProblem.peerNotAllowed.rawValue)) }
        guard let settings = live.policy.scim else { return completion(.refused(.notFound, reason: "not_found")) }
        guard settings.admits(authorization: head.headers.first(name: "authorization")) else {
            logger.warning("scim request refused: bad or missing bearer secret")
            return completion(Self.scimAnswer(SCIMRequest.Problem(401, "a valid bearer token is required"), extra: [("WWW-Authenticate", #"Bearer realm="tollgate-scim""#)]))
        }
        let path = String(head.uri.prefix { $0 != "?" }.dropFirst(settings.basePath.count))
        let request: SCIMRequest
        switch SCIMRequest.read(method: head.method.rawValue, path: path, body: body) {
        case .failure(let problem): return completion(Self.scimAnswer(problem))
        case .success(let parsed): request = parsed
        }
        guard case .setActive(let subject, let active) = request else {
            if case .noChange(let subject) = request {
                let active = core.withState { $0.deprovisioned[subject] == nil }
                return completion(ForwardAuthAnswer(status: .ok, headers: [("Content-Type", SCIMRequest.contentType)], body: SCIMRequest.userBody(subject: subject, active: active)))
            }
            return
        }
        let isDelete = head.method == .DELETE
        let answer: @Sendable (Response) -> Void = { response in
            switch response {
            case .revoke:
                completion(isDelete
                    ? ForwardAuthAnswer(status: .noContent, headers: [], body: "")
                    : ForwardAuthAnswer(status: .ok, headers: [("Content-Type", SCIMRequest.contentType)], body: SCIMRequest.userBody(subject: subject, active: active)))
            case .error(let status, let message):
                completion(Self.scimAnswer(SCIMRequest.Problem(status == .unavailable ? 503 : status == .invalidArgument ? 400 : 500, message)))
            default:
                completion(Self.scimAnswer(SCIMRequest.Problem(500, "the request failed inside the server")))
            }
        }
        let change = Request.subjectStatus(SubjectStatusRequest(subject: subject, active: active, actor: "scim"))
        if let now = core.handle(change, from: Caller(role: .admin, uid: peer?.uid), completion: answer) { answer(now) }
    }

    static func oauth(_ error: TokenExchangeForm.OAuthError, extra: [(name: String, value: String)] = []) -> ForwardAuthAnswer {
        ForwardAuthAnswer(status: HTTPResponseStatus(statusCode: Int(error.status)), headers: extra, body: error.body)
    }

    static func scimAnswer(_ problem: SCIMRequest.Problem, extra: [(name: String, value: String)] = []) -> ForwardAuthAnswer {
        ForwardAuthAnswer(status: HTTPResponseStatus(statusCode: Int(problem.status)), headers: [("Content-Type", SCIMRequest.contentType)] + extra, body: problem.body)
    }
}
