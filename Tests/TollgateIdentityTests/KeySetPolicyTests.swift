import TollgateIdentity
import XCTest

/// The key cache's decisions on an injected clock.
final class KeySetPolicyTests: XCTestCase {
    let policy = KeySetPolicy(refreshAfterMillis: 3_600_000, minRefreshIntervalMillis: 60_000, maxAgeMillis: 86_400_000)

    func testNothingHeldFetchesOnceThenWaitsTheInterval() {
        var state = KeySetPolicy.State()
        XCTAssertEqual(policy.action(state, keyKnown: false, now: 0), .fetchThenUse)
        state.attemptedAt = 0  // the fetch failed
        XCTAssertEqual(policy.action(state, keyKnown: false, now: 59_999), .refuseUnavailable)
        XCTAssertEqual(policy.action(state, keyKnown: false, now: 60_000), .fetchThenUse)
    }

    func testUnknownKidRefreshesAtMostOncePerInterval() {
        let state = KeySetPolicy.State(fetchedAt: 1_000_000, attemptedAt: 1_000_000)
        XCTAssertEqual(policy.action(state, keyKnown: true, now: 1_000_001), .useHeld)
        XCTAssertEqual(policy.action(state, keyKnown: false, now: 1_030_000), .refuseUnknownKey)
        XCTAssertEqual(policy.action(state, keyKnown: false, now: 1_060_000), .fetchThenUse)
    }

    func testStaleKeysAreUsedWhileRefreshing() {
        let state = KeySetPolicy.State(fetchedAt: 0, attemptedAt: 0)
        XCTAssertEqual(policy.action(state, keyKnown: true, now: 3_600_000), .useHeldAndRefresh)
    }

    func testKeysKeptThroughFailuresUntilMaxAge() {
        // Last success at 0, failed attempts since: usable until 24 h, then unavailable between attempts.
        let state = KeySetPolicy.State(fetchedAt: 0, attemptedAt: 86_390_000)
        XCTAssertEqual(policy.action(state, keyKnown: true, now: 86_400_000), .useHeld)
        XCTAssertEqual(policy.action(state, keyKnown: true, now: 86_400_001), .refuseUnavailable)
        XCTAssertEqual(policy.action(state, keyKnown: true, now: 86_450_000), .fetchThenUse)
    }
}
