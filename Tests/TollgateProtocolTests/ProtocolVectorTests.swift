import Foundation
import NIOCore
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
