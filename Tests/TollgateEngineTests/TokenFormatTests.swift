import TollgateModel
import TollgateTestSupport
import XCTest

@testable import TollgateEngine

/// `Protocol/PROTOCOL.md` 7.1: `tg_` + env + `_` + 43 base62 random + 6 base62 CRC-32 checksum.
final class TokenFormatTests: XCTestCase {
    /// The spec's sample: the token whose 256 random bits are all zero.
    static let specSample = "tg_test_00000000000000000000000000000000000000000003waIaM"
    static let base62Digits = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

    // MARK: - An implementation independent of the engine's

    /// Bitwise CRC-32 (reflected 0xEDB88320, init and final xor 0xFFFFFFFF), as zlib's `crc32`.
    static func zlibCRC32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = (crc & 1) == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    static func base62(_ value: UInt32, width: Int) -> String {
        var value = value
        var digits: [Character] = []
        while value > 0 {
            digits.append(base62Digits[Int(value % 62)])
            value /= 62
        }
        while digits.count < width { digits.append("0") }
        return String(digits.reversed())
    }

    static func withChecksum(_ body: String) -> String {
        body + base62(zlibCRC32(Array(body.utf8)), width: 6)
    }

    // MARK: - Tests

    func testChecksumOfTheSpecSampleIsZlibCRC32InBase62() {
        // Known zlib vector, to trust the reference implementation itself.
        XCTAssertEqual(Self.zlibCRC32(Array("123456789".utf8)), 0xCBF4_3926)
        let body = "tg_test_" + String(repeating: "0", count: 43)
        let crc = Self.zlibCRC32(Array(body.utf8))
        XCTAssertEqual(crc, 0xD76A_7136)  // zlib.crc32(b"tg_test_" + b"0" * 43)
        XCTAssertEqual(Self.base62(crc, width: 6), "3waIaM")
        XCTAssertEqual(body + "3waIaM", Self.specSample)
        XCTAssertEqual(CRC32.checksum(Array(body.utf8)), crc)
    }

    func testSpecSampleValidatesAndIsTheAllZeroToken() {
        XCTAssertEqual(TokenFormat.validate(Self.specSample), .test)
        XCTAssertEqual(TokenFormat.make(environment: .test, randomBytes: [UInt8](repeating: 0, count: 32)), Self.specSample)
        XCTAssertEqual(
            TokenFormat.make(environment: .live, randomBytes: [UInt8](repeating: 0, count: 32)),
            Self.withChecksum("tg_live_" + String(repeating: "0", count: 43)))
    }

    func testAllOnesRandomnessFitsIn43Digits() {
        // 2^256 - 1 in base62 (computed with Python) is exactly 43 digits.
        let token = TokenFormat.make(environment: .live, randomBytes: [UInt8](repeating: 0xFF, count: 32))
        XCTAssertEqual(token, Self.withChecksum("tg_live_yhjskwdA6OZ1AL1YmHWZWm8LLG7HjnuCA2j5rOw8Xp1"))
        XCTAssertEqual(TokenFormat.validate(token), .live)
    }

    func testMadeTokensMatchThePatternValidateAndCarryTheirChecksum() throws {
        let regex = try Regex("tg_(live|test)_[0-9A-Za-z]{49}")
        XCTAssertEqual(TokenFormat.pattern, "tg_(live|test)_[0-9A-Za-z]{49}")
        var rng = SplitMix64(seed: 7)
        var seen = Set<String>()
        for i in 0..<300 {
            let environment: TokenEnvironment = i.isMultiple(of: 2) ? .live : .test
            let token = TokenFormat.make(environment: environment, randomBytes: rng.bytes(32))
            XCTAssertNotNil(token.wholeMatch(of: regex), token)
            XCTAssertTrue(token.hasPrefix("tg_\(environment.name)_"))
            XCTAssertEqual(TokenFormat.validate(token), environment)
            XCTAssertEqual(token, Self.withChecksum(String(token.prefix(51))), "checksum is CRC-32 of the first 51 characters")
            seen.insert(token)
        }
        XCTAssertEqual(seen.count, 300, "different randomness gives different tokens")
    }

    func testRejectsEverySingleCharacterSubstitution() {
        var rng = SplitMix64(seed: 11)
        let tokens = [
            Self.specSample,
            TokenFormat.make(environment: .live, randomBytes: rng.bytes(32)),
            TokenFormat.make(environment: .test, randomBytes: rng.bytes(32)),
        ]
        let replacements = Self.base62Digits + ["_", "-", " ", "+", "/", "=", "\u{0}", "é", "ü"]
        var tried = 0
        for token in tokens {
            XCTAssertNotNil(TokenFormat.validate(token))
            let characters = Array(token)
            for position in characters.indices {
                for replacement in replacements where replacement != characters[position] {
                    var mutated = characters
                    mutated[position] = replacement
                    let candidate = String(mutated)
                    tried += 1
                    if TokenFormat.validate(candidate) != nil {
                        XCTFail("accepted \(candidate) (position \(position) of \(token))")
                    }
                }
            }
        }
        XCTAssertGreaterThan(tried, 3 * 57 * 60)
    }

    func testRejectsEveryOtherByteAtEveryPosition() {
        // Every byte value, not only characters: the digit table must refuse each non-digit byte (above 0x7F
        // included) wherever it stands, and a different digit fails the checksum.
        var rng = SplitMix64(seed: 17)
        let token = Array(TokenFormat.make(environment: .live, randomBytes: rng.bytes(32)).utf8)
        XCTAssertEqual(token.withUnsafeBufferPointer { TokenFormat.validate(utf8: $0) }, .live)
        for position in token.indices {
            for byte in UInt8.min...UInt8.max where byte != token[position] {
                var mutated = token
                mutated[position] = byte
                if mutated.withUnsafeBufferPointer({ TokenFormat.validate(utf8: $0) }) != nil {
                    XCTFail("accepted byte \(byte) at position \(position)")
                }
            }
        }
    }

    func testRejectsEveryAdjacentTransposition() {
        // Swapping two neighbours is a burst of at most 16 bits, which CRC-32 always detects.
        var rng = SplitMix64(seed: 13)
        for _ in 0..<5 {
            let characters = Array(TokenFormat.make(environment: .live, randomBytes: rng.bytes(32)))
            for i in 8..<56 where characters[i] != characters[i + 1] {
                var mutated = characters
                mutated.swapAt(i, i + 1)
                XCTAssertNil(TokenFormat.validate(String(mutated)), "swap at \(i)")
            }
        }
    }

    func testRejectsWrongPrefixEnvironmentLengthAndAlphabet() {
        let zeros = String(repeating: "0", count: 43)
        let valid = Self.specSample
        let rejected: [(String, String)] = [
            ("", "empty"),
            ("tg_test_", "prefix only"),
            (String(valid.dropLast()), "one character short"),
            (valid + "0", "one character long"),
            (" " + valid, "leading space"),
            (valid + "\n", "trailing newline"),
            (String(valid.dropFirst()) + "0", "shifted"),
            ("TG_test_" + valid.dropFirst(8), "upper-case prefix"),
            ("tg_TEST_" + valid.dropFirst(8), "upper-case environment"),
            ("tg-test_" + valid.dropFirst(8), "dash instead of underscore"),
            ("tg_test-" + valid.dropFirst(8), "dash after the environment"),
            // Shapes that are wrong even though their checksum is right for what precedes it.
            (Self.withChecksum("tg_prod_" + zeros), "unknown environment"),
            (Self.withChecksum("tg_TEST_" + zeros), "upper-case environment, matching checksum"),
            (Self.withChecksum("tk_test_" + zeros), "wrong prefix, matching checksum"),
            (Self.withChecksum("tg_test_" + String(zeros.dropLast())), "42 random characters"),
            (Self.withChecksum("tg_test_" + zeros + "0"), "44 random characters"),
            (Self.withChecksum("tg_test_" + String(zeros.dropLast()) + "-"), "non-base62 random character"),
            ("tg_test_" + zeros + "3waIa", "five checksum digits"),
            ("tg_test_" + zeros + "3WAIAM", "checksum in the wrong case"),
            ("tg_test_" + zeros + "3waIaN", "checksum off by one"),
            ("tg_live_" + zeros + "3waIaM", "checksum of the other environment"),
        ]
        for (token, why) in rejected {
            XCTAssertNil(TokenFormat.validate(token), why)
        }
        // The checksum of "tg_live_" + zeros is a different, valid one.
        XCTAssertEqual(TokenFormat.validate(Self.withChecksum("tg_live_" + zeros)), .live)
    }

    func testRandomIdentifierIsBase62OfTheRequestedLength() {
        var rng = SplitMix64(seed: 3)
        let allowed = Set(Self.base62Digits)
        var seen = Set<Character>()
        for _ in 0..<200 {
            let id = TokenFormat.randomIdentifier(length: 22, using: &rng)
            XCTAssertEqual(id.count, 22)
            XCTAssertTrue(id.allSatisfy { allowed.contains($0) }, id)
            seen.formUnion(id)
        }
        XCTAssertEqual(seen, allowed, "every base62 digit shows up in 4400 draws")
    }
}
