import NIOCore
import TollgateModel
import XCTest

@testable import TollgateProtocol

/// The frame decoder, fed byte by byte and many frames per read (in the manner of NIO's
/// `ByteToMessageDecoderVerifier`), and every malformed input rejected before anything is allocated.
final class FrameDecoderTests: XCTestCase {
    let decoder = FrameDecoder(maxFrameSize: 1024)

    func frames(_ requests: [Request]) -> [UInt8] {
        var buffer = ByteBufferAllocator().buffer(capacity: 256)
        for (i, request) in requests.enumerated() { try! buffer.writeRequest(request, requestID: UInt32(i + 1)) }
        return Array(buffer.readableBytesView)
    }

    let sample: [Request] = [
        .ping,
        .check(CheckRequest(token: "tg_test_00000000000000000000000000000000000000000003waIaM", scopes: ["read", "write"], meter: "requests", cost: 2)),
        .meter(MeterRequest(token: "t", meter: "bytes", quantity: 9, idempotencyKey: "k")),
        .stats,
    ]

    func decodeAll(_ buffer: inout ByteBuffer) -> [FrameDecoder.Event] {
        var events: [FrameDecoder.Event] = []
        while let event = decoder.next(from: &buffer) { events.append(event) }
        return events
    }

    func testByteByByteAndAllAtOnceGiveTheSameFrames() throws {
        let bytes = frames(sample)
        var whole = ByteBufferAllocator().buffer(bytes: bytes)
        let atOnce = decodeAll(&whole)
        XCTAssertEqual(atOnce.count, sample.count)
        XCTAssertEqual(whole.readableBytes, 0)

        var trickle = ByteBufferAllocator().buffer(capacity: bytes.count)
        var trickled: [FrameDecoder.Event] = []
        for byte in bytes {
            trickle.writeInteger(byte)
            trickled += decodeAll(&trickle)
        }
        XCTAssertEqual(trickled, atOnce)

        for (event, request) in zip(atOnce, sample) {
            guard case .frame(let frame) = event else { return XCTFail("expected a frame") }
            XCTAssertEqual(try decodeRequest(opcode: Opcode(rawValue: frame.header.opcode)!, body: frame.body), request)
        }
    }

    func testOversizedLengthIsRejectedFromThePrefixAlone() {
        var buffer = ByteBufferAllocator().buffer(capacity: 4)
        buffer.writeInteger(UInt32(1025))
        guard case .framingError(let status, _, let close) = decoder.next(from: &buffer) else { return XCTFail() }
        XCTAssertEqual(status, .tooLarge)
        XCTAssertTrue(close)
        // Exactly the limit is accepted once the bytes are there.
        var limit = ByteBufferAllocator().buffer(capacity: 1028)
        limit.writeInteger(UInt32(1024))
        XCTAssertNil(decoder.next(from: &limit), "waits for the body")
        limit.writeInteger(FrameHeader.magic)
        limit.writeBytes([UInt8](repeating: 0, count: 1022))
        guard case .frame(let frame) = decoder.next(from: &limit) else { return XCTFail() }
        XCTAssertEqual(frame.body.readableBytes, 1012)
    }

    func testRejectsLengthShorterThanTheHeaderButKeepsFraming() {
        var buffer = ByteBufferAllocator().buffer(bytes: [0, 0, 0, 2, 0xAA, 0xBB] + frames([.ping]))
        guard case .framingError(.malformed, _, false) = decoder.next(from: &buffer) else { return XCTFail() }
        guard case .frame(let frame) = decoder.next(from: &buffer) else { return XCTFail("the next frame still decodes") }
        XCTAssertEqual(frame.header.opcode, Opcode.ping.rawValue)
    }

    func testRejectsBadMagicAndAsksToClose() {
        var bytes = frames([.ping])
        bytes[4] = 0x00
        var buffer = ByteBufferAllocator().buffer(bytes: bytes)
        guard case .framingError(.malformed, _, true) = decoder.next(from: &buffer) else { return XCTFail() }
    }

    func testRejectsTrailingBytesTruncatedBodiesBadUTF8AndUnknownCodes() throws {
        func body(_ request: Request) -> [UInt8] { Array(frames([request]).dropFirst(16)) }
        let check = body(.check(CheckRequest(token: "abc", scopes: ["x"], meter: "m", cost: 1)))
        let cases: [(Opcode, [UInt8], String)] = [
            (.check, check + [0], "trailing byte"),
            (.check, Array(check.dropLast()), "truncated"),
            (.check, [0x00, 0x02, 0xC3, 0x28] + Array(check.dropFirst(5)), "invalid UTF-8"),
            (.check, [0xFF, 0xFF] + Array(check.dropFirst(2)), "string longer than the body"),
            (.check, [0x00, 0x00, 0xFF, 0xFF], "list count beyond the body"),
            (.revoke, [9, 0, 0, 0, 0], "unknown revoke target"),
            (.ping, [1], "PING carries no body"),
            (.issue, body(.issue(IssueRequest(licenseID: "l", subject: "s"))).dropLast() + [7], "unknown environment"),
        ]
        for (opcode, bytes, label) in cases {
            XCTAssertThrowsError(try decodeRequest(opcode: opcode, body: ByteBuffer(bytes: bytes)), label) { error in
                XCTAssertEqual((error as? WireError)?.code, .malformed, label)
            }
        }
    }

    func testResponsesRoundTripAndDisagreeingStatusIsMalformed() throws {
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        let denied = Response.check(CheckResult(reason: .expired, tokenID: "tok_x", licenseID: "l", subject: "s"))
        buffer.writeResponse(denied, opcode: Opcode.check.rawValue, requestID: 3)
        guard case .frame(let frame) = decoder.next(from: &buffer) else { return XCTFail() }
        XCTAssertEqual(frame.header.status, Status.denied.rawValue)
        XCTAssertEqual(try decodeResponse(opcode: .check, status: .denied, body: frame.body), denied)
        XCTAssertThrowsError(try decodeResponse(opcode: .check, status: .ok, body: frame.body), "a deny body under status ok")
        XCTAssertThrowsError(try decodeResponse(opcode: .ping, status: .denied, body: ByteBuffer()), "denied exists for CHECK and METER only")
    }

    func testAnOversizedValueIsAnEncodingErrorNotACorruptStream() {
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        let long = String(repeating: "x", count: 70_000)
        XCTAssertThrowsError(try buffer.writeRequest(.licenseGet(licenseID: long), requestID: 1))
        XCTAssertEqual(buffer.readableBytes, 0, "nothing half-written")
        buffer.writeResponse(.stats([KeyValue("k", long)]), opcode: Opcode.stats.rawValue, requestID: 2)
        guard case .frame(let frame) = FrameDecoder(maxFrameSize: 1 << 20).next(from: &buffer) else { return XCTFail() }
        XCTAssertEqual(frame.header.status, Status.internal.rawValue, "an unencodable response becomes an internal error")
    }
    /// METER answers are written in one pass (`writeMeterFrame`): the same bytes as the generic frame writer, for
    /// allowed, denied and duplicate answers, with and without a quota, and an over-long id still becomes an
    /// `internal` error frame.
    func testMeterAnswersMatchTheGenericEncoder() throws {
        let results = [
            MeterResult(reason: .none, tokenID: "tok_0000000000000000000001", licenseID: "lic_acme"),
            MeterResult(reason: .none, tokenID: "t", licenseID: "", duplicate: true, quota: QuotaState(limit: .max, remaining: 0, resetAt: -1)),
            MeterResult(reason: .quotaExceeded, tokenID: "tök", licenseID: "licence-é", quota: QuotaState(limit: 10, remaining: 3, resetAt: 1_767_225_600_000)),
            MeterResult(reason: .unknownToken),
        ]
        for (index, result) in results.enumerated() {
            var fast = ByteBufferAllocator().buffer(capacity: 0)
            fast.writeResponse(.meter(result), opcode: Opcode.meter.rawValue, requestID: UInt32(index))
            var generic = ByteBufferAllocator().buffer(capacity: 0)
            try generic.writeFrame(header: FrameHeader(opcode: Opcode.meter.rawValue, flags: FrameHeader.responseFlag, status: Response.meter(result).status.rawValue, requestID: UInt32(index))) {
                try $0.writeResponseBody(.meter(result))
            }
            XCTAssertEqual(Array(fast.readableBytesView), Array(generic.readableBytesView), "\(result)")
            guard case .frame(let frame) = FrameDecoder(maxFrameSize: 1024).next(from: &fast) else { return XCTFail() }
            XCTAssertEqual(try decodeResponse(opcode: .meter, status: Status(rawValue: frame.header.status)!, body: frame.body), .meter(result))
        }
        var buffer = ByteBufferAllocator().buffer(capacity: 0)
        buffer.writeResponse(.meter(MeterResult(reason: .none, tokenID: String(repeating: "x", count: 70_000))), opcode: Opcode.meter.rawValue, requestID: 1)
        guard case .frame(let frame) = FrameDecoder(maxFrameSize: 1 << 20).next(from: &buffer) else { return XCTFail() }
        XCTAssertEqual(frame.header.status, Status.internal.rawValue)
    }
}
