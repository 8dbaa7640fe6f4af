import Foundation
import TollgateDaemon
import TollgateEngine
import TollgateModel
import TollgateProvisioning
import TollgateTestSupport
import XCTest

/// One verdict for the same input (issue 12 item 4, issue 13 §3): each bad plan goes through every entry point
/// that accepts plans — the engine (what PLAN_PUT reaches), the daemon's JSON configuration, `tollgate apply`'s
/// YAML and `tollgate plan set`'s options — and each must refuse it with the same code and the same sentence.
final class OneVerdictTests: XCTestCase {
    struct Case {
        var name: String
        /// The plan as the files write it (JSON is YAML too, so one text serves both).
        var json: String
        /// The same plan as the engine receives it.
        var plan: Plan
        /// The same plan as `plan set` options, when the CLI can express it.
        var cli: CLIArguments?
        var code: ValidationError.Code
        var message: String
    }

    struct CLIArguments {
        var id = "p"
        var entitlements: [String] = []
        var features: [String] = []
        var quotas: [String] = []
        var rateLimits: [String] = []
        var concurrency: [String] = []
    }

    static let meterRule = "use 1–64 characters of A-Z a-z 0-9 _ . -"
    static let windowRule = "is not a window: use hour, day, month or rolling:SECONDS with SECONDS from 60 (one minute) to 34560000 (400 days)"

    static func quota(_ meter: String, _ window: QuotaWindow) -> Plan {
        Plan(id: "p", entitlements: [], quotas: [QuotaRule(meter: meter, window: window, limit: 5)])
    }

    static let cases: [Case] = [
        Case(
            name: "meter name with a space", json: #"{"id": "p", "quotas": [{"meter": "bad meter", "window": "day", "limit": 5}]}"#,
            plan: quota("bad meter", .calendar(.day)), cli: CLIArguments(quotas: ["bad meter:day:5"]),
            code: .invalidValue, message: "'bad meter' is not a meter name: \(meterRule)"),
        Case(
            name: "meter name with a comma and a quote", json: #"{"id": "p", "quotas": [{"meter": "a,b\"c", "window": "day", "limit": 5}]}"#,
            plan: quota("a,b\"c", .calendar(.day)), cli: CLIArguments(quotas: ["a,b\"c:day:5"]),
            code: .invalidValue, message: "'a,b\"c' is not a meter name: \(meterRule)"),
        Case(
            name: "empty meter name", json: #"{"id": "p", "quotas": [{"meter": "", "window": "day", "limit": 5}]}"#,
            plan: quota("", .calendar(.day)), cli: CLIArguments(quotas: [":day:5"]),
            code: .invalidValue, message: "'' is not a meter name: \(meterRule)"),
        Case(
            name: "meter name of 65 bytes", json: #"{"id": "p", "quotas": [{"meter": "\#(String(repeating: "m", count: 65))", "window": "day", "limit": 5}]}"#,
            plan: quota(String(repeating: "m", count: 65), .calendar(.day)), cli: CLIArguments(quotas: [String(repeating: "m", count: 65) + ":day:5"]),
            code: .invalidValue, message: "'\(String(repeating: "m", count: 64))…' is not a meter name: \(meterRule)"),
        Case(
            name: "rolling window below the minimum", json: #"{"id": "p", "quotas": [{"meter": "requests", "window": "rolling:7", "limit": 5}]}"#,
            plan: quota("requests", .rolling(seconds: 7)), cli: CLIArguments(quotas: ["requests:rolling:7:5"]),
            code: .invalidName, message: "'rolling:7' \(windowRule)"),
        Case(
            name: "rolling window of 59 s", json: #"{"id": "p", "quotas": [{"meter": "requests", "window": "rolling:59", "limit": 5}]}"#,
            plan: quota("requests", .rolling(seconds: 59)), cli: CLIArguments(quotas: ["requests:rolling:59:5"]),
            code: .invalidName, message: "'rolling:59' \(windowRule)"),
        Case(
            name: "rolling window above 400 days", json: #"{"id": "p", "quotas": [{"meter": "requests", "window": "rolling:34560001", "limit": 5}]}"#,
            plan: quota("requests", .rolling(seconds: 34_560_001)), cli: CLIArguments(quotas: ["requests:rolling:34560001:5"]),
            code: .invalidName, message: "'rolling:34560001' \(windowRule)"),
        Case(
            name: "plan id with a space", json: #"{"id": "pro plan"}"#,
            plan: Plan(id: "pro plan", entitlements: []), cli: CLIArguments(id: "pro plan"),
            code: .invalidValue, message: "the plan id must be 1–128 characters of A-Z a-z 0-9 _ . : -"),
        Case(
            name: "entitlement with a space", json: #"{"id": "p", "entitlements": ["read", "write all"]}"#,
            plan: Plan(id: "p", entitlements: ["read", "write all"]), cli: CLIArguments(entitlements: ["read", "write all"]),
            code: .invalidValue, message: "a scope must be 1–128 printable ASCII characters without spaces"),
        Case(
            name: "feature listed twice", json: #"{"id": "p", "features": ["sso", "sso"]}"#,
            plan: Plan(id: "p", entitlements: [], features: ["sso", "sso"]), cli: CLIArguments(features: ["sso", "sso"]),
            code: .invalidValue, message: "'sso' is listed twice"),
        Case(
            name: "the same quota twice",
            json: #"{"id": "p", "quotas": [{"meter": "r", "window": "day", "limit": 5}, {"meter": "r", "window": "day", "limit": 6}]}"#,
            plan: Plan(id: "p", entitlements: [], quotas: [QuotaRule(meter: "r", period: .day, limit: 5), QuotaRule(meter: "r", period: .day, limit: 6)]),
            cli: CLIArguments(quotas: ["r:day:5", "r:day:6"]),
            code: .invalidValue, message: "quota:r:day:license is given twice"),
        Case(
            name: "rate of 0 per second", json: #"{"id": "p", "rate_limits": [{"pool": "token", "rate_per_second": 0}]}"#,
            plan: Plan(id: "p", entitlements: [], rateLimits: [RateRule(pool: .token, ratePerSecond: 0, burst: 1)]),
            cli: CLIArguments(rateLimits: ["token:0:1"]),
            code: .outOfRange, message: "0 is out of range (a rate limit must be 1–1000000 per second)"),
        Case(
            name: "rate above a million per second", json: #"{"id": "p", "rate_limits": [{"pool": "token", "rate_per_second": 1000001}]}"#,
            plan: Plan(id: "p", entitlements: [], rateLimits: [RateRule(pool: .token, ratePerSecond: 1_000_001, burst: 1)]),
            cli: CLIArguments(rateLimits: ["token:1000001:1"]),
            code: .outOfRange, message: "1000001 is out of range (a rate limit must be 1–1000000 per second)"),
        Case(
            name: "two rate limits at one level",
            json: #"{"id": "p", "rate_limits": [{"pool": "org", "rate_per_second": 1}, {"pool": "org", "rate_per_second": 2}]}"#,
            plan: Plan(id: "p", entitlements: [], rateLimits: [RateRule(pool: .org, ratePerSecond: 1, burst: 1), RateRule(pool: .org, ratePerSecond: 2, burst: 1)]),
            cli: CLIArguments(rateLimits: ["org:1:1", "org:2:1"]),
            code: .invalidValue, message: "a rate limit at org level is given twice"),
        Case(
            name: "concurrency of 0", json: #"{"id": "p", "concurrency": [{"pool": "license", "max": 0}]}"#,
            plan: Plan(id: "p", entitlements: [], concurrency: [ConcurrencyRule(pool: .license, max: 0)]), cli: CLIArguments(concurrency: ["license:0"]),
            code: .outOfRange, message: "0 is out of range (a concurrency limit must be at least 1)"),
        Case(
            name: "65 quotas",
            json: #"{"id": "p", "quotas": ["# + (0..<65).map { #"{"meter": "m\#($0)", "window": "day", "limit": 1}"# }.joined(separator: ", ") + "]}",
            plan: Plan(id: "p", entitlements: [], quotas: (0..<65).map { QuotaRule(meter: "m\($0)", period: .day, limit: 1) }),
            cli: CLIArguments(quotas: (0..<65).map { "m\($0):day:1" }),
            code: .invalidValue, message: "at most 64 quotas are allowed in a plan"),
    ]

    func testEveryEntryPointGivesTheSameVerdictAndMessage() throws {
        for c in Self.cases {
            var verdicts: [(entry: String, error: ValidationError?)] = []

            // The engine, as PLAN_PUT reaches it.
            var state = LicensingState()
            do {
                _ = try state.putPlan(c.plan, at: Timestamp(millis: 1_800_000_000_000))
                verdicts.append(("engine", nil))
            } catch let error as EngineError {
                XCTAssertEqual(error.code, .invalidArgument, c.name)
                XCTAssertEqual(error.message, error.validation?.description, "the wire's message is the rule's sentence: \(c.name)")
                verdicts.append(("engine", error.validation))
            }

            // The daemon's JSON configuration.
            do {
                _ = try DaemonConfiguration.parse(json: Data(#"{"plans": [\#(c.json)]}"#.utf8))
                verdicts.append(("configuration", nil))
            } catch let error as ConfigurationError {
                XCTAssertEqual(error.message, error.validation?.description, c.name)
                XCTAssertEqual(error.validation?.field.hasPrefix("plans[0]"), true, "\(c.name): \(error.message)")
                verdicts.append(("configuration", error.validation))
            }

            // `tollgate apply`'s YAML (JSON is a YAML flow mapping).
            do {
                _ = try ProvisioningDocument.parse(yaml: "plans:\n  - \(c.json)\n")
                verdicts.append(("apply", nil))
            } catch {
                guard case .rule(let rule) = error else { XCTFail("\(c.name): apply refused with \(error)"); continue }
                XCTAssertEqual(error.code, rule.code.rawValue, c.name)
                XCTAssertEqual(error.path, rule.field, c.name)
                verdicts.append(("apply", rule))
            }

            // `tollgate plan set`'s options, parsed as the CLI parses them.
            if let cli = c.cli {
                do {
                    _ = try PlanRuleSyntax.plan(
                        id: cli.id, entitlements: cli.entitlements, features: cli.features, quotas: cli.quotas, rate: 0, burst: 0,
                        rateLimits: cli.rateLimits, concurrency: cli.concurrency, credits: nil, overage: "hard_stop", maxTokenLifetimeSeconds: 0,
                        maxActiveTokens: 0, pastDueGraceSeconds: 0)
                    verdicts.append(("cli", nil))
                } catch {
                    verdicts.append(("cli", error))
                }
            }

            for (entry, error) in verdicts {
                guard let error else {
                    XCTFail("\(c.name): \(entry) accepted it")
                    continue
                }
                XCTAssertEqual(error.code, c.code, "\(c.name): \(entry) said \(error.code): \(error.message)")
                XCTAssertEqual(error.message, c.message, "\(c.name): \(entry)")
            }
            XCTAssertEqual(verdicts.count, c.cli == nil ? 3 : 4, c.name)
        }
    }

    /// The same input names the same place in both files (`plans[0].quotas[0].window`).
    func testTheConfigurationAndApplyNameTheSameField() {
        for c in Self.cases {
            var fields: [String] = []
            do { _ = try DaemonConfiguration.parse(json: Data(#"{"plans": [\#(c.json)]}"#.utf8)) } catch let error as ConfigurationError {
                fields.append(error.validation?.field ?? "no field: \(error.message)")
            } catch { XCTFail("\(error)") }
            do { _ = try ProvisioningDocument.parse(yaml: "plans:\n  - \(c.json)\n") } catch { fields.append(error.path) }
            XCTAssertEqual(fields.count, 2, c.name)
            XCTAssertEqual(Set(fields).count, 1, "\(c.name): \(fields)")
        }
    }

    /// Values that are not plans: a METER request's meter name and a token's scopes meet the same rules.
    func testRequestsMeetTheSameRules() throws {
        var state = LicensingState()
        var rng = SplitMix64(seed: 7)
        let now = Timestamp(millis: 1_800_000_000_000)
        _ = try state.putPlan(Plan(id: "p", entitlements: ["read"]), at: now)
        _ = try state.putLicense(LicenseSpec(id: "l", customer: "", plan: "p", status: .active), at: now)
        let secret = try state.issue(IssueRequest(licenseID: "l", subject: "s", scopes: ["read"]), at: now, using: &rng).secret
        for meter in ["bad meter", "a,b\"c", String(repeating: "m", count: 65)] {
            XCTAssertThrowsError(try state.meter(MeterRequest(token: secret, meter: meter, quantity: 1), at: now)) { error in
                let engine = error as? EngineError
                XCTAssertEqual(engine?.code, .invalidArgument)
                do throws(ValidationError) {
                    try Validation.meterName(meter)
                    XCTFail("the rule accepts \(meter)")
                } catch {
                    XCTAssertEqual(engine?.message, error.message, "METER says what a plan's quota says")
                }
            }
        }
        XCTAssertThrowsError(try state.issue(IssueRequest(licenseID: "l", subject: "s", scopes: ["read", "read write"]), at: now, using: &rng)) {
            XCTAssertEqual(($0 as? EngineError)?.validation?.code, .invalidValue)
            XCTAssertEqual(($0 as? EngineError)?.message, "scopes[1]: a scope must be 1–128 printable ASCII characters without spaces")
        }
    }
}
