import Foundation
import NIOCore
import TollgateModel
import XCTest

@testable import TollgateEngine

/// METER, REVOKE and ISSUE (`Protocol/PROTOCOL.md` 6.4–6.6).
final class MeterTests: XCTestCase {
    func testMeterCountsPerLicenseAndPerToken() throws {
        let (f, alice, aliceInfo) = try EngineFixture.standard()
        try f.countLicenseUsage(of: "bytes")
        let (bob, bobInfo) = try f.issue(license: "lic-1", subject: "bob")
        let (result, change) = try f.meter(alice, meter: "bytes", quantity: 5)
        XCTAssertEqual(result, MeterResult(reason: .none, tokenID: aliceInfo.id, licenseID: "lic-1", duplicate: false, quota: nil))
        XCTAssertEqual(change, .metered(UsageEntry(tokenID: aliceInfo.id, meter: "bytes", quantity: 5, at: f.nowMillis), idempotencyKey: ""))
        f.advance(millis: Millis.minute)
        try f.meter(bob, meter: "bytes", quantity: 7)
        try f.meter(bob, meter: "calls", quantity: 1)
        for period in Period.allCases {
            XCTAssertEqual(f.state.usage(licenseID: "lic-1", meter: "bytes", period: period, at: f.nowMillis), 12, period.name)
        }
        XCTAssertEqual(f.state.usage(tokenID: aliceInfo.id, meter: "bytes"), 5)
        XCTAssertEqual(f.state.usage(tokenID: bobInfo.id, meter: "bytes"), 7)
        XCTAssertEqual(f.state.usage(tokenID: bobInfo.id, meter: "calls"), 1)
        XCTAssertEqual(f.state.usage(tokenID: aliceInfo.id, meter: "calls"), 0)
        let hour = UTCCalendar.bounds(of: .hour, containing: f.nowMillis).start
        XCTAssertEqual(f.state.book.ledger[hour]?[LedgerKey(licenseID: "lic-1", tokenID: bobInfo.id, meter: "bytes", hourStart: hour)]?.quantity, 7)
        // The next hour starts from zero for the hourly counter only.
        f.set(millis: UTCCalendar.bounds(of: .hour, containing: f.nowMillis).end)
        XCTAssertEqual(f.state.usage(licenseID: "lic-1", meter: "bytes", period: .hour, at: f.nowMillis), 0)
        XCTAssertEqual(f.state.usage(licenseID: "lic-1", meter: "bytes", period: .day, at: f.nowMillis), 12)
    }

    /// Calendar counters are kept only for the (pool level, period) pairs some plan's quota reads; a pair starts
    /// counting when a plan first reads it. The ledger records everything.
    func testOnlyCountersSomePlanReadsAreKept() throws {
        let (f, alice, aliceInfo) = try EngineFixture.standard(quotas: [QuotaRule(meter: "bytes", period: .day, limit: 100)])
        try f.meter(alice, meter: "bytes", quantity: 5)
        XCTAssertEqual(f.state.usage(licenseID: "lic-1", meter: "bytes", period: .day, at: f.nowMillis), 5)
        XCTAssertEqual(f.state.usage(licenseID: "lic-1", meter: "bytes", period: .month, at: f.nowMillis), 0, "no plan reads it")
        XCTAssertEqual(f.state.book.allCounters.count, 1)
        try f.putPlan("other", quotas: [QuotaRule(meter: "calls", period: .month, limit: 1, pool: .token)])
        try f.meter(alice, meter: "bytes", quantity: 2)
        XCTAssertEqual(f.state.usage(licenseID: "lic-1", meter: "bytes", period: .day, at: f.nowMillis), 7)
        XCTAssertEqual(f.state.usage(licenseID: "lic-1", meter: "bytes", period: .month, at: f.nowMillis), 0, "another level")
        let monthStart = UTCCalendar.bounds(of: .month, containing: f.nowMillis, anchorDay: 1).start
        XCTAssertEqual(f.state.book.counter(CounterKey(pool: PoolKey(.token, aliceInfo.id), meter: "bytes", period: .month, start: monthStart)), 2,
            "a plan that no license uses still makes the pair counted, from its change on, for every meter")
        XCTAssertEqual(f.state.usage(tokenID: aliceInfo.id, meter: "bytes"), 7, "the ledger has everything")
    }

    func testRepeatedIdempotencyKeyIsCountedOnce() throws {
        let (f, alice, _) = try EngineFixture.standard()
        try f.countLicenseUsage(of: "bytes")
        let bob = try f.issue(license: "lic-1", subject: "bob").secret
        let first = try f.meter(alice, quantity: 5, key: "req-1")
        XCTAssertFalse(first.result.duplicate)
        XCTAssertNotNil(first.change)
        XCTAssertEqual(f.state.book.idempotencyKeys["req-1"], f.nowMillis)
        f.advance(millis: Millis.hour)
        let again = try f.meter(alice, quantity: 9, key: "req-1")
        XCTAssertEqual(again.result.reason, .none)
        XCTAssertTrue(again.result.duplicate)
        XCTAssertNil(again.change)
        let otherToken = try f.meter(bob, quantity: 9, key: "req-1")
        XCTAssertTrue(otherToken.result.duplicate, "keys are global")
        XCTAssertNil(otherToken.change)
        XCTAssertEqual(f.state.usage(licenseID: "lic-1", meter: "bytes", period: .month, at: f.nowMillis), 5)
        // No key: every event counts.
        try f.meter(alice, quantity: 1)
        try f.meter(alice, quantity: 1)
        XCTAssertEqual(f.state.usage(licenseID: "lic-1", meter: "bytes", period: .month, at: f.nowMillis), 7)
        XCTAssertNil(f.state.book.idempotencyKeys[""])
    }

    func testQuotaIsReportedButNeverDeniesAMeter() throws {
        let (f, secret, _) = try EngineFixture.standard(quotas: [QuotaRule(meter: "bytes", period: .day, limit: 10)])
        let dayEnd = UTCCalendar.bounds(of: .day, containing: f.nowMillis).end
        XCTAssertEqual(try f.meter(secret, meter: "bytes", quantity: 8).result.quota, QuotaState(limit: 10, remaining: 2, resetAt: dayEnd))
        let over = try f.meter(secret, meter: "bytes", quantity: 5)
        XCTAssertEqual(over.result.reason, .none)
        XCTAssertNotNil(over.change)
        XCTAssertEqual(over.result.quota, QuotaState(limit: 10, remaining: 0, resetAt: dayEnd))
        XCTAssertEqual(f.state.usage(licenseID: "lic-1", meter: "bytes", period: .day, at: f.nowMillis), 13)
        XCTAssertEqual(f.check(secret, meter: "bytes", cost: 1).reason, .quotaExceeded)
        let keyed = try f.meter(secret, meter: "bytes", quantity: 1, key: "k")
        XCTAssertEqual(keyed.result.quota?.remaining, 0)
        XCTAssertNil(try f.meter(secret, meter: "other", quantity: 1).result.quota)
    }

    func testMeterIgnoresScopesAndRateLimit() throws {
        let (f, secret, _) = try EngineFixture.standard(rate: 1, burst: 1, entitlements: [])
        for _ in 0..<5 { XCTAssertEqual(try f.meter(secret).result.reason, .none) }
        f.checkAllowed(secret)  // metering did not use the rate budget
        XCTAssertEqual(f.check(secret).reason, .rateLimited)
        XCTAssertEqual(try f.meter(secret).result.reason, .none)
    }

    func testInvalidTokensDenyMeterWithTheSameReasonsAsCheck() throws {
        let (f, live, _) = try EngineFixture.standard()
        let revoked = try f.issue(license: "lic-1").secret
        try f.revoke(.secret(revoked))
        let future = try f.issue(license: "lic-1", notBefore: f.nowMillis + Millis.hour).secret
        let expired = try f.issue(license: "lic-1", expiresAt: f.nowMillis + 1).secret
        try f.putLicense("lic-2", plan: "pro", status: .canceled)
        let inactive = try f.issue(license: "lic-2").secret
        f.advance(millis: 1)
        let usage = f.state.book.counters
        let cases: [(String, DenyReason)] = [
            ("tg_test_short", .malformedToken), (f.unissuedToken(), .unknownToken), (revoked, .revoked),
            (future, .notYetValid), (expired, .expired), (inactive, .licenseInactive),
        ]
        for (token, reason) in cases {
            let (result, change) = try f.meter(token, quantity: 3, key: "key-\(reason.rawValue)")
            XCTAssertEqual(result.reason, reason)
            XCTAssertEqual(f.check(token).reason, reason, "CHECK agrees")
            XCTAssertNil(change)
            XCTAssertFalse(result.duplicate)
            XCTAssertNil(result.quota)
            if reason.rawValue <= DenyReason.unknownToken.rawValue {
                XCTAssertEqual([result.tokenID, result.licenseID], ["", ""])
            } else {
                XCTAssertFalse(result.tokenID.isEmpty)
            }
        }
        XCTAssertEqual(f.state.book.counters, usage)
        XCTAssertTrue(f.state.book.idempotencyKeys.isEmpty, "a denied meter does not burn its idempotency key")
        XCTAssertFalse(try f.meter(live, quantity: 3, key: "key-\(DenyReason.revoked.rawValue)").result.duplicate)
    }

    /// Usage that happened is counted; it must never make the license's counter smaller. A wrapped counter would
    /// hand the license a fresh quota: with 10 of 10 used, METER 2^64 - 10 must not reset usage to 0.
    func testMeterQuantityCannotWrapTheUsageCounter() throws {
        let (f, secret, _) = try EngineFixture.standard(quotas: [QuotaRule(meter: "bytes", period: .day, limit: 10)])
        try f.countLicenseUsage(of: "bytes")
        f.checkAllowed(secret, meter: "bytes", cost: 10)
        XCTAssertEqual(f.check(secret, meter: "bytes", cost: 1).reason, .quotaExceeded)
        let (result, _) = try f.meter(secret, meter: "bytes", quantity: UInt64.max - 9)
        XCTAssertEqual(result.reason, .none)
        XCTAssertEqual(result.quota?.remaining, 0, "the quota is used up after metering more")
        let used = f.state.usage(licenseID: "lic-1", meter: "bytes", period: .day, at: f.nowMillis)
        XCTAssertGreaterThanOrEqual(used, 10, "the counter wrapped around")
        XCTAssertEqual(f.check(secret, meter: "bytes", cost: 1).reason, .quotaExceeded, "metering reset the quota")
        // Counters saturate at 2^64 - 1, also when summed over months.
        let (_, change) = try f.meter(secret, meter: "bytes", quantity: .max)
        XCTAssertNotNil(change)
        XCTAssertEqual(f.state.usage(licenseID: "lic-1", meter: "bytes", period: .month, at: f.nowMillis), .max)
        f.set(millis: UTCCalendar.bounds(of: .month, containing: f.nowMillis).end)
        try f.meter(secret, meter: "bytes", quantity: .max)
        let tokenID = f.state.tokens.allIDs.first!
        XCTAssertEqual(f.state.usage(tokenID: tokenID, meter: "bytes"), .max, "two months of 2^64 - 1 sum to 2^64 - 1")
        XCTAssertEqual(f.state.usage(licenseID: "lic-1", meter: "bytes", period: .month, at: f.nowMillis), .max)
    }

    func testRejectsInvalidMeterRequests() throws {
        let (f, secret, _) = try EngineFixture.standard()
        assertEngineError(.invalidArgument, "quantity 0") { try f.meter(secret, quantity: 0) }
        assertEngineError(.invalidArgument, "empty meter") { try f.meter(secret, meter: "", quantity: 1) }
        assertEngineError(.invalidArgument, "65-byte meter") { try f.meter(secret, meter: String(repeating: "m", count: 65)) }
        assertEngineError(.invalidArgument, "129-byte key") { try f.meter(secret, key: String(repeating: "k", count: 129)) }
        XCTAssertTrue(f.state.book.counters.isEmpty)
        XCTAssertEqual(try f.meter(secret, meter: String(repeating: "m", count: 64)).result.reason, .none)
        XCTAssertEqual(try f.meter(secret, key: String(repeating: "k", count: 128)).result.reason, .none)
    }
}

final class RevokeTests: XCTestCase {
    func testRevokeBySecret() throws {
        let (f, secret, token) = try EngineFixture.standard()
        assertEngineError(.invalidArgument) { try f.revoke(.secret("tg_live_not-a-token")) }
        assertEngineError(.invalidArgument) { try f.revoke(.secret(String(secret.dropLast()) + (secret.hasSuffix("0") ? "1" : "0"))) }
        let unknown = f.unissuedToken()
        do {
            try f.revoke(.secret(unknown))
            XCTFail("an unknown secret must be not_found")
        } catch let error as EngineError {
            XCTAssertEqual(error.code, .notFound)
            XCTAssertFalse(error.message.contains(unknown), "error messages never contain a secret")
            XCTAssertFalse(error.description.contains(String(unknown.dropFirst(8).prefix(20))))
        }
        let (count, change) = try f.revoke(.secret(secret), reason: "leaked")
        XCTAssertEqual(count, 1)
        XCTAssertEqual(change, .tokensRevoked(tokenIDs: [token.id], reason: "leaked", actor: "", at: f.nowMillis))
        XCTAssertEqual(f.state.token(id: token.id)?.info.revokedAt, f.nowMillis)
        XCTAssertEqual(f.state.token(id: token.id)?.info.revokeReason, "leaked")
        XCTAssertEqual(f.check(secret).reason, .revoked)
        f.advance(millis: 10)
        let again = try f.revoke(.secret(secret), reason: "again")
        XCTAssertEqual(again.revoked, 0)
        XCTAssertNil(again.change)
        XCTAssertEqual(f.state.token(id: token.id)?.info.revokeReason, "leaked", "the first revocation stands")
        XCTAssertEqual(f.state.token(id: token.id)?.info.revokedAt, f.nowMillis - 10)
    }

    func testRevokeByTokenID() throws {
        let (f, secret, token) = try EngineFixture.standard()
        let other = try f.issue(license: "lic-1").secret
        assertEngineError(.notFound) { try f.revoke(.tokenID("tok_doesnotexist000000000")) }
        assertEngineError(.notFound) { try f.revoke(.tokenID("")) }
        XCTAssertEqual(try f.revoke(.tokenID(token.id)).revoked, 1)
        XCTAssertEqual(f.check(secret).reason, .revoked)
        f.checkAllowed(other)
        let again = try f.revoke(.tokenID(token.id))
        XCTAssertEqual(again.revoked, 0)
        XCTAssertNil(again.change)
    }

    func testRevokeByLicenseCountsOnlyLiveTokens() throws {
        let (f, first, firstInfo) = try EngineFixture.standard()
        let (second, secondInfo) = try f.issue(license: "lic-1", subject: "bob")
        let (third, thirdInfo) = try f.issue(license: "lic-1", subject: "carol")
        try f.putLicense("lic-2", plan: "pro")
        let bystander = try f.issue(license: "lic-2").secret
        try f.putLicense("lic-empty", plan: "pro")
        try f.revoke(.tokenID(secondInfo.id))
        XCTAssertEqual(f.state.licenseInfo(id: "lic-1")?.activeTokens, 2)

        let (count, change) = try f.revoke(.license("lic-1"), reason: "churned")
        XCTAssertEqual(count, 2, "the already revoked token is not counted")
        XCTAssertEqual(change, .tokensRevoked(tokenIDs: [firstInfo.id, thirdInfo.id], reason: "churned", actor: "", at: f.nowMillis))
        XCTAssertEqual(f.state.licenseInfo(id: "lic-1")?.activeTokens, 0)
        for secret in [first, second, third] { XCTAssertEqual(f.check(secret).reason, .revoked) }
        f.checkAllowed(bystander)

        let again = try f.revoke(.license("lic-1"))
        XCTAssertEqual(again.revoked, 0)
        XCTAssertNil(again.change)
        let empty = try f.revoke(.license("lic-empty"))
        XCTAssertEqual(empty.revoked, 0)
        XCTAssertNil(empty.change)
        assertEngineError(.notFound) { try f.revoke(.license("lic-nope")) }
    }

    func testErrorMessagesWithholdValuesThatLookLikeSecrets() throws {
        let (f, secret, _) = try EngineFixture.standard()
        let unknown = f.unissuedToken()
        let attempts: [() throws -> Void] = [
            { try f.revoke(.tokenID(secret)) },
            { try f.revoke(.license(secret)) },
            { try f.revoke(.secret(unknown)) },
            { try f.issue(license: secret) },
            { try f.putLicense("lic-2", plan: secret) },
        ]
        for attempt in attempts {
            do {
                try attempt()
                XCTFail("expected not_found")
            } catch let error as EngineError {
                XCTAssertEqual(error.code, .notFound)
                for token in [secret, unknown] {
                    XCTAssertFalse(error.message.contains(String(token.dropFirst(8).prefix(12))), error.message)
                }
            }
        }
        // Other values are quoted, bounded, and control characters replaced.
        XCTAssertEqual(LicensingState.printable("lic\n1"), "'lic?1'")
        XCTAssertEqual(LicensingState.printable(String(repeating: "a", count: 100)), "'" + String(repeating: "a", count: 64) + "…'")
    }

    func testRevokeValidatesReasonLength() throws {
        let (f, secret, _) = try EngineFixture.standard()
        assertEngineError(.invalidArgument) { try f.revoke(.secret(secret), reason: String(repeating: "r", count: 257)) }
        f.checkAllowed(secret)
        XCTAssertEqual(try f.revoke(.secret(secret), reason: String(repeating: "r", count: 256)).revoked, 1)
    }

    func testRevocationAtTimeZeroStillRevokes() throws {
        let (f, secret, token) = try EngineFixture.standard()
        f.set(millis: 0)
        XCTAssertEqual(try f.revoke(.tokenID(token.id)).revoked, 1)
        XCTAssertNotEqual(f.state.token(id: token.id)?.info.revokedAt, 0, "0 means not revoked")
        XCTAssertEqual(f.check(secret).reason, .revoked)
    }
}

final class IssueTests: XCTestCase {
    func testIssueRecordsTheTokenAndReturnsItsSecret() throws {
        let f = EngineFixture()
        try f.putPlan("pro")
        try f.putLicense("lic-1", plan: "pro")
        let metadata = [KeyValue("team", "search"), KeyValue("ticket", "")]
        let request = IssueRequest(
            licenseID: "lic-1", subject: "svc-search", scopes: ["read", "search:query"], notBefore: 0,
            expiresAt: f.nowMillis + Millis.day, metadata: metadata, environment: .test)
        let (secret, info, change) = try f.state.issue(request, at: f.now, using: &f.rng)
        XCTAssertEqual(TokenFormat.validate(secret), .test)
        XCTAssertTrue(secret.hasPrefix("tg_test_"))
        XCTAssertNotNil(try Regex("tok_[0-9A-Za-z]{22}").wholeMatch(in: info.id), info.id)
        XCTAssertEqual(
            info,
            TokenInfo(
                id: info.id, licenseID: "lic-1", subject: "svc-search", scopes: ["read", "search:query"], issuedAt: f.nowMillis,
                notBefore: 0, expiresAt: f.nowMillis + Millis.day, metadata: metadata, environment: .test))
        let record = TokenRecord(hash: LicensingState.hash(of: secret), info: info)
        XCTAssertEqual(change, .tokenIssued(record))
        XCTAssertEqual(f.state.token(id: info.id), record)
        XCTAssertEqual(f.state.licenseInfo(id: "lic-1")?.activeTokens, 1)
        XCTAssertEqual(f.check(secret, scopes: ["search:query"]).tokenID, info.id)
    }

    func testIssueIsDeterministicForASeed() throws {
        func secrets(seed: UInt64) throws -> [String] {
            let f = EngineFixture(seed: seed)
            try f.putPlan("pro")
            try f.putLicense("lic-1", plan: "pro")
            return try (0..<3).map { _ in try f.issue(license: "lic-1").secret }
        }
        XCTAssertEqual(try secrets(seed: 1), try secrets(seed: 1))
        XCTAssertNotEqual(try secrets(seed: 1), try secrets(seed: 2))
        XCTAssertEqual(Set(try secrets(seed: 1)).count, 3)
    }

    func testRejectsUnknownLicense() throws {
        let f = EngineFixture()
        try f.putPlan("pro")
        assertEngineError(.notFound) { try f.issue(license: "lic-nope") }
        XCTAssertTrue(f.state.tokens.isEmpty)
    }

    func testEmptyScopesBecomeStar() throws {
        let (f, _, token) = try EngineFixture.standard()
        XCTAssertEqual(token.scopes, ["*"])
        XCTAssertEqual(try f.issue(license: "lic-1", scopes: ["read"]).info.scopes, ["read"])
    }

    func testRejectsExpiryNotAfterNowOrNotBefore() throws {
        let (f, _, _) = try EngineFixture.standard()
        let now = f.nowMillis
        assertEngineError(.invalidArgument, "expires now") { try f.issue(license: "lic-1", expiresAt: now) }
        assertEngineError(.invalidArgument, "expired already") { try f.issue(license: "lic-1", expiresAt: now - 1) }
        assertEngineError(.invalidArgument, "expires at not_before") {
            try f.issue(license: "lic-1", notBefore: now + Millis.hour, expiresAt: now + Millis.hour)
        }
        assertEngineError(.invalidArgument, "expires before not_before") {
            try f.issue(license: "lic-1", notBefore: now + Millis.hour, expiresAt: now + Millis.minute)
        }
        XCTAssertEqual(try f.issue(license: "lic-1", expiresAt: now + 1).info.expiresAt, now + 1)
        XCTAssertEqual(try f.issue(license: "lic-1", notBefore: now + Millis.hour, expiresAt: now + Millis.hour + 1).info.notBefore, now + Millis.hour)
        XCTAssertEqual(try f.issue(license: "lic-1", notBefore: now + Millis.hour).info.expiresAt, 0)
        XCTAssertEqual(try f.issue(license: "lic-1", notBefore: now - Millis.hour, expiresAt: now + 1).info.notBefore, now - Millis.hour)
    }

    func testRejectsValuesOverTheLimits() throws {
        let (f, _, _) = try EngineFixture.standard()
        let before = f.state.tokens.count
        let scopes64 = (0..<64).map { "scope-\($0)" }
        assertEngineError(.invalidArgument, "65 scopes") { try f.issue(license: "lic-1", scopes: scopes64 + ["one-more"]) }
        assertEngineError(.invalidArgument, "257-byte subject") { try f.issue(license: "lic-1", subject: String(repeating: "s", count: 257)) }
        assertEngineError(.invalidArgument, "empty subject") { try f.issue(license: "lic-1", subject: "") }
        assertEngineError(.invalidArgument, "129-byte scope") { try f.issue(license: "lic-1", scopes: [String(repeating: "x", count: 129)]) }
        assertEngineError(.invalidArgument, "scope with a space") { try f.issue(license: "lic-1", scopes: ["read write"]) }
        assertEngineError(.invalidArgument, "empty scope") { try f.issue(license: "lic-1", scopes: ["read", ""]) }
        assertEngineError(.invalidArgument, "non-ASCII scope") { try f.issue(license: "lic-1", scopes: ["lesen-ü"]) }
        let pairs33 = (0..<33).map { KeyValue("k\($0)", "v") }
        assertEngineError(.invalidArgument, "33 metadata pairs") { try f.issue(license: "lic-1", metadata: pairs33) }
        assertEngineError(.invalidArgument, "empty metadata key") { try f.issue(license: "lic-1", metadata: [KeyValue("", "v")]) }
        assertEngineError(.invalidArgument, "long metadata value") {
            try f.issue(license: "lic-1", metadata: [KeyValue("k", String(repeating: "v", count: 257))])
        }
        XCTAssertEqual(f.state.tokens.count, before, "failed issues leave no token")
        // Exactly at the limits is fine (on a plan that grants every scope: ISSUE refuses scopes the plan lacks).
        try f.putPlan("wide", entitlements: ["*"])
        try f.putLicense("lic-wide", plan: "wide")
        let ok = try f.issue(
            license: "lic-wide", subject: String(repeating: "s", count: 256), scopes: scopes64,
            metadata: Array(pairs33.prefix(32)))
        XCTAssertEqual(ok.info.scopes.count, 64)
    }

    /// The stored hash is SHA-256 of the whole token string, and the journal payload carries its bytes in order.
    func testTokenHashIsSHA256OfTheTokenInDigestOrder() throws {
        let sample = TokenFormatTests.specSample
        // hashlib.sha256(sample).hexdigest()
        let digest = "ad6167343e73d19f14c512388ac926da716fad954664499704e30cf4357b1b7e"
        let info = TokenInfo(id: "tok_x", licenseID: "l", subject: "s", scopes: ["*"], issuedAt: 1, notBefore: 0, expiresAt: 0, environment: .test)
        let payload = try StateChange.tokenIssued(TokenRecord(hash: LicensingState.hash(of: sample), info: info)).encodedPayload()
        XCTAssertEqual(payload.prefix(32).map { String(format: "%02x", $0) }.joined(), digest)
        XCTAssertNotEqual(LicensingState.hash(of: sample), LicensingState.hash(of: String(sample.dropLast()) + "N"))
    }

    func testSecretIsNeitherInTheChangeNorInTheSnapshot() throws {
        let (f, _, _) = try EngineFixture.standard()
        var issued: [(secret: String, info: TokenInfo, payload: [UInt8])] = []
        for environment in TokenEnvironment.allCases {
            let (secret, info, change) = try f.state.issue(
                IssueRequest(licenseID: "lic-1", subject: "s", environment: environment), at: f.now, using: &f.rng)
            issued.append((secret, info, try change.encodedPayload()))
        }
        try f.revoke(.tokenID(issued[0].info.id), reason: "r")
        let snapshot = try f.state.encodeSnapshot(now: f.nowMillis)
        for (secret, info, payload) in issued {
            // Positive control: the search does find what is there.
            XCTAssertTrue(payload.containsSubsequence(Array(info.id.utf8)))
            XCTAssertTrue(snapshot.containsSubsequence(Array(info.id.utf8)))
            for needle in [secret, String(secret.dropFirst(8)), String(secret.dropFirst(8).prefix(16)), String(secret.suffix(16))] {
                XCTAssertFalse(payload.containsSubsequence(Array(needle.utf8)), "secret text in the change payload")
                XCTAssertFalse(snapshot.containsSubsequence(Array(needle.utf8)), "secret text in the snapshot")
            }
        }
    }
}
