import Foundation
import NIOCore
import TollgateEngine
import TollgateModel
import TollgateProtocol
import XCTest

/// Checks the golden vectors in `Protocol/vectors/` against the codec, both ways. Set
/// `TOLLGATE_WRITE_VECTORS=1` to (re)write them after a deliberate change to the protocol.
final class ProtocolVectorTests: XCTestCase {
    static let vectorsDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Protocol/vectors")

    func testVectorsMatchTheCodec() throws {
        if ProcessInfo.processInfo.environment["TOLLGATE_WRITE_VECTORS"] == "1" { try writeVectors() }
        for vector in ProtocolVectors.all {
            let url = Self.vectorsDirectory.appendingPathComponent("\(vector.name).hex")
            let fileBytes = try Self.parseHex(String(contentsOf: url, encoding: .utf8))
            XCTAssertEqual(fileBytes, vector.bytes, "encoding of \(vector.name) differs from its golden bytes")

            var buffer = ByteBufferAllocator().buffer(bytes: fileBytes)
            guard case .frame(let frame) = FrameDecoder(maxFrameSize: 65536).next(from: &buffer) else {
                return XCTFail("\(vector.name) does not decode as a frame")
            }
            XCTAssertEqual(buffer.readableBytes, 0)
            XCTAssertEqual(frame.header.requestID, vector.requestID)
            switch vector.message {
            case .request(let request):
                XCTAssertFalse(frame.header.isResponse)
                XCTAssertEqual(try decodeRequest(opcode: Opcode(rawValue: frame.header.opcode)!, body: frame.body), request, vector.name)
            case .response(let response, let opcode):
                XCTAssertTrue(frame.header.isResponse)
                XCTAssertEqual(frame.header.opcode, opcode)
                XCTAssertEqual(frame.header.status, response.status.rawValue)
                if let known = Opcode(rawValue: opcode) {
                    XCTAssertEqual(try decodeResponse(opcode: known, status: Status(rawValue: frame.header.status)!, body: frame.body), response, vector.name)
                }
            }
        }
    }

    func testVectorIndexListsEveryVector() throws {
        let data = try Data(contentsOf: Self.vectorsDirectory.appendingPathComponent("vectors.json"))
        let index = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        XCTAssertEqual(index.compactMap { $0["name"] as? String }, ProtocolVectors.all.map(\.name))
        let requestOpcodes = Set(ProtocolVectors.all.compactMap { v -> Opcode? in
            if case .request(let r) = v.message { return r.opcode } else { return nil }
        })
        XCTAssertEqual(requestOpcodes, Set(Opcode.allCases), "every opcode has a request vector")
    }

    /// Every token secret a vector carries, in its bytes or in its listed fields, has a valid CRC-32 checksum by
    /// 7.1 (the engine's `TokenFormat`, the daemon's own check): a vector whose secret a daemon would answer
    /// `malformed_token` teaches clients a wrong token (issue 13 §6: `derive.response.allow` carried one).
    func testEveryTokenSecretInTheVectorsHasAValidChecksum() throws {
        var checked = 0
        for vector in ProtocolVectors.all {
            let fromBytes = Self.secrets(in: vector.bytes)
            let fromFields = Self.secrets(inFields: vector.fields)
            XCTAssertEqual(Set(fromBytes), Set(fromFields), "\(vector.name): the secrets in its bytes and in its fields differ")
            for secret in fromBytes + fromFields {
                XCTAssertNotNil(TokenFormat.validate(secret), "\(vector.name) carries \(secret), whose checksum is wrong")
                checked += 1
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 8, "the vectors carry secrets in check, meter, derive, issue and rotate messages")
        // The check can fail: the child secret the derive vector used to carry is refused.
        XCTAssertNil(TokenFormat.validate("tg_test_11111111111111111111111111111111111111111113Sfyy2"))
    }

    /// Substrings shaped like a token (`tg_live_` or `tg_test_` and 49 base62 characters).
    static func secrets(in bytes: [UInt8]) -> [String] {
        let text = String(decoding: bytes.map { $0 < 0x80 ? $0 : 0x20 }, as: UTF8.self)
        return secrets(inText: text)
    }

    static func secrets(inText text: String) -> [String] {
        let regex = try! NSRegularExpression(pattern: TokenFormat.pattern)
        return regex.matches(in: text, range: NSRange(text.startIndex..., in: text)).map { String(text[Range($0.range, in: text)!]) }
    }

    static func secrets(inFields value: Any) -> [String] {
        switch value {
        case let text as String: return secrets(inText: text)
        case let list as [Any]: return list.flatMap { secrets(inFields: $0) }
        case let object as [String: Any]: return object.values.flatMap { secrets(inFields: $0) }
        default: return []
        }
    }

    /// 6.10: the keys that are always present are in the STATS vector, so a client written from it expects them.
    func testTheStatsVectorHoldsEveryAlwaysPresentKey() throws {
        let vector = try XCTUnwrap(ProtocolVectors.all.first { $0.name == "stats.response" })
        guard case .response(.stats(let pairs), _) = vector.message else { return XCTFail("not a STATS answer") }
        XCTAssertEqual(Set(pairs.map(\.key)), [
            "tokens", "tokens_active", "licenses", "plans", "checks_total", "checks_denied", "meters_total", "journal_last_seq", "journal_repairs", "uptime_seconds",
        ])
        for pair in pairs { XCTAssertNotNil(UInt64(pair.value), "\(pair.key) is a decimal number") }
    }

    /// Every opcode has a response vector, not only a request vector: a body that is only implied is a body two
    /// clients can disagree on.
    func testEveryOpcodeHasAResponseVector() {
        let answered = Set(ProtocolVectors.all.compactMap { v -> UInt8? in
            if case .response(let response, let opcode) = v.message, response.status == .ok || response.status == .denied { return opcode }
            return nil
        })
        for opcode in Opcode.allCases {
            XCTAssertTrue(answered.contains(opcode.rawValue), "\(opcode.name) has no response vector")
        }
    }

    static func parseHex(_ text: String) throws -> [UInt8] {
        try text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map { token in
            guard let byte = UInt8(token, radix: 16) else { throw WireError(.malformed, "bad hex \(token)") }
            return byte
        }
    }

    private func writeVectors() throws {
        var index: [[String: Any]] = []
        for vector in ProtocolVectors.all {
            let bytes = vector.bytes
            let lines = stride(from: 0, to: bytes.count, by: 16).map { start in
                bytes[start..<min(start + 16, bytes.count)].map { String(format: "%02x", $0) }.joined(separator: " ")
            }
            try (lines.joined(separator: "\n") + "\n").write(
                to: Self.vectorsDirectory.appendingPathComponent("\(vector.name).hex"), atomically: true, encoding: .utf8)
            var entry: [String: Any] = ["name": vector.name, "file": "\(vector.name).hex", "request_id": vector.requestID, "fields": vector.fields]
            switch vector.message {
            case .request(let request):
                entry["direction"] = "request"
                entry["opcode"] = Int(request.opcode.rawValue)
            case .response(let response, let opcode):
                entry["direction"] = "response"
                entry["opcode"] = Int(opcode)
                entry["status"] = Int(response.status.rawValue)
            }
            index.append(entry)
        }
        let json = try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys])
        try json.write(to: Self.vectorsDirectory.appendingPathComponent("vectors.json"))
    }
}
