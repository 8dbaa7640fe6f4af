import TollgateModel
import XCTest

@testable import TollgateEngine

/// CHECK (`Protocol/PROTOCOL.md` 6.3): the deny reasons in order, the rate limiter, quotas, and that a denied
/// check consumes nothing.
final class CheckTests: XCTestCase {
    // MARK: - Reasons, one at a time

    func testRejectsMalformedTokenWithoutIdentity() throws {
        let (f, secret, _) = try EngineFixture.standard()
        for bad in ["", "tg_live_", "hello", String(secret.dropLast()), secret + "x", String(secret.dropLast()) + "!"] {
            let result = f.check(bad)
            XCTAssertEqual(result.reason, .malformedToken, bad)
            XCTAssertEqual([result.tokenID, result.licenseID, result.subject], ["", "", ""])
            XCTAssertFalse(result.allowed)
        }
        // A checksum error in an issued token's string is malformed, not unknown: no lookup is made.
        var chars = Array(secret)
        chars[20] = chars[20] == "A" ? "B" : "A"
        XCTAssertEqual(f.check(String(chars)).reason, .malformedToken)
    }

    func testRejectsUnknownWellFormedToken() throws {
        let (f, _, _) = try EngineFixture.standard()
        let result = f.check(f.unissuedToken(), meter: "requests", cost: 1)
        XCTAssertEqual(result.reason, .unknownToken)
        XCTAssertEqual([result.tokenID, result.licenseID, result.subject], ["", "", ""])
        XCTAssertEqual(f.check(TokenFormatTests.specSample).reason, .unknownToken)
        XCTAssertTrue(f.consumed.isEmpty)
    }

    func testRevokedTokenIsDeniedWithIdentity() throws {
        let (f, secret, token) = try EngineFixture.standard()
        f.checkAllowed(secret)
        try f.revoke(.tokenID(token.id))
        let result = f.check(secret)
        XCTAssertEqual(result.reason, .revoked)
        XCTAssertEqual([result.tokenID, result.licenseID, result.subject], [token.id, "lic-1", "alice"])
    }

    func testNotYetValidUntilExactlyNotBefore() throws {
        let (f, _, _) = try EngineFixture.standard()
        let notBefore = f.nowMillis + Millis.hour
        let (secret, _) = try f.issue(license: "lic-1", notBefore: notBefore)
        XCTAssertEqual(f.check(secret).reason, .notYetValid)
        f.set(millis: notBefore - 1)
        XCTAssertEqual(f.check(secret).reason, .notYetValid)
        f.now = Timestamp(nanoseconds: notBefore * 1_000_000 - 1)
        XCTAssertEqual(f.check(secret).reason, .notYetValid, "one nanosecond before not_before")
        f.set(millis: notBefore)
        f.checkAllowed(secret)
    }

    func testExpiredExactlyAtExpiry() throws {
        let (f, _, _) = try EngineFixture.standard()
        let expiry = f.nowMillis + Millis.minute
        let (secret, _) = try f.issue(license: "lic-1", expiresAt: expiry)
        f.checkAllowed(secret)
        f.now = Timestamp(nanoseconds: expiry * 1_000_000 - 1)
        f.checkAllowed(secret)
        f.set(millis: expiry)
        let result = f.check(secret)
        XCTAssertEqual(result.reason, .expired, "at expires_at the token is expired")
        XCTAssertEqual(result.subject, "alice")
        f.advance(millis: Millis.day)
        XCTAssertEqual(f.check(secret).reason, .expired)
    }

    func testEveryLicenseStatusAndValidUntil() throws {
        let (f, secret, _) = try EngineFixture.standard()
        // The plan has no past-due grace period, so a past-due license is refused at once.
        let expected: [(LicenseStatus, DenyReason)] = [(.active, .none), (.trialing, .none), (.pastDue, .paymentOverdue), (.canceled, .licenseInactive), (.expired, .licenseExpired)]
        for (status, reason) in expected {
            try f.putLicense("lic-1", plan: "pro", status: status)
            let result = f.check(secret, meter: "requests", cost: 1)
            XCTAssertEqual(result.reason, reason, status.name)
            XCTAssertEqual(result.licenseID, "lic-1")
        }
        let validUntil = f.nowMillis + Millis.hour
        try f.putLicense("lic-1", plan: "pro", validUntil: validUntil)
        f.set(millis: validUntil - 1)
        f.checkAllowed(secret)
        f.set(millis: validUntil)
        XCTAssertEqual(f.check(secret).reason, .licenseExpired, "at valid_until the license has expired")
        // A renewal lets the same token through again.
        try f.putLicense("lic-1", plan: "pro", validUntil: 0)
        f.checkAllowed(secret)
    }

    func testLicenseInactiveWhenPlanOrLicenseIsMissing() throws {
        let (f, secret, token) = try EngineFixture.standard()
        // putLicense refuses a missing plan; the state can still hold one (a journal written by another version).
        assertEngineError(.notFound) { try f.putLicense("lic-1", plan: "ghost") }
        f.state.apply(.licensePut(LicenseSpec(id: "lic-1", customer: "c", plan: "ghost", status: .active), at: f.nowMillis, pastDueSince: 0))
        XCTAssertEqual(f.check(secret).reason, .licenseInactive)
        try f.putPlan("ghost")
        f.checkAllowed(secret)

        // A token whose license does not exist.
        let orphanSecret = f.unissuedToken()
        var info = token
        info.id = "tok_orphan"
        info.licenseID = "lic-missing"
        f.state.apply(.tokenIssued(TokenRecord(hash: LicensingState.hash(of: orphanSecret), info: info)))
        let result = f.check(orphanSecret)
        XCTAssertEqual(result.reason, .licenseInactive)
        XCTAssertEqual(result.licenseID, "lic-missing")
    }

    func testScopesMustBeGrantedByTokenAndPlan() throws {
        let f = EngineFixture()
        // A token can carry a scope its plan lacks only when the plan lost it after the token was issued: ISSUE
        // refuses a scope the plan does not grant (issue 13 §3).
        try f.putPlan("rw", entitlements: ["read", "write", "admin"])
        try f.putPlan("all", entitlements: ["*"])
        try f.putLicense("lic-rw", plan: "rw")
        try f.putLicense("lic-all", plan: "all")
        let readAdminOnRW = try f.issue(license: "lic-rw", scopes: ["read", "admin"]).secret
        try f.putPlan("rw", entitlements: ["read", "write"])
        let readOnRW = try f.issue(license: "lic-rw", scopes: ["read"]).secret
        let starOnRW = try f.issue(license: "lic-rw", scopes: ["*"]).secret
        let readOnAll = try f.issue(license: "lic-all", scopes: ["read"]).secret
        let starOnAll = try f.issue(license: "lic-all", scopes: []).secret  // empty: "*"

        let cases: [(String, [String], DenyReason, String)] = [
            (readOnRW, [], .none, "no scope required"),
            (readOnRW, ["read"], .none, "granted by both"),
            (readOnRW, ["write"], .insufficientScope, "plan grants it, token does not"),
            (readOnRW, ["read", "write"], .insufficientScope, "one of two missing"),
            (readAdminOnRW, ["admin"], .insufficientScope, "token carries it, plan does not"),
            (readAdminOnRW, ["read"], .none, "extra token scopes do no harm"),
            (starOnRW, ["write"], .none, "token * takes the plan's"),
            (starOnRW, ["read", "write"], .none, "token * takes the plan's"),
            (starOnRW, ["admin"], .insufficientScope, "token * cannot exceed the plan"),
            (readOnAll, ["read"], .none, "plan * grants what the token carries"),
            (readOnAll, ["billing"], .insufficientScope, "plan * does not widen the token"),
            (starOnAll, ["anything", "at:all"], .none, "* on both sides"),
            (starOnRW, ["*"], .insufficientScope, "a required * is only granted by a * entitlement"),
        ]
        for (secret, scopes, expected, why) in cases {
            XCTAssertEqual(f.check(secret, scopes: scopes).reason, expected, "\(scopes): \(why)")
        }
    }

    func testRateLimitedAfterBurstThenOneMorePerInterval() throws {
        let (f, secret, token) = try EngineFixture.standard(rate: 10, burst: 3)  // interval 100 ms
        for i in 0..<3 { XCTAssertEqual(f.check(secret).reason, .none, "burst request \(i)") }
        var result = f.check(secret)
        XCTAssertEqual(result.reason, .rateLimited)
        XCTAssertEqual(result.retryAfterMillis, 100)
        XCTAssertEqual([result.tokenID, result.licenseID, result.subject], [token.id, "lic-1", "alice"])
        f.advance(millis: 99)
        result = f.check(secret)
        XCTAssertEqual(result.reason, .rateLimited)
        XCTAssertEqual(result.retryAfterMillis, 1)
        f.advance(millis: 1)  // exactly 1/rate after the burst
        f.checkAllowed(secret)
        XCTAssertEqual(f.check(secret).reason, .rateLimited, "only one more")
        // Steady state: exactly one request per interval.
        for step in 0..<20 {
            f.advance(millis: 100)
            XCTAssertEqual(f.check(secret).reason, .none, "step \(step)")
            XCTAssertEqual(f.check(secret).reason, .rateLimited, "step \(step)")
        }
        // After a long idle period the full burst (and no more) is available again.
        f.advance(millis: 60_000)
        for _ in 0..<3 { f.checkAllowed(secret) }
        XCTAssertEqual(f.check(secret).reason, .rateLimited)
    }

    func testARaisedRateAppliesFromTheNextCheckWithoutTheOldPlansDebt() throws {
        let (f, secret, _) = try EngineFixture.standard(rate: 1, burst: 1)  // one per second
        f.checkAllowed(secret)
        XCTAssertEqual(f.check(secret).reason, .rateLimited)
        XCTAssertEqual(f.check(secret).retryAfterMillis, 1000, "the old plan would make the caller wait a second")
        // Upsell to 1000/s with a burst of 5: the next checks follow the new plan at once.
        try f.putPlan("pro", entitlements: ["read", "write"], rate: 1000, burst: 5)
        for i in 0..<5 { XCTAssertEqual(f.check(secret).reason, .none, "request \(i) under the new plan (burst 5)") }
        let limited = f.check(secret)
        XCTAssertEqual(limited.reason, .rateLimited, "the new burst is bounded too")
        XCTAssertLessThanOrEqual(limited.retryAfterMillis, 1, "and its waits are the new plan's")
    }

    func testRatesAboveTheMaximumAreRefused() throws {
        let f = EngineFixture()
        assertEngineError(.invalidArgument) { try f.putPlan("fast", rate: Limits.maxRatePerSecond + 1, burst: 1) }
        XCTAssertEqual(try f.putPlan("fast", rate: Limits.maxRatePerSecond, burst: 0).rateLimits.first?.burst, 1)
    }

    func testRateLimitRetryAfterRoundsUpSubMillisecondIntervals() throws {
        let (f, secret, _) = try EngineFixture.standard(rate: 3, burst: 0)  // burst normalized to 1; interval 333_333_333 ns
        XCTAssertEqual(f.state.plans["pro"]?.rateLimits.first?.burst, 1)
        f.checkAllowed(secret)
        let result = f.check(secret)
        XCTAssertEqual(result.reason, .rateLimited)
        XCTAssertEqual(result.retryAfterMillis, 334)
        f.advance(millis: 333)
        XCTAssertEqual(f.check(secret).reason, .rateLimited)
        XCTAssertEqual(f.check(secret).retryAfterMillis, 1)
        f.advance(nanoseconds: 333_333)  // now exactly 333_333_333 ns after the first request
        f.checkAllowed(secret)
    }

    func testBurstOfNAllowsExactlyNAtOneInstant() throws {
        for burst: UInt32 in [1, 2, 5, 17] {
            let (f, secret, _) = try EngineFixture.standard(rate: 1, burst: burst)
            var allowed = 0
            for _ in 0..<40 where f.check(secret).allowed { allowed += 1 }
            XCTAssertEqual(allowed, Int(burst), "burst \(burst)")
            let denied = f.check(secret)
            XCTAssertEqual(denied.reason, .rateLimited)
            XCTAssertGreaterThan(denied.retryAfterMillis, 0)
            XCTAssertLessThanOrEqual(denied.retryAfterMillis, 1_000)
        }
    }

    func testRateLimitIsPerLicense() throws {
        let (f, first, _) = try EngineFixture.standard(rate: 1, burst: 2)
        let second = try f.issue(license: "lic-1", subject: "bob").secret
        try f.putLicense("lic-2", plan: "pro")
        let other = try f.issue(license: "lic-2").secret
        f.checkAllowed(first)
        f.checkAllowed(second)
        XCTAssertEqual(f.check(first).reason, .rateLimited, "both tokens of lic-1 share one budget")
        XCTAssertEqual(f.check(second).reason, .rateLimited)
        f.checkAllowed(other)
        f.checkAllowed(other)
        XCTAssertEqual(f.check(other).reason, .rateLimited)
    }

    func testNoRateLimitWhenRateIsZero() throws {
        let (f, secret, _) = try EngineFixture.standard(rate: 0, burst: 5)
        XCTAssertEqual(f.state.plans["pro"]?.rateLimits, [], "no rate limit rule")
        for _ in 0..<1_000 where !f.check(secret).allowed {
            XCTFail("denied without a rate limit")
            break
        }
    }

    func testQuotaConsumesUntilExceededAndResetsNextPeriod() throws {
        let (f, secret, token) = try EngineFixture.standard(quotas: [QuotaRule(meter: "requests", period: .day, limit: 10)])
        let dayEnd = UTCCalendar.bounds(of: .day, containing: f.nowMillis).end
        var result = f.checkAllowed(secret, meter: "requests", cost: 4)
        XCTAssertEqual(result.quota, QuotaState(limit: 10, remaining: 6, resetAt: dayEnd))
        XCTAssertEqual([result.tokenID, result.licenseID, result.subject], [token.id, "lic-1", "alice"])
        XCTAssertEqual(result.retryAfterMillis, 0)
        XCTAssertEqual(f.consumed, [UsageEntry(tokenID: token.id, meter: "requests", quantity: 4, at: f.nowMillis)])
        result = f.checkAllowed(secret, meter: "requests", cost: 6)
        XCTAssertEqual(result.quota, QuotaState(limit: 10, remaining: 0, resetAt: dayEnd), "using the quota exactly is allowed")
        result = f.check(secret, meter: "requests", cost: 1)
        XCTAssertEqual(result.reason, .quotaExceeded)
        XCTAssertEqual(result.quota, QuotaState(limit: 10, remaining: 0, resetAt: dayEnd))
        XCTAssertEqual(result.subject, "alice")
        XCTAssertEqual(f.state.usage(licenseID: "lic-1", meter: "requests", period: .day, at: f.nowMillis), 10)
        XCTAssertEqual(f.state.usage(tokenID: token.id, meter: "requests"), 10)

        f.set(millis: dayEnd - 1)
        XCTAssertEqual(f.check(secret, meter: "requests", cost: 1).reason, .quotaExceeded)
        f.set(millis: dayEnd)
        result = f.checkAllowed(secret, meter: "requests", cost: 10)
        XCTAssertEqual(result.quota, QuotaState(limit: 10, remaining: 0, resetAt: dayEnd + Millis.day))
        XCTAssertEqual(f.state.usage(tokenID: token.id, meter: "requests"), 20, "token usage is summed over all time")
    }

    func testQuotaIsPooledPerLicenseAndPerMeter() throws {
        let (f, alice, aliceInfo) = try EngineFixture.standard(quotas: [QuotaRule(meter: "requests", period: .hour, limit: 5)])
        let bob = try f.issue(license: "lic-1", subject: "bob").secret
        try f.putLicense("lic-2", plan: "pro")
        let carol = try f.issue(license: "lic-2", subject: "carol").secret
        f.checkAllowed(alice, meter: "requests", cost: 3)
        XCTAssertEqual(f.check(bob, meter: "requests", cost: 3).reason, .quotaExceeded)
        XCTAssertEqual(f.checkAllowed(bob, meter: "requests", cost: 2).quota?.remaining, 0)
        XCTAssertEqual(f.checkAllowed(carol, meter: "requests", cost: 5).quota?.remaining, 0, "another license has its own")
        let unmetered = f.checkAllowed(alice, meter: "other", cost: 1_000)
        XCTAssertNil(unmetered.quota, "no quota on that meter")
        XCTAssertNil(f.checkAllowed(alice).quota, "no meter named")
        XCTAssertEqual(f.state.usage(tokenID: aliceInfo.id, meter: "other"), 1_000, "usage without a quota is in the ledger")
        XCTAssertEqual(f.state.usage(licenseID: "lic-1", meter: "other", period: .month, at: f.nowMillis), 0, "no plan reads that counter")
    }

    func testRejectsCostThatWouldOverflowTheCounter() throws {
        let (f, secret, _) = try EngineFixture.standard(quotas: [QuotaRule(meter: "requests", period: .day, limit: .max)])
        f.checkAllowed(secret, meter: "requests", cost: 5)
        let result = f.check(secret, meter: "requests", cost: .max)
        XCTAssertEqual(result.reason, .quotaExceeded)
        XCTAssertEqual(result.quota?.remaining, .max - 5)
        XCTAssertEqual(f.state.usage(licenseID: "lic-1", meter: "requests", period: .day, at: f.nowMillis), 5)
    }

    func testCostZeroReadsQuotaWithoutConsuming() throws {
        let (f, secret, _) = try EngineFixture.standard(quotas: [QuotaRule(meter: "requests", period: .month, limit: 10)])
        let monthEnd = UTCCalendar.bounds(of: .month, containing: f.nowMillis).end
        f.checkAllowed(secret, meter: "requests", cost: 7)
        let before = f.state.book.counters
        let consumedBefore = f.consumed.count
        let (result, entry) = f.state.check(CheckRequest(token: secret, meter: "requests", cost: 0), at: f.now)
        XCTAssertEqual(result.reason, .none)
        XCTAssertNil(entry)
        XCTAssertEqual(result.quota, QuotaState(limit: 10, remaining: 3, resetAt: monthEnd))
        XCTAssertEqual(f.state.book.counters, before)
        XCTAssertEqual(f.consumed.count, consumedBefore)
        // Even with the quota used up, a read is allowed and shows 0 remaining.
        f.checkAllowed(secret, meter: "requests", cost: 3)
        XCTAssertEqual(f.checkAllowed(secret, meter: "requests", cost: 0).quota?.remaining, 0)
    }

    // MARK: - Order of the checks

    func testFirstFailingCheckDecidesInSpecOrder() throws {
        let f = EngineFixture()
        let quota = [QuotaRule(meter: "requests", period: .day, limit: 1)]
        try f.putPlan("tight", entitlements: ["read"], quotas: quota, rate: 1, burst: 1)
        try f.putLicense("lic-ok", plan: "tight")
        try f.putLicense("lic-down", plan: "tight")
        let future = f.nowMillis + Millis.hour

        // Revoked beats not-yet-valid and an inactive license.
        let revokedFuture = try f.issue(license: "lic-down", notBefore: future).secret
        try f.revoke(.secret(revokedFuture))
        // Not-yet-valid beats an inactive license.
        let pending = try f.issue(license: "lic-down", notBefore: future).secret
        // Expired beats an inactive license.
        let expiring = try f.issue(license: "lic-down", expiresAt: f.nowMillis + 1).secret
        try f.putLicense("lic-down", plan: "tight", status: .canceled)
        f.advance(millis: 1)
        XCTAssertEqual(f.check(revokedFuture, scopes: ["admin"]).reason, .revoked)
        XCTAssertEqual(f.check(pending, scopes: ["admin"]).reason, .notYetValid)
        XCTAssertEqual(f.check(expiring, scopes: ["admin"]).reason, .expired)
        // An inactive license beats a missing scope.
        let down = try f.issue(license: "lic-down", expiresAt: 0).secret
        XCTAssertEqual(f.check(down, scopes: ["admin"], meter: "requests", cost: 5).reason, .licenseInactive)

        // With the rate budget and the quota both used up: scope, then rate, then quota.
        let ok = try f.issue(license: "lic-ok").secret
        f.checkAllowed(ok, scopes: ["read"], meter: "requests", cost: 1)
        XCTAssertEqual(f.check(ok, scopes: ["admin"], meter: "requests", cost: 1).reason, .insufficientScope)
        XCTAssertEqual(f.check(ok, scopes: ["read"], meter: "requests", cost: 1).reason, .rateLimited)
        f.advance(millis: 1_000)
        XCTAssertEqual(f.check(ok, scopes: ["read"], meter: "requests", cost: 1).reason, .quotaExceeded)
    }

    // MARK: - A denied check consumes nothing

    func testQuotaDeniedCheckDoesNotUseRateBudget() throws {
        let (f, secret, _) = try EngineFixture.standard(
            quotas: [QuotaRule(meter: "requests", period: .hour, limit: 1)], rate: 1, burst: 3)
        f.checkAllowed(secret, meter: "requests", cost: 1)  // rate budget: 2 left
        let tat = f.state.rateLimiters
        for _ in 0..<10 {
            XCTAssertEqual(f.check(secret, meter: "requests", cost: 1).reason, .quotaExceeded, "never rate_limited")
        }
        XCTAssertEqual(f.state.rateLimiters, tat, "quota denials left the limiter alone")
        f.checkAllowed(secret, meter: "requests", cost: 0)
        f.checkAllowed(secret)
        XCTAssertEqual(f.check(secret).reason, .rateLimited, "exactly the two remaining requests were allowed")
    }

    func testDeniedChecksChangeNeitherUsageNorRateLimiter() throws {
        let (f, secret, token) = try EngineFixture.standard(
            quotas: [QuotaRule(meter: "requests", period: .day, limit: 100)], rate: 1, burst: 2)
        f.checkAllowed(secret, meter: "requests", cost: 10)
        let future = try f.issue(license: "lic-1", notBefore: f.nowMillis + Millis.hour).secret
        let expired = try f.issue(license: "lic-1", expiresAt: f.nowMillis + 1).secret
        let revoked = try f.issue(license: "lic-1").secret
        try f.revoke(.secret(revoked))
        try f.putLicense("lic-2", plan: "pro", status: .pastDue)
        let inactive = try f.issue(license: "lic-2").secret
        f.advance(millis: 1)

        let licenseUsage = f.state.book.counters, tokenUsage = f.state.book.ledger, tat = f.state.rateLimiters
        let consumed = f.consumed
        let denials: [(String, [String], UInt64, DenyReason)] = [
            ("tg_live_nope", [], 5, .malformedToken),
            (f.unissuedToken(), [], 5, .unknownToken),
            (revoked, [], 5, .revoked),
            (future, [], 5, .notYetValid),
            (expired, [], 5, .expired),
            (inactive, [], 5, .paymentOverdue),
            (secret, ["admin"], 5, .insufficientScope),
            (secret, [], 91, .quotaExceeded),
        ]
        for (token, scopes, cost, reason) in denials {
            let (result, entry) = f.state.check(CheckRequest(token: token, scopes: scopes, meter: "requests", cost: cost), at: f.now)
            XCTAssertEqual(result.reason, reason)
            XCTAssertEqual(result.retryAfterMillis, 0)
            XCTAssertNil(entry, "\(reason.name) consumed usage")
            if reason == .quotaExceeded {
                XCTAssertEqual(result.quota?.remaining, 90, "quota_exceeded shows the unchanged remaining quota")
            } else {
                XCTAssertNil(result.quota, "\(reason.name) has no quota block")
            }
        }
        XCTAssertEqual(f.state.book.counters, licenseUsage)
        XCTAssertEqual(f.state.book.ledger, tokenUsage)
        XCTAssertEqual(f.state.rateLimiters, tat)
        XCTAssertEqual(f.consumed, consumed)

        // The one remaining burst slot is still there; then a rate-limited check consumes no usage either.
        f.checkAllowed(secret, meter: "requests", cost: 1)
        let (limited, entry) = f.state.check(CheckRequest(token: secret, meter: "requests", cost: 5), at: f.now)
        XCTAssertEqual(limited.reason, .rateLimited)
        XCTAssertNil(limited.quota, "rate_limited has no quota block")
        XCTAssertGreaterThan(limited.retryAfterMillis, 0)
        XCTAssertNil(entry)
        XCTAssertEqual(f.state.usage(licenseID: "lic-1", meter: "requests", period: .day, at: f.nowMillis), 11)
        XCTAssertEqual(f.state.usage(tokenID: token.id, meter: "requests"), 11)
    }

    // MARK: - Plans and licenses change decisions at once

    func testPlanChangesApplyFromTheNextCheck() throws {
        let (f, secret, _) = try EngineFixture.standard(quotas: [QuotaRule(meter: "requests", period: .day, limit: 100)])
        f.checkAllowed(secret, scopes: ["write"], meter: "requests", cost: 10)

        try f.putPlan("pro", entitlements: ["read"], quotas: [QuotaRule(meter: "requests", period: .day, limit: 100)])
        XCTAssertEqual(f.check(secret, scopes: ["write"]).reason, .insufficientScope, "entitlement removed")
        f.checkAllowed(secret, scopes: ["read"])

        try f.putPlan("pro", entitlements: ["read"], quotas: [QuotaRule(meter: "requests", period: .day, limit: 10)])
        let result = f.check(secret, scopes: ["read"], meter: "requests", cost: 1)
        XCTAssertEqual(result.reason, .quotaExceeded, "quota lowered below usage")
        XCTAssertEqual(result.quota?.limit, 10)

        try f.putPlan("pro", entitlements: ["read"], quotas: [], rate: 1, burst: 1)
        f.checkAllowed(secret, meter: "requests", cost: 1)
        XCTAssertEqual(f.check(secret).reason, .rateLimited, "rate limit added")

        // While no plan had a daily quota, the daily counter was not kept: the cost of 1 above is not in it.
        try f.putPlan("pro", entitlements: ["*"], quotas: [QuotaRule(meter: "requests", period: .day, limit: 12)])
        XCTAssertEqual(f.checkAllowed(secret, scopes: ["write", "admin"], meter: "requests", cost: 1).quota?.remaining, 1)
    }

    func testPuttingTheSamePlanAgainIsNoChange() throws {
        let (f, _, _) = try EngineFixture.standard(rate: 5, burst: 0)
        let (plan, change) = try f.state.putPlan(Plan(id: "pro", entitlements: ["read", "write"], ratePerSecond: 5, burst: 1), at: f.now)
        XCTAssertNil(change, "the stored plan already has burst 1 after normalization")
        XCTAssertEqual(plan.rateLimits.first?.burst, 1)
        let (_, changed) = try f.state.putPlan(Plan(id: "pro", entitlements: ["read"], ratePerSecond: 5, burst: 1), at: f.now)
        XCTAssertNotNil(changed)
    }

    func testMovingLicenseToAnotherPlanChangesDecisions() throws {
        let (f, secret, _) = try EngineFixture.standard(quotas: [QuotaRule(meter: "requests", period: .month, limit: 100)])
        try f.putPlan("basic", entitlements: ["read"], quotas: [QuotaRule(meter: "requests", period: .month, limit: 20)])
        f.checkAllowed(secret, scopes: ["write"], meter: "requests", cost: 15)
        try f.putLicense("lic-1", plan: "basic")
        XCTAssertEqual(f.check(secret, scopes: ["write"]).reason, .insufficientScope)
        let result = f.check(secret, scopes: ["read"], meter: "requests", cost: 6)
        XCTAssertEqual(result.reason, .quotaExceeded, "usage moves with the license")
        XCTAssertEqual(result.quota, QuotaState(limit: 20, remaining: 5, resetAt: UTCCalendar.bounds(of: .month, containing: f.nowMillis).end))
        try f.putLicense("lic-1", plan: "pro")
        f.checkAllowed(secret, scopes: ["write"], meter: "requests", cost: 6)
    }
}
