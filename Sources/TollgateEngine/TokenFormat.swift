import TollgateModel

/// The shape of a token string: `tg_<env>_<43 base62 random><6 base62 checksum>` (`Protocol/PROTOCOL.md` 7.1).
///
/// The checksum lets a mistyped or truncated token be rejected before any lookup, and lets secret scanners
/// tell a real leaked token from a random string. Checking it is pure arithmetic on the bytes.
public enum TokenFormat {
    public static let prefix = "tg_"
    public static let randomLength = 43
    public static let checksumLength = 6
    /// A regular expression that matches every token (for secret scanners and the README).
    public static let pattern = "tg_(live|test)_[0-9A-Za-z]{49}"

    static let alphabet: [UInt8] = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    /// Makes a new token string from 32 random bytes.
    public static func make(environment: TokenEnvironment, randomBytes: [UInt8]) -> String {
        precondition(randomBytes.count == 32, "a token carries 256 bits of randomness")
        var body = Array("\(prefix)\(environment.name)_".utf8)
        body += base62(randomBytes, width: randomLength)
        let checksum = CRC32.checksum(body)
        body += base62(withUnsafeBytes(of: checksum.bigEndian) { Array($0) }, width: checksumLength)
        return String(decoding: body, as: UTF8.self)
    }

    /// The environment of a well-formed token, or nil when `token` is not a well-formed token
    /// (wrong prefix, environment, length, alphabet or checksum).
    public static func validate(_ token: String) -> TokenEnvironment? {
        var token = token
        return token.withUTF8 { validate(utf8: $0) }
    }

    public static func validate(utf8 bytes: UnsafeBufferPointer<UInt8>) -> TokenEnvironment? {
        // "tg_" + "live"/"test" + "_" + 49 = 57 bytes.
        guard bytes.count == 57,
            bytes[0] == UInt8(ascii: "t"), bytes[1] == UInt8(ascii: "g"), bytes[2] == UInt8(ascii: "_"),
            bytes[7] == UInt8(ascii: "_")
        else { return nil }
        let environment: TokenEnvironment
        switch (bytes[3], bytes[4], bytes[5], bytes[6]) {
        case (UInt8(ascii: "l"), UInt8(ascii: "i"), UInt8(ascii: "v"), UInt8(ascii: "e")): environment = .live
        case (UInt8(ascii: "t"), UInt8(ascii: "e"), UInt8(ascii: "s"), UInt8(ascii: "t")): environment = .test
        default: return nil
        }
        // Every character through the digit table, its marks ORed (no branch per character; ~500 instructions
        // fewer per CHECK than three range tests a character, callgrind, issue 19).
        let (marks, checksum) = digitTable.withUnsafeBufferPointer { table -> (UInt8, UInt64) in
            var marks: UInt8 = 0
            for i in 8..<(57 - checksumLength) { marks |= table[Int(bytes[i])] }
            var checksum: UInt64 = 0
            for i in (57 - checksumLength)..<57 {
                let digit = table[Int(bytes[i])]
                marks |= digit
                checksum = checksum &* 62 &+ UInt64(digit & 0x3F)
            }
            return (marks, checksum)
        }
        guard marks & notADigit == 0 else { return nil }
        let computed = CRC32.checksum(UnsafeBufferPointer(rebasing: bytes[0..<(57 - checksumLength)]))
        guard checksum == UInt64(computed) else { return nil }
        return environment
    }

    /// Marks a byte that is not a base62 digit in `digitTable` (digits are below 62, so the bit is free).
    static let notADigit: UInt8 = 0x80
    /// Each byte's base62 value, or `notADigit`.
    static let digitTable: [UInt8] = (0...255).map { digitValue(UInt8($0)) ?? notADigit }

    @inline(__always)
    static func digitValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): return c - UInt8(ascii: "A") + 10
        case UInt8(ascii: "a")...UInt8(ascii: "z"): return c - UInt8(ascii: "a") + 36
        default: return nil
        }
    }

    /// Writes a big-endian unsigned integer held in `bytes` in base62, most significant digit first,
    /// left-padded with `0` to `width` digits.
    static func base62(_ bytes: [UInt8], width: Int) -> [UInt8] {
        var number = bytes
        var digits: [UInt8] = []
        digits.reserveCapacity(width)
        while number.contains(where: { $0 != 0 }) {
            var remainder = 0
            for i in number.indices {
                let value = remainder * 256 + Int(number[i])
                number[i] = UInt8(value / 62)
                remainder = value % 62
            }
            digits.append(alphabet[remainder])
        }
        precondition(digits.count <= width, "the number does not fit in \(width) base62 digits")
        while digits.count < width { digits.append(UInt8(ascii: "0")) }
        return digits.reversed()
    }

    /// Random base62 text of `length` characters, for public identifiers.
    public static func randomIdentifier<R: RandomNumberGenerator>(length: Int, using rng: inout R) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(length)
        for _ in 0..<length { bytes.append(alphabet[Int(rng.next(upperBound: UInt8(62)))]) }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// CRC-32 as in IEEE 802.3 and zlib (reflected polynomial 0xEDB88320), used for the token checksum.
public enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    public static func checksum<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        table.withUnsafeBufferPointer { table in
            for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        }
        return crc ^ 0xFFFF_FFFF
    }
}
