import TollgateModel
import TollgateTestSupport
import XCTest

@testable import TollgateEngine

/// Plans as data, license standing, hierarchy and pools, and every limit evaluated in one atomic check — with an
/// injected clock throughout.
final class LicensingModelTests: XCTestCase {
    /// A fixture with plan `p` (given), license `lic-1` on it (in `org`), and one token.
    func fixture(_ plan: Plan, org: String = "", anchorDay: UInt8 = 1, at now: UnixMillis = EngineFixture.epoch) throws -> (EngineFixture, String, TokenInfo) {
        let f = EngineFixture(now: now)
        try f.putPlan(plan)
        if !org.isEmpty { try f.putOrg(OrgSpec(id: org, name: org)) }
        try f.putLicense(LicenseSpec(id: "lic-1", customer: "c", plan: plan.id, status: .active, org: org, billingAnchorDay: anchorDay))
        let (secret, info) = try f.issue(license: "lic-1")
        return (f, secret, info)
    }

    // MARK: - Plans change live

    func testEditingAPlanOrMovingALicenseTakesEffectOnTheNextCheck() throws {
        let (f, secret, _) = try fixture(Plan(id: "basic", entitlements: ["read"], quotas: [QuotaRule(meter: "calls", period: .day, limit: 3)]))
        try f.putPlan(Plan(id: "premium", entitlements: ["read", "write"], features: ["exports"], quotas: [QuotaRule(meter: "calls", period: .day, limit: 10)]))
        for _ in 0..<3 { f.checkAllowed(secret, meter: "calls", cost: 1) }
        XCTAssertEqual(f.check(secret, meter: "calls", cost: 1).reason, .quotaExceeded)
        XCTAssertEqual(f.check(secret, scopes: ["write"]).reason, .insufficientScope)
        XCTAssertEqual(f.check(secret, features: ["exports"]).reason, .featureNotEntitled)

        // Upsell: the same token may write, export, and has room in the day's quota (usage so far counts).
        try f.putLicense("lic-1", plan: "premium")
        f.checkAllowed(secret, scopes: ["write"])
        f.checkAllowed(secret, features: ["exports"])
        let result = f.checkAllowed(secret, meter: "calls", cost: 1)
        XCTAssertEqual(result.quota?.remaining, 6, "3 used before the upsell + 1 now, of 10")

        // Editing the plan in place (a downgrade of the limit) applies at once.
        try f.putPlan(Plan(id: "premium", entitlements: ["read", "write"], features: ["exports"], quotas: [QuotaRule(meter: "calls", period: .day, limit: 4)]))
        XCTAssertEqual(f.check(secret, meter: "calls", cost: 1).reason, .quotaExceeded)
        XCTAssertEqual(f.check(secret, meter: "calls", cost: 1).quota?.remaining, 0)
    }

    // MARK: - License standing

    func testTrialEndsAtItsEnd() throws {
        let (f, secret, _) = try fixture(Plan(id: "trial", entitlements: ["*"]))
        let end = f.nowMillis + Millis.day
        try f.putLicense(LicenseSpec(id: "lic-1", customer: "c", plan: "trial", status: .trialing, trialEndsAt: end))
        f.set(millis: end - 1)
        f.checkAllowed(secret)
        f.set(millis: end)
        XCTAssertEqual(f.check(secret).reason, .trialEnded)
        // Converting to a paid subscription lets the same token through.
        try f.putLicense(LicenseSpec(id: "lic-1", customer: "c", plan: "trial", status: .active, trialEndsAt: end))
        f.checkAllowed(secret)
    }

    func testPastDueWorksForTheGracePeriodCountedFromWhenItBecamePastDue() throws {
        var plan = Plan(id: "pro", entitlements: ["*"])
        plan.pastDueGraceSeconds = 3 * 86_400
        let (f, secret, _) = try fixture(plan)
        let became = f.nowMillis
        let info = try f.putLicense(LicenseSpec(id: "lic-1", customer: "c", plan: "pro", status: .pastDue))
        XCTAssertEqual(info.pastDueSince, became)
        f.advance(millis: 2 * Millis.day)
        // Another sync while still past due (a changed customer name) keeps the original date.
        XCTAssertEqual(try f.putLicense(LicenseSpec(id: "lic-1", customer: "renamed", plan: "pro", status: .pastDue)).pastDueSince, became)
        f.checkAllowed(secret)
        f.set(millis: became + 3 * Millis.day - 1)
        f.checkAllowed(secret)
        f.set(millis: became + 3 * Millis.day)
        XCTAssertEqual(f.check(secret).reason, .paymentOverdue)
        // Paid: active again, and a later past-due period starts a new grace period.
        XCTAssertEqual(try f.putLicense(LicenseSpec(id: "lic-1", customer: "c", plan: "pro", status: .active)).pastDueSince, 0)
        f.checkAllowed(secret)
        try f.putLicense(LicenseSpec(id: "lic-1", customer: "c", plan: "pro", status: .pastDue))
        f.checkAllowed(secret)
    }

    func testValidityWindowCanceledAndExpiredAreToldApart() throws {
        let (f, secret, _) = try fixture(Plan(id: "pro", entitlements: ["*"]))
        let from = f.nowMillis + Millis.hour, until = f.nowMillis + 2 * Millis.hour
        try f.putLicense(LicenseSpec(id: "lic-1", customer: "c", plan: "pro", status: .active, validUntil: until, validFrom: from))
        XCTAssertEqual(f.check(secret).reason, .licenseNotYetValid)
        f.set(millis: from)
        f.checkAllowed(secret)
        f.set(millis: until)
        XCTAssertEqual(f.check(secret).reason, .licenseExpired)
        try f.putLicense(LicenseSpec(id: "lic-1", customer: "c", plan: "pro", status: .canceled))
        XCTAssertEqual(f.check(secret).reason, .licenseInactive)
        try f.putLicense(LicenseSpec(id: "lic-1", customer: "c", plan: "pro", status: .expired))
        XCTAssertEqual(f.check(secret).reason, .licenseExpired)
        assertEngineError(.invalidArgument, "valid_until before valid_from") {
            try f.putLicense(LicenseSpec(id: "lic-1", customer: "c", plan: "pro", status: .active, validUntil: 5, validFrom: 10))
        }
        assertEngineError(.invalidArgument, "anchor day 29") {
            try f.putLicense(LicenseSpec(id: "lic-1", customer: "c", plan: "pro", status: .active, billingAnchorDay: 29))
        }
    }

    // MARK: - Hierarchy and pools

    func testOrgPoolIsSharedByItsLicensesWithAPerTokenCap() throws {
        let plan = Plan(id: "team", entitlements: ["*"], quotas: [
            QuotaRule(meter: "calls", period: .day, limit: 10, pool: .org),
            QuotaRule(meter: "calls", period: .day, limit: 4, pool: .token),
        ])
        let (f, first, _) = try fixture(plan, org: "acme")
        try f.putLicense(LicenseSpec(id: "lic-2", customer: "c", plan: "team", status: .active, org: "acme"))
        try f.putLicense(LicenseSpec(id: "lic-other", customer: "c", plan: "team", status: .active, org: "globex"))
        let second = try f.issue(license: "lic-2").secret
        let third = try f.issue(license: "lic-2").secret
        let outsider = try f.issue(license: "lic-other").secret

        for _ in 0..<4 { f.checkAllowed(first, meter: "calls", cost: 1) }
        let capped = f.check(first, meter: "calls", cost: 1, options: .explain)
        XCTAssertEqual(capped.reason, .quotaExceeded, "the per-token cap")
        XCTAssertEqual(capped.explanation.last?.rule, "quota:calls:day:token")
        XCTAssertTrue(capped.explanation.last?.denied ?? false)
        for _ in 0..<4 { f.checkAllowed(second, meter: "calls", cost: 1) }
        f.checkAllowed(third, meter: "calls", cost: 2)
        let pooled = f.check(third, meter: "calls", cost: 1, options: .explain)
        XCTAssertEqual(pooled.reason, .quotaExceeded, "the organisation's pool of 10 is used up by two licenses")
        XCTAssertEqual(pooled.explanation.last, RuleEvaluation(rule: "quota:calls:day:org", owner: "acme", limit: 10, used: 10, denied: true))
        f.checkAllowed(outsider, meter: "calls", cost: 1)
    }

    func testSuspendingAnOrganisationDeniesItsLicenses() throws {
        let (f, secret, _) = try fixture(Plan(id: "pro", entitlements: ["*"]), org: "acme")
        try f.putOrg(OrgSpec(id: "acme", name: "Acme", suspended: true))
        XCTAssertEqual(f.check(secret).reason, .orgSuspended)
        try f.putOrg(OrgSpec(id: "acme", name: "Acme", suspended: false))
        f.checkAllowed(secret)
    }

    // MARK: - Windows

    func testMonthlyQuotaFollowsTheBillingAnchorDay() throws {
        // 2028-02-17T12:30Z; anchored on the 20th, the period is 2028-01-20 .. 2028-02-20.
        let plan = Plan(id: "pro", entitlements: ["*"], quotas: [QuotaRule(meter: "calls", period: .month, limit: 5)])
        let (f, secret, _) = try fixture(plan, anchorDay: 20)
        let result = f.checkAllowed(secret, meter: "calls", cost: 5)
        XCTAssertEqual(result.quota?.resetAt, 1_834_617_600_000, "2028-02-20T00:00:00Z")
        f.set(millis: 1_834_617_600_000 - 1)
        XCTAssertEqual(f.check(secret, meter: "calls", cost: 1).reason, .quotaExceeded)
        f.set(millis: 1_834_617_600_000)
        f.checkAllowed(secret, meter: "calls", cost: 5)
        // Calendar arithmetic on its own: anchored months across a year end and a leap February.
        XCTAssertEqual(UTCCalendar.bounds(of: .month, containing: 1_830_211_200_000, anchorDay: 15).start, 1_828_828_800_000, "2027-12-31 → from 2027-12-15")
        XCTAssertEqual(UTCCalendar.bounds(of: .month, containing: 1_830_211_200_000, anchorDay: 15).end, 1_831_507_200_000, "to 2028-01-15")
        XCTAssertEqual(UTCCalendar.bounds(of: .month, containing: 1_835_395_200_000, anchorDay: 28).start, 1_835_308_800_000, "2028-02-29 → from 2028-02-28")
    }

    func testRollingWindowForgetsUsageSliceBySlice() throws {
        let plan = Plan(id: "pro", entitlements: ["*"], quotas: [QuotaRule(meter: "calls", window: .rolling(seconds: 60), limit: 3)])
        let (f, secret, _) = try fixture(plan, at: 1_834_403_400_000)  // a whole second: slices are 1 s
        f.checkAllowed(secret, meter: "calls", cost: 2)
        f.advance(millis: 30_000)
        f.checkAllowed(secret, meter: "calls", cost: 1)
        XCTAssertEqual(f.check(secret, meter: "calls", cost: 1).reason, .quotaExceeded)
        f.advance(millis: 29_999)  // 59.999 s after the first two
        XCTAssertEqual(f.check(secret, meter: "calls", cost: 1).reason, .quotaExceeded)
        f.advance(millis: 1)  // the first two leave the window
        f.checkAllowed(secret, meter: "calls", cost: 2)
        XCTAssertEqual(f.check(secret, meter: "calls", cost: 1).reason, .quotaExceeded)
    }

    // MARK: - Rate limits

    func testTokenAndLicenseRateLimitsWithRetryAfter() throws {
        var plan = Plan(id: "pro", entitlements: ["*"])
        plan.rateLimits = [RateRule(pool: .license, ratePerSecond: 10, burst: 3), RateRule(pool: .token, ratePerSecond: 1, burst: 2)]
        let (f, a, _) = try fixture(plan)
        let b = try f.issue(license: "lic-1").secret
        f.checkAllowed(a)
        f.checkAllowed(a)
        let limited = f.check(a, options: .explain)
        XCTAssertEqual(limited.reason, .rateLimited)
        XCTAssertEqual(limited.explanation.last?.rule, "rate:token")
        XCTAssertEqual(limited.retryAfterMillis, 1000, "a token's next slot is a second away")
        // The denied check took no license slot: b still has one of the license's burst of 3.
        f.checkAllowed(b)
        let licenseLimited = f.check(b)
        XCTAssertEqual(licenseLimited.reason, .rateLimited)
        XCTAssertEqual(licenseLimited.retryAfterMillis, 100, "the license refills at 10/s")
    }

    // MARK: - Credits

    func testCreditsIncludedFirstThenPrepaidAndRefilledEachPeriod() throws {
        var plan = Plan(id: "pro", entitlements: ["*"])
        plan.credits = CreditPolicy(pool: .license, included: 10, period: .day)
        let (f, secret, _) = try fixture(plan)
        XCTAssertEqual(f.checkAllowed(secret, meter: "gpu", cost: 8).creditsRemaining, 2)
        let short = f.check(secret, meter: "gpu", cost: 3)
        XCTAssertEqual(short.reason, .creditsExhausted)
        XCTAssertEqual(short.creditsRemaining, 2)
        let (balance, change) = try f.state.grantCredits(CreditsGrant(pool: .license, owner: "lic-1", amount: 5, reason: "top-up"), at: f.now)
        f.record(change)
        XCTAssertEqual(balance, 5)
        XCTAssertEqual(f.checkAllowed(secret, meter: "gpu", cost: 3).creditsRemaining, 4, "2 included + 1 prepaid spent, 4 prepaid left")
        XCTAssertEqual(f.state.licenseInfo(id: "lic-1")?.prepaidCredits, 4)
        // The next day refills the included credits; prepaid ones carry over.
        f.set(millis: UTCCalendar.bounds(of: .day, containing: f.nowMillis).end)
        XCTAssertEqual(f.checkAllowed(secret, meter: "gpu", cost: 12).creditsRemaining, 2)
        XCTAssertEqual(f.check(secret, meter: "gpu", cost: 3).reason, .creditsExhausted)
        // Events: credits low fired once per period.
        XCTAssertEqual(f.state.book.events.filter { $0.kind == .creditsLow }.count, 2)
    }

    func testOverageIsAllowedAndRecordedWhenThePlanSaysSo() throws {
        var plan = Plan(id: "pro", entitlements: ["*"], quotas: [QuotaRule(meter: "calls", period: .month, limit: 10)])
        plan.overage = .allowAndRecord
        let (f, secret, token) = try fixture(plan)
        f.checkAllowed(secret, meter: "calls", cost: 8)
        let over = f.checkAllowed(secret, meter: "calls", cost: 5)
        XCTAssertEqual(over.overage, 3)
        XCTAssertEqual(over.quota?.remaining, 0)
        XCTAssertEqual(f.checkAllowed(secret, meter: "calls", cost: 2).overage, 2)
        let rows = f.state.usageRows(UsageQuery(from: 0, to: .max))
        XCTAssertEqual(rows, [UsageRow(org: "", project: "", licenseID: "lic-1", tokenID: token.id, meter: "calls",
            periodStart: UTCCalendar.bounds(of: .hour, containing: f.nowMillis).start, quantity: 15, overage: 5)])
    }

    // MARK: - All limits together

    func testACheckDeniedByAnyLimitChangesNone() throws {
        var plan = Plan(id: "pro", entitlements: ["*"], quotas: [
            QuotaRule(meter: "calls", period: .day, limit: 100, pool: .license),
            QuotaRule(meter: "calls", window: .rolling(seconds: 3600), limit: 100, pool: .token),
        ])
        plan.rateLimits = [RateRule(pool: .license, ratePerSecond: 100, burst: 100)]
        plan.concurrency = [ConcurrencyRule(pool: .license, max: 5)]
        plan.credits = CreditPolicy(pool: .license, included: 20, period: .month)
        let (f, secret, _) = try fixture(plan)
        f.checkAllowed(secret, meter: "calls", cost: 15, options: .lease)
        let book = f.state.book, limiters = f.state.rateLimiters, leases = f.state.leasesHeld, consumed = f.consumed.count

        // Every quota and the rate limit would allow 10 more; the credits (5 left) do not.
        let denied = f.check(secret, meter: "calls", cost: 10, options: [.explain, .lease])
        XCTAssertEqual(denied.reason, .creditsExhausted)
        XCTAssertEqual(denied.explanation.map(\.rule), ["rate:license", "concurrency:license", "quota:calls:day:license", "quota:calls:rolling:3600:token", "credits:license"])
        XCTAssertEqual(denied.explanation.map(\.denied), [false, false, false, false, true])
        XCTAssertEqual(denied.explanation.map(\.used), [1, 1, 15, 15, 5])
        XCTAssertEqual(f.state.book, book, "no counter, credit or event changed")
        XCTAssertEqual(f.state.rateLimiters, limiters, "the rate limiter took nothing")
        XCTAssertEqual(f.state.leasesHeld, leases, "no lease was taken")
        XCTAssertEqual(f.consumed.count, consumed)
        XCTAssertEqual(denied.leaseID, 0)
        XCTAssertEqual(denied.quota?.remaining, 85, "the quota as it stands: the denied check charged nothing")
    }

    // MARK: - Leases and reservations

    func testConcurrencyLeasesAreCountedUntilReleased() throws {
        var plan = Plan(id: "pro", entitlements: ["*"])
        plan.concurrency = [ConcurrencyRule(pool: .license, max: 2), ConcurrencyRule(pool: .token, max: 1)]
        let (f, a, _) = try fixture(plan)
        let b = try f.issue(license: "lic-1").secret
        let c = try f.issue(license: "lic-1").secret
        let first = f.checkAllowed(a, options: .lease).leaseID
        XCTAssertNotEqual(first, 0)
        XCTAssertEqual(f.check(a, options: .lease).reason, .concurrencyLimited, "the token's one slot is taken")
        let second = f.checkAllowed(b, options: .lease).leaseID
        XCTAssertEqual(f.check(c, options: .lease).reason, .concurrencyLimited, "the license's two slots are taken")
        f.checkAllowed(c)  // a check without a lease is not limited by concurrency
        XCTAssertTrue(f.state.release(leaseID: first))
        XCTAssertFalse(f.state.release(leaseID: first), "a lease is released once")
        f.checkAllowed(c, options: .lease)
        XCTAssertTrue(f.state.release(leaseID: second))
        XCTAssertEqual(f.state.leasesHeld, 1)
        // Where no concurrency limit applies, no lease is taken.
        try f.putPlan(Plan(id: "pro", entitlements: ["*"]))
        XCTAssertEqual(f.checkAllowed(a, options: .lease).leaseID, 0)
    }

    func testReservationsHoldQuotaUntilSettledOrExpired() throws {
        let plan = Plan(id: "pro", entitlements: ["*"], quotas: [QuotaRule(meter: "tokens", period: .day, limit: 100)])
        let (f, secret, token) = try fixture(plan)
        let reserved = f.checkAllowed(secret, meter: "tokens", cost: 80, options: .reserve)
        XCTAssertNotEqual(reserved.reservationID, 0)
        XCTAssertTrue(f.consumed.isEmpty, "a reservation charges nothing yet")
        XCTAssertEqual(f.check(secret, meter: "tokens", cost: 30).reason, .quotaExceeded, "80 are held")
        let settled = try f.settle(reserved.reservationID, cost: 50)
        XCTAssertEqual(settled.quota?.remaining, 50)
        XCTAssertEqual(f.consumed.map(\.quantity), [50])
        f.checkAllowed(secret, meter: "tokens", cost: 30)
        assertEngineError(.notFound, "settled once") { try f.settle(reserved.reservationID, cost: 1) }

        // An unsettled reservation is released when its lifetime ends.
        let held = f.checkAllowed(secret, meter: "tokens", cost: 20, options: .reserve).reservationID
        XCTAssertEqual(f.check(secret, meter: "tokens", cost: 1).reason, .quotaExceeded)
        f.advance(millis: LicensingState.defaultReservationLifetime)
        XCTAssertEqual(f.state.expireReservations(at: f.nowMillis), 1)
        f.checkAllowed(secret, meter: "tokens", cost: 20)
        assertEngineError(.notFound) { try f.settle(held, cost: 1) }
        XCTAssertEqual(f.state.usage(tokenID: token.id, meter: "tokens"), 100)
    }

    // MARK: - Token lifecycle

    func testPlanLifetimeAndActiveTokenLimits() throws {
        var plan = Plan(id: "pro", entitlements: ["*"])
        plan.maxTokenLifetimeSeconds = 3600
        plan.maxActiveTokens = 2
        let (f, _, first) = try fixture(plan)
        XCTAssertEqual(first.expiresAt, f.nowMillis + Millis.hour, "no expiry asked: the plan's longest lifetime")
        assertEngineError(.invalidArgument, "longer than the plan allows") { try f.issue(license: "lic-1", expiresAt: f.nowMillis + 2 * Millis.hour) }
        try f.issue(license: "lic-1", expiresAt: f.nowMillis + Millis.minute)
        assertEngineError(.invalidArgument, "a third active token") { try f.issue(license: "lic-1") }
        f.advance(millis: Millis.minute)  // the short one expired: a slot is free
        try f.issue(license: "lic-1")
    }

    func testRotationKeepsTheIdentityAndTheOldSecretForTheGracePeriod() throws {
        let (f, old, token) = try fixture(Plan(id: "pro", entitlements: ["*"]))
        let (new, rotated, change) = try f.state.rotate(RotateRequest(tokenID: token.id, graceSeconds: 600), at: f.now, using: &f.rng)
        f.record(change)
        XCTAssertEqual(rotated.id, token.id)
        XCTAssertNotEqual(new, old)
        XCTAssertEqual(rotated.previousSecretValidUntil, f.nowMillis + 600_000)
        f.advance(millis: 1000)
        XCTAssertEqual(f.checkAllowed(old).tokenID, token.id, "the old secret still works")
        let usedOldAt = f.nowMillis
        f.advance(millis: 1000)
        XCTAssertEqual(f.checkAllowed(new).tokenID, token.id)
        XCTAssertTrue(try f.meter(old, meter: "calls", quantity: 1).result.allowed, "METER accepts the old secret in the grace period too")
        let seen = f.state.token(id: token.id)!.info
        XCTAssertEqual(seen.previousSecretLastUsedAt, usedOldAt, "the last use of the old secret is visible")
        XCTAssertEqual(seen.lastUsedAt, f.nowMillis)
        f.set(millis: rotated.previousSecretValidUntil)
        XCTAssertEqual(f.check(old).reason, .revoked, "after the grace period the old secret is refused as revoked")
        XCTAssertEqual(try f.meter(old, meter: "calls", quantity: 1).result.reason, .revoked)
        XCTAssertEqual(try f.state.derive(DeriveRequest(parent: old, ttlSeconds: 60), at: f.now, maxLifetime: Millis.hour, using: &f.rng).result.reason, .revoked)
        f.checkAllowed(new)

        // Ending the overlap early.
        let (newer, _, again) = try f.state.rotate(RotateRequest(tokenID: token.id, graceSeconds: 3600), at: f.now, using: &f.rng)
        f.record(again)
        f.checkAllowed(new)
        f.record(try f.state.endRotation(tokenID: token.id, at: f.now).change)
        XCTAssertEqual(f.check(new).reason, .revoked)
        XCTAssertEqual(f.check(old).reason, .revoked, "older secrets stay refused")
        f.checkAllowed(newer)
        // A leaked old secret still names the identity: revoking with it revokes the token.
        XCTAssertEqual(try f.revoke(.secret(old)).revoked, 1)
        XCTAssertEqual(f.check(newer).reason, .revoked)
    }

    /// A long grace, then a rotation with none: the last rotation's overlap is over, the first one's is not, and
    /// ROTATION_END ends it (found by the crash loop: the end was answered without a change and the oldest secret
    /// kept working).
    func testRotationEndEndsAnEarlierOverlapThatOutlastsTheLastRotation() throws {
        let (f, first, token) = try fixture(Plan(id: "pro", entitlements: ["*"]))
        let (second, _, long) = try f.state.rotate(RotateRequest(tokenID: token.id, graceSeconds: 86_400), at: f.now, using: &f.rng)
        f.record(long)
        f.advance(millis: 1000)
        let (third, rotated, none) = try f.state.rotate(RotateRequest(tokenID: token.id, graceSeconds: 0), at: f.now, using: &f.rng)
        f.record(none)
        f.advance(millis: 1000)
        XCTAssertEqual(f.check(second).reason, .revoked, "no grace: the second secret is refused at once")
        f.checkAllowed(first)
        let (ended, change) = try f.state.endRotation(tokenID: token.id, at: f.now)
        XCTAssertNotNil(change, "an overlap was running: the end is a change to journal")
        f.record(change)
        XCTAssertEqual(ended.previousSecretValidUntil, rotated.previousSecretValidUntil, "the last rotation's end stays")
        XCTAssertEqual(f.check(first).reason, .revoked, "the first secret's overlap is ended too")
        XCTAssertEqual(f.check(second).reason, .revoked)
        f.checkAllowed(third)
        XCTAssertNil(try f.state.endRotation(tokenID: token.id, at: f.now).change, "nothing left to end: nothing to write")
    }

    func testDerivedTokensAreNarrowerShortLivedAndDieWithTheirParent() throws {
        var plan = Plan(id: "pro", entitlements: ["*"])
        plan.maxTokenLifetimeSeconds = 86_400
        let (f, parent, parentInfo) = try fixture(plan)
        let narrow = try f.issue(license: "lic-1", scopes: ["read", "write"])

        let (result, childSecret, child, change) = try f.state.derive(DeriveRequest(parent: narrow.secret, scopes: ["read"], ttlSeconds: 7200), at: f.now, maxLifetime: Millis.hour, using: &f.rng)
        f.record(change)
        XCTAssertTrue(result.allowed)
        XCTAssertEqual(child?.parentID, narrow.info.id)
        XCTAssertEqual(child?.scopes, ["read"])
        XCTAssertEqual(child?.expiresAt, f.nowMillis + Millis.hour, "capped by the daemon's maximum for derived tokens")
        f.checkAllowed(childSecret, scopes: ["read"])
        XCTAssertEqual(f.check(childSecret, scopes: ["write"]).reason, .insufficientScope)

        let wider = try f.state.derive(DeriveRequest(parent: narrow.secret, scopes: ["admin"], ttlSeconds: 60), at: f.now, maxLifetime: Millis.hour, using: &f.rng)
        XCTAssertEqual(wider.result.reason, .insufficientScope, "a child cannot gain scopes")
        XCTAssertNil(wider.change)
        assertEngineError(.invalidArgument, "no grandchildren") {
            try f.state.derive(DeriveRequest(parent: childSecret, ttlSeconds: 60), at: f.now, maxLifetime: Millis.hour, using: &f.rng)
        }
        let (_, _, sibling, siblingChange) = try f.state.derive(DeriveRequest(parent: parent, ttlSeconds: 60), at: f.now, maxLifetime: Millis.hour, using: &f.rng)
        f.record(siblingChange)
        XCTAssertEqual(sibling?.parentID, parentInfo.id)

        let (count, _) = try f.revoke(.tokenID(narrow.info.id), actor: "ops")
        XCTAssertEqual(count, 2, "the parent and its child")
        XCTAssertEqual(f.check(childSecret).reason, .revoked)
        XCTAssertEqual(f.state.token(id: child!.id)?.info.revokedBy, "ops")
        let revokedParent = try f.state.derive(DeriveRequest(parent: narrow.secret, ttlSeconds: 60), at: f.now, maxLifetime: Millis.hour, using: &f.rng)
        XCTAssertEqual(revokedParent.result.reason, .revoked)
    }

    func testRevocationByOrganisationAndSubject() throws {
        let (f, first, _) = try fixture(Plan(id: "pro", entitlements: ["*"]), org: "acme")
        try f.putLicense(LicenseSpec(id: "lic-2", customer: "c", plan: "pro", status: .active, org: "acme"))
        try f.putLicense(LicenseSpec(id: "lic-3", customer: "c", plan: "pro", status: .active))
        let second = try f.issue(license: "lic-2", subject: "bob").secret
        let bobElsewhere = try f.issue(license: "lic-3", subject: "bob").secret
        let carol = try f.issue(license: "lic-3", subject: "carol").secret

        let (byOrg, change) = try f.revoke(.org("acme"), reason: "contract ended", actor: "alice@ops")
        XCTAssertEqual(byOrg, 2)
        if case .tokensRevoked(_, let reason, let actor, _)? = change {
            XCTAssertEqual(reason, "contract ended")
            XCTAssertEqual(actor, "alice@ops")
        } else {
            XCTFail("expected a revocation record")
        }
        XCTAssertEqual(f.check(first).reason, .revoked)
        XCTAssertEqual(f.check(second).reason, .revoked)
        f.checkAllowed(bobElsewhere)
        XCTAssertEqual(try f.revoke(.subject("bob")).revoked, 1, "bob's token in lic-3; the one in lic-2 was already revoked")
        XCTAssertEqual(f.check(bobElsewhere).reason, .revoked)
        f.checkAllowed(carol)
        assertEngineError(.notFound) { try f.revoke(.org("nobody")) }
        assertEngineError(.notFound) { try f.revoke(.subject("nobody")) }
    }

    // MARK: - Events and the sweep

    func testThresholdEventsAreRecordedOnceEach() throws {
        let (f, secret, _) = try fixture(Plan(id: "pro", entitlements: ["*"], quotas: [QuotaRule(meter: "calls", period: .day, limit: 10)]))
        f.checkAllowed(secret, meter: "calls", cost: 7)
        XCTAssertTrue(f.state.book.events.isEmpty)
        f.checkAllowed(secret, meter: "calls", cost: 1)  // 8 of 10: 80 %
        try f.meter(secret, meter: "calls", quantity: 1)
        f.checkAllowed(secret, meter: "calls", cost: 1)  // 10 of 10: 100 %
        try f.meter(secret, meter: "calls", quantity: 5)  // beyond: no new event
        let day = UTCCalendar.bounds(of: .day, containing: f.nowMillis).start
        XCTAssertEqual(f.state.book.events.map(\.kind), [.quota80, .quota100])
        XCTAssertEqual(f.state.book.events.map(\.detail), ["quota:calls:day:license@\(day)", "quota:calls:day:license@\(day)"])
        XCTAssertEqual(f.state.book.events.map(\.sequence), [1, 2])
        // The next day's window has its own thresholds.
        f.set(millis: day + Millis.day)
        f.checkAllowed(secret, meter: "calls", cost: 9)
        XCTAssertEqual(f.state.book.events.map(\.kind), [.quota80, .quota100, .quota80])
        XCTAssertEqual(f.state.events(after: 2, limit: 10).map(\.sequence), [3])
        // They reach the journal as their own record.
        f.flushConsumed()
        XCTAssertTrue(f.changes.contains { if case .eventsRecorded(let events) = $0 { return events.count == 3 } else { return false } })
    }

    func testSweepWarnsOfExpiryOnceAndForgetsLongGoneTokens() throws {
        let (f, _, _) = try fixture(Plan(id: "pro", entitlements: ["*"]))
        let soon = try f.issue(license: "lic-1", expiresAt: f.nowMillis + 2 * Millis.hour)
        let revoked = try f.issue(license: "lic-1")
        let (_, _, rotation) = try f.state.rotate(RotateRequest(tokenID: revoked.info.id, graceSeconds: 60), at: f.now, using: &f.rng)
        f.record(rotation)
        XCTAssertEqual(f.state.book.retiredSecrets.count, 1)
        try f.revoke(.tokenID(revoked.info.id))
        for _ in 0..<2 { f.sweep(tokenRetention: Millis.day, expiryWarning: 3 * Millis.hour) }
        XCTAssertEqual(f.state.book.events.map(\.kind), [.tokenExpiring], "once, however often the sweep runs")
        XCTAssertEqual(f.state.book.events.first?.owner, soon.info.id)
        f.advance(millis: Millis.day + 2 * Millis.hour + 1)
        f.sweep(tokenRetention: Millis.day)
        XCTAssertNil(f.state.token(id: revoked.info.id), "revoked more than a day ago: forgotten")
        XCTAssertNil(f.state.token(id: soon.info.id), "expired more than a day ago: forgotten")
        XCTAssertEqual(f.check(revoked.secret).reason, .unknownToken, "its rotated-out secret is forgotten with it")
        XCTAssertTrue(f.state.book.retiredSecrets.isEmpty)
        XCTAssertEqual(f.state.tokens.count, 1, "the unexpired token stays")
    }

    /// A forgotten token's place in the token store is reused by the next token, and the forgotten token's
    /// deadlines are still in the sweep's indexes: they must not warn about, or forget, the token now there.
    func testDeadlinesOfAForgottenTokenDoNotTouchTheTokenThatTakesItsPlace() throws {
        let (f, _, _) = try fixture(Plan(id: "pro", entitlements: ["*"]))
        let gone = try f.issue(license: "lic-1", expiresAt: f.nowMillis + 10 * Millis.day)
        XCTAssertEqual(f.check(gone.secret).reason, .none)
        XCTAssertEqual(f.state.token(id: gone.info.id)?.info.lastUsedAt, f.nowMillis)
        try f.revoke(.tokenID(gone.info.id))
        f.advance(millis: 2 * Millis.day)
        f.sweep(tokenRetention: Millis.day)
        XCTAssertNil(f.state.token(id: gone.info.id))
        // Its expiry deadline (8 days from now) stays in the index; the new token takes its place.
        let successor = try f.issue(license: "lic-1", expiresAt: f.nowMillis + 30 * Millis.day)
        XCTAssertEqual(f.state.token(id: successor.info.id)?.info.lastUsedAt, 0, "its predecessor's last use is not its own")
        // 12 hours before the predecessor's expiry, within the warning horizon: its deadline finds the successor.
        f.advance(millis: 7 * Millis.day + 12 * Millis.hour)
        f.sweep(tokenRetention: Millis.day, expiryWarning: Millis.day)
        XCTAssertTrue(f.state.book.events.isEmpty, "no expiry warning for a token that is not expiring: \(f.state.book.events)")
        f.advance(millis: 13 * Millis.hour)
        f.sweep(tokenRetention: Millis.day, expiryWarning: Millis.day)
        f.advance(millis: 2 * Millis.day)
        f.sweep(tokenRetention: Millis.day, expiryWarning: Millis.day)
        XCTAssertNotNil(f.state.token(id: successor.info.id), "not forgotten by its predecessor's deadline")
        XCTAssertEqual(f.check(successor.secret).reason, .none)
        XCTAssertTrue(f.state.book.events.isEmpty, "no expiry warning for a token that is not expiring: \(f.state.book.events)")
        // Its own deadlines still work.
        f.advance(millis: 19 * Millis.day)
        f.sweep(tokenRetention: Millis.day, expiryWarning: Millis.day)
        XCTAssertEqual(f.state.book.events.map(\.owner), [successor.info.id])
        f.advance(millis: 3 * Millis.day)
        f.sweep(tokenRetention: Millis.day, expiryWarning: Millis.day)
        XCTAssertNil(f.state.token(id: successor.info.id))
    }

    func testSweepDropsOldKeysAndLedgerHoursOnly() throws {
        let (f, secret, _) = try fixture(Plan(id: "pro", entitlements: ["*"]))
        try f.meter(secret, meter: "calls", quantity: 5, key: "k1")
        f.advance(millis: 2 * Millis.hour)
        try f.meter(secret, meter: "calls", quantity: 7, key: "k2")
        f.advance(millis: Millis.hour)
        f.sweep(keyRetention: 2 * Millis.hour, ledgerRetention: 2 * Millis.hour + Millis.minute)
        XCTAssertNil(f.state.book.idempotencyKeys["k1"], "older than the retention")
        XCTAssertNotNil(f.state.book.idempotencyKeys["k2"])
        XCTAssertEqual(f.state.usageRows(UsageQuery(from: 0, to: .max)).map(\.quantity), [7], "the first hour aged out of the ledger")
        // A forgotten key counts again; a remembered one does not.
        XCTAssertFalse(try f.meter(secret, meter: "calls", quantity: 5, key: "k1").result.duplicate)
        XCTAssertTrue(try f.meter(secret, meter: "calls", quantity: 7, key: "k2").result.duplicate)
        // The indexes survive a snapshot: a later sweep still finds k2.
        try f.takeSnapshot()
        try f.restart()
        f.advance(millis: 2 * Millis.hour)
        f.sweep(keyRetention: 2 * Millis.hour)
        XCTAssertNil(f.state.book.idempotencyKeys["k2"])
    }
}
