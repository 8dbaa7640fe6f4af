import Foundation
import TollgateModel

/// A JWT in compact serialisation, taken apart before any key is looked at: the size bound first, then three
/// base64url parts, a JSON header whose `alg` is one of the asymmetric algorithms accepted, a JSON payload.
/// Everything refused here is refused without touching the key set (no fetch for a token that cannot be valid).
public struct CompactJWT: Sendable {
    /// The asymmetric algorithms accepted and the key type (`kty`) each needs. HMAC (`HS*`) is refused outright:
    /// its "key" would be the provider's public key, which anyone has (algorithm confusion); `none` is unsigned.
    public static let keyTypes: [String: String] = [
        "RS256": "RSA", "RS384": "RSA", "RS512": "RSA", "PS256": "RSA", "PS384": "RSA", "PS512": "RSA",
        "ES256": "EC", "ES384": "EC", "ES512": "EC", "EdDSA": "OKP",
    ]

    public let algorithm: String
    public let keyID: String?
    public let claims: Claims
    /// The token itself, for the signature check.
    public let text: String

    public init(_ token: String, maxBytes: Int) throws(ExchangeRefusal) {
        guard token.utf8.count <= maxBytes else {
            throw ExchangeRefusal(.tokenTooLarge, "the subject token is longer than \(maxBytes) bytes")
        }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerBytes = Self.base64URL(parts[0]), let payloadBytes = Self.base64URL(parts[1]),
            let header = (try? JSONSerialization.jsonObject(with: Data(headerBytes))) as? [String: Any]
        else { throw ExchangeRefusal(.malformedToken, "the subject token is not a JWT (three base64url parts, a JSON header)") }
        guard let alg = header["alg"] as? String else { throw ExchangeRefusal(.malformedToken, "the JWT header has no alg") }
        if alg.lowercased() == "none" { throw ExchangeRefusal(.unsignedToken, "the JWT is unsigned (alg none)") }
        guard Self.keyTypes[alg] != nil else {
            throw ExchangeRefusal(.algorithmNotAllowed, "alg \(Self.printable(alg)) is not accepted (RS*, PS*, ES*, EdDSA only)")
        }
        if let crit = header["crit"], !((crit as? [Any])?.isEmpty ?? false) {
            throw ExchangeRefusal(.malformedToken, "the JWT header has critical extensions this verifier does not know")
        }
        guard parts[2].utf8.count > 0 else { throw ExchangeRefusal(.badSignature, "the JWT has no signature") }
        guard let claims = Claims(json: payloadBytes) else { throw ExchangeRefusal(.malformedToken, "the JWT payload is not a JSON object") }
        self.algorithm = alg
        self.keyID = header["kid"] as? String
        self.claims = claims
        self.text = token
    }

    /// Unpadded base64url (RFC 7515 §2); nil for anything else.
    static func base64URL(_ part: Substring) -> [UInt8]? {
        guard part.utf8.allSatisfy({ b in
            (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x2D || b == 0x5F
        }) else { return nil }
        var text = part.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while text.utf8.count % 4 != 0 { text += "=" }
        return Data(base64Encoded: text).map { [UInt8]($0) }
    }

    /// A header value fit for a message: short, printable.
    static func printable(_ value: String) -> String {
        "'" + String(value.unicodeScalars.prefix(32).map { $0.value < 0x20 || $0.value > 0x7E ? "?" : Character($0) }) + "'"
    }
}
