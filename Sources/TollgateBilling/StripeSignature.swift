import Crypto

/// Stripe's webhook signature (`Stripe-Signature: t=<unix seconds>,v1=<hex>,v1=<hex>,…`): each `v1` is the
/// HMAC-SHA256 of `"<t>.<raw body>"` keyed with an endpoint signing secret (the `whsec_…` string's UTF-8 bytes).
/// Pure: the time comes in as an argument, the secrets as bytes; nothing is logged.
public enum StripeSignature {
    /// Why a request's signature is refused. The raw value is what the 400 answer says (never a secret, never a
    /// computed signature).
    public enum Problem: String, Sendable, Hashable, Error {
        case missingHeader = "missing_signature"
        case malformedHeader = "malformed_signature"
        case noSignature = "no_v1_signature"
        case outsideTolerance = "timestamp_outside_tolerance"
        case mismatch = "signature_mismatch"
        case noSecret = "no_signing_secret"
    }

    /// Stripe's default tolerance: a signed request older (or further ahead) than this is refused as a replay.
    public static let defaultToleranceSeconds: Int64 = 300

    /// A parsed header: the timestamp and every `v1` signature (32 bytes each). Other schemes (`v0`) are ignored, as
    /// Stripe's own libraries do; a `v1` that is not 64 hexadecimal digits cannot match and is dropped.
    public struct Header: Sendable, Hashable {
        public var timestamp: Int64
        public var signatures: [[UInt8]]
    }

    public static func parse(_ header: String) -> Result<Header, Problem> {
        var timestamp: Int64?
        var signatures: [[UInt8]] = []
        for item in header.split(separator: ",", omittingEmptySubsequences: true) {
            guard let equals = item.firstIndex(of: "=") else { continue }
            let key = item[..<equals].trimmingCharacters(in: " ")
            let value = item[item.index(after: equals)...].trimmingCharacters(in: " ")
            switch key {
            case "t":
                // The first `t` counts; it must be plain decimal digits.
                guard timestamp == nil else { continue }
                guard !value.isEmpty, value.count <= 18, value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let t = Int64(value) else {
                    return .failure(.malformedHeader)
                }
                timestamp = t
            case "v1":
                if let bytes = hexBytes(value), bytes.count == 32 { signatures.append(bytes) }
            default:
                continue
            }
            // Bounded: a header is at most the HTTP limit, but there is no reason to try more than a few.
            if signatures.count > 16 { break }
        }
        guard let timestamp else { return .failure(.malformedHeader) }
        return .success(Header(timestamp: timestamp, signatures: signatures))
    }

    /// Verifies `header` for `body` against each of `secrets` (two during a secret's rotation) at `now` (Unix
    /// seconds). Nil: valid. The comparison is swift-crypto's constant-time check of an authentication code.
    public static func verify(header: String?, body: some Collection<UInt8>, secrets: [[UInt8]], now: Int64, tolerance: Int64 = defaultToleranceSeconds) -> Problem? {
        guard !secrets.isEmpty else { return .noSecret }
        guard let header, !header.isEmpty else { return .missingHeader }
        let parsed: Header
        switch parse(header) {
        case .success(let value): parsed = value
        case .failure(let problem): return problem
        }
        guard !parsed.signatures.isEmpty else { return .noSignature }
        // Both directions: a timestamp far ahead of the clock is as suspect as an old one.
        guard abs(now - parsed.timestamp) <= tolerance else { return .outsideTolerance }
        var payload = Array("\(parsed.timestamp).".utf8)
        payload.append(contentsOf: body)
        var valid = false
        for secret in secrets {
            let key = SymmetricKey(data: secret)
            for signature in parsed.signatures {
                // Every pair is checked (no early exit), so the time taken does not say which one matched.
                valid = HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: payload, using: key) || valid
            }
        }
        return valid ? nil : .mismatch
    }

    /// The header Stripe would send for `body` signed with `secret` at `timestamp` (tests, and `tollgate` helpers).
    public static func header(for body: some Collection<UInt8>, secret: [UInt8], timestamp: Int64) -> String {
        var payload = Array("\(timestamp).".utf8)
        payload.append(contentsOf: body)
        let code = HMAC<SHA256>.authenticationCode(for: payload, using: SymmetricKey(data: secret))
        return "t=\(timestamp),v1=" + code.map { byte in
            let digits = Array("0123456789abcdef".utf8)
            return String(decoding: [digits[Int(byte >> 4)], digits[Int(byte & 15)]], as: UTF8.self)
        }.joined()
    }

    static func hexBytes(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count / 2)
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x61...0x66: return c - 0x61 + 10
            case 0x41...0x46: return c - 0x41 + 10
            default: return nil
            }
        }
        var i = 0
        while i < utf8.count {
            guard let high = nibble(utf8[i]), let low = nibble(utf8[i + 1]) else { return nil }
            bytes.append(high << 4 | low)
            i += 2
        }
        return bytes
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: Character) -> String {
        var slice = self[...]
        while slice.first == set { slice = slice.dropFirst() }
        while slice.last == set { slice = slice.dropLast() }
        return String(slice)
    }
}
