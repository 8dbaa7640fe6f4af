import TollgateModel
import XCTest

@testable import TollgateEngine

/// The `details` option (PROTOCOL.md 6.3): the tightest rate limit as the RateLimit header fields describe it, the
/// token's expiry and the plan, on allow and on deny; absent without the option.
final class CheckDetailsTests: XCTestCase {
    func testAbsentUnlessAsked() throws {
        let (f, secret, _) = try EngineFixture.standard(rate: 10, burst: 3)
        XCTAssertNil(f.checkAllowed(secret).details)
        XCTAssertNil(f.check(f.unissuedToken()).details)
        XCTAssertEqual(f.check(f.unissuedToken(), options: .details).details, CheckDetails(), "asked: always there, empty when nothing is known")
    }

    func testTheBurstCountsDownAndTheResetGrowsByOneInterval() throws {
        let (f, secret, token) = try EngineFixture.standard(rate: 10, burst: 3)  // interval 100 ms
        var seen: [RateLimitState?] = []
        for _ in 0..<3 { seen.append(f.checkAllowed(secret, options: .details).details?.rateLimit) }
        XCTAssertEqual(seen, [
            RateLimitState(limit: 3, remaining: 2, resetMillis: 100),
            RateLimitState(limit: 3, remaining: 1, resetMillis: 200),
            RateLimitState(limit: 3, remaining: 0, resetMillis: 300),
        ])
        let denied = f.check(secret, options: .details)
        XCTAssertEqual(denied.reason, .rateLimited)
        XCTAssertEqual(denied.retryAfterMillis, 100)
        XCTAssertEqual(denied.details?.rateLimit, RateLimitState(limit: 3, remaining: 0, resetMillis: 300), "a denial takes nothing")
        XCTAssertEqual(denied.details?.planID, "pro")
        XCTAssertEqual(denied.details?.tokenExpiresAt, token.expiresAt)
        f.advance(millis: 150)
        // 150 ms later one request is back (and half of the next): full again 150 ms from now.
        XCTAssertEqual(f.check(secret, options: .details).details?.rateLimit, RateLimitState(limit: 3, remaining: 0, resetMillis: 250))
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
        XCTAssertEqual(f.checkAllowed(secret, options: .details).details?.rateLimit, RateLimitState(limit: 2, remaining: 1, resetMillis: 100))
    }

    func testWithoutRateLimitsOnlyTheExpiryAndThePlan() throws {
        let (f, _, _) = try EngineFixture.standard()
        let expiry = f.nowMillis + Millis.hour
        let (secret, _) = try f.issue(license: "lic-1", expiresAt: expiry)
        XCTAssertEqual(f.checkAllowed(secret, options: .details).details, CheckDetails(rateLimit: nil, tokenExpiresAt: expiry, planID: "pro"))
        // Denied by a scope, before the rate limits: the expiry and the plan are known, the limits are not.
        XCTAssertEqual(f.check(secret, scopes: ["admin"], options: .details).details, CheckDetails(rateLimit: nil, tokenExpiresAt: expiry, planID: "pro"))
    }

    func testAGCRAStateAsHeaderFields() {
        let interval: Int64 = 100_000_000, tolerance = 2 * interval  // burst 3
        XCTAssertEqual(LicensingState.rateLimitState(ahead: 0, interval: interval, tolerance: tolerance, burst: 3), RateLimitState(limit: 3, remaining: 3, resetMillis: 0))
        XCTAssertEqual(LicensingState.rateLimitState(ahead: 1, interval: interval, tolerance: tolerance, burst: 3), RateLimitState(limit: 3, remaining: 2, resetMillis: 1))
        XCTAssertEqual(LicensingState.rateLimitState(ahead: tolerance, interval: interval, tolerance: tolerance, burst: 3), RateLimitState(limit: 3, remaining: 1, resetMillis: 200))
        XCTAssertEqual(LicensingState.rateLimitState(ahead: tolerance + 1, interval: interval, tolerance: tolerance, burst: 3), RateLimitState(limit: 3, remaining: 0, resetMillis: 201))
    }
}
