import TollgateFleet
import XCTest

/// The live-host window (Protocol/FLEET.md 2.3): three polls, never shorter than a live host's heartbeats can be
/// apart when a commit runs to its query timeout.
final class FleetSettingsTests: XCTestCase {
    func settings(poll: Int64, queryTimeout: Int64) -> FleetSettings {
        FleetSettings(
            addresses: [.unix(directory: "/tmp", port: 5432)], database: "postgres", user: "tollgate", password: nil, hostID: "a",
            pollMillis: poll, queryTimeoutMillis: queryTimeout)
    }

    func testTheLiveWindowCoversASlowCommitBetweenHeartbeats() {
        XCTAssertEqual(settings(poll: 1_000, queryTimeout: 2_000).liveWindowMillis, 5_000, "the defaults: a poll and two query timeouts")
        XCTAssertEqual(settings(poll: 250, queryTimeout: 1_500).liveWindowMillis, 3_250)
        XCTAssertEqual(settings(poll: 2_000, queryTimeout: 500).liveWindowMillis, 6_000, "three polls when queries are short")
    }
}
