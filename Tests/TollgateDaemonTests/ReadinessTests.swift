import Foundation
import TollgateClient
import TollgateDaemon
import TollgateModel
import TollgateProtocol
import XCTest

/// `/readyz` and `/metrics` of the real daemon through a journal outage: ready once started, not ready (with the
/// reason) while the disk is full, ready again when it recovers by itself, not ready once a stop has begun.
final class ReadinessTests: XCTestCase {
    private func text(_ bytes: [UInt8]?) -> String { bytes.map { String(decoding: $0, as: UTF8.self) } ?? "" }

    func testReadinessFollowsAJournalOutage() async throws {
        let disk = DiskThatFills()
        let harness = try DaemonHarness()
        defer { harness.cleanUp() }
        harness.fileSystem = disk
        try await harness.start()
        let daemon = try XCTUnwrap(harness.daemon)
        let p = try await harness.provision()
        let api = try await harness.api()
        XCTAssertEqual(daemon.readiness()?.ready, true, daemon.readiness()?.reason ?? "no verdict")
        XCTAssertTrue(text(daemon.scrapeMetrics()).contains("\ntollgate_journal_failed 0.0\n"))

        disk.isFull = true
        let meter = MeterRequest(token: p.secret, meter: "requests", quantity: 1, idempotencyKey: "readiness")
        let refused = try await api.send(.meter(meter))
        XCTAssertEqual(refused.status, .unavailable)
        let outage = try XCTUnwrap(daemon.readiness())
        XCTAssertFalse(outage.ready)
        XCTAssertTrue(outage.reason.contains("journal outage"), outage.reason)
        XCTAssertTrue(text(daemon.scrapeMetrics()).contains("\ntollgate_journal_failed 1.0\n"))

        disk.isFull = false
        // Bounded poll: recovery is retried with backoff (up to 5 s); a request gives it its chance.
        for _ in 0..<400 where daemon.readiness()?.ready != true {
            _ = try await api.send(.meter(meter))
            if daemon.readiness()?.ready != true { try await Task.sleep(for: .milliseconds(25)) }
        }
        XCTAssertEqual(daemon.readiness()?.ready, true, daemon.readiness()?.reason ?? "no verdict")
        XCTAssertTrue(text(daemon.scrapeMetrics()).contains("\ntollgate_journal_failed 0.0\n"))

        try await harness.stop()
        XCTAssertNil(daemon.readiness(), "a stopping daemon has no verdict: /readyz answers 503")
    }
}
