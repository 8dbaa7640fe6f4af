import Foundation
import TollgateClient
import TollgateDaemon
import TollgateModel
import XCTest

/// The sampled decision log (`decision_log`): which decisions become lines (by sequence number, at most
/// `max_lines_per_second` a second, the rest counted), and the daemon writing them from its own subscription.
final class DecisionLogTests: DaemonTestCase {
    private func event(_ sequence: UInt64) -> DecisionEvent {
        DecisionEvent(sequence: sequence, at: 0, latencyNanoseconds: 1, source: .socket, reason: .none, tokenID: "t", licenseID: "l", subject: "s", route: "")
    }

    func testOneInNBySequenceAndAtMostTheCapASecond() {
        var policy = DecisionLogPolicy(sampleEvery: 10, maxLinesPerSecond: 3)
        let admitted = (1...100).filter { policy.admits(event(UInt64($0)), nowMillis: 5_000) }
        XCTAssertEqual(admitted, [10, 20, 30], "sampled by sequence, then capped within the second")
        XCTAssertEqual(policy.overCap, 7, "the other sampled decisions of that second are counted")
        XCTAssertEqual(policy.written, 3)
        XCTAssertTrue(policy.admits(event(110), nowMillis: 6_000), "a new second, a new allowance")
        XCTAssertFalse(policy.admits(event(111), nowMillis: 6_000), "not sampled: neither written nor counted")
        XCTAssertEqual(policy.overCap, 7)

        var every = DecisionLogPolicy(sampleEvery: 1, maxLinesPerSecond: 1_000)
        XCTAssertEqual((1...50).filter { every.admits(event(UInt64($0)), nowMillis: 0) }.count, 50)
    }

    func testTheDaemonLogsSampledDecisionsAllowsTooWithoutSecrets() async throws {
        harness.configuration.decisionLog = DecisionLogConfiguration(sampleEvery: 2, maxLinesPerSecond: 1_000)
        try await harness.start()
        let provisioned = try await harness.provision()
        let watchers = try await statistic("decision_watchers")
        XCTAssertEqual(watchers, "1", "the log's own subscription")
        let api = try await harness.api()
        for _ in 0..<10 { _ = try await api.check(CheckRequest(token: provisioned.secret, scopes: ["read"])) }
        await api.close()
        // The log drains its subscription every 100 ms: poll STATS (bounded) until it has written the 5 sampled.
        var lines = try await statistic("decision_log_lines")
        let deadline = ContinuousClock.now + .seconds(20)
        while lines != "5", ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            lines = try await statistic("decision_log_lines")
        }
        XCTAssertEqual(lines, "5", "one decision in 2 of the 10")
        let logged = harness.logs.text.split(separator: "\n").filter { $0.contains(" decision ") && $0.contains("tollgate.decision=allow") }
        XCTAssertEqual(logged.count, 5, harness.logs.text)
        XCTAssertTrue(logged.allSatisfy { $0.contains("tollgate.license=lic_test") && $0.contains("tollgate.route=read") && $0.contains("tollgate.token_id=\(provisioned.token.id)") })
        XCTAssertFalse(harness.logs.text.contains(provisioned.secret))
        let lost = try await statistic("decision_log_lost")
        XCTAssertEqual(lost, "0")
    }
}
