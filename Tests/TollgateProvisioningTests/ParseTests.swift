import Foundation
import TollgateModel
import XCTest

@testable import TollgateProvisioning

final class ParseTests: XCTestCase {
    static let fullDocument = """
        plans:
          - id: pro
            entitlements: ["*"]
            features: [exports, sso]
            quotas:
              - {meter: api_calls, window: month, limit: 1000000}
              - {meter: api_calls, window: "rolling:60", limit: 2000, pool: token}
              - {meter: exports, period: day, limit: 100, pool: org}
            rate_limits:
              - {pool: license, rate_per_second: 100, burst: 200}
            concurrency: [{pool: token, max: 8}]
            credits: {pool: license, included: 50000, period: month}
            overage: allow_and_record
            max_token_lifetime_seconds: 7776000
            max_active_tokens: 100
            past_due_grace_seconds: 604800
        orgs:
          - {id: acme, name: "Acme Corp", suspended: false}
          - {id: initech, suspended: true}
        licenses:
          - id: lic_acme_prod
            customer: "Acme Corp"
            org: acme
            project: checkout
            plan: pro
            status: active
            valid_from: 2026-01-01T00:00:00Z
            valid_until: "2027-01-01T01:00:00+01:00"
            trial_ends_at: 1767225600000
            billing_anchor_day: 15
          - {id: lic_solo, plan: pro, status: past_due}
        """

    func testParsesAFullDocumentIntoExactValues() throws {
        let document = try ProvisioningDocument.parse(yaml: Self.fullDocument)
        let expected = ProvisioningDocument(
            plans: [
                Plan(
                    id: "pro", entitlements: ["*"], features: ["exports", "sso"],
                    quotas: [
                        QuotaRule(meter: "api_calls", window: .calendar(.month), limit: 1_000_000, pool: .license),
                        QuotaRule(meter: "api_calls", window: .rolling(seconds: 60), limit: 2000, pool: .token),
                        QuotaRule(meter: "exports", window: .calendar(.day), limit: 100, pool: .org),
                    ],
                    rateLimits: [RateRule(pool: .license, ratePerSecond: 100, burst: 200)],
                    concurrency: [ConcurrencyRule(pool: .token, max: 8)],
                    credits: CreditPolicy(pool: .license, included: 50_000, period: .month),
                    overage: .allowAndRecord, maxTokenLifetimeSeconds: 7_776_000, maxActiveTokens: 100, pastDueGraceSeconds: 604_800)
            ],
            orgs: [OrgSpec(id: "acme", name: "Acme Corp", suspended: false), OrgSpec(id: "initech", name: "", suspended: true)],
            licenses: [
                LicenseSpec(
                    id: "lic_acme_prod", customer: "Acme Corp", plan: "pro", status: .active, validUntil: 1_798_761_600_000,
                    validFrom: 1_767_225_600_000, trialEndsAt: 1_767_225_600_000, org: "acme", project: "checkout", billingAnchorDay: 15),
                LicenseSpec(id: "lic_solo", customer: "", plan: "pro", status: .pastDue),
            ])
        XCTAssertEqual(document, expected)
    }

    func testDefaults() throws {
        let document = try ProvisioningDocument.parse(
            yaml: """
                plans:
                  - id: basic
                    quotas: [{meter: api_calls, window: hour, limit: 10}]
                    rate_limits: [{rate_per_second: 3}]
                    concurrency: [{max: 2}]
                    credits: {included: 7}
                licenses:
                  - {id: l1, plan: basic, status: trialing}
                orgs:
                  - {id: o1}
                """)
        let plan = try XCTUnwrap(document.plans.first)
        XCTAssertEqual(plan.entitlements, [])
        XCTAssertEqual(plan.features, [])
        XCTAssertEqual(plan.quotas, [QuotaRule(meter: "api_calls", window: .calendar(.hour), limit: 10, pool: .license)])
        XCTAssertEqual(plan.rateLimits, [RateRule(pool: .license, ratePerSecond: 3, burst: 1)])
        XCTAssertEqual(plan.concurrency, [ConcurrencyRule(pool: .license, max: 2)])
        XCTAssertEqual(plan.credits, CreditPolicy(pool: .license, included: 7, period: .month))
        XCTAssertEqual(plan.overage, .hardStop)
        XCTAssertEqual([plan.maxTokenLifetimeSeconds, plan.maxActiveTokens, plan.pastDueGraceSeconds], [0, 0, 0])
        XCTAssertEqual(document.licenses, [LicenseSpec(id: "l1", customer: "", plan: "basic", status: .trialing)])
        XCTAssertEqual(document.licenses.first?.billingAnchorDay, 1)
        XCTAssertEqual(document.licenses.first?.org, "")
        XCTAssertEqual(document.orgs, [OrgSpec(id: "o1", name: "", suspended: false)])
    }

    func testEmptyAndNullValuesMeanAbsent() throws {
        XCTAssertEqual(try ProvisioningDocument.parse(yaml: ""), ProvisioningDocument())
        XCTAssertEqual(try ProvisioningDocument.parse(yaml: "# nothing yet\n"), ProvisioningDocument())
        XCTAssertEqual(try ProvisioningDocument.parse(yaml: "plans:\norgs: ~\nlicenses: []\n"), ProvisioningDocument())
        let document = try ProvisioningDocument.parse(
            yaml: "plans: [{id: p}]\nlicenses: [{id: l, plan: p, status: active, valid_until: null, trial_ends_at: ~, org: }]\n")
        XCTAssertEqual(document.licenses, [LicenseSpec(id: "l", customer: "", plan: "p", status: .active)])
    }

    func testNumbersInYAMLSpellings() throws {
        let document = try ProvisioningDocument.parse(
            yaml: """
                plans:
                  - id: p
                    quotas:
                      - {meter: a, window: month, limit: 100_000_000_000}
                      - {meter: b, window: month, limit: 0x10}
                      - {meter: c, window: month, limit: 0}
                      - {meter: d, window: month, limit: 18446744073709551615}
                """)
        XCTAssertEqual(document.plans.first?.quotas.map(\.limit), [100_000_000_000, 16, 0, UInt64.max])
    }

    func testMergeKeysAndExtensionKeysShareSettings() throws {
        let document = try ProvisioningDocument.parse(
            yaml: """
                x-defaults: &defaults
                  overage: allow_and_record
                  max_active_tokens: 10
                  entitlements: [read]
                plans:
                  - <<: *defaults
                    id: a
                  - <<: *defaults
                    id: b
                    max_active_tokens: 20
                """)
        XCTAssertEqual(
            document.plans,
            [
                Plan(id: "a", entitlements: ["read"], overage: .allowAndRecord, maxActiveTokens: 10),
                Plan(id: "b", entitlements: ["read"], overage: .allowAndRecord, maxActiveTokens: 20),
            ])
    }

    func testReferencesMayNameExistingObjects() throws {
        let yaml = "licenses: [{id: l, plan: gold, org: acme, status: canceled}]"
        let document = try ProvisioningDocument.parse(yaml: yaml, existingPlanIDs: ["gold"], existingOrgIDs: ["acme"])
        XCTAssertEqual(document.licenses, [LicenseSpec(id: "l", customer: "", plan: "gold", status: .canceled, org: "acme")])
    }

    /// The same id may be used by objects of different kinds: they live in different namespaces.
    func testIDsAreUniquePerKindOnly() throws {
        let document = try ProvisioningDocument.parse(yaml: "plans: [{id: x}]\norgs: [{id: x}]\nlicenses: [{id: x, plan: x, org: x, status: active}]")
        XCTAssertEqual(document.licenses.first?.id, "x")
    }

    func testParsesTheExampleFile() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("examples/provisioning.yaml")
        let document = try ProvisioningDocument.parse(yaml: String(contentsOf: url, encoding: .utf8))
        XCTAssertEqual(document.plans.map(\.id), ["free", "trial", "pro", "enterprise"])
        XCTAssertEqual(document.orgs.map(\.id), ["acme", "globex"])
        XCTAssertEqual(document.licenses.map(\.id), ["lic_acme_prod", "lic_acme_eval", "lic_globex"])

        let pro = try XCTUnwrap(document.plan("pro"))
        XCTAssertEqual(pro.overage, .allowAndRecord, "the plan's own key wins over the merged default")
        XCTAssertEqual(pro.maxTokenLifetimeSeconds, 7_776_000, "merged from x-paid-plan-defaults")
        XCTAssertEqual(pro.quotas.last, QuotaRule(meter: "bytes_out", window: .calendar(.month), limit: 100_000_000_000))
        XCTAssertEqual(document.plan("enterprise")?.entitlements, ["*"])
        XCTAssertEqual(document.plan("enterprise")?.pastDueGraceSeconds, 2_592_000)
        XCTAssertEqual(document.plan("trial")?.quotas, [QuotaRule(meter: "api_calls", period: .day, limit: 500)])
        XCTAssertEqual(document.license("lic_acme_eval")?.trialEndsAt, try RFC3339.parse("2026-03-01T08:00:00Z"))
        XCTAssertEqual(document.license("lic_acme_prod")?.billingAnchorDay, 15)
        XCTAssertEqual(document.license("lic_globex")?.validUntil, 1_798_761_600_000)

        let changes = ProvisioningPlan.diff(document: document, current: CurrentObjects())
        XCTAssertEqual(changes.count, 9)
        XCTAssertTrue(changes.allSatisfy { if case .create = $0 { return true } else { return false } })
        XCTAssertEqual(
            ProvisioningPlan.diff(document: document, current: CurrentObjects().applying(document)).filter(\.isChange), [])
    }
}
