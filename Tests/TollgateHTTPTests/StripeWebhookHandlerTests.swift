import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import TollgateBilling
import TollgateCore
import TollgateEngine
@testable import TollgateHTTP
import TollgateJournal
import TollgateModel
import TollgateProtocol
import XCTest

/// The webhook route on an `EmbeddedChannel` over a real core: the signed body reaches the verifier whole, every
/// refusal leaves the state alone, and the answers' statuses. The signature's clock is the core's wall clock; the
/// headers are signed at its time.
final class StripeWebhookHandlerTests: XCTestCase {
    private var directory: String!
    private var core: ApplicationCore!
    let secret = Array("whsec_handler_test_secret".utf8)

    override func setUp() async throws {
        directory = NSTemporaryDirectory() + "tollgate-stripe-http-" + UUID().uuidString
        let (journal, recovered) = try Journal.open(directory: directory, options: JournalOptions(fsync: false))
        core = ApplicationCore(
            state: try ApplicationCore.rebuildState(from: recovered), journal: journal, recovery: recovered.report,
            clock: SystemWallClock(), options: .init(), logger: Logger(label: "stripe-http-tests") { _ in SwiftLogNoOpLogHandler() })
        _ = core.handle(.planPut(Plan(id: "pro", entitlements: ["*"])), from: .daemon) { _ in }
    }

    override func tearDown() async throws {
        try? core.currentJournal.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func channel(maxBody: Int = 4096) throws -> EmbeddedChannel {
        let settings = StripeWebhookSettings(path: "/hooks/stripe", secrets: [secret], mapping: StripeMapping(plansByPrice: ["price_p": "pro"]), maxBodyBytes: maxBody)
        let frontEnd = HTTPFrontEnd(
            core: core, clock: SystemWallClock(), policy: ForwardAuthPolicy(stripe: settings), access: .anyone, limits: HTTPLimits(),
            logger: Logger(label: "h") { _ in SwiftLogNoOpLogHandler() })
        let channel = EmbeddedChannel()
        try HTTPFrontEnd.configure(channel.pipeline.syncOperations, frontEnd: frontEnd, decoderLimits: frontEnd.decoderLimits)
        try channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/unused")).wait()
        return channel
    }

    private func post(_ channel: EmbeddedChannel, body: String, signature: String?, method: String = "POST") throws -> String {
        var request = "\(method) /hooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n"
        if let signature { request += "Stripe-Signature: \(signature)\r\n" }
        request += "\r\n" + body
        // In two parts, so the body is reassembled from more than one read.
        let bytes = Array(request.utf8)
        _ = try? channel.writeInbound(ByteBuffer(bytes: bytes[..<(bytes.count / 2)]))
        _ = try? channel.writeInbound(ByteBuffer(bytes: bytes[(bytes.count / 2)...]))
        // The answer is written from the core's completion through the loop.
        let deadline = Date().addingTimeInterval(10)
        var text = ""
        while Date() < deadline {
            channel.embeddedEventLoop.run()
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
            if text.contains("\r\n\r\n") { break }
            Thread.sleep(forTimeInterval: 0.001)  // the journal's completion runs on its own thread
        }
        return text
    }

    private func event(_ id: String, type: String = "customer.subscription.created") -> String {
        #"{"id":"\#(id)","type":"\#(type)","created":\#(Int(Date().timeIntervalSince1970)),"data":{"object":{"id":"sub_1","object":"subscription","customer":"cus_1","status":"active","items":{"data":[{"price":{"id":"price_p"}}]}}}}"#
    }

    private func signed(_ body: String) -> String {
        StripeSignature.header(for: Array(body.utf8), secret: secret, timestamp: Int64(Date().timeIntervalSince1970))
    }

    func testASignedEventIsAppliedAndItsRepeatAcknowledged() throws {
        let body = event("evt_1")
        let first = try post(try channel(), body: body, signature: signed(body))
        XCTAssertTrue(first.hasPrefix("HTTP/1.1 200"), first)
        XCTAssertTrue(first.contains(#""outcome":"applied""#), first)
        XCTAssertEqual(core.withState { $0.licenses["lic_1"]?.spec.plan }, "pro")
        let second = try post(try channel(), body: body, signature: signed(body))
        XCTAssertTrue(second.contains(#""outcome":"duplicate""#), second)
    }

    func testRefusalsChangeNothing() throws {
        let body = event("evt_2")
        XCTAssertTrue(try post(try channel(), body: body, signature: nil).hasPrefix("HTTP/1.1 400"))
        let forged = StripeSignature.header(for: Array(body.utf8), secret: Array("whsec_someone_else".utf8), timestamp: Int64(Date().timeIntervalSince1970))
        let answer = try post(try channel(), body: body, signature: forged)
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 400") && answer.contains("signature_mismatch"), answer)
        let old = StripeSignature.header(for: Array(body.utf8), secret: secret, timestamp: Int64(Date().timeIntervalSince1970) - 400)
        XCTAssertTrue(try post(try channel(), body: body, signature: old).contains("timestamp_outside_tolerance"))
        XCTAssertTrue(try post(try channel(maxBody: 1024), body: body + String(repeating: " ", count: 1024), signature: signed(body)).hasPrefix("HTTP/1.1 413"))
        XCTAssertTrue(try post(try channel(), body: "", signature: nil, method: "GET").hasPrefix("HTTP/1.1 405"))
        XCTAssertNil(core.withState { $0.licenses["lic_1"] })
        let unknown = event("evt_3", type: "charge.succeeded")
        XCTAssertTrue(try post(try channel(), body: unknown, signature: signed(unknown)).contains(#""outcome":"ignored""#))
    }
}
