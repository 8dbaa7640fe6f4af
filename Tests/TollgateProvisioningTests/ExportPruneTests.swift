import TollgateModel
import XCTest

@testable import TollgateProvisioning

/// `tollgate export` (`ProvisioningDocument.yaml`) and `apply --prune` (`ProvisioningPlan.diff(prune:)`): an
/// exported policy parses back to itself, so applying it to the daemon it came from changes nothing; pruning
/// deletes what the file does not name, users first.
final class ExportPruneTests: XCTestCase {
    /// Every rule kind, every window, every pool, credits, both overage policies, features, limits.
    static let plans = [
        Plan(
            id: "enterprise", entitlements: ["*"], features: ["*"],
            quotas: [QuotaRule(meter: "api_calls", period: .month, limit: .max, pool: .org)],
            rateLimits: [RateRule(pool: .org, ratePerSecond: 1_000_000, burst: 10_000)], concurrency: [ConcurrencyRule(pool: .org, max: 256)],
            overage: .hardStop, maxTokenLifetimeSeconds: .max, maxActiveTokens: .max, pastDueGraceSeconds: 2_592_000),
        Plan(id: "empty", entitlements: []),
        Plan(
            id: "pro", entitlements: ["read", "write", "reports:all"], features: ["exports", "sso"],
            quotas: [
                QuotaRule(meter: "api_calls", period: .hour, limit: 100, pool: .token),
                QuotaRule(meter: "api_calls", period: .day, limit: 1_000, pool: .license),
                QuotaRule(meter: "api_calls", period: .month, limit: 10_000, pool: .org),
                QuotaRule(meter: "api_calls", window: .rolling(seconds: 60), limit: 60, pool: .token),
                QuotaRule(meter: "bytes.out-v2", window: .rolling(seconds: 34_560_000), limit: 0, pool: .license),
            ],
            rateLimits: [RateRule(pool: .token, ratePerSecond: 1, burst: 1), RateRule(pool: .license, ratePerSecond: 200, burst: 400)],
            concurrency: [ConcurrencyRule(pool: .token, max: 1), ConcurrencyRule(pool: .license, max: 8)],
            credits: CreditPolicy(pool: .license, included: 50_000, period: .day), overage: .allowAndRecord,
            maxTokenLifetimeSeconds: 7_776_000, maxActiveTokens: 100, pastDueGraceSeconds: 604_800),
        Plan(id: "v1.2:beta", entitlements: ["read"], credits: CreditPolicy(pool: .org, included: 0, period: .hour)),
    ]
    static let orgs = [OrgSpec(id: "acme", name: "Acme Corp"), OrgSpec(id: "yes", name: "", suspended: true), OrgSpec(id: "-1", name: "no")]
    static let licenses = [
        LicenseSpec(
            id: "lic_full", customer: "Acme \"Corp\" \\ Ünïcode\n\ttab", plan: "pro", status: .trialing, validUntil: 1_798_761_600_123,
            validFrom: 1_767_225_600_000, trialEndsAt: 86_400_001, org: "acme", project: "checkout: web", billingAnchorDay: 28),
        LicenseSpec(id: "lic_min", customer: "", plan: "empty", status: .pastDue),
        LicenseSpec(id: "1234", customer: "true", plan: "v1.2:beta", status: .canceled, validUntil: .max, validFrom: 1, org: "yes"),
        LicenseSpec(id: ".inf", customer: "@home\u{2028}\u{85}", plan: "enterprise", status: .expired, org: "-1", project: "*"),
    ]

    var document: ProvisioningDocument { ProvisioningDocument(plans: Self.plans, orgs: Self.orgs, licenses: Self.licenses) }

    func testTheExportParsesBackToTheSamePolicy() throws {
        let yaml = document.yaml(header: ["exported", ""])
        XCTAssertTrue(yaml.hasPrefix("# exported\n#\nplans:\n  - id: enterprise\n"), yaml)
        let parsed = try ProvisioningDocument.parse(yaml: yaml)
        XCTAssertEqual(parsed, document, yaml)
    }

    func testExportThenDryRunShowsNoChange() throws {
        let current = CurrentObjects(plans: Self.plans, orgs: Self.orgs, licenses: Self.licenses)
        let parsed = try ProvisioningDocument.parse(yaml: document.yaml())
        for prune in [false, true] {
            let changes = ProvisioningPlan.diff(document: parsed, current: current, prune: prune)
            XCTAssertEqual(changes.count, Self.plans.count + Self.orgs.count + Self.licenses.count)
            XCTAssertTrue(changes.allSatisfy { !$0.isChange }, "\(changes.filter(\.isChange))")
            XCTAssertEqual(ProvisioningPlan.render(changes).split(separator: "\n").last, "0 to create, 0 to update, 11 unchanged")
        }
    }

    /// A license the wire accepted with an organisation that was never put: the export keeps it as it is, and the
    /// file does not parse until the organisation is put (the CLI warns).
    func testALicenseNamingAMissingOrganisationIsFound() {
        XCTAssertEqual(document.licensesNamingMissingOrganisations, [])
        let orphan = LicenseSpec(id: "lic_orphan", customer: "", plan: "pro", status: .active, org: "nosuch")
        let exported = ProvisioningDocument(plans: Self.plans, orgs: Self.orgs, licenses: Self.licenses + [orphan])
        XCTAssertEqual(exported.licensesNamingMissingOrganisations, [orphan])
        XCTAssertThrowsError(try ProvisioningDocument.parse(yaml: exported.yaml())) { error in
            XCTAssertEqual((error as? ProvisioningError)?.code, "unknown_org")
        }
    }

    func testAnEmptyPolicyExportsAsAnEmptyFile() throws {
        let yaml = ProvisioningDocument().yaml()
        XCTAssertEqual(yaml, "plans: []\norgs: []\nlicenses: []\n")
        XCTAssertEqual(try ProvisioningDocument.parse(yaml: yaml), ProvisioningDocument())
    }

    /// The export is plain where it can be, so that it reads like a hand-written file.
    func testTheExportQuotesOnlyWhatYAMLWouldMisread() {
        let yaml = document.yaml()
        for line in ["  - id: pro", "    entitlements: [read, write, \"reports:all\"]", "    plan: pro", "    status: trialing",
            "    valid_from: 2026-01-01T00:00:00Z", "    valid_until: 2027-01-01T00:00:00.123Z", "  - id: \"1234\"", "  - id: \".inf\"",
            "    customer: \"true\"", "  - {id: \"yes\", name: \"\", suspended: true}", "      - {meter: bytes.out-v2, window: \"rolling:34560000\", limit: 0, pool: license}",
            "    valid_until: 9223372036854775807",
        ] {
            XCTAssertTrue(yaml.contains(line + "\n"), "\(line) not in\n\(yaml)")
        }
    }

    func testPruneDeletesWhatTheFileDoesNotNameUsersFirstAfterThePuts() {
        let file = ProvisioningDocument(plans: [Self.plans[2]], orgs: [Self.orgs[0]], licenses: [Self.licenses[0]])
        var moved = Self.licenses[0]
        moved.plan = "enterprise"
        let current = CurrentObjects(plans: Self.plans, orgs: Self.orgs, licenses: [moved] + Self.licenses[1...])
        let changes = ProvisioningPlan.diff(document: file, current: current, prune: true)
        XCTAssertEqual(changes, [
            .unchanged(.org, id: "acme"),
            .unchanged(.plan, id: "pro"),
            .update(.license, id: "lic_full", fieldChanges: [.init(field: "plan", old: "enterprise", new: "pro")]),
            .delete(.license, id: ".inf"), .delete(.license, id: "1234"), .delete(.license, id: "lic_min"),
            .delete(.plan, id: "empty"), .delete(.plan, id: "enterprise"), .delete(.plan, id: "v1.2:beta"),
            .delete(.org, id: "-1"), .delete(.org, id: "yes"),
        ])
        XCTAssertEqual(ProvisioningPlan.diff(document: file, current: current), Array(changes.prefix(3)), "without --prune nothing is deleted")
        let rendered = ProvisioningPlan.render(changes)
        XCTAssertTrue(rendered.contains("- license lic_min\n- plan empty\n"), rendered)
        XCTAssertTrue(rendered.hasSuffix("0 to create, 1 to update, 2 unchanged, 8 to delete\n"), rendered)
        // Once applied, the same file with --prune changes nothing.
        let after = current.applying(file, prune: true)
        XCTAssertTrue(ProvisioningPlan.diff(document: file, current: after, prune: true).allSatisfy { !$0.isChange })
    }
}
