import Crypto
import TollgateModel
import TollgateTestSupport
import XCTest

@testable import TollgateEngine

/// `LicensingState.hash(utf8:)` calls BoringSSL's one-shot SHA-256 directly (Sources/CSHA256): it must give exactly
/// what swift-crypto's `SHA256` gives, and the published test vectors.
final class TokenHashTests: XCTestCase {
    private func words(_ digest: some Sequence<UInt8>) -> TokenHash {
        let bytes = Array(digest)
        func word(_ at: Int) -> UInt64 { bytes[at..<(at + 8)].reduce(0) { $0 << 8 | UInt64($1) } }
        return TokenHash(word(0), word(8), word(16), word(24))
    }

    private func hash(_ bytes: [UInt8]) -> TokenHash {
        bytes.withUnsafeBufferPointer { LicensingState.hash(utf8: $0) }
    }

    func testFIPS180Vectors() {
        // FIPS 180-2 appendix B (one block, two blocks) and the empty message.
        XCTAssertEqual(hash([]), TokenHash(0xe3b0_c442_98fc_1c14, 0x9afb_f4c8_996f_b924, 0x27ae_41e4_649b_934c, 0xa495_991b_7852_b855))
        XCTAssertEqual(hash(Array("abc".utf8)), TokenHash(0xba78_16bf_8f01_cfea, 0x4141_40de_5dae_2223, 0xb003_61a3_9617_7a9c, 0xb410_ff61_f200_15ad))
        XCTAssertEqual(
            hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
            TokenHash(0x248d_6a61_d206_38b8, 0xe5c0_2693_0c3e_6039, 0xa33c_e459_64ff_2167, 0xf6ec_edd4_19db_06c1))
    }

    func testSameAsSwiftCryptoForEveryLengthUpToFourBlocks() {
        var rng = SplitMix64(seed: 19)
        for length in 0...256 {
            let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            XCTAssertEqual(hash(bytes), words(SHA256.hash(data: bytes)), "length \(length)")
        }
    }

    func testTokenStringHashIsTheHashOfItsBytes() {
        let token = TokenFormat.make(environment: .live, randomBytes: [UInt8](repeating: 7, count: 32))
        XCTAssertEqual(LicensingState.hash(of: token), words(SHA256.hash(data: Array(token.utf8))))
    }
}
