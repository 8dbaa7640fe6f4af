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

/// The webhook route on a test channel over a real core: the signed body reaches the verifier whole, every refusal
/// leaves the state alone, and the answers' statuses. The signature's clock is the core's wall clock; the headers
/// are signed at its time. `NIOAsyncTestingChannel`, not `EmbeddedChannel`: an applied event is answered from the
/// journal's writer thread through the loop's `execute`, which an embedded loop does not allow from another thread
/// (ThreadSanitizer reported that race).
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

    private func channel(maxBody: Int = 4096) async throws -> NIOAsyncTestingChannel {
        let settings = StripeWebhookSettings(path: "/hooks/stripe", secrets: [secret], mapping: StripeMapping(plansByPrice: ["price_p": "pro"]), maxBodyBytes: maxBody)
        let frontEnd = HTTPFrontEnd(
            core: core, clock: SystemWallClock(), policy: ForwardAuthPolicy(stripe: settings), access: .anyone, limits: HTTPLimits(),
            logger: Logger(label: "h") { _ in SwiftLogNoOpLogHandler() })
        let channel = NIOAsyncTestingChannel()
        try await channel.testingEventLoop.executeInContext {
            try HTTPFrontEnd.configure(channel.pipeline.syncOperations, frontEnd: frontEnd, decoderLimits: frontEnd.decoderLimits)
        }
        try await channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/unused"))
        return channel
    }

    private func post(_ channel: NIOAsyncTestingChannel, body: String, signature: String?, method: String = "POST") async throws -> String {
        var request = "\(method) /hooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n"
        if let signature { request += "Stripe-Signature: \(signature)\r\n" }
        request += "\r\n" + body
        // In two parts, so the body is reassembled from more than one read.
        let bytes = Array(request.utf8)
        try? await channel.writeInbound(ByteBuffer(bytes: bytes[..<(bytes.count / 2)]))
        try? await channel.writeInbound(ByteBuffer(bytes: bytes[(bytes.count / 2)...]))
        // The answer is written from the core's completion through the loop: a bounded poll, not a timing.
        let deadline = ContinuousClock.now + .seconds(10)
        var text = ""
        while ContinuousClock.now < deadline {
            await channel.testingEventLoop.run()
            while let buffer = try await channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
            if text.contains("\r\n\r\n") { break }
            try await Task.sleep(for: .milliseconds(1))  // the journal's completion runs on its own thread
        }
        return text
    }

    private func event(_ id: String, type: String = "customer.subscription.created") -> String {
        #"{"id":"\#(id)","type":"\#(type)","created":\#(Int(Date().timeIntervalSince1970)),"data":{"object":{"id":"sub_1","object":"subscription","customer":"cus_1","status":"active","items":{"data":[{"price":{"id":"price_p"}}]}}}}"#
    }

    private func signed(_ body: String) -> String {
        StripeSignature.header(for: Array(body.utf8), secret: secret, timestamp: Int64(Date().timeIntervalSince1970))
    }

    func testASignedEventIsAppliedAndItsRepeatAcknowledged() async throws {
        let body = event("evt_1")
        let first = try await post(try await channel(), body: body, signature: signed(body))
        XCTAssertTrue(first.hasPrefix("HTTP/1.1 200"), first)
        XCTAssertTrue(first.contains(#""outcome":"applied""#), first)
        XCTAssertEqual(core.withState { $0.licenses["lic_1"]?.spec.plan }, "pro")
        let second = try await post(try await channel(), body: body, signature: signed(body))
        XCTAssertTrue(second.contains(#""outcome":"duplicate""#), second)
    }

    func testRefusalsChangeNothing() async throws {
        let body = event("evt_2")
        let unsigned = try await post(try await channel(), body: body, signature: nil)
        XCTAssertTrue(unsigned.hasPrefix("HTTP/1.1 400"), unsigned)
        let forged = StripeSignature.header(for: Array(body.utf8), secret: Array("whsec_someone_else".utf8), timestamp: Int64(Date().timeIntervalSince1970))
        let answer = try await post(try await channel(), body: body, signature: forged)
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 400") && answer.contains("signature_mismatch"), answer)
        let old = StripeSignature.header(for: Array(body.utf8), secret: secret, timestamp: Int64(Date().timeIntervalSince1970) - 400)
        let stale = try await post(try await channel(), body: body, signature: old)
        XCTAssertTrue(stale.contains("timestamp_outside_tolerance"), stale)
        let large = try await post(try await channel(maxBody: 1024), body: body + String(repeating: " ", count: 1024), signature: signed(body))
        XCTAssertTrue(large.hasPrefix("HTTP/1.1 413"), large)
        let get = try await post(try await channel(), body: "", signature: nil, method: "GET")
        XCTAssertTrue(get.hasPrefix("HTTP/1.1 405"), get)
        XCTAssertNil(core.withState { $0.licenses["lic_1"] })
        let unknown = event("evt_3", type: "charge.succeeded")
        let ignored = try await post(try await channel(), body: unknown, signature: signed(unknown))
        XCTAssertTrue(ignored.contains(#""outcome":"ignored""#), ignored)
    }
}
