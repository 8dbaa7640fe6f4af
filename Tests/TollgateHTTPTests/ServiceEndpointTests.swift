import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import TollgateCore
import TollgateEngine
@testable import TollgateHTTP
import TollgateJournal
import TollgateModel
import XCTest

/// The reserved paths (`/metrics`, `/healthz`, `/readyz`) on an `EmbeddedChannel`: answered before forward auth
/// (the route table never sees them), GET and HEAD only, kept out of the forward-auth answer counts.
final class ServiceEndpointTests: XCTestCase {
    private var directory: String!
    private var core: ApplicationCore!

    override func setUp() async throws {
        directory = NSTemporaryDirectory() + "tollgate-http-endpoint-tests-" + UUID().uuidString
        let (journal, recovered) = try Journal.open(directory: directory, options: JournalOptions(fsync: false))
        core = ApplicationCore(
            state: try ApplicationCore.rebuildState(from: recovered), journal: journal, recovery: recovered.report,
            clock: SystemWallClock(), options: .init(), logger: Logger(label: "http-tests") { _ in SwiftLogNoOpLogHandler() })
    }

    override func tearDown() async throws {
        try? core.currentJournal.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func channel(endpoints: [String: ServiceEndpoint]) throws -> (EmbeddedChannel, HTTPFrontEnd) {
        let frontEnd = HTTPFrontEnd(
            core: core, clock: SystemWallClock(), policy: ForwardAuthPolicy(), access: .anyone, limits: HTTPLimits(),
            logger: Logger(label: "h") { _ in SwiftLogNoOpLogHandler() }, endpoints: endpoints)
        let channel = EmbeddedChannel()
        try HTTPFrontEnd.configure(channel.pipeline.syncOperations, frontEnd: frontEnd, decoderLimits: frontEnd.decoderLimits)
        try channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/unused")).wait()
        return (channel, frontEnd)
    }

    private func exchange(_ channel: EmbeddedChannel, _ request: String) throws -> String {
        try channel.writeInbound(ByteBuffer(string: request))
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    func testReservedPathsAnswerBeforeForwardAuth() throws {
        let (channel, frontEnd) = try channel(endpoints: [
            "/metrics": { ServiceAnswer(status: .ok, contentType: "text/plain; version=0.0.4", body: Array("tollgate_up 1\n".utf8)) },
            "/readyz": { ServiceAnswer(status: .serviceUnavailable, contentType: "text/plain", body: Array("not ready: journal outage\n".utf8)) },
        ])
        let metrics = try exchange(channel, "GET /metrics?x=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        XCTAssertTrue(metrics.hasPrefix("HTTP/1.1 200 OK\r\n"), metrics)
        XCTAssertTrue(metrics.contains("Content-Type: text/plain; version=0.0.4\r\n"), metrics)
        XCTAssertTrue(metrics.hasSuffix("\r\n\r\ntollgate_up 1\n"), metrics)
        let ready = try exchange(channel, "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
        XCTAssertTrue(ready.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"), ready)
        XCTAssertTrue(ready.hasSuffix("not ready: journal outage\n"), ready)
        let head = try exchange(channel, "HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        XCTAssertTrue(head.hasPrefix("HTTP/1.1 200 OK\r\n") && head.hasSuffix("\r\n\r\n"), "HEAD has no body: \(head)")
        let post = try exchange(channel, "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        XCTAssertTrue(post.hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n") && post.contains("Allow: GET, HEAD\r\n"), post)
        XCTAssertTrue(frontEnd.counts.withLockedValue { $0.answers }.isEmpty, "reserved paths are not forward-auth answers")
        // Any other path is still forward auth (no route: denied, and counted).
        let other = try exchange(channel, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        XCTAssertFalse(other.hasPrefix("HTTP/1.1 200"), "an unconfigured path is not served: \(other)")
        XCTAssertEqual(frontEnd.counts.withLockedValue { $0.answers }.values.reduce(0, +), 1)
    }
}
