import Foundation
import TollgateClient
import TollgateModel
import TollgateProtocol
import XCTest

/// LICENSE_LIST … ORG_DELETE over the admin socket of the real daemon (PROTOCOL.md 6.20, 6.21): listings page
/// through every object, deletions are refused while in use with `in_use`, journaled with their actor, audited,
/// and still gone after a restart and after compaction.
final class PolicyObjectEndToEndTests: DaemonTestCase {
    func testListingsPageThroughEveryObjectInIdOrder() async throws {
        // Small frames, so that pages are cut by size as well as by count.
        harness.configuration.maxFrameBytes = 4096
        try await harness.start()
        let admin = try await harness.admin()
        defer { Task { await admin.close() } }
        let plan = Plan(id: "pro", entitlements: ["read"], quotas: [QuotaRule(meter: "requests", period: .month, limit: 10)])
        _ = try await admin.putPlan(plan)
        _ = try await admin.putOrg(OrgSpec(id: "acme", name: "Acme"))
        var ids: [String] = []
        for i in 0..<130 {
            let id = String(format: "lic-%03d", (i * 37) % 130)
            ids.append(id)
            _ = try await admin.putLicense(LicenseSpec(id: id, customer: "Customer \(i)", plan: "pro", status: .active, org: i % 2 == 0 ? "acme" : ""))
        }
        let first = try await admin.licensePage(LicenseListRequest(limit: 500))
        XCTAssertFalse(first.next.isEmpty, "a 4 KiB frame cannot hold 130 licenses")
        XCTAssertLessThan(first.licenses.count, 130)
        XCTAssertEqual(first.next, first.licenses.last?.spec.id)

        let all = try await admin.licenses()
        XCTAssertEqual(all.map(\.spec.id), ids.sorted())
        let inAcme = try await admin.licenses(org: "acme")
        XCTAssertEqual(inAcme.count, 65)
        XCTAssertTrue(inAcme.allSatisfy { $0.spec.org == "acme" })
        let onPro = try await admin.licenses(plan: "pro")
        XCTAssertEqual(onPro.count, 130)

        let plans = try await admin.plans()
        XCTAssertTrue(plans.contains(plan))
        XCTAssertEqual(plans.map(\.id), plans.map(\.id).sorted())
        let orgs = try await admin.orgs()
        XCTAssertEqual(orgs, [OrgSpec(id: "acme", name: "Acme")])

        // The api socket does not list.
        let api = try await harness.api()
        defer { Task { await api.close() } }
        do {
            _ = try await api.plans()
            XCTFail("PLAN_LIST on the api socket")
        } catch let error as TollgateClientError {
            XCTAssertEqual(error.code, .server(.notPermitted))
        }
    }

    func testDeletionsAreRefusedInUseThenJournaledAuditedAndStillGoneAfterARestart() async throws {
        harness.configuration.snapshotAfterBytes = 2048
        try await harness.start()
        let p = try await harness.provision(license: "lic_a")
        let admin = try await harness.admin()
        _ = try await admin.putOrg(OrgSpec(id: "acme", name: "Acme"))
        _ = try await admin.putLicense(LicenseSpec(id: "lic_b", customer: "B", plan: "test_plan", status: .active, org: "acme"))

        for (attempt, fragment) in [
            ({ _ = try await admin.deletePlan(id: "test_plan", actor: "alice") } as () async throws -> Void, "2 licenses are on it (lic_a, lic_b)"),
            ({ _ = try await admin.deleteOrg(id: "acme") }, "1 license names it (lic_b)"),
            ({ _ = try await admin.deleteLicense(id: "lic_a") }, "it holds 1 live token (\(p.token.id))"),
        ] {
            do {
                try await attempt()
                XCTFail("deleted an object in use (\(fragment))")
            } catch let error as TollgateClientError {
                XCTAssertEqual(error.code, .server(.inUse), error.message)
                XCTAssertTrue(error.message.contains(fragment), error.message)
            }
        }
        do {
            _ = try await admin.deletePlan(id: "nosuch")
            XCTFail("deleted a plan that does not exist")
        } catch let error as TollgateClientError {
            XCTAssertEqual(error.code, .server(.notFound))
        }

        _ = try await admin.revoke(RevokeRequest(target: .license("lic_a"), reason: "offboarding"))
        let gone = try await admin.deleteLicense(id: "lic_a", actor: "alice")
        XCTAssertEqual(gone.spec.id, "lic_a")
        XCTAssertEqual(gone.activeTokens, 0)
        _ = try await admin.deleteLicense(id: "lic_b", actor: "alice")
        let plan = try await admin.deletePlan(id: "test_plan", actor: "alice")
        XCTAssertEqual(plan.id, "test_plan")
        let org = try await admin.deleteOrg(id: "acme", actor: "alice")
        XCTAssertEqual(org.name, "Acme")
        await admin.close()

        let logs = harness.logs.text
        XCTAssertTrue(logs.contains("license deleted"), logs)
        for line in logs.split(separator: "\n") where line.contains("deleted tollgate.actor") || line.contains(" deleted ") {
            XCTAssertTrue(line.contains("tollgate.actor=alice uid="), String(line))
            XCTAssertTrue(line.contains("tollgate.audit=1"), String(line))
        }
        XCTAssertTrue(logs.contains("plan deleted") && logs.contains("tollgate.plan=test_plan"), logs)
        XCTAssertTrue(logs.contains("organisation deleted") && logs.contains("tollgate.org=acme"), logs)

        try await harness.restart()

        let after = try await harness.admin()
        defer { Task { await after.close() } }
        for lookup in [
            { _ = try await after.license(id: "lic_a") } as () async throws -> Void,
            { _ = try await after.plan(id: "test_plan") },
            { _ = try await after.org(id: "acme") },
        ] {
            do {
                try await lookup()
                XCTFail("a deleted object came back after a restart")
            } catch let error as TollgateClientError {
                XCTAssertEqual(error.code, .server(.notFound))
            }
        }
        let licenses = try await after.licenses()
        XCTAssertFalse(licenses.contains { ["lic_a", "lic_b"].contains($0.spec.id) })
        // The revoked token of the deleted license is still known, and still answers revoked.
        let token = try await after.token(id: p.token.id)
        XCTAssertNotEqual(token.revokedAt, 0)
        let api = try await harness.api()
        defer { Task { await api.close() } }
        let check = try await api.check(CheckRequest(token: p.secret))
        XCTAssertEqual(check.reason, .revoked)
    }
}
