import TollgateModel
import XCTest

@testable import TollgateProvisioning

final class DiffTests: XCTestCase {
    let pro = Plan(
        id: "pro", entitlements: ["read", "write"], features: ["sso"],
        quotas: [QuotaRule(meter: "api_calls", period: .month, limit: 1000)],
        rateLimits: [RateRule(pool: .license, ratePerSecond: 100, burst: 200)], maxActiveTokens: 10)
    let free = Plan(id: "free", entitlements: ["read"])
    let acme = OrgSpec(id: "acme", name: "Acme Corp")
    let license = LicenseSpec(
        id: "lic_1", customer: "Acme Corp", plan: "pro", status: .active, validFrom: 1_767_225_600_000, org: "acme", project: "checkout")

    var document: ProvisioningDocument { ProvisioningDocument(plans: [free, pro], orgs: [acme], licenses: [license]) }

    func testEverythingIsCreatedOnAnEmptyDaemonInApplyOrder() {
        // Licenses first in the document: they are still applied after the plans and organisations they name.
        let document = ProvisioningDocument(plans: [free, pro], orgs: [acme], licenses: [license])
        XCTAssertEqual(
            ProvisioningPlan.diff(document: document, current: CurrentObjects()),
            [.create(.org, id: "acme"), .create(.plan, id: "free"), .create(.plan, id: "pro"), .create(.license, id: "lic_1")])
    }

    func testUpdatesListTheChangedFieldsInFileTerms() {
        var currentLicense = license
        currentLicense.status = .pastDue
        currentLicense.validUntil = 1_798_761_600_000
        currentLicense.billingAnchorDay = 15
        currentLicense.org = ""
        var currentPlan = pro
        currentPlan.quotas = [QuotaRule(meter: "api_calls", window: .rolling(seconds: 60), limit: 50, pool: .token)]
        currentPlan.credits = CreditPolicy(included: 5)
        currentPlan.overage = .allowAndRecord
        currentPlan.maxActiveTokens = 3
        var currentOrg = acme
        currentOrg.name = "Acme"
        currentOrg.suspended = true
        let current = CurrentObjects(plans: [free, currentPlan], orgs: [currentOrg], licenses: [currentLicense])

        let changes = ProvisioningPlan.diff(document: document, current: current)
        XCTAssertEqual(
            changes,
            [
                .update(
                    .org, id: "acme",
                    fieldChanges: [.init(field: "name", old: "Acme", new: "\"Acme Corp\""), .init(field: "suspended", old: "true", new: "false")]),
                .unchanged(.plan, id: "free"),
                .update(
                    .plan, id: "pro",
                    fieldChanges: [
                        .init(
                            field: "quotas", old: "[{meter: api_calls, window: \"rolling:60\", limit: 50, pool: token}]",
                            new: "[{meter: api_calls, window: month, limit: 1000, pool: license}]"),
                        .init(field: "credits", old: "{pool: license, included: 5, period: month}", new: "none"),
                        .init(field: "overage", old: "allow_and_record", new: "hard_stop"),
                        .init(field: "max_active_tokens", old: "3", new: "10"),
                    ]),
                .update(
                    .license, id: "lic_1",
                    fieldChanges: [
                        .init(field: "org", old: "none", new: "acme"),
                        .init(field: "status", old: "past_due", new: "active"),
                        .init(field: "valid_until", old: "2027-01-01T00:00:00Z", new: "none"),
                        .init(field: "billing_anchor_day", old: "15", new: "1"),
                    ]),
            ])
    }

    func testEveryPlanAndLicenseFieldIsCompared() {
        let before = Plan(id: "p", entitlements: ["a"])
        let after = Plan(
            id: "p", entitlements: ["a", "b"], features: ["f"], quotas: [QuotaRule(meter: "m", period: .day, limit: 1)],
            rateLimits: [RateRule(pool: .token, ratePerSecond: 1, burst: 1)], concurrency: [ConcurrencyRule(pool: .org, max: 4)],
            credits: CreditPolicy(pool: .org, included: 9, period: .hour), overage: .allowAndRecord, maxTokenLifetimeSeconds: 60,
            maxActiveTokens: 2, pastDueGraceSeconds: 30)
        XCTAssertEqual(
            ProvisioningPlan.fieldChanges(from: before, to: after).map(\.field),
            [
                "entitlements", "features", "quotas", "rate_limits", "concurrency", "credits", "overage", "max_token_lifetime_seconds",
                "max_active_tokens", "past_due_grace_seconds",
            ])
        let old = LicenseSpec(id: "l", customer: "A", plan: "p", status: .active)
        let new = LicenseSpec(
            id: "l", customer: "B", plan: "q", status: .trialing, validUntil: 3, validFrom: 2, trialEndsAt: 4, org: "o", project: "x",
            billingAnchorDay: 2)
        XCTAssertEqual(
            ProvisioningPlan.fieldChanges(from: old, to: new).map(\.field),
            ["customer", "org", "project", "plan", "status", "valid_from", "valid_until", "trial_ends_at", "billing_anchor_day"])
        XCTAssertEqual(
            ProvisioningPlan.fieldChanges(from: old, to: new).first { $0.field == "valid_from" },
            .init(field: "valid_from", old: "none", new: "1970-01-01T00:00:00.002Z"))
    }

    func testUnchangedWhenEqual() {
        let current = CurrentObjects(plans: [free, pro], orgs: [acme], licenses: [license])
        XCTAssertEqual(
            ProvisioningPlan.diff(document: document, current: current),
            [.unchanged(.org, id: "acme"), .unchanged(.plan, id: "free"), .unchanged(.plan, id: "pro"), .unchanged(.license, id: "lic_1")])
    }

    /// Entitlements and features are sets of grants: only their order differing is no change.
    func testReorderedGrantsAreNotAChange() {
        var reordered = pro
        reordered.entitlements = ["write", "read"]
        XCTAssertEqual(ProvisioningPlan.diff(document: ProvisioningDocument(plans: [pro]), current: CurrentObjects(plans: [reordered])), [
            .unchanged(.plan, id: "pro")
        ])
    }

    /// Objects on the daemon that the document does not name are neither compared nor touched.
    func testObjectsNotInTheDocumentAreLeftAlone() {
        let current = CurrentObjects(plans: [Plan(id: "legacy", entitlements: [])], orgs: [OrgSpec(id: "other")])
        XCTAssertEqual(ProvisioningPlan.diff(document: ProvisioningDocument(plans: [free]), current: current), [.create(.plan, id: "free")])
    }

    func testApplyingIsIdempotent() throws {
        let document = try ProvisioningDocument.parse(yaml: ParseTests.fullDocument)
        var current = CurrentObjects(
            plans: [Plan(id: "pro", entitlements: ["read"])],
            licenses: [LicenseSpec(id: "lic_solo", customer: "", plan: "pro", status: .active)])
        let first = ProvisioningPlan.diff(document: document, current: current)
        XCTAssertEqual(first.filter(\.isChange).count, first.count)
        current = current.applying(document)
        let second = ProvisioningPlan.diff(document: document, current: current)
        XCTAssertEqual(second, first.map { ProvisioningChange.unchanged($0.kind, id: $0.id) })
        // Parsing the same text again gives the same values, so re-applying the file is a no-op too.
        let reparsed = try ProvisioningDocument.parse(yaml: ParseTests.fullDocument)
        XCTAssertEqual(ProvisioningPlan.diff(document: reparsed, current: current).filter(\.isChange), [])
    }

    func testRendersAHumanDiff() {
        let changes: [ProvisioningChange] = [
            .unchanged(.org, id: "acme"),
            .create(.plan, id: "pro"),
            .update(
                .license, id: "lic_1",
                fieldChanges: [
                    .init(field: "status", old: "active", new: "past_due"),
                    .init(field: "valid_until", old: "none", new: "2027-01-01T00:00:00Z"),
                ]),
        ]
        XCTAssertEqual(
            ProvisioningPlan.render(changes),
            """
            + plan pro
            ~ license lic_1: status active -> past_due
            ~ license lic_1: valid_until none -> 2027-01-01T00:00:00Z
            1 to create, 1 to update, 1 unchanged

            """)
        XCTAssertEqual(
            ProvisioningPlan.render(changes, verbose: true),
            """
            = org acme
            + plan pro
            ~ license lic_1: status active -> past_due
            ~ license lic_1: valid_until none -> 2027-01-01T00:00:00Z
            1 to create, 1 to update, 1 unchanged

            """)
        XCTAssertEqual(ProvisioningPlan.render([]), "0 to create, 0 to update, 0 unchanged\n")
    }

    func testFormatsTextSoItReadsBackAsTheSameString() {
        XCTAssertEqual(FieldFormat.text("acme"), "acme")
        XCTAssertEqual(FieldFormat.text(""), "\"\"")
        XCTAssertEqual(FieldFormat.text("Acme Corp"), "\"Acme Corp\"")
        XCTAssertEqual(FieldFormat.text("*"), "\"*\"")
        XCTAssertEqual(FieldFormat.text("2024"), "\"2024\"")
        XCTAssertEqual(FieldFormat.text("no"), "\"no\"")
        XCTAssertEqual(FieldFormat.text("say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"")
    }
}
