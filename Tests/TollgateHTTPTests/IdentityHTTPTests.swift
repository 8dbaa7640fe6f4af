import Foundation
import NIOCore
import NIOHTTP1
@testable import TollgateHTTP
import TollgateModel
import XCTest

/// The RFC 8693 form, the SCIM bodies and the bearer check, pure; the body endpoints' routing in the connection
/// state. The live endpoints are driven by the tier-2 suite (Tests/identity).
final class IdentityHTTPTests: XCTestCase {
    func form(_ pairs: [(String, String)]) -> [UInt8] {
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~"))
        return Array(pairs.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed)!)" }.joined(separator: "&").utf8)
    }

    let base = [
        ("grant_type", TokenExchangeForm.grantType), ("subject_token", "a.b.c"), ("subject_token_type", TokenExchangeForm.jwtType),
    ]

    func testTheFormBecomesAnExchangeRequest() throws {
        let request = try TokenExchangeForm.request(from: form(base + [("scope", "read write"), ("role", "ci")])).get()
        XCTAssertEqual(request, ExchangeRequest(subjectToken: "a.b.c", role: "ci", scopes: ["read", "write"]))
        XCTAssertEqual(try TokenExchangeForm.request(from: Array("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=x+y&subject_token_type=urn:ietf:params:oauth:token-type:id_token".utf8)).get().subjectToken, "x y")
    }

    func testFormRefusalsAreOAuthErrors() {
        func error(_ pairs: [(String, String)]) -> String? {
            if case .failure(let e) = TokenExchangeForm.request(from: form(pairs)) { return e.error }
            return nil
        }
        XCTAssertEqual(error([("grant_type", "client_credentials")] + base.dropFirst()), "unsupported_grant_type")
        XCTAssertEqual(error(Array(base.dropFirst())), "invalid_request")
        XCTAssertEqual(error([base[0], base[2]]), "invalid_request", "no subject_token")
        XCTAssertEqual(error([base[0], base[1], ("subject_token_type", "urn:ietf:params:oauth:token-type:saml2")]), "invalid_request")
        XCTAssertEqual(error(base + [("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token")]), "invalid_request")
        XCTAssertEqual(error(base + [("actor_token", "x")]), "invalid_request")
        XCTAssertEqual(error(base + [("subject_token", "twice")]), "invalid_request", "a repeated parameter")
        if case .success = TokenExchangeForm.request(from: Array("grant_type=%zz".utf8)) { XCTFail("a bad escape is refused") }
    }

    func testAnswersFollowRFC8693() throws {
        let token = TokenInfo(id: "tok_1", licenseID: "lic", subject: "s", scopes: ["read", "write"], issuedAt: 0, notBefore: 0, expiresAt: 900_500, metadata: [], environment: .live)
        let body = try JSONSerialization.jsonObject(with: Data(TokenExchangeForm.successBody(secret: "tg_live_x", token: token, nowMillis: 0).utf8)) as! [String: Any]
        XCTAssertEqual(body["access_token"] as? String, "tg_live_x")
        XCTAssertEqual(body["issued_token_type"] as? String, TokenExchangeForm.accessTokenType)
        XCTAssertEqual(body["token_type"] as? String, "Bearer")
        XCTAssertEqual(body["expires_in"] as? Int, 900)
        XCTAssertEqual(body["scope"] as? String, "read write")
        XCTAssertEqual(TokenExchangeForm.error(forRefusal: .invalidScope, message: "").error, "invalid_scope")
        XCTAssertEqual(TokenExchangeForm.error(forRefusal: .expired, message: "").error, "invalid_request")
        XCTAssertEqual(TokenExchangeForm.error(forRefusal: .keysUnavailable, message: "").status, 503)
    }

    func testSCIMShapesOfOktaAndEntraID() {
        func read(_ method: String, _ body: String, path: String = "/Users/alice%40example.com") -> Result<SCIMRequest, SCIMRequest.Problem> {
            SCIMRequest.read(method: method, path: path, body: Array(body.utf8))
        }
        let okta = #"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}"#
        XCTAssertEqual(try read("PATCH", okta).get(), .setActive(subject: "alice@example.com", active: false))
        let entra = #"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}"#
        XCTAssertEqual(try read("PATCH", entra).get(), .setActive(subject: "alice@example.com", active: false))
        let entraOn = #"{"Operations":[{"op":"Replace","path":"active","value":"True"}]}"#
        XCTAssertEqual(try read("PATCH", entraOn).get(), .setActive(subject: "alice@example.com", active: true))
        XCTAssertEqual(try read("PUT", #"{"userName":"alice@example.com","active":false}"#).get(), .setActive(subject: "alice@example.com", active: false))
        XCTAssertEqual(try read("DELETE", "").get(), .setActive(subject: "alice@example.com", active: false))
        XCTAssertEqual(try read("PATCH", #"{"Operations":[{"op":"replace","path":"name.givenName","value":"Al"}]}"#).get(), .noChange(subject: "alice@example.com"))
        func status(_ result: Result<SCIMRequest, SCIMRequest.Problem>) -> UInt? { if case .failure(let p) = result { return p.status } else { return nil } }
        XCTAssertEqual(status(read("PATCH", "[]")), 400)
        XCTAssertEqual(status(read("PATCH", #"{"Operations":[{"op":"move"}]}"#)), 400)
        XCTAssertEqual(status(read("PATCH", #"{"Operations":[{"op":"replace","path":"active","value":"maybe"}]}"#)), 400)
        XCTAssertEqual(status(read("GET", "")), 405)
        XCTAssertEqual(status(read("PATCH", okta, path: "/Groups/x")), 404)
    }

    func testTheBearerSecretIsComparedWhole() {
        let settings = SCIMSettings(secret: Array("s3cret-value".utf8))
        XCTAssertTrue(settings.admits(authorization: "Bearer s3cret-value"))
        XCTAssertTrue(settings.admits(authorization: "bearer s3cret-value"))
        XCTAssertFalse(settings.admits(authorization: "Bearer s3cret-valu"))
        XCTAssertFalse(settings.admits(authorization: "Bearer s3cret-value2"))
        XCTAssertFalse(settings.admits(authorization: "Basic s3cret-value"))
        XCTAssertFalse(settings.admits(authorization: nil))
        XCTAssertFalse(SCIMSettings().admits(authorization: "Bearer "), "no secret configured admits nobody")
        XCTAssertFalse(settings.description.contains("s3cret"))
    }

    func testBodyEndpointsAreRoutedAndBounded() {
        var state = HTTPConnectionState(maxBodyBytes: 64, maxHeaderBytes: 8192, admitted: true)
        state.bodyEndpoints = BodyEndpoints(tokenExchangePath: "/oauth2/token", scimPrefix: "/scim/v2", maxBodyBytes: 64)
        XCTAssertEqual(state.bodyEndpoints.route("/oauth2/token?x=1")?.0, .tokenExchange)
        XCTAssertEqual(state.bodyEndpoints.route("/scim/v2/Users/a")?.0, .scim)
        XCTAssertNil(state.bodyEndpoints.route("/scim/v2"))
        XCTAssertNil(state.bodyEndpoints.route("/v1/forward-auth"))
        let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/oauth2/token", headers: ["Content-Length": "5"])
        XCTAssertEqual(state.receivedHead(head), .none)
        var part = ByteBufferAllocator().buffer(capacity: 5)
        part.writeString("a=b&c")
        XCTAssertEqual(state.receivedBody(part), .none)
        XCTAssertEqual(state.receivedEnd(), .collected(.tokenExchange, head, Array("a=b&c".utf8)))
        var big = HTTPConnectionState(maxBodyBytes: 64, maxHeaderBytes: 8192, admitted: true)
        big.bodyEndpoints = state.bodyEndpoints
        guard case .refuse(let answer) = big.receivedHead(HTTPRequestHead(version: .http1_1, method: .PATCH, uri: "/scim/v2/Users/a", headers: ["Content-Length": "65"])) else {
            return XCTFail("a body over the limit is refused")
        }
        XCTAssertEqual(answer.status, .payloadTooLarge)
    }
}
