import Foundation
import TollgateClient
import TollgateModel
import TollgateProtocol
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The licensing model through the real daemon: what only the server can do (leases tied to connections, the
/// caller's uid in the audit record, which socket serves what, durability of events and the ledger across real
/// restarts and compaction).
final class LicensingEndToEndTests: DaemonTestCase {
    /// Waits (without asserting anything about time) until `condition` holds, for at most `seconds`.
    func eventually(_ what: String, seconds: Double = 10, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try await condition() { return }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        XCTFail("never happened: \(what)")
    }

    func testALeaseIsReleasedWhenItsConnectionCloses() async throws {
        try await harness.start()
        let p = try await harness.provision(plan: Plan(id: "one_at_a_time", entitlements: ["*"], concurrency: [ConcurrencyRule(pool: .license, max: 1)]))
        let holder = try await harness.api()
        let other = try await harness.api()
        let lease = try await holder.check(CheckRequest(token: p.secret, options: .lease))
        XCTAssertTrue(lease.allowed)
        XCTAssertNotEqual(lease.leaseID, 0)
        let refused = try await other.check(CheckRequest(token: p.secret, options: .lease))
        XCTAssertEqual(refused.reason, .concurrencyLimited)

        // Released explicitly: the slot is free at once.
        let released = try await holder.release(leaseID: lease.leaseID)
        XCTAssertTrue(released)
        let again = try await holder.check(CheckRequest(token: p.secret, options: .lease))
        XCTAssertTrue(again.allowed)
        // The holder vanishes without releasing: the daemon releases for it.
        await holder.close()
        try await eventually("the lease of a closed connection is released") {
            try await other.check(CheckRequest(token: p.secret, options: .lease)).allowed
        }
    }

    func testRevocationRecordsTheOperatorAndTheCallersUid() async throws {
        try await harness.start()
        let p = try await harness.provision()
        let admin = try await harness.admin()
        let count = try await admin.revoke(RevokeRequest(target: .subject("svc-test"), reason: "offboarded", actor: "alice@ops"))
        XCTAssertEqual(count, 1)
        let token = try await admin.token(id: p.token.id)
        XCTAssertEqual(token.revokeReason, "offboarded")
        XCTAssertEqual(token.revokedBy, "alice@ops uid=\(geteuid())")
        XCTAssertTrue(harness.logs.text.contains("tollgate.actor=alice@ops uid=\(geteuid())"), "the revocation is in the log with who did it")
    }

    func testTheApiSocketServesTheDataPlaneOnly() async throws {
        try await harness.start()
        let p = try await harness.provision()
        let api = try await harness.api()
        let derived = try await api.derive(DeriveRequest(parent: p.secret, scopes: ["read"], ttlSeconds: 60))
        XCTAssertTrue(derived.result.allowed)
        XCTAssertEqual(derived.token?.parentID, p.token.id)
        let child = try await api.check(CheckRequest(token: derived.secret, scopes: ["read"]))
        XCTAssertTrue(child.allowed)
        for request: Request in [
            .rotate(RotateRequest(tokenID: p.token.id, graceSeconds: 0)), .orgPut(OrgSpec(id: "x")),
            .creditsGrant(CreditsGrant(pool: .license, owner: p.licenseID, amount: 1)),
            .usageExport(UsageExportRequest(query: UsageQuery(from: 0, to: 1))), .events(after: 0, limit: 1),
            .revoke(RevokeRequest(target: .org("x"))), .revoke(RevokeRequest(target: .subject("svc-test"))),
        ] {
            let response = try await api.send(request)
            XCTAssertEqual(response.status, .notPermitted, "\(request.opcode.name) on the api socket")
        }
        // Revoking the parent (by its secret, allowed on the api socket) takes the child with it.
        let revoked = try await api.revoke(RevokeRequest(target: .secret(p.secret)))
        XCTAssertEqual(revoked, 2)
        let after = try await api.check(CheckRequest(token: derived.secret))
        XCTAssertEqual(after.reason, .revoked)
    }

    func testRotationOverTheSockets() async throws {
        try await harness.start()
        let p = try await harness.provision()
        let admin = try await harness.admin()
        let api = try await harness.api()
        let (fresh, token) = try await admin.rotate(RotateRequest(tokenID: p.token.id, graceSeconds: 3600))
        XCTAssertEqual(token.id, p.token.id)
        let old = try await api.check(CheckRequest(token: p.secret))
        XCTAssertTrue(old.allowed)
        let seen = try await admin.token(id: p.token.id)
        XCTAssertNotEqual(seen.previousSecretLastUsedAt, 0, "the old secret's use is visible")
        let ended = try await admin.endRotation(tokenID: p.token.id)
        XCTAssertLessThanOrEqual(ended.previousSecretValidUntil, Int64(Date().timeIntervalSince1970 * 1000))
        let refused = try await api.check(CheckRequest(token: p.secret))
        XCTAssertEqual(refused.reason, .revoked)
        try await harness.restart()
        let afterRestart = try await harness.api()
        let oldAfter = try await afterRestart.check(CheckRequest(token: p.secret))
        XCTAssertEqual(oldAfter.reason, .revoked, "the rotation survives a restart")
        let freshAfter = try await afterRestart.check(CheckRequest(token: fresh))
        XCTAssertTrue(freshAfter.allowed)
    }

    func testEventsAndCreditsSurviveARestart() async throws {
        try await harness.start()
        var plan = Plan(id: "small", entitlements: ["*"], quotas: [QuotaRule(meter: "calls", period: .month, limit: 10)])
        plan.credits = CreditPolicy(pool: .license, included: 0, period: .month)
        let p = try await harness.provision(plan: plan)
        let admin = try await harness.admin()
        let balance = try await admin.grantCredits(CreditsGrant(pool: .license, owner: p.licenseID, amount: 9, reason: "prepaid"))
        XCTAssertEqual(balance, 9)
        let api = try await harness.api()
        let first = try await api.check(CheckRequest(token: p.secret, meter: "calls", cost: 8))
        XCTAssertEqual(first.creditsRemaining, 1)
        let short = try await api.check(CheckRequest(token: p.secret, meter: "calls", cost: 2))
        XCTAssertEqual(short.reason, .creditsExhausted)
        try await eventually("the 80 % event is recorded") { try await admin.events().count == 1 }
        let before = try await admin.events()
        XCTAssertEqual(before.map(\.kind), [.quota80])

        try await harness.restart()
        let admin2 = try await harness.admin()
        let after = try await admin2.events()
        XCTAssertEqual(after, before, "events are journaled with their numbers")
        let license = try await admin2.license(id: p.licenseID)
        XCTAssertEqual(license.prepaidCredits, 1)
    }

    /// Thousands of acknowledged events over the sockets, with real restarts and snapshots in between and repeated
    /// idempotency keys: the export's totals equal what was acknowledged.
    func testUsageExportEqualsAcknowledgedUsageAcrossRestartsAndCompaction() async throws {
        harness.configuration.snapshotAfterBytes = 4096
        try await harness.start()
        var plan = Plan(id: "metered", entitlements: ["*"], quotas: [QuotaRule(meter: "calls", period: .day, limit: 5000)])
        plan.overage = .allowAndRecord
        let p = try await harness.provision(plan: plan)
        let admin = try await harness.admin()
        let second = try await admin.issue(IssueRequest(licenseID: p.licenseID, subject: "svc-two"))
        let tokens = [(p.secret, p.token.id), (second.secret, second.token.id)]

        var rng = SplitMix64(seed: 77)
        var expected: [String: UInt64] = [:]
        var keys: [String] = []
        var duplicates = 0
        for round in 0..<4 {
            let api = try await harness.api()
            for i in 0..<600 {
                let (secret, id) = tokens[Int(rng.next() % 2)]
                let meter = rng.next() % 3 == 0 ? "bytes" : "calls"
                if rng.next() % 2 == 0 {
                    let cost = rng.next() % 9 + 1
                    let result = try await api.check(CheckRequest(token: secret, meter: meter, cost: cost))
                    XCTAssertTrue(result.allowed)
                    expected["\(id)/\(meter)", default: 0] += cost
                } else {
                    let repeatKey = !keys.isEmpty && rng.next() % 3 == 0
                    let key = repeatKey ? keys[Int(rng.next() % UInt64(keys.count))] : "r\(round)-e\(i)"
                    if !repeatKey { keys.append(key) }
                    let quantity = rng.next() % 50 + 1
                    let result = try await api.meter(MeterRequest(token: secret, meter: meter, quantity: quantity, idempotencyKey: key))
                    XCTAssertEqual(result.duplicate, repeatKey)
                    if result.duplicate { duplicates += 1 } else { expected["\(id)/\(meter)", default: 0] += quantity }
                }
            }
            await api.close()
            try await harness.restart()
        }
        XCTAssertGreaterThan(duplicates, 100)
        let snapshots = try FileManager.default.contentsOfDirectory(atPath: harness.journalDirectory).filter { $0.hasSuffix(".snap") }
        XCTAssertFalse(snapshots.isEmpty, "the run compacted the journal")

        let export = try await harness.admin()
        let rows = try await export.usage(UsageQuery(from: 0, to: .max, granularity: .month))
        var actual: [String: UInt64] = [:]
        for row in rows {
            XCTAssertEqual(row.licenseID, p.licenseID)
            actual["\(row.tokenID)/\(row.meter)", default: 0] += row.quantity
        }
        XCTAssertEqual(actual, expected)
        // Paging: small pages give the same rows.
        let hourly = try await export.usage(UsageQuery(from: 0, to: .max))
        var paged: [UsageRow] = []
        var offset: UInt32 = 0
        repeat {
            let page = try await export.usagePage(UsageExportRequest(query: UsageQuery(from: 0, to: .max), offset: offset, limit: 1))
            paged += page.rows
            offset = page.next
        } while offset != 0
        XCTAssertEqual(paged, hourly)
    }

    func testAnUnsettledReservationIsReleasedByTheDaemon() async throws {
        harness.configuration.reservationLifetimeSeconds = 1
        try await harness.start()
        let p = try await harness.provision(plan: Plan(id: "tight", entitlements: ["*"], quotas: [QuotaRule(meter: "calls", period: .day, limit: 10)]))
        let api = try await harness.api()
        let reserved = try await api.check(CheckRequest(token: p.secret, meter: "calls", cost: 10, options: .reserve))
        XCTAssertNotEqual(reserved.reservationID, 0)
        let held = try await api.check(CheckRequest(token: p.secret, meter: "calls", cost: 1))
        XCTAssertEqual(held.reason, .quotaExceeded)
        try await eventually("the reservation expires") {
            try await api.check(CheckRequest(token: p.secret, meter: "calls", cost: 1)).allowed
        }
        let late = try await api.send(.settle(SettleRequest(reservationID: reserved.reservationID, actualCost: 5)))
        XCTAssertEqual(late.status, .notFound)
    }
}
