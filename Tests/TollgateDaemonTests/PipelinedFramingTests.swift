import Foundation
import TollgateClient
import TollgateEngine
import TollgateModel
import TollgateProtocol
import XCTest

/// The server cuts every frame of a read itself and decides consecutive CHECKs as one batch: these drive it with
/// several frames per write, frames split across writes and errors in the middle of a batch, and check that every
/// answer is the one a lone request would get, in request order.
final class PipelinedFramingTests: DaemonTestCase {
    var provisioned: Provisioned!

    override func setUp() async throws {
        try await super.setUp()
        try await harness.start()
        provisioned = try await harness.provision(plan: Plan(
            id: "pipelined", entitlements: ["read"], quotas: [QuotaRule(meter: "requests", period: .month, limit: 1000)],
            concurrency: [ConcurrencyRule(pool: .license, max: 2)]))
    }

    func check(_ id: UInt32, token: String? = nil, cost: UInt64 = 0, options: CheckOptions = []) -> [UInt8] {
        RawFrame.request(.check(CheckRequest(token: token ?? provisioned.secret, scopes: ["read"], meter: cost > 0 ? "requests" : "", cost: cost, options: options)), id: id)
    }

    /// The next `count` answers: request id, status and the decoded response.
    func answers(_ connection: TollgateConnection, _ count: Int) async throws -> [(id: UInt32, status: Status, response: Response)] {
        var result: [(UInt32, Status, Response)] = []
        for _ in 0..<count {
            let frame = try await connection.nextUnsolicitedFrame()
            XCTAssertTrue(frame.header.isResponse)
            result.append((frame.header.requestID, Status(rawValue: frame.header.status)!, try RawFrame.decode(frame)))
        }
        return result
    }

    func testSeveralFramesInOneWriteAreEachAnsweredInOrder() async throws {
        let connection = try await harness.api()
        let unknown = "tg_test_00000000000000000000000000000000000000000003waIaM"
        var bytes = check(1, cost: 1) + check(2, token: unknown) + RawFrame.request(.ping, id: 3) + check(4, cost: 1)
        bytes += RawFrame.header(length: 12, version: 9, opcode: Opcode.check.rawValue, requestID: 5)  // wrong version
        bytes += check(6) + RawFrame.request(.check(CheckRequest(token: provisioned.secret, scopes: ["write"])), id: 7)
        // A meter name longer than the wire allows is refused by the core before the engine, between two checks.
        let longMeter = String(repeating: "m", count: Limits.maxMeterName + 1)
        bytes += RawFrame.request(.check(CheckRequest(token: provisioned.secret, scopes: ["read"], meter: longMeter, cost: 1)), id: 8) + check(9)
        try await connection.sendRaw(bytes)
        let got = try await answers(connection, 9)
        XCTAssertEqual(got.map(\.id), [1, 2, 3, 4, 5, 6, 7, 8, 9])
        XCTAssertEqual(got.map(\.status), [.ok, .denied, .ok, .ok, .unsupportedVersion, .ok, .denied, .invalidArgument, .ok])
        guard case .check(let first) = got[0].response, case .check(let fourth) = got[3].response, case .check(let seventh) = got[6].response else {
            return XCTFail("CHECK answers expected: \(got)")
        }
        XCTAssertEqual(first.quota?.remaining, 999)
        XCTAssertEqual(fourth.quota?.remaining, 998, "each check of the batch is counted")
        XCTAssertEqual(seventh.reason, .insufficientScope, "a different scope list after a reused one is decoded anew")
        let stats = try await (try await harness.admin()).stats()
        XCTAssertEqual(stats.first { $0.key == "checks_total" }?.value, "6", "the refused one is not a check")
        XCTAssertEqual(stats.first { $0.key == "checks_denied" }?.value, "2")
    }

    func testAFrameSplitAcrossWritesIsServedWhenItsLastByteArrives() async throws {
        let connection = try await harness.api()
        let second = check(2, cost: 1)
        let third = check(3, cost: 1)
        // The first write ends inside the second frame's body: only the first is answered.
        try await connection.sendRaw(check(1, cost: 1) + Array(second.prefix(20)))
        let first = try await answers(connection, 1)
        XCTAssertEqual(first.map(\.id), [1])
        // The rest of the second frame and the first two bytes of the third's length prefix.
        try await connection.sendRaw(Array(second.dropFirst(20)) + Array(third.prefix(2)))
        let middle = try await answers(connection, 1)
        XCTAssertEqual(middle.map(\.id), [2])
        XCTAssertEqual(middle.map(\.status), [.ok])
        try await connection.sendRaw(Array(third.dropFirst(2)))
        let last = try await answers(connection, 1)
        XCTAssertEqual(last.map(\.id), [3])
        guard case .check(let result) = last[0].response else { return XCTFail("a CHECK answer expected") }
        XCTAssertEqual(result.quota?.remaining, 997)
    }

    func testAnOversizedLengthMidBatchAnswersTheFramesBeforeItThenCloses() async throws {
        let connection = try await harness.api()
        let bytes = check(1) + check(2) + RawFrame.header(length: 1 << 30, opcode: Opcode.check.rawValue, requestID: 3) + RawFrame.request(.ping, id: 4)
        try await connection.sendRaw(bytes)
        let got = try await answers(connection, 3)
        XCTAssertEqual(got.map(\.id), [1, 2, 0], "the framing error carries request id 0")
        XCTAssertEqual(got.map(\.status), [.ok, .ok, .tooLarge])
        try await connection.closeFuture.get()
        do {
            let extra = try await connection.nextUnsolicitedFrame()
            XCTFail("nothing after the oversized frame may be answered, got request \(extra.header.requestID)")
        } catch {}
    }

    func testBadMagicMidBatchAnswersTheFramesBeforeItThenCloses() async throws {
        let connection = try await harness.api()
        let bytes = check(1) + RawFrame.header(length: 12, magic: 0x4854, opcode: 2, requestID: 2) + check(3)
        try await connection.sendRaw(bytes)
        let got = try await answers(connection, 2)
        XCTAssertEqual(got.map(\.id), [1, 0])
        XCTAssertEqual(got.map(\.status), [.ok, .malformed])
        try await connection.closeFuture.get()
    }

    func testChecksBehindAPendingDurableAnswerKeepRequestOrder() async throws {
        let connection = try await harness.api()
        // The METER waits for the journal; the checks around it are decided at once but answered after it.
        let meter = RawFrame.request(.meter(MeterRequest(token: provisioned.secret, meter: "requests", quantity: 5, idempotencyKey: "pipelined-1")), id: 2)
        let bytes = check(1, cost: 1) + meter + check(3, cost: 1) + check(4, cost: 1) + RawFrame.request(.ping, id: 5) + check(6, token: "garbage")
        try await connection.sendRaw(bytes)
        let got = try await answers(connection, 6)
        XCTAssertEqual(got.map(\.id), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(got.map(\.status), [.ok, .ok, .ok, .ok, .ok, .denied])
        guard case .meter(let metered) = got[1].response, case .check(let last) = got[3].response else { return XCTFail("\(got)") }
        XCTAssertTrue(metered.allowed)
        XCTAssertEqual(last.quota?.remaining, 1000 - 1 - 5 - 2, "the checks were decided after the METER, in request order")
    }

    func testLeasesTakenByABatchAreReleasedWhenTheConnectionCloses() async throws {
        let holder = try await harness.api()
        try await holder.sendRaw(check(1, options: .lease) + check(2, options: .lease) + check(3, options: .lease))
        let got = try await answers(holder, 3)
        XCTAssertEqual(got.map(\.status), [.ok, .ok, .denied], "the license allows two leases at a time")
        let other = try await harness.api()
        let refused = try await other.check(CheckRequest(token: provisioned.secret, scopes: ["read"], options: .lease))
        XCTAssertEqual(refused.reason, .concurrencyLimited)
        await holder.close()
        // The release runs on the server when it sees the close; poll with a bound rather than sleep a guess.
        for _ in 0..<250 {
            if try await other.check(CheckRequest(token: provisioned.secret, scopes: ["read"], options: .lease)).allowed { return }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        XCTFail("the leases of the closed connection were never released")
    }
}
