import Foundation
import TollgateDaemon
import TollgateEngine
import TollgateModel
import TollgateProvisioning
import TollgateTestSupport
import XCTest

/// Each rule of the validation source, alone: what it refuses (with its code and field) and what it still accepts,
/// so that a rule made stricter or looser by accident fails here.
final class ValidationRuleTests: XCTestCase {
    func assertRejects(
        _ code: ValidationError.Code, field: String = "", _ message: String? = nil, file: StaticString = #filePath, line: UInt = #line,
        _ body: () throws(ValidationError) -> Void
    ) {
        do {
            try body()
            XCTFail("accepted", file: file, line: line)
        } catch {
            XCTAssertEqual(error.code, code, error.message, file: file, line: line)
            XCTAssertEqual(error.field, field, error.message, file: file, line: line)
            if let message { XCTAssertEqual(error.message, message, file: file, line: line) }
        }
    }

    func testRejectsMalformedIdentifiers() throws {
        for bad in ["", "a b", "a/b", "é", "a,b", String(repeating: "x", count: 129)] {
            assertRejects(.invalidValue, "the license id must be 1–128 characters of A-Z a-z 0-9 _ . : -") { () throws(ValidationError) in
                try Validation.identifier(bad, "the license id")
            }
        }
        for good in ["lic_acme", "A-1.b:c", String(repeating: "x", count: 128)] { try Validation.identifier(good) }
    }

    func testRejectsMalformedMeterNames() throws {
        for bad in ["", "bad meter", "a,b", "a\"b", "a:b", "a'b", "ü", "a\nb", String(repeating: "m", count: 65)] {
            assertRejects(.invalidValue, field: "meter") { () throws(ValidationError) in try Validation.meterName(bad, field: "meter") }
        }
        for good in ["requests", "api_calls", "bytes-out", "v1.calls", String(repeating: "m", count: 64)] { try Validation.meterName(good) }
    }

    func testMeterNameLengthAloneIsTheHotPathsRule() {
        XCTAssertFalse(Validation.isValidMeterNameLength(""))
        XCTAssertTrue(Validation.isValidMeterNameLength("m"))
        XCTAssertTrue(Validation.isValidMeterNameLength(String(repeating: "m", count: 64)))
        XCTAssertFalse(Validation.isValidMeterNameLength(String(repeating: "m", count: 65)))
        XCTAssertTrue(Validation.isValidMeterNameLength("bad meter"), "only the length: the characters are checked where it is not the hot path")
        XCTAssertFalse(Validation.isValidMeterNameLength(String(repeating: "é", count: 33)), "bytes, not characters")
    }

    func testRejectsWindowsOutsideTheirBoundsAndSaysTheMinimum() throws {
        for bad in ["week", "rolling:0", "rolling:7", "rolling:59", "rolling:34560001", "rolling:", "rolling:-60", "rolling:1e3", "Month"] {
            assertRejects(.invalidName, field: "window") { () throws(ValidationError) in _ = try Validation.window(named: bad, field: "window") }
        }
        do {
            _ = try Validation.window(named: "rolling:7")
        } catch {
            XCTAssertTrue(error.message.contains("from 60 (one minute)"), error.message)
        }
        XCTAssertEqual(try Validation.window(named: "rolling:60"), .rolling(seconds: 60))
        XCTAssertEqual(try Validation.window(named: "rolling:34560000"), .rolling(seconds: 34_560_000))
        XCTAssertEqual(try Validation.window(named: "month"), .calendar(.month))
        assertRejects(.invalidName) { () throws(ValidationError) in try Validation.window(.rolling(seconds: 30)) }
    }

    func testRejectsMalformedScopesAndRepeats() throws {
        assertRejects(.invalidValue, field: "scopes[1]") { () throws(ValidationError) in try Validation.scopes(["read", "read write"], field: "scopes") }
        assertRejects(.invalidValue, field: "scopes[0]") { () throws(ValidationError) in try Validation.scopes([""], field: "scopes") }
        assertRejects(.invalidValue, field: "scopes[1]", "'read' is listed twice") { () throws(ValidationError) in
            try Validation.scopes(["read", "read"], field: "scopes")
        }
        assertRejects(.invalidValue, field: "scopes") { () throws(ValidationError) in
            try Validation.scopes((0...64).map { "s\($0)" }, field: "scopes")
        }
        try Validation.scopes(["*", "read", "search:query"])
    }

    func testRejectsScopesThePlanDoesNotGrant() throws {
        let plan = Plan(id: "basic", entitlements: ["read", "write"])
        assertRejects(.scopeNotGranted, field: "scopes[1]") { () throws(ValidationError) in
            try Validation.scopesGranted(["read", "admin"], by: plan, license: "lic_1", field: "scopes")
        }
        try Validation.scopesGranted(["read", "*"], by: plan, license: "lic_1")
        try Validation.scopesGranted(["admin"], by: Plan(id: "all", entitlements: ["*"]), license: "lic_1")
    }

    func testRejectsBadSubjectsTextsAndMetadata() throws {
        assertRejects(.invalidValue, "the subject must be 1–256 bytes") { () throws(ValidationError) in try Validation.subject("") }
        assertRejects(.invalidValue) { () throws(ValidationError) in try Validation.subject(String(repeating: "s", count: 257)) }
        try Validation.subject("ünïcødé 😀")
        assertRejects(.invalidValue, field: "metadata[0]") { () throws(ValidationError) in
            try Validation.metadata([KeyValue("tollgate.other", "1")], field: "metadata")
        }
        assertRejects(.invalidValue, field: "metadata[0]") { () throws(ValidationError) in
            try Validation.metadata([KeyValue(TokenBinding.metadataKey, "root")], field: "metadata")
        }
        assertRejects(.invalidValue, field: "metadata") { () throws(ValidationError) in
            try Validation.metadata((0...32).map { KeyValue("k\($0)", "v") }, field: "metadata")
        }
        try Validation.metadata([KeyValue(TokenBinding.metadataKey, "1000, 1001"), KeyValue("team", "")])
    }

    func testRejectsPlanRulesOutsideTheirBounds() throws {
        let base = Plan(id: "p", entitlements: ["read"])
        var plan = base
        plan.rateLimits = [RateRule(pool: .license, ratePerSecond: 0, burst: 1)]
        assertRejects(.outOfRange, field: "rate_limits[0].rate_per_second") { () throws(ValidationError) in try Validation.plan(plan) }
        plan = base
        plan.concurrency = [ConcurrencyRule(pool: .token, max: 1), ConcurrencyRule(pool: .token, max: 2)]
        assertRejects(.invalidValue, field: "concurrency[1].pool") { () throws(ValidationError) in try Validation.plan(plan) }
        plan = base
        plan.quotas = [QuotaRule(meter: "r", window: .rolling(seconds: 10), limit: 1)]
        assertRejects(.invalidName, field: "quotas[0].window") { () throws(ValidationError) in try Validation.plan(plan) }
        plan = base
        plan.rateLimits = (0..<65).map { _ in RateRule(pool: .license, ratePerSecond: 1, burst: 1) }
        assertRejects(.invalidValue, field: "rate_limits", "at most 64 rate limits are allowed in a plan") { () throws(ValidationError) in
            try Validation.plan(plan)
        }
        plan = base
        plan.quotas = [QuotaRule(meter: "r", period: .day, limit: 5), QuotaRule(meter: "r", period: .day, limit: 5, pool: .token)]
        plan.rateLimits = [RateRule(pool: .license, ratePerSecond: 1_000_000, burst: 0)]
        plan.credits = CreditPolicy(included: 0)
        plan.maxTokenLifetimeSeconds = .max
        try Validation.plan(plan)
    }

    func testRejectsLicensesBreakingTheirRules() throws {
        let base = LicenseSpec(id: "l", customer: "c", plan: "p", status: .active)
        var spec = base
        spec.billingAnchorDay = 29
        assertRejects(.outOfRange, field: "billing_anchor_day") { () throws(ValidationError) in try Validation.license(spec) }
        spec = base
        spec.org = "acme corp"
        assertRejects(.invalidValue, field: "org") { () throws(ValidationError) in try Validation.license(spec) }
        spec = base
        spec.project = String(repeating: "p", count: 129)
        assertRejects(.invalidValue, field: "project") { () throws(ValidationError) in try Validation.license(spec) }
        spec = base
        (spec.validFrom, spec.validUntil) = (5000, 5000)
        assertRejects(.invalidValue, field: "valid_until") { () throws(ValidationError) in try Validation.license(spec) }
        XCTAssertEqual(Validation.unknownOrganisation("nosuch").code, .unknownOrg)
        try Validation.license(base)
    }

    func testMessagesWithholdWhatLooksLikeASecret() {
        do {
            try Validation.meterName("tg_live_yGIHnhrJ9a2MiMIPa8kWegLCiLV3wfYgepXB5pOUWtQ09iNg0 x")
            XCTFail("accepted")
        } catch {
            XCTAssertFalse(error.message.contains("yGIH"), error.message)
        }
    }

    func testErrorsCompareByCode() {
        XCTAssertEqual(ValidationError(.invalidValue, field: "a", "one"), ValidationError(.invalidValue, field: "b", "two"))
        XCTAssertNotEqual(ValidationError(.invalidValue, "one"), ValidationError(.outOfRange, "one"))
        XCTAssertEqual(ValidationError(.invalidValue, field: "meter", "x").at("plans[0].quotas[1]").field, "plans[0].quotas[1].meter")
        XCTAssertEqual(ValidationError(.invalidValue, field: "[2]", "x").at("entitlements").field, "entitlements[2]")
    }

    // MARK: The engine

    func testTheEngineRefusesATokenScopeItsPlanDoesNotGrant() throws {
        var state = LicensingState()
        var rng = SplitMix64(seed: 1)
        let now = Timestamp(millis: 1_800_000_000_000)
        _ = try state.putPlan(Plan(id: "basic", entitlements: ["read"]), at: now)
        _ = try state.putLicense(LicenseSpec(id: "lic_1", customer: "", plan: "basic", status: .active), at: now)
        XCTAssertThrowsError(try state.issue(IssueRequest(licenseID: "lic_1", subject: "s", scopes: ["read", "admin"]), at: now, using: &rng)) {
            let error = $0 as? EngineError
            XCTAssertEqual(error?.code, .invalidArgument)
            XCTAssertEqual(error?.validation?.code, .scopeNotGranted)
            XCTAssertEqual(
                error?.message,
                "scopes[1]: scope 'admin' is not granted by plan basic of license 'lic_1' (it grants read); a token may carry only scopes its plan grants, or * for all of them")
        }
        XCTAssertEqual(state.tokens.count, 0, "nothing was issued")
        XCTAssertEqual(try state.issue(IssueRequest(licenseID: "lic_1", subject: "s", scopes: ["read"]), at: now, using: &rng).token.scopes, ["read"])
        XCTAssertEqual(try state.issue(IssueRequest(licenseID: "lic_1", subject: "s"), at: now, using: &rng).token.scopes, ["*"])
    }

    func testTheEngineRefusesARollingWindowBelowTheMinimum() {
        var state = LicensingState()
        let plan = Plan(id: "p", entitlements: [], quotas: [QuotaRule(meter: "r", window: .rolling(seconds: 7), limit: 1)])
        XCTAssertThrowsError(try state.putPlan(plan, at: Timestamp(millis: 1))) {
            XCTAssertEqual(($0 as? EngineError)?.validation?.code, .invalidName)
            XCTAssertTrue(($0 as? EngineError)?.message.hasPrefix("quotas[0].window: 'rolling:7' is not a window") ?? false, "\($0)")
        }
        XCTAssertNil(state.plans["p"])
    }

    // MARK: The configuration

    func testRejectsBadJSONWithItsLineAndColumn() {
        let cases: [(text: String, line: Int, column: Int)] = [
            ("{\n  \"state_dir\": \"./s\",\n  \"log_level\" \"info\"\n}", 3, 15),
            // (Foundation accepts a trailing comma, so it is not an example here.)
            ("{\n  \"plans\": [\n    {\"id\": \"a\"} {\"id\": \"b\"}\n  ]\n}", 3, 17),
            ("{\"max_frame_bytes\": 01}", 1, 22),
            ("{\"state_dir\": \"unterminated}", 1, 15),
            ("{} trailing", 1, 4),
            ("", 1, 1),
        ]
        for c in cases {
            XCTAssertThrowsError(try DaemonConfiguration.parse(json: Data(c.text.utf8)), c.text) { error in
                let message = (error as? ConfigurationError)?.message ?? ""
                XCTAssertTrue(message.hasPrefix("not valid JSON: line \(c.line), column \(c.column): "), "\(c.text.debugDescription): \(message)")
            }
        }
    }

    func testTheConfigurationKeepsItsPlanSyntax() throws {
        // The configuration's own forms still read as before: the license-wide shorthand, `period`, a burst of 0
        // in the shorthand, an integral number written with a fraction.
        let json = #"""
            {"plans": [{"id": "p", "entitlements": ["read"], "rate_per_second": 5, "burst": 0,
                        "quotas": [{"meter": "requests", "period": "day", "limit": 1000.0}],
                        "credits": {"included": 10}, "max_active_tokens": 3}]}
            """#
        let plan = try XCTUnwrap(DaemonConfiguration.parse(json: Data(json.utf8)).plans.first)
        XCTAssertEqual(plan.rateLimits, [RateRule(pool: .license, ratePerSecond: 5, burst: 1)])
        XCTAssertEqual(plan.quotas, [QuotaRule(meter: "requests", period: .day, limit: 1000)])
        XCTAssertEqual(plan.credits, CreditPolicy(pool: .license, included: 10, period: .month))
        XCTAssertEqual(plan.maxActiveTokens, 3)
        // …and the same text read as an apply file is the same plan.
        let yaml = "plans:\n  - " + #"{"id": "p", "entitlements": ["read"], "rate_per_second": 5, "burst": 0, "quotas": [{"meter": "requests", "period": "day", "limit": 1000}], "credits": {"included": 10}, "max_active_tokens": 3}"#
        XCTAssertEqual(try ProvisioningDocument.parse(yaml: yaml).plans, [plan])
    }

    func testTheEmbeddedDefaultsPlansReadTheSameAsAnApplyFile() throws {
        let plans = DaemonConfiguration.embeddedDefault().plans
        XCTAssertEqual(plans.map(\.id), ["free", "trial", "pro", "enterprise"])
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(DaemonConfiguration.embeddedDefaultJSON.utf8)) as? [String: Any])
        let text = String(decoding: try JSONSerialization.data(withJSONObject: ["plans": object["plans"]!]), as: UTF8.self)
        XCTAssertEqual(try ProvisioningDocument.parse(yaml: text).plans, plans)
    }
}
