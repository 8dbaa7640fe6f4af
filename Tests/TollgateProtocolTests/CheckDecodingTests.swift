import NIOCore
import TollgateModel
import TollgateProtocol
import XCTest

/// `decodeCheckRequest`, the server's CHECK decoder, shares the previous CHECK's lists when the wire repeats them:
/// it must decode, and refuse, exactly what `decodeRequest` does, whatever the previous request was.
final class CheckDecodingTests: XCTestCase {
    func body(_ request: CheckRequest) -> ByteBuffer {
        var frame = ByteBufferAllocator().buffer(capacity: 128)
        try! frame.writeRequest(.check(request), requestID: 1)
        return frame.getSlice(at: 4 + FrameHeader.size, length: frame.readableBytes - 4 - FrameHeader.size)!
    }

    let token = "tg_test_00000000000000000000000000000000000000000003waIaM"
    lazy var previous = CheckRequest(token: "", scopes: ["read", "write"], meter: "requests.over.fifteen.bytes", features: ["sso"])

    func testTheSameAnswerAsDecodeRequestWhateverThePreviousLists() throws {
        let requests = [
            CheckRequest(token: token, scopes: ["read", "write"], meter: "requests.over.fifteen.bytes", cost: 3, features: ["sso"]),
            CheckRequest(token: token, scopes: ["read"], meter: "requests.over.fifteen.bytes", cost: 1, features: ["sso"]),
            CheckRequest(token: token, scopes: ["read", "writ"], meter: "requests.over.fifteen.byteZ", features: ["ssx"]),
            CheckRequest(token: token, scopes: ["read", "write", "admin"], meter: "", features: []),
            CheckRequest(token: token, scopes: [], meter: "requests", features: ["sso", "sso"], options: .explain),
            CheckRequest(token: "", scopes: ["réad", "write"], meter: "requests.over.fifteen.bytes", features: ["sso"]),
        ]
        for request in requests {
            for reuse in [previous, CheckRequest(token: ""), request] {
                XCTAssertEqual(try decodeCheckRequest(body: body(request), reusingListsOf: reuse), request)
            }
        }
    }

    func testRepeatedListsAreTheSameStorage() throws {
        let request = CheckRequest(token: token, scopes: previous.scopes, meter: previous.meter, features: previous.features)
        let decoded = try decodeCheckRequest(body: body(request), reusingListsOf: previous)
        XCTAssertEqual(decoded, request)
        decoded.scopes.withUnsafeBufferPointer { a in
            previous.scopes.withUnsafeBufferPointer { b in XCTAssertEqual(a.baseAddress, b.baseAddress, "the scope list is shared, not allocated") }
        }
    }

    func testMalformedBodiesAreRefusedWithTheSameErrorAsDecodeRequest() throws {
        let good = Array(body(CheckRequest(token: token, scopes: ["read", "write"], meter: "requests.over.fifteen.bytes", features: ["sso"])).readableBytesView)
        var cases: [[UInt8]] = [[], [0x00], good + [0xAA], Array(good.dropLast())]
        // Every prefix of a body whose lists match the previous ones: the shortcut must not read past the end.
        cases += (0..<good.count).map { Array(good.prefix($0)) }
        // The scope count says 3 where the previous list has 2; a scope length beyond the body.
        var wrongCount = good
        wrongCount[2 + token.utf8.count + 1] = 3
        var longScope = good
        longScope[2 + token.utf8.count + 2 + 1] = 0xFF
        cases += [wrongCount, longScope]
        for bytes in cases {
            let buffer = ByteBufferAllocator().buffer(bytes: bytes)
            var expected: String?
            do { _ = try decodeRequest(opcode: .check, body: buffer) } catch { expected = "\(error)" }
            var got: String?
            do { _ = try decodeCheckRequest(body: buffer, reusingListsOf: previous) } catch { got = "\(error)" }
            XCTAssertEqual(got, expected, "body \(bytes)")
        }
    }
}
