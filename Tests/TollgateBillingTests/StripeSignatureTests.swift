import Crypto
import TollgateBilling
import XCTest

/// The signature as Stripe specifies it, with a clock that is an argument.
final class StripeSignatureTests: XCTestCase {
    let secret = Array("whsec_test_secret_one".utf8)
    let other = Array("whsec_test_secret_two".utf8)
    let body = Array(#"{"id":"evt_1","type":"invoice.paid"}"#.utf8)
    let t: Int64 = 1_767_225_600

    /// An independent computation of the expected header: HMAC-SHA256 of "t.body", hex.
    func expectedHeader(_ body: [UInt8], secret: [UInt8], t: Int64) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array("\(t).".utf8) + body, using: SymmetricKey(data: secret))
        return "t=\(t),v1=" + mac.map { String(format: "%02x", $0) }.joined()
    }

    func testAcceptsAValidSignature() {
        let header = expectedHeader(body, secret: secret, t: t)
        XCTAssertEqual(StripeSignature.header(for: body, secret: secret, timestamp: t), header)
        XCTAssertNil(StripeSignature.verify(header: header, body: body, secrets: [secret], now: t))
    }

    func testAcceptsWithinTheToleranceAndRefusesBeyondItBothWays() {
        let header = expectedHeader(body, secret: secret, t: t)
        XCTAssertNil(StripeSignature.verify(header: header, body: body, secrets: [secret], now: t + 300))
        XCTAssertNil(StripeSignature.verify(header: header, body: body, secrets: [secret], now: t - 300))
        XCTAssertEqual(StripeSignature.verify(header: header, body: body, secrets: [secret], now: t + 301), .outsideTolerance)
        XCTAssertEqual(StripeSignature.verify(header: header, body: body, secrets: [secret], now: t - 301), .outsideTolerance)
        XCTAssertNil(StripeSignature.verify(header: header, body: body, secrets: [secret], now: t + 900, tolerance: 900))
    }

    func testRefusesAChangedBodyOrAnotherSecret() {
        let header = expectedHeader(body, secret: secret, t: t)
        var changed = body
        changed[changed.count - 2] ^= 1
        XCTAssertEqual(StripeSignature.verify(header: header, body: changed, secrets: [secret], now: t), .mismatch)
        XCTAssertEqual(StripeSignature.verify(header: header, body: body, secrets: [other], now: t), .mismatch)
        // The timestamp is signed: moving it breaks the signature.
        let moved = header.replacingOccurrences(of: "t=\(t)", with: "t=\(t + 1)")
        XCTAssertEqual(StripeSignature.verify(header: moved, body: body, secrets: [secret], now: t), .mismatch)
    }

    func testTwoSecretsDuringARotationAndSeveralSignatures() {
        let old = expectedHeader(body, secret: secret, t: t)
        let new = expectedHeader(body, secret: other, t: t)
        XCTAssertNil(StripeSignature.verify(header: old, body: body, secrets: [other, secret], now: t))
        XCTAssertNil(StripeSignature.verify(header: new, body: body, secrets: [other, secret], now: t))
        // Stripe signs with both secrets while both are live: one header, two v1 values.
        let both = new + "," + old.split(separator: ",")[1]
        XCTAssertNil(StripeSignature.verify(header: both, body: body, secrets: [secret], now: t))
        XCTAssertNil(StripeSignature.verify(header: both, body: body, secrets: [other], now: t))
        XCTAssertEqual(StripeSignature.verify(header: both, body: body, secrets: [Array("whsec_neither_of_them".utf8)], now: t), .mismatch)
    }

    func testRejectsMalformedHeaders() {
        XCTAssertEqual(StripeSignature.verify(header: nil, body: body, secrets: [secret], now: t), .missingHeader)
        XCTAssertEqual(StripeSignature.verify(header: "", body: body, secrets: [secret], now: t), .missingHeader)
        XCTAssertEqual(StripeSignature.verify(header: "v1=00", body: body, secrets: [secret], now: t), .malformedHeader)
        XCTAssertEqual(StripeSignature.verify(header: "t=12a,v1=00", body: body, secrets: [secret], now: t), .malformedHeader)
        XCTAssertEqual(StripeSignature.verify(header: "t=-5,v1=00", body: body, secrets: [secret], now: t), .malformedHeader)
        XCTAssertEqual(StripeSignature.verify(header: "t=\(t)", body: body, secrets: [secret], now: t), .noSignature)
        // A v0 (Stripe's test scheme) is not a v1; a v1 that is not 64 hex digits cannot match.
        let header = expectedHeader(body, secret: secret, t: t)
        XCTAssertEqual(StripeSignature.verify(header: header.replacingOccurrences(of: "v1=", with: "v0="), body: body, secrets: [secret], now: t), .noSignature)
        XCTAssertEqual(StripeSignature.verify(header: "t=\(t),v1=zz", body: body, secrets: [secret], now: t), .noSignature)
        XCTAssertEqual(StripeSignature.verify(header: header, body: body, secrets: [], now: t), .noSecret)
    }

    func testRejectsSignatureOfTheRightLengthButWrongBytes() {
        let header = "t=\(t),v1=" + String(repeating: "0", count: 64)
        XCTAssertEqual(StripeSignature.verify(header: header, body: body, secrets: [secret], now: t), .mismatch)
    }
}
