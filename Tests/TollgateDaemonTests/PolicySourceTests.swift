import Foundation
import TollgateClient
import TollgateDaemon
import TollgateModel
import XCTest

/// Where policy lives (issue 13 §1): the journal is the truth, and the configuration's plans only seed plans that
/// do not exist yet, at start-up and on reload. Each test asserts what a CHECK and an ISSUE see, not only what
/// PLAN_GET returns, across a reload (SIGHUP's code path) and a restart.
final class PolicySourceTests: DaemonTestCase {
    static let day: Int64 = 86_400_000

    /// A configuration file holding exactly `plans` (JSON objects as in the daemon configuration's `plans`).
    func writeConfiguration(plans: [String]) throws {
        let path = harness.directory + "/tollgated.json"
        try #"{ "plans": [\#(plans.joined(separator: ", "))] }"#.write(toFile: path, atomically: true, encoding: .utf8)
        harness.configurationPath = path
        // A restart reads the same file, as `tollgated --config` would.
        harness.configuration.plans = try DaemonConfiguration.load(path: path).plans
    }

    /// The plan `pro` as a configuration file ships it: no lifetime cap, a large quota.
    static let configuredPro = #"{ "id": "pro", "entitlements": ["read"], "quotas": [{ "meter": "requests", "window": "month", "limit": 1000 }] }"#

    /// What an operator applies over it: a 90-day lifetime cap and a quota of 5.
    static let appliedPro = Plan(
        id: "pro", entitlements: ["read"], quotas: [QuotaRule(meter: "requests", period: .month, limit: 5)], maxTokenLifetimeSeconds: 90 * 86_400)

    var nowMillis: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// The limit a CHECK on `requests` reports for the token, and whether a 400-day token can be issued on `license`.
    func observedPolicy(secret: String, license: String) async throws -> (quotaLimit: UInt64?, issues400Days: Bool) {
        let api = try await harness.api()
        let admin = try await harness.admin()
        defer { Task { await api.close(); await admin.close() } }
        let check = try await api.check(CheckRequest(token: secret, scopes: ["read"], meter: "requests", cost: 0))
        XCTAssertTrue(check.allowed, "\(check.reason)")
        let issue = try await admin.send(.issue(IssueRequest(licenseID: license, subject: "probe", expiresAt: nowMillis + 400 * Self.day)))
        var issued = true
        if case .error(let status, _) = issue {
            issued = false
            XCTAssertEqual(status, .invalidArgument, "refused as too long a lifetime, not for another reason")
        }
        return (check.quota?.limit, issued)
    }

    func testAnAppliedPlanSurvivesReloadAndRestart() async throws {
        try writeConfiguration(plans: [Self.configuredPro])
        try await harness.start()
        XCTAssertTrue(harness.logs.text.contains("plan seeded from the configuration"), "the empty state was seeded")
        let admin = try await harness.admin()
        _ = try await admin.putLicense(LicenseSpec(id: "lic_a", customer: "A", plan: "pro", status: .active))
        let (secret, _) = try await admin.issue(IssueRequest(licenseID: "lic_a", subject: "svc"))
        var seen = try await observedPolicy(secret: secret, license: "lic_a")
        XCTAssertEqual(seen.quotaLimit, 1000)
        XCTAssertTrue(seen.issues400Days, "the configured plan has no lifetime cap")

        // apply: the operator's plan replaces the configured one.
        _ = try await admin.putPlan(Self.appliedPro)
        await admin.close()
        seen = try await observedPolicy(secret: secret, license: "lic_a")
        XCTAssertEqual(seen.quotaLimit, 5)
        XCTAssertFalse(seen.issues400Days, "the applied plan caps tokens at 90 days")

        // reload with the unchanged file: the applied plan stays, and the log says the file's version was ignored.
        let seededBefore = harness.logs.text.components(separatedBy: "plan seeded from the configuration").count
        await harness.daemon!.reload()
        seen = try await observedPolicy(secret: secret, license: "lic_a")
        XCTAssertEqual(seen.quotaLimit, 5, "a reload must not roll the plan back")
        XCTAssertFalse(seen.issues400Days, "a reload must not lift the lifetime cap")
        XCTAssertEqual(harness.logs.text.components(separatedBy: "plan seeded from the configuration").count, seededBefore, "nothing seeded")
        XCTAssertTrue(harness.logs.text.contains("tollgate.plan.differs=quotas,max_token_lifetime_seconds"), harness.logs.text)

        // restart with the same file: still the applied plan.
        try await harness.restart()
        seen = try await observedPolicy(secret: secret, license: "lic_a")
        XCTAssertEqual(seen.quotaLimit, 5, "a restart must not roll the plan back")
        XCTAssertFalse(seen.issues400Days)
        let reader = try await harness.admin()
        let stored = try await reader.plan(id: "pro")
        await reader.close()
        XCTAssertEqual(stored, Self.appliedPro)
    }

    func testAConfigurationChangeSeedsOnlyNewPlansOnReloadAndRestartAndApplyStillWins() async throws {
        try writeConfiguration(plans: [Self.configuredPro])
        try await harness.start()
        let admin = try await harness.admin()
        _ = try await admin.putLicense(LicenseSpec(id: "lic_a", customer: "A", plan: "pro", status: .active))
        let (secret, _) = try await admin.issue(IssueRequest(licenseID: "lic_a", subject: "svc"))

        // The file changes `pro` (a lifetime cap, quota 7) and adds `gold`; reload.
        let editedPro = #"{ "id": "pro", "entitlements": ["read"], "quotas": [{ "meter": "requests", "window": "month", "limit": 7 }], "max_token_lifetime_seconds": 86400 }"#
        let gold = #"{ "id": "gold", "entitlements": ["read"], "quotas": [{ "meter": "requests", "window": "month", "limit": 42 }], "max_token_lifetime_seconds": 86400 }"#
        try writeConfiguration(plans: [editedPro, gold])
        await harness.daemon!.reload()

        // `pro` existed: the journal's version stays. `gold` did not: it is seeded, audited with actor `config`.
        var seen = try await observedPolicy(secret: secret, license: "lic_a")
        XCTAssertEqual(seen.quotaLimit, 1000)
        XCTAssertTrue(seen.issues400Days)
        let logs = harness.logs.text
        let seededGold = logs.split(separator: "\n").first { $0.contains("plan seeded from the configuration") && $0.contains("tollgate.plan=gold") }
        let line = try XCTUnwrap(seededGold, logs)
        XCTAssertTrue(line.contains("tollgate.actor=config") && line.contains("tollgate.audit=1") && line.contains("tollgate.occasion=reload"), String(line))
        XCTAssertTrue(line.contains("quota:requests:month:license=42") && line.contains("max_token_lifetime_seconds=86400"), "says what it created: \(line)")
        XCTAssertTrue(logs.contains("tollgate.plans_seeded=gold"), logs)

        _ = try await admin.putLicense(LicenseSpec(id: "lic_g", customer: "G", plan: "gold", status: .active))
        let (goldSecret, _) = try await admin.issue(IssueRequest(licenseID: "lic_g", subject: "svc"))
        await admin.close()
        seen = try await observedPolicy(secret: goldSecret, license: "lic_g")
        XCTAssertEqual(seen.quotaLimit, 42, "the seeded plan is the one a check sees")
        XCTAssertFalse(seen.issues400Days, "the seeded plan's lifetime cap is enforced")

        // The seeding is a journal record: after a restart with a file that no longer names gold, gold is still there.
        try writeConfiguration(plans: [editedPro])
        try await harness.restart()
        seen = try await observedPolicy(secret: goldSecret, license: "lic_g")
        XCTAssertEqual(seen.quotaLimit, 42)
        seen = try await observedPolicy(secret: secret, license: "lic_a")
        XCTAssertEqual(seen.quotaLimit, 1000, "the restart did not put the file's pro over the journal's")

        // apply after all that still wins, and stays across reload and restart.
        let admin2 = try await harness.admin()
        _ = try await admin2.putPlan(Self.appliedPro)
        await admin2.close()
        await harness.daemon!.reload()
        try await harness.restart()
        seen = try await observedPolicy(secret: secret, license: "lic_a")
        XCTAssertEqual(seen.quotaLimit, 5)
        XCTAssertFalse(seen.issues400Days)
    }

    func testAnUnchangedConfigurationSeedsOnceAndReportsNoDifference() async throws {
        try writeConfiguration(plans: [Self.configuredPro, #"{ "id": "rl", "entitlements": ["*"], "rate_limits": [{ "rate_per_second": 5 }] }"#])
        try await harness.start()
        XCTAssertEqual(harness.logs.text.components(separatedBy: "plan seeded from the configuration").count - 1, 2)
        try await harness.restart()
        await harness.daemon!.reload()
        XCTAssertEqual(harness.logs.text.components(separatedBy: "plan seeded from the configuration").count - 1, 2, "seeded once, at the first start")
        XCTAssertFalse(harness.logs.text.contains("differs from the journal's"), "an unchanged file is not reported as different")
    }
}
