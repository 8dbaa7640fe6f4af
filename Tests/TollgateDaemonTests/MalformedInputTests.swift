import Foundation
import TollgateClient
import TollgateModel
import TollgateProtocol
import XCTest

/// Hostile and broken frames get the right error, and the daemon keeps serving everyone else.
final class MalformedInputTests: DaemonTestCase {
    var provisioned: Provisioned!

    override func setUp() async throws {
        try await super.setUp()
        try await harness.start()
        provisioned = try await harness.provision()
    }

    /// Another connection is still served correctly.
    func assertDaemonStillServes(file: StaticString = #filePath, line: UInt = #line) async throws {
        let fresh = try await harness.api()
        let result = try await fresh.check(CheckRequest(token: provisioned.secret, scopes: ["read"]))
        XCTAssertTrue(result.allowed, file: file, line: line)
        await fresh.close()
    }

    func testOversizedLengthIsRefusedWithoutReadingTheBodyAndTheConnectionClosed() async throws {
        let connection = try await harness.api()
        // Declares 1 GiB; sends only the header. The daemon must answer at once, not wait for (or allocate) the body.
        try await connection.sendRaw(RawFrame.header(length: 1 << 30, opcode: Opcode.check.rawValue, requestID: 5))
        let frame = try await connection.nextUnsolicitedFrame()
        XCTAssertEqual(frame.header.status, Status.tooLarge.rawValue)
        XCTAssertEqual(frame.header.requestID, 0)
        XCTAssertTrue(frame.header.isResponse)
        try await connection.closeFuture.get()
        try await assertDaemonStillServes()
    }

    func testLengthShorterThanTheHeaderIsMalformedAndTheConnectionStaysUsable() async throws {
        let connection = try await harness.api()
        try await connection.sendRaw([0, 0, 0, 3, 0x54, 0x47, 1])
        let frame = try await connection.nextUnsolicitedFrame()
        XCTAssertEqual(frame.header.status, Status.malformed.rawValue)
        let check = try await connection.check(CheckRequest(token: provisioned.secret, scopes: ["read"]))
        XCTAssertTrue(check.allowed)
    }

    func testUnknownOpcodeIsAnsweredAndTheConnectionStaysUsable() async throws {
        let connection = try await harness.api()
        try await connection.sendRaw(RawFrame.header(length: 12, opcode: 0x7F, requestID: 77))
        let frame = try await connection.nextUnsolicitedFrame()
        XCTAssertEqual(frame.header.status, Status.unknownOpcode.rawValue)
        XCTAssertEqual(frame.header.requestID, 77)
        XCTAssertEqual(frame.header.opcode, 0x7F)
        try await connection.ping()
    }

    func testGarbageBodiesAreMalformedAndTheConnectionStaysUsable() async throws {
        let connection = try await harness.api()
        let bodies: [[UInt8]] = [
            [0xFF, 0xFF],  // a string length far beyond the body
            [0x00],  // ends inside the first length
            Array(RawFrame.request(.check(CheckRequest(token: "x")), id: 1).dropFirst(16)) + [0xAA],  // trailing byte
            [0x00, 0x02, 0xC3, 0x28, 0x00, 0x00, 0x00, 0x00] + [UInt8](repeating: 0, count: 8),  // invalid UTF-8
        ]
        for (index, body) in bodies.enumerated() {
            let id = UInt32(100 + index)
            try await connection.sendRaw(RawFrame.header(length: UInt32(12 + body.count), opcode: Opcode.check.rawValue, requestID: id) + body)
            let frame = try await connection.nextUnsolicitedFrame()
            XCTAssertEqual(frame.header.status, Status.malformed.rawValue, "body \(index)")
            XCTAssertEqual(frame.header.requestID, id)
        }
        try await connection.ping()
        try await assertDaemonStillServes()
    }

    func testBadMagicClosesTheConnection() async throws {
        let connection = try await harness.api()
        try await connection.sendRaw(RawFrame.header(length: 12, magic: 0x4854, opcode: 2, requestID: 1))
        let frame = try await connection.nextUnsolicitedFrame()
        XCTAssertEqual(frame.header.status, Status.malformed.rawValue)
        try await connection.closeFuture.get()
        try await assertDaemonStillServes()
    }

    func testWrongVersionAndFlagsAreRefusedButTheConnectionStaysUsable() async throws {
        let connection = try await harness.api()
        try await connection.sendRaw(RawFrame.header(length: 12, version: 9, opcode: 2, requestID: 1))
        let value1 = try await connection.nextUnsolicitedFrame().header.status
        XCTAssertEqual(value1, Status.unsupportedVersion.rawValue)
        try await connection.sendRaw(RawFrame.header(length: 12, opcode: 2, flags: 1, requestID: 2))
        let value2 = try await connection.nextUnsolicitedFrame().header.status
        XCTAssertEqual(value2, Status.malformed.rawValue)
        try await connection.ping()
    }

    func testAHalfSentFrameDoesNotBlockOtherConnections() async throws {
        let stalled = try await harness.api()
        let full = RawFrame.request(.check(CheckRequest(token: provisioned.secret)), id: 9)
        try await stalled.sendRaw(Array(full.prefix(20)))
        try await assertDaemonStillServes()
        // The stalled client finishes its frame later and is answered.
        try await stalled.sendRaw(Array(full.dropFirst(20)))
        let frame = try await stalled.nextUnsolicitedFrame()
        XCTAssertEqual(frame.header.requestID, 9)
        XCTAssertEqual(frame.header.status, Status.ok.rawValue)
    }

    func testAClientThatVanishesMidFrameLeavesTheDaemonServing() async throws {
        for _ in 0..<20 {
            let vanishing = try await harness.api()
            try await vanishing.sendRaw(RawFrame.header(length: 400, opcode: Opcode.check.rawValue, requestID: 1) + [0, 5])
            await vanishing.close()
        }
        try await assertDaemonStillServes()
    }

    func testRandomGarbageStreamsDoNotDisturbTheDaemon() async throws {
        var rng = SplitMix64(seed: 0x7011_6A7E)
        for round in 0..<40 {
            let connection = try await harness.api()
            var bytes = [UInt8](repeating: 0, count: Int(rng.next() % 300) + 1)
            for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: rng.next()) }
            if round % 2 == 0 {
                // Keep a valid header shape so the garbage reaches the body decoders.
                bytes = RawFrame.header(length: UInt32(12 + bytes.count), opcode: [0x10, 0x11, 0x12, 0x01][round % 4], requestID: UInt32(round)) + bytes
            }
            try await connection.sendRaw(bytes)
            await connection.close()
        }
        try await assertDaemonStillServes()
    }
}
