import TollgateModel
import XCTest

@testable import TollgateProvisioning

/// Every class of error, with the path it must name.
final class ParseErrorTests: XCTestCase {
    @discardableResult
    func assertRejects(
        _ yaml: String, _ code: String, at path: String, existingPlanIDs: Set<String> = [], existingOrgIDs: Set<String> = [],
        file: StaticString = #filePath, line: UInt = #line
    ) -> ProvisioningError? {
        do {
            let document = try ProvisioningDocument.parse(yaml: yaml, existingPlanIDs: existingPlanIDs, existingOrgIDs: existingOrgIDs)
            XCTFail("accepted: \(document)", file: file, line: line)
            return nil
        } catch {
            XCTAssertEqual(error.code, code, error.message, file: file, line: line)
            XCTAssertEqual(error.path, path, error.message, file: file, line: line)
            XCTAssertTrue(error.message.hasPrefix(path), error.message, file: file, line: line)
            return error
        }
    }

    /// A valid plan and license to put one wrong thing into.
    func license(_ fields: String) -> String {
        "plans: [{id: pro}]\norgs: [{id: acme}]\nlicenses:\n  - {id: l0, plan: pro, status: active}\n  - {id: l1, plan: pro, status: active, \(fields)}\n"
    }

    func plan(_ fields: String) -> String { "plans:\n  - {id: free}\n  - {id: pro, \(fields)}\n" }

    func testRejectsInvalidYAML() {
        let error = assertRejects("plans:\n  - {id: pro\n", "invalid_yaml", at: "line 3, column 1")
        XCTAssertEqual(error?.message.contains("not valid YAML"), true)
        assertRejects("--- {}\n--- {}\n", "invalid_yaml", at: "line 2, column 1")
        assertRejects("plans: *nowhere\n", "invalid_yaml", at: "line 1, column 8")
    }

    func testRejectsDuplicateKeys() {
        let error = assertRejects("plans:\n  - id: a\n    id: b\n", "duplicate_key", at: "line 2, column 5")
        XCTAssertEqual(error, .duplicateKey(key: "id", line: 2, column: 5))
    }

    func testRejectsUnknownKeysWithASuggestion() {
        XCTAssertEqual(assertRejects("plan: []", "unknown_key", at: "plan"), .unknownKey(path: "plan", suggestion: "plans"))
        XCTAssertEqual(
            assertRejects(plan("quotas: [{meter: a, perod: day, limit: 1}]"), "unknown_key", at: "plans[1].quotas[0].perod"),
            .unknownKey(path: "plans[1].quotas[0].perod", suggestion: "period"))
        XCTAssertEqual(
            assertRejects(plan("rate_limits: [{pool: token, per_second: 100, rate_per_second: 1}]"), "unknown_key", at: "plans[1].rate_limits[0].per_second"),
            .unknownKey(path: "plans[1].rate_limits[0].per_second", suggestion: "rate_per_second"))
        XCTAssertEqual(
            assertRejects(license("expires: 0"), "unknown_key", at: "licenses[1].expires"),
            .unknownKey(path: "licenses[1].expires", suggestion: nil))
        assertRejects("orgs: [{id: a, colour: red}]", "unknown_key", at: "orgs[0].colour")
        assertRejects(plan("credits: {included: 1, rollover: true}"), "unknown_key", at: "plans[1].credits.rollover")
    }

    func testRejectsMissingKeys() {
        assertRejects("plans: [{entitlements: []}]", "missing_key", at: "plans[0].id")
        assertRejects("licenses: [{id: l, status: active}]", "missing_key", at: "licenses[0].plan")
        assertRejects("plans: [{id: p}]\nlicenses: [{id: l, plan: p}]", "missing_key", at: "licenses[0].status")
        assertRejects(plan("quotas: [{meter: a, limit: 1}]"), "missing_key", at: "plans[1].quotas[0].window")
        assertRejects(plan("quotas: [{window: day, limit: 1}]"), "missing_key", at: "plans[1].quotas[0].meter")
        assertRejects(plan("quotas: [{meter: a, window: day}]"), "missing_key", at: "plans[1].quotas[0].limit")
        assertRejects(plan("rate_limits: [{burst: 5}]"), "missing_key", at: "plans[1].rate_limits[0].rate_per_second")
        assertRejects(plan("concurrency: [{pool: org}]"), "missing_key", at: "plans[1].concurrency[0].max")
        assertRejects(plan("credits: {period: day}"), "missing_key", at: "plans[1].credits.included")
    }

    func testRejectsWrongTypes() {
        assertRejects("- plans", "wrong_type", at: "the document")
        assertRejects("plans: {id: pro}", "wrong_type", at: "plans")
        assertRejects("plans: [pro]", "wrong_type", at: "plans[0]")
        assertRejects("plans: [{id: 2024}]", "wrong_type", at: "plans[0].id")
        assertRejects(plan("entitlements: read"), "wrong_type", at: "plans[1].entitlements")
        assertRejects(plan("entitlements: [read, 7]"), "wrong_type", at: "plans[1].entitlements[1]")
        assertRejects(plan("features: [yes]"), "wrong_type", at: "plans[1].features[0]")
        assertRejects(plan("quotas: [{meter: a, window: day, limit: \"100\"}]"), "wrong_type", at: "plans[1].quotas[0].limit")
        assertRejects(plan("quotas: [{meter: a, window: day, limit: 1.5}]"), "wrong_type", at: "plans[1].quotas[0].limit")
        assertRejects(plan("credits: 500"), "wrong_type", at: "plans[1].credits")
        assertRejects(plan("max_active_tokens: [1]"), "wrong_type", at: "plans[1].max_active_tokens")
        assertRejects("orgs: [{id: a, suspended: no}]", "wrong_type", at: "orgs[0].suspended")
        assertRejects("orgs: [{id: a, suspended: \"true\"}]", "wrong_type", at: "orgs[0].suspended")
        assertRejects("orgs: [{id: a, name: [Acme]}]", "wrong_type", at: "orgs[0].name")
        assertRejects(license("valid_from: 1.7e12"), "wrong_type", at: "licenses[1].valid_from")
        assertRejects(license("billing_anchor_day: fifteen"), "wrong_type", at: "licenses[1].billing_anchor_day")
        assertRejects("plans: [{id: p, <<: 5}]", "wrong_type", at: "plans[0].<<")
    }

    func testRejectsBadNames() {
        XCTAssertEqual(
            assertRejects("plans: [{id: pro}]\nlicenses: [{id: l0, plan: pro, status: active}, {id: l1, plan: pro, status: suspended}]", "invalid_name", at: "licenses[1].status"),
            .invalidName(path: "licenses[1].status", value: "suspended", allowed: ["active", "trialing", "past_due", "canceled", "expired"]))
        assertRejects(plan("quotas: [{meter: a, window: week, limit: 1}]"), "invalid_name", at: "plans[1].quotas[0].window")
        assertRejects(plan("quotas: [{meter: a, window: \"rolling:0\", limit: 1}]"), "invalid_name", at: "plans[1].quotas[0].window")
        assertRejects(plan("quotas: [{meter: a, period: \"rolling:60\", limit: 1}]"), "invalid_name", at: "plans[1].quotas[0].period")
        assertRejects(plan("quotas: [{meter: a, window: day, limit: 1, pool: team}]"), "invalid_name", at: "plans[1].quotas[0].pool")
        assertRejects(plan("rate_limits: [{pool: global, rate_per_second: 1}]"), "invalid_name", at: "plans[1].rate_limits[0].pool")
        assertRejects(plan("overage: soft_stop"), "invalid_name", at: "plans[1].overage")
        assertRejects(plan("credits: {included: 1, period: year}"), "invalid_name", at: "plans[1].credits.period")
    }

    func testRejectsNumbersOutOfRange() {
        XCTAssertEqual(
            assertRejects(license("billing_anchor_day: 29"), "out_of_range", at: "licenses[1].billing_anchor_day"),
            .outOfRange(path: "licenses[1].billing_anchor_day", value: "29", range: "1–28"))
        assertRejects(license("billing_anchor_day: 0"), "out_of_range", at: "licenses[1].billing_anchor_day")
        assertRejects(license("billing_anchor_day: -3"), "out_of_range", at: "licenses[1].billing_anchor_day")
        assertRejects(license("valid_until: -1"), "out_of_range", at: "licenses[1].valid_until")
        assertRejects(license("valid_from: 1969-12-31T23:59:59Z"), "out_of_range", at: "licenses[1].valid_from")
        assertRejects(plan("quotas: [{meter: a, window: day, limit: -1}]"), "out_of_range", at: "plans[1].quotas[0].limit")
        assertRejects(plan("quotas: [{meter: a, window: day, limit: 18446744073709551616}]"), "out_of_range", at: "plans[1].quotas[0].limit")
        assertRejects(plan("rate_limits: [{rate_per_second: 0}]"), "out_of_range", at: "plans[1].rate_limits[0].rate_per_second")
        assertRejects(plan("rate_limits: [{rate_per_second: 1000001}]"), "out_of_range", at: "plans[1].rate_limits[0].rate_per_second")
        assertRejects(plan("rate_limits: [{rate_per_second: 5, burst: 0}]"), "out_of_range", at: "plans[1].rate_limits[0].burst")
        assertRejects(plan("concurrency: [{max: 0}]"), "out_of_range", at: "plans[1].concurrency[0].max")
        assertRejects(plan("max_active_tokens: 4294967296"), "out_of_range", at: "plans[1].max_active_tokens")
    }

    func testRejectsValuesThatBreakTheModelsRules() {
        assertRejects("plans: [{id: \"pro plan\"}]", "invalid_value", at: "plans[0].id")
        assertRejects("plans: [{id: \"\"}]", "invalid_value", at: "plans[0].id")
        assertRejects(license("org: \"acme corp\""), "invalid_value", at: "licenses[1].org")
        assertRejects(plan("entitlements: [read, \"write all\"]"), "invalid_value", at: "plans[1].entitlements[1]")
        assertRejects(plan("features: [sso, sso]"), "invalid_value", at: "plans[1].features[1]")
        assertRejects(plan("quotas: [{meter: \"\", window: day, limit: 1}]"), "invalid_value", at: "plans[1].quotas[0].meter")
        assertRejects(
            plan("quotas: [{meter: a, window: day, limit: 1}, {meter: a, period: day, limit: 2}]"), "invalid_value", at: "plans[1].quotas[1]")
        assertRejects(plan("quotas: [{meter: a, window: day, period: day, limit: 1}]"), "invalid_value", at: "plans[1].quotas[0].period")
        assertRejects(
            plan("rate_limits: [{rate_per_second: 1}, {pool: license, rate_per_second: 2}]"), "invalid_value", at: "plans[1].rate_limits[1].pool")
        assertRejects(plan("concurrency: [{pool: org, max: 1}, {pool: org, max: 2}]"), "invalid_value", at: "plans[1].concurrency[1].pool")
        assertRejects(plan("max_active_tokens: 010"), "invalid_value", at: "plans[1].max_active_tokens")
        assertRejects(plan("max_token_lifetime_seconds: 1:30"), "invalid_value", at: "plans[1].max_token_lifetime_seconds")
        assertRejects(
            license("valid_from: 2026-06-01T00:00:00Z, valid_until: 2026-01-01T00:00:00Z"), "invalid_value", at: "licenses[1].valid_until")
        assertRejects(license("customer: \"\(String(repeating: "x", count: 257))\""), "invalid_value", at: "licenses[1].customer")
    }

    func testRejectsBadTimestamps() {
        let error = assertRejects(license("valid_from: 2026-02-30T00:00:00Z"), "invalid_timestamp", at: "licenses[1].valid_from")
        XCTAssertEqual(
            error, .invalidTimestamp(path: "licenses[1].valid_from", value: "2026-02-30T00:00:00Z", reason: "day 30 does not exist in 2026-02"))
        assertRejects(license("valid_until: 2026-01-01"), "invalid_timestamp", at: "licenses[1].valid_until")
        assertRejects(license("trial_ends_at: \"next tuesday\""), "invalid_timestamp", at: "licenses[1].trial_ends_at")
        assertRejects(license("trial_ends_at: 2026-01-01T00:00:00+0100"), "invalid_timestamp", at: "licenses[1].trial_ends_at")
    }

    func testRejectsDuplicateIDs() {
        XCTAssertEqual(
            assertRejects("plans: [{id: pro}]\nlicenses: [{id: l0, plan: pro, status: active}, {id: l0, plan: pro, status: active}]", "duplicate_id", at: "licenses[1].id"),
            .duplicateID(path: "licenses[1].id", id: "l0", firstPath: "licenses[0].id"))
        assertRejects("plans: [{id: a}, {id: b}, {id: a}]", "duplicate_id", at: "plans[2].id")
        assertRejects("orgs: [{id: a}, {id: a}]", "duplicate_id", at: "orgs[1].id")
    }

    func testRejectsUnknownPlans() {
        let yaml = "plans: [{id: pro}]\nlicenses:\n  - {id: a, plan: pro, status: active}\n  - {id: b, plan: pro, status: active}\n  - {id: c, plan: gold, status: active}\n"
        XCTAssertEqual(assertRejects(yaml, "unknown_plan", at: "licenses[2].plan"), .unknownPlan(path: "licenses[2].plan", id: "gold"))
        XCTAssertNoThrow(try ProvisioningDocument.parse(yaml: yaml, existingPlanIDs: ["gold"]))
        // Existing organisations do not satisfy a plan reference.
        assertRejects(yaml, "unknown_plan", at: "licenses[2].plan", existingOrgIDs: ["gold"])
    }

    func testRejectsUnknownOrgs() {
        let yaml = "plans: [{id: pro}]\norgs: [{id: acme}]\nlicenses: [{id: a, plan: pro, org: initech, status: active}]\n"
        XCTAssertEqual(assertRejects(yaml, "unknown_org", at: "licenses[0].org"), .unknownOrg(path: "licenses[0].org", id: "initech"))
        XCTAssertNoThrow(try ProvisioningDocument.parse(yaml: yaml, existingOrgIDs: ["initech"]))
        assertRejects(yaml, "unknown_org", at: "licenses[0].org", existingPlanIDs: ["initech"])
    }

    func testMessagesNameThePathAndTheProblem() {
        XCTAssertEqual(
            ProvisioningError.unknownPlan(path: "licenses[2].plan", id: "gold").message, "licenses[2].plan: no plan 'gold' in the file or on the daemon")
        XCTAssertEqual(
            ProvisioningError.unknownKey(path: "plans[0].quotas[1].perod", suggestion: "period").description,
            "plans[0].quotas[1].perod: unknown key (did you mean period?)")
        XCTAssertEqual(
            ProvisioningError.outOfRange(path: "licenses[0].billing_anchor_day", value: "31", range: "1–28").message,
            "licenses[0].billing_anchor_day: 31 is out of range (1–28)")
        XCTAssertEqual(ProvisioningError.missingKey(path: "plans[0].id").message, "plans[0].id is required")
    }
}

/// `apply` reports every error of a file in one run (issue 13 §2), not only the first.
final class ParseReportingAllTests: XCTestCase {
    func testEveryObjectsErrorIsReportedInFileOrder() {
        let yaml = """
            plans:
              - {id: good}
              - {id: broken, overage: sometimes}
              - {id: also_broken, quotas: [{meter: calls, window: week, limit: 5}]}
            orgs:
              - {id: acme, colour: red}
            licenses:
              - {id: l0, plan: good, status: active}
              - {id: l1, plan: nosuch, status: active, org: nowhere}
              - {id: l2, plan: broken, status: active}
              - {id: l3, plan: good, status: sleeping}
              - {id: l0, plan: good, status: active}
            """
        let (document, errors) = ProvisioningDocument.parseReportingAll(yaml: yaml)
        XCTAssertEqual(errors.map(\.code), ["invalid_name", "invalid_name", "unknown_key", "invalid_name", "duplicate_id", "unknown_plan", "unknown_org"])
        XCTAssertEqual(errors.map(\.path), [
            "plans[1].overage", "plans[2].quotas[0].window", "orgs[0].colour", "licenses[3].status", "licenses[4].id",
            "licenses[1].plan", "licenses[1].org",
        ])
        // l2 names a plan that is declared but invalid: its error is the plan's, not a second `unknown_plan`.
        XCTAssertFalse(errors.contains { $0.path == "licenses[2].plan" })
        XCTAssertEqual(document.plans.map(\.id), ["good"])
    }

    func testTheFirstErrorIsWhatParseThrows() {
        let yaml = "plans:\n  - {id: a, overage: x}\n  - {id: b, overage: y}\n"
        XCTAssertThrowsError(try ProvisioningDocument.parse(yaml: yaml)) { error in
            XCTAssertEqual((error as? ProvisioningError)?.path, "plans[0].overage")
        }
        XCTAssertEqual(ProvisioningDocument.parseReportingAll(yaml: yaml).errors.count, 2)
    }

    func testAValidFileHasNoErrors() {
        let (document, errors) = ProvisioningDocument.parseReportingAll(yaml: "plans: [{id: a}]\nlicenses: [{id: l, plan: a, status: active}]\n")
        XCTAssertEqual(errors.map(\.code), [])
        XCTAssertEqual(document.licenses.map(\.id), ["l"])
    }
}
