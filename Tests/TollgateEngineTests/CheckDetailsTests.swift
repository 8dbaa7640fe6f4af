import TollgateModel
import XCTest

@testable import TollgateEngine

/// The `details` option (PROTOCOL.md 6.3): read from the state a check left, the tightest rate limit as the
/// RateLimit header fields describe it, the token's expiry and the plan, on allow and on deny.
final class CheckDetailsTests: XCTestCase {
    private func details(_ f: EngineFixture, _ result: CheckResult) -> CheckDetails {
        f.state.checkDetails(tokenID: result.tokenID, at: f.now)
    }

    func testTheBurstCountsDownAndTheResetGrowsByOneInterval() throws {
        let (f, secret, token) = try EngineFixture.standard(rate: 10, burst: 3)  // interval 100 ms
        var seen: [RateLimitState?] = []
        for _ in 0..<3 { seen.append(details(f, f.checkAllowed(secret)).rateLimit) }
        XCTAssertEqual(seen, [
            RateLimitState(limit: 3, remaining: 2, resetMillis: 100),
            RateLimitState(limit: 3, remaining: 1, resetMillis: 200),
            RateLimitState(limit: 3, remaining: 0, resetMillis: 300),
        ])
        let denied = f.check(secret)
        XCTAssertEqual(denied.reason, .rateLimited)
        XCTAssertEqual(denied.retryAfterMillis, 100)
        XCTAssertEqual(details(f, denied), CheckDetails(rateLimit: RateLimitState(limit: 3, remaining: 0, resetMillis: 300), tokenExpiresAt: token.expiresAt, planID: "pro"), "a denial takes nothing")
        f.advance(millis: 150)
        // 150 ms later one request is back (and half of the next): after taking it, full again 250 ms from now.
        XCTAssertEqual(details(f, f.checkAllowed(secret)).rateLimit, RateLimitState(limit: 3, remaining: 0, resetMillis: 250))
    }

    func testTheTightestOfSeveralLimitsIsReported() throws {
        let f = EngineFixture()
        let plan = Plan(id: "two", entitlements: ["*"], rateLimits: [
            RateRule(pool: .license, ratePerSecond: 1, burst: 100),  // roomy
            RateRule(pool: .token, ratePerSecond: 10, burst: 2),  // tight
        ])
        _ = try f.putPlan(plan)
        try f.putLicense("lic-2", plan: "two")
        let (secret, _) = try f.issue(license: "lic-2")
        XCTAssertEqual(details(f, f.checkAllowed(secret)).rateLimit, RateLimitState(limit: 2, remaining: 1, resetMillis: 100))
    }

    func testWithoutRateLimitsOnlyTheExpiryAndThePlan() throws {
        let (f, _, _) = try EngineFixture.standard()
        let expiry = f.nowMillis + Millis.hour
        let (secret, _) = try f.issue(license: "lic-1", expiresAt: expiry)
        XCTAssertEqual(details(f, f.checkAllowed(secret)), CheckDetails(rateLimit: nil, tokenExpiresAt: expiry, planID: "pro"))
        XCTAssertEqual(details(f, f.check(secret, scopes: ["admin"])), CheckDetails(rateLimit: nil, tokenExpiresAt: expiry, planID: "pro"), "a denial too")
        XCTAssertEqual(details(f, f.check(f.unissuedToken())), CheckDetails(), "an unknown token: nothing is known")
    }

    func testAGCRAStateAsHeaderFields() {
        let interval: Int64 = 100_000_000, tolerance = 2 * interval  // burst 3
        XCTAssertEqual(LicensingState.rateLimitState(ahead: 0, interval: interval, tolerance: tolerance, burst: 3), RateLimitState(limit: 3, remaining: 3, resetMillis: 0))
        XCTAssertEqual(LicensingState.rateLimitState(ahead: 1, interval: interval, tolerance: tolerance, burst: 3), RateLimitState(limit: 3, remaining: 2, resetMillis: 1))
        XCTAssertEqual(LicensingState.rateLimitState(ahead: tolerance, interval: interval, tolerance: tolerance, burst: 3), RateLimitState(limit: 3, remaining: 1, resetMillis: 200))
        XCTAssertEqual(LicensingState.rateLimitState(ahead: tolerance + 1, interval: interval, tolerance: tolerance, burst: 3), RateLimitState(limit: 3, remaining: 0, resetMillis: 201))
    }
}
