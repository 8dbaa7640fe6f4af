import NIOCore
import TollgateModel
import TollgateTestSupport
import XCTest

@testable import TollgateEngine

extension EngineFixture {
    /// A deletion as the daemon makes it: pending usage flushed first, the change recorded for replay.
    @discardableResult
    func delete(_ kind: PolicyObjectKind, _ id: String, actor: String = "alice uid=0") throws -> StateChange {
        flushConsumed()
        let request = DeleteRequest(id: id, actor: actor)
        let change: StateChange
        switch kind {
        case .license: change = try state.deleteLicense(request, at: now).change
        case .plan: change = try state.deletePlan(request, at: now).change
        case .org: change = try state.deleteOrg(request, at: now).change
        }
        record(change)
        return change
    }
}

/// Listing and deleting licenses, plans and organisations (PROTOCOL.md 6.20, 6.21): what "in use" means, that a
/// deletion is journaled and replayed, and that listings page in id order.
final class PolicyObjectTests: XCTestCase {
    func assertRefused(
        _ body: @autoclosure () throws -> Any, _ code: EngineError.Code, _ fragments: [String] = [], file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let error = error as? EngineError else { return XCTFail("not an EngineError: \(error)", file: file, line: line) }
            XCTAssertEqual(error.code, code, error.message, file: file, line: line)
            for fragment in fragments { XCTAssertTrue(error.message.contains(fragment), "\(error.message) lacks \(fragment)", file: file, line: line) }
        }
    }

    // MARK: In use

    func testAPlanWithLicensesOnItIsNotDeletedAndTheRefusalNamesThem() throws {
        let f = EngineFixture()
        try f.putPlan("pro")
        try f.putLicense("lic-b", plan: "pro")
        try f.putLicense("lic-a", plan: "pro", status: .canceled)
        let before = f.changes.count
        assertRefused(try f.delete(.plan, "pro"), .inUse, ["plan 'pro' is in use", "2 licenses are on it (lic-a, lic-b)"])
        XCTAssertNotNil(f.state.plans["pro"])
        XCTAssertEqual(f.changes.count, before, "nothing recorded")
        // The refusal is the validation source's verdict, under its stable code.
        do {
            _ = try f.state.deletePlan(DeleteRequest(id: "pro"), at: f.now)
        } catch let error as EngineError {
            XCTAssertEqual(error.validation?.code, .inUse)
        }
        try f.putPlan("basic")
        try f.putLicense("lic-a", plan: "basic", status: .canceled)
        try f.putLicense("lic-b", plan: "basic")
        try f.delete(.plan, "pro")
        XCTAssertNil(f.state.plans["pro"])
    }

    func testTheInUseMessageIsTheOneTheVectorShows() throws {
        let f = EngineFixture()
        try f.putPlan("pro")
        try f.putLicense("lic_acme", plan: "pro")
        assertRefused(
            try f.delete(.plan, "pro"), .inUse,
            ["plan 'pro' is in use: 1 license is on it (lic_acme); move it to another plan or delete it first"])
    }

    func testARefusalNamesTheFirstFiveUsersAndCountsThemAll() throws {
        let f = EngineFixture()
        try f.putPlan("pro")
        try f.putOrg(OrgSpec(id: "acme", name: "Acme"))
        for i in (1...7).reversed() { try f.putLicense(LicenseSpec(id: "lic-\(i)", customer: "", plan: "pro", status: .active, org: "acme")) }
        assertRefused(try f.delete(.org, "acme"), .inUse, ["organisation 'acme' is in use: 7 licenses name it (lic-1, lic-2, lic-3, lic-4, lic-5, …)"])
        XCTAssertNotNil(f.state.orgs["acme"])
    }

    func testALicenseIsHeldOnlyByLiveTokens() throws {
        let (f, _, token) = try EngineFixture.standard()
        let (_, expiring) = try f.issue(license: "lic-1", subject: "bob", expiresAt: f.nowMillis + Millis.hour)
        let (_, later) = try f.issue(license: "lic-1", subject: "carol", notBefore: f.nowMillis + Millis.day)
        let live = [token.id, expiring.id, later.id].sorted()
        assertRefused(try f.delete(.license, "lic-1"), .inUse, ["license 'lic-1' is in use: it holds 3 live tokens (\(live.joined(separator: ", ")))", "tollgate revoke --license lic-1"])
        try f.revoke(.tokenID(token.id))
        try f.revoke(.tokenID(later.id))
        assertRefused(try f.delete(.license, "lic-1"), .inUse, ["it holds 1 live token (\(expiring.id)); revoke it first"])
        // An expired token does not hold its license.
        f.advance(millis: Millis.hour)
        try f.delete(.license, "lic-1")
        XCTAssertNil(f.state.licenses["lic-1"])
        // Its tokens stay, answering for what they are, until the sweep forgets them.
        XCTAssertEqual(f.state.token(id: token.id)?.info.revokedAt, f.state.token(id: later.id)?.info.revokedAt)
        XCTAssertNotNil(f.state.token(id: expiring.id))
    }

    func testADerivedTokenHoldsItsLicenseToo() throws {
        let (f, secret, token) = try EngineFixture.standard()
        let (_, _, child, change) = try f.state.derive(DeriveRequest(parent: secret, scopes: [], ttlSeconds: 600), at: f.now, maxLifetime: 3_600_000, using: &f.rng)
        f.record(change)
        // Revoking the parent by id cascades to the child: only then is the license free.
        assertRefused(try f.delete(.license, "lic-1"), .inUse, ["2 live tokens"])
        try f.revoke(.tokenID(token.id))
        XCTAssertNotEqual(f.state.token(id: child!.id)?.info.revokedAt, 0)
        try f.delete(.license, "lic-1")
    }

    func testUnknownObjectsAndBadIdsAreRefused() throws {
        let f = EngineFixture()
        assertRefused(try f.delete(.plan, "nosuch"), .notFound, ["plan 'nosuch' does not exist"])
        assertRefused(try f.delete(.org, "nosuch"), .notFound, ["organisation 'nosuch' does not exist"])
        assertRefused(try f.delete(.license, "nosuch"), .notFound, ["license 'nosuch' does not exist"])
        assertRefused(try f.delete(.plan, "bad id"), .invalidArgument, ["plan_id: the plan id must be 1–128 characters"])
        assertRefused(try f.delete(.org, ""), .invalidArgument, ["org_id"])
        try f.putPlan("pro")
        assertRefused(try f.delete(.plan, "pro", actor: String(repeating: "a", count: 300)), .invalidArgument, ["actor"])
        XCTAssertTrue(f.changes.allSatisfy { if case .objectDeleted = $0 { return false } else { return true } })
    }

    // MARK: Journal

    func testDeletionsAreReplayedAndSurviveASnapshot() throws {
        let (f, secret, token) = try EngineFixture.standard(quotas: [QuotaRule(meter: "requests", period: .day, limit: 100)])
        try f.putOrg(OrgSpec(id: "acme", name: "Acme"))
        try f.putOrg(OrgSpec(id: "globex", name: "Globex"))
        try f.putPlan("old")
        f.checkAllowed(secret, meter: "requests", cost: 3)
        try f.revoke(.license("lic-1"))
        try f.delete(.license, "lic-1", actor: "alice uid=1000")
        try f.delete(.plan, "old")
        try f.delete(.org, "globex")
        XCTAssertEqual(f.changes.last, .objectDeleted(.org, id: "globex", actor: "alice uid=0", at: f.nowMillis))
        XCTAssertTrue(f.changes.contains(.objectDeleted(.license, id: "lic-1", actor: "alice uid=1000", at: f.nowMillis)))
        // The usage consumed before the deletion was journaled before it, and stays in the ledger.
        let deletion = try XCTUnwrap(f.changes.firstIndex(of: .objectDeleted(.license, id: "lic-1", actor: "alice uid=1000", at: f.nowMillis)))
        XCTAssertTrue(f.changes[..<deletion].contains { if case .consumed = $0 { return true } else { return false } })
        XCTAssertEqual(f.state.usage(tokenID: token.id, meter: "requests"), 3)

        let live = f.state
        try f.restart()
        assertSameDurableState(f.state, live, "replay")
        XCTAssertNil(f.state.licenses["lic-1"])
        XCTAssertNil(f.state.plans["old"])
        XCTAssertNil(f.state.orgs["globex"])
        XCTAssertNotNil(f.state.orgs["acme"])
        XCTAssertEqual(f.state.usage(tokenID: token.id, meter: "requests"), 3)

        try f.takeSnapshot()
        try f.restart()
        assertSameDurableState(f.state, live, "snapshot")
        XCTAssertNil(f.state.licenses["lic-1"])
        XCTAssertEqual(f.check(secret).reason, .revoked, "a revoked token of a deleted license still answers revoked")
    }

    func testADeletedPlanStopsCountingTheWindowsOnlyItUsed() throws {
        let (f, secret, _) = try EngineFixture.standard()
        try f.putPlan("hourly", quotas: [QuotaRule(meter: "requests", period: .hour, limit: 10, pool: .token)])
        XCTAssertTrue(f.state.countedWindows.counts(.token, .hour))
        try f.delete(.plan, "hourly")
        XCTAssertFalse(f.state.countedWindows.counts(.token, .hour))
        f.checkAllowed(secret, meter: "requests", cost: 1)
        let live = f.state
        f.flushConsumed()
        try f.restart()
        assertSameDurableState(f.state, live, "replay after a plan deletion")
    }

    func testThePayloadRoundTripsForEveryKind() throws {
        for kind in PolicyObjectKind.allCases {
            let change = StateChange.objectDeleted(kind, id: "x-\(kind.rawValue)", actor: "uid=unknown", at: 42)
            XCTAssertEqual(change.typeCode, 14)
            XCTAssertEqual(try change.roundTripped(), change)
        }
        var buffer = ByteBufferAllocator().buffer(capacity: 32)
        buffer.writeInteger(Int64(1))
        buffer.writeInteger(UInt8(3))  // no such kind
        try buffer.writeWireString("x")
        try buffer.writeWireString("")
        XCTAssertThrowsError(try StateChange.decode(type: 14, payload: buffer))
    }

    // MARK: Listing

    func testListingsPageInIdOrderWithFilters() throws {
        let f = EngineFixture()
        for plan in ["pro", "basic", "enterprise"] { try f.putPlan(plan) }
        for org in ["globex", "acme"] { try f.putOrg(OrgSpec(id: org, name: org)) }
        try f.putLicense(LicenseSpec(id: "lic-c", customer: "", plan: "pro", status: .active, org: "acme"))
        try f.putLicense(LicenseSpec(id: "lic-a", customer: "", plan: "basic", status: .active, org: "acme"))
        try f.putLicense(LicenseSpec(id: "lic-b", customer: "", plan: "pro", status: .active, org: "globex"))
        try f.putLicense(LicenseSpec(id: "lic-d", customer: "", plan: "pro", status: .active))

        var page = f.state.listLicenses(after: "", limit: 2)
        XCTAssertEqual(page.licenses.map(\.spec.id), ["lic-a", "lic-b"])
        XCTAssertTrue(page.more)
        page = f.state.listLicenses(after: "lic-b", limit: 2)
        XCTAssertEqual(page.licenses.map(\.spec.id), ["lic-c", "lic-d"])
        XCTAssertFalse(page.more)
        XCTAssertEqual(f.state.listLicenses(org: "acme", after: "", limit: 10).licenses.map(\.spec.id), ["lic-a", "lic-c"])
        XCTAssertEqual(f.state.listLicenses(plan: "pro", after: "", limit: 10).licenses.map(\.spec.id), ["lic-b", "lic-c", "lic-d"])
        XCTAssertEqual(f.state.listLicenses(org: "acme", plan: "pro", after: "", limit: 10).licenses.map(\.spec.id), ["lic-c"])
        XCTAssertEqual(f.state.listLicenses(org: "nosuch", after: "", limit: 10).licenses.count, 0)
        XCTAssertEqual(f.state.listLicenses(after: "", limit: 10).licenses.first, f.state.licenseInfo(id: "lic-a"))

        XCTAssertEqual(f.state.listPlans(after: "", limit: 10).plans.map(\.id), ["basic", "enterprise", "pro"])
        XCTAssertEqual(f.state.listPlans(after: "basic", limit: 1).plans.map(\.id), ["enterprise"])
        XCTAssertTrue(f.state.listPlans(after: "basic", limit: 1).more)
        XCTAssertEqual(f.state.listOrgs(after: "", limit: 10).orgs.map(\.id), ["acme", "globex"])
        XCTAssertEqual(f.state.listOrgs(after: "acme", limit: 10).orgs.map(\.id), ["globex"])
        XCTAssertFalse(f.state.listOrgs(after: "acme", limit: 10).more)
    }

    /// The bounded-heap selection gives what sorting everything would, for any page size.
    func testTheFirstIdsAreThoseASortWouldGive() {
        var rng = SplitMix64(seed: 7)
        let ids = (0..<300).map { _ in "id-\(rng.next() % 1000)" }
        let sorted = Set(ids).sorted()
        for count in [0, 1, 2, 7, 50, 299, 400] {
            for after in ["", "id-5", "id-999", "zzz"] {
                XCTAssertEqual(LicensingState.firstIDs(Set(ids), after: after, count: count), Array(sorted.filter { $0 > after }.prefix(count)), "\(count) after \(after)")
            }
        }
    }
}
