import Foundation
import Logging
import NIOCore
import NIOEmbedded
import TollgateCore
import TollgateEngine
import TollgateJournal
import TollgateModel
import TollgateProtocol
@testable import TollgateServer
import XCTest

/// The connection handler on an `EmbeddedChannel`: frames cut from any split of the stream, answers in order,
/// and the idle and stalled-frame timeouts driven by advancing the embedded loop's clock. Nothing here waits.
final class ConnectionHandlerTests: XCTestCase {
    private var directory: String!
    private var core: ApplicationCore!

    override func setUp() async throws {
        directory = NSTemporaryDirectory() + "tollgate-server-tests-" + UUID().uuidString
        let (journal, recovered) = try Journal.open(directory: directory, options: JournalOptions(fsync: false))
        core = ApplicationCore(
            state: try ApplicationCore.rebuildState(from: recovered), journal: journal, recovery: recovered.report,
            clock: SystemWallClock(), options: .init(), logger: Logger(label: "server-tests") { _ in SwiftLogNoOpLogHandler() })
    }

    override func tearDown() async throws {
        try? core.currentJournal.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func makeChannel(limits: ConnectionLimits = ConnectionLimits()) throws -> EmbeddedChannel {
        let registry = ConnectionRegistry(policy: AccessPolicy(api: .anyone, admin: .anyone), limits: limits)
        let handler = RequestChannelHandler(
            core: core, role: .api, registry: registry, logger: Logger(label: "h") { _ in SwiftLogNoOpLogHandler() }, maxFrameSize: 65536)
        let channel = EmbeddedChannel(handler: handler)
        try channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/unused")).wait()
        return channel
    }

    private func frame(_ request: Request, id: UInt32) throws -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        try buffer.writeRequest(request, requestID: id)
        return buffer
    }

    /// Every answer written so far, decoded: (request id, response).
    private func answers(_ channel: EmbeddedChannel) throws -> [(UInt32, Response)] {
        var out: [(UInt32, Response)] = []
        var stream = ByteBufferAllocator().buffer(capacity: 256)
        while var chunk = try channel.readOutbound(as: ByteBuffer.self) { stream.writeBuffer(&chunk) }
        let decoder = FrameDecoder(maxFrameSize: 1 << 20)
        while let event = decoder.next(from: &stream) {
            guard case .frame(let f) = event else { throw TestError("not a frame") }
            let status = Status(rawValue: f.header.status)!
            // A framing error is answered with opcode 0, which no request has: its body is the message alone.
            guard let opcode = Opcode(rawValue: f.header.opcode) else {
                out.append((f.header.requestID, .error(status, "")))
                continue
            }
            out.append((f.header.requestID, try decodeResponse(opcode: opcode, status: status, body: f.body)))
        }
        return out
    }

    struct TestError: Error { var text: String; init(_ text: String) { self.text = text } }

    func testAConnectionSilentForTheIdleTimeoutIsClosedAndActivityDefersIt() throws {
        let channel = try makeChannel(limits: ConnectionLimits(idleTimeoutMilliseconds: 1_000))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(600))
        try channel.writeInbound(try frame(.ping, id: 1))
        XCTAssertEqual(try answers(channel).map(\.0), [1])
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(999))
        XCTAssertTrue(channel.isActive, "999 ms after the last frame the connection is not idle yet")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        XCTAssertFalse(channel.isActive, "1 000 ms after the last frame it is closed")
    }

    func testAStalledHalfFrameClosesTheConnectionAfterTheFrameTimeout() throws {
        let channel = try makeChannel(limits: ConnectionLimits(idleTimeoutMilliseconds: 0, frameTimeoutMilliseconds: 500))
        var ping = try frame(.ping, id: 7)
        let head = ping.readSlice(length: 5)!
        try channel.writeInbound(head)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(499))
        XCTAssertTrue(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        XCTAssertFalse(channel.isActive, "a frame begun and not finished within the timeout closes the connection")
        XCTAssertTrue(try answers(channel).isEmpty, "closed silently")
    }

    func testAFrameFinishedInTimeStopsTheFrameTimer() throws {
        let channel = try makeChannel(limits: ConnectionLimits(idleTimeoutMilliseconds: 0, frameTimeoutMilliseconds: 500))
        var ping = try frame(.ping, id: 7)
        try channel.writeInbound(ping.readSlice(length: 5)!)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(400))
        try channel.writeInbound(ping)
        channel.embeddedEventLoop.advanceTime(by: .seconds(60))
        XCTAssertTrue(channel.isActive)
        XCTAssertEqual(try answers(channel).map(\.0), [7])
    }

    /// The same stream cut byte by byte or sent whole gives the same answers, in request order.
    func testFramesAreCutAlikeFromAnySplitOfTheStream() throws {
        var stream = ByteBufferAllocator().buffer(capacity: 512)
        let requests: [Request] = [
            .ping, .check(CheckRequest(token: "tg_live_notatoken")), .hello(HelloRequest(minVersion: 1, maxVersion: 1, clientName: "test")), .stats, .ping,
        ]
        for (index, request) in requests.enumerated() { try stream.writeRequest(request, requestID: UInt32(index + 1)) }

        let whole = try makeChannel()
        try whole.writeInbound(stream)
        let wholeAnswers = try answers(whole)

        let bytewise = try makeChannel()
        var copy = stream
        while let byte = copy.readSlice(length: 1) { try bytewise.writeInbound(byte) }
        let bytewiseAnswers = try answers(bytewise)

        XCTAssertEqual(wholeAnswers.map(\.0), [1, 2, 3, 4, 5])
        XCTAssertEqual(bytewiseAnswers.map(\.0), [1, 2, 3, 4, 5])
        XCTAssertEqual(wholeAnswers.map(\.1), bytewiseAnswers.map(\.1))
        guard case .error(.notPermitted, _) = wholeAnswers[3].1 else { return XCTFail("STATS on the api socket: \(wholeAnswers[3].1)") }
        guard case .check(let result) = wholeAnswers[1].1 else { return XCTFail("\(wholeAnswers[1].1)") }
        XCTAssertEqual(result.reason, .malformedToken)
    }

    /// Counts the reads the handler asks for (they pass outbound, towards the socket).
    private final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = Never
        var reads = 0
        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    func testTheHandlerStopsAskingForReadsWhileTheClientDoesNotReadItsAnswersAndResumesAfter() throws {
        let channel = try makeChannel()
        let counter = ReadCounter()
        try channel.pipeline.syncOperations.addHandler(counter, position: .first)
        channel.isWritable = false
        channel.pipeline.syncOperations.fireChannelWritabilityChanged()
        XCTAssertEqual(counter.reads, 0)
        channel.isWritable = true
        channel.pipeline.syncOperations.fireChannelWritabilityChanged()
        XCTAssertEqual(counter.reads, 1, "resuming asks for a read")
        channel.pipeline.syncOperations.fireChannelWritabilityChanged()
        XCTAssertEqual(counter.reads, 1, "nothing changed: no read asked for")
        try channel.writeInbound(try frame(.ping, id: 3))
        XCTAssertEqual(try answers(channel).map(\.0), [3])
    }

    func testAnOversizedLengthIsAnsweredTooLargeAndClosesWithoutReadingTheBody() throws {
        let channel = try makeChannel()
        var buffer = ByteBufferAllocator().buffer(capacity: 16)
        buffer.writeInteger(UInt32(1 << 30))
        try channel.writeInbound(buffer)
        let answers = try answers(channel)
        XCTAssertEqual(answers.count, 1)
        guard case .error(.tooLarge, _) = answers.first?.1 else { return XCTFail("\(answers)") }
        XCTAssertFalse(channel.isActive)
    }
}
