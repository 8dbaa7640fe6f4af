import Foundation
import TollgateDaemon
import TollgateServer
import TollgateModel
import XCTest

/// The configuration file's plans and licensing options: every field read, strictly.
final class ConfigurationTests: XCTestCase {
    func parse(_ json: String) throws -> DaemonConfiguration {
        try DaemonConfiguration.parse(json: Data(json.utf8))
    }

    func testTheEmbeddedDefaultShipsTheExamplePlans() throws {
        let config = DaemonConfiguration.embeddedDefault()
        XCTAssertEqual(config.plans.map(\.id), ["free", "trial", "pro", "enterprise"])
        let pro = try XCTUnwrap(config.plans.first { $0.id == "pro" })
        XCTAssertEqual(pro.rateLimits, [RateRule(pool: .license, ratePerSecond: 200, burst: 400), RateRule(pool: .token, ratePerSecond: 50, burst: 100)])
        XCTAssertEqual(pro.overage, .allowAndRecord)
        XCTAssertEqual(pro.features, ["exports", "sso"])
        let trial = try XCTUnwrap(config.plans.first { $0.id == "trial" })
        XCTAssertEqual(trial.credits, CreditPolicy(pool: .license, included: 1000, period: .month))
        let free = try XCTUnwrap(config.plans.first { $0.id == "free" })
        XCTAssertEqual(free.quotas.last, QuotaRule(meter: "requests", window: .rolling(seconds: 60), limit: 60, pool: .token))
        XCTAssertEqual(free.maxActiveTokens, 5)
        XCTAssertEqual(config.tokenRetentionDays, 30)
        XCTAssertEqual(config.ledgerRetentionDays, 100)
    }

    func testTheAPISocketIOIsEpollByDefaultAndCanBeNIO() throws {
        XCTAssertEqual(DaemonConfiguration.embeddedDefault().apiIO, .epoll(threads: 0))
        XCTAssertEqual(try parse("{}").apiIO, .epoll(threads: 0))
        XCTAssertEqual(try parse(#"{ "api_io": "epoll", "api_io_threads": 3 }"#).apiIO, .epoll(threads: 3))
        XCTAssertEqual(try parse(#"{ "api_io": "nio", "api_io_threads": 3 }"#).apiIO, .nio)
        XCTAssertThrowsError(try parse(#"{ "api_io": "uring" }"#)) { error in
            XCTAssertTrue("\(error)".contains("api_io must be epoll or nio, not uring"), "\(error)")
        }
        XCTAssertThrowsError(try parse(#"{ "api_io_threads": 257 }"#))
    }

    func testEveryPlanFieldIsRead() throws {
        let config = try parse(#"""
            { "licensing": { "max_derived_lifetime_s": 600, "reservation_lifetime_s": 5, "sweep_interval_s": 30,
                             "token_retention_days": 0, "idempotency_retention_hours": 48, "expiry_warning_hours": 0,
                             "ledger_retention_days": 400 },
              "plans": [ { "id": "gold", "entitlements": ["read"], "features": ["sso"],
                           "quotas": [ { "meter": "calls", "window": "rolling:3600", "limit": 10, "pool": "org" },
                                       { "meter": "calls", "period": "day", "limit": 100 } ],
                           "rate_limits": [ { "pool": "token", "rate_per_second": 3 } ],
                           "rate_per_second": 20, "burst": 40,
                           "concurrency": [ { "pool": "token", "max": 2 } ],
                           "credits": { "pool": "org", "included": 500, "period": "day" },
                           "overage": "allow_and_record", "max_token_lifetime_seconds": 86400,
                           "max_active_tokens": 3, "past_due_grace_seconds": 7200 } ] }
            """#)
        XCTAssertEqual(config.plans, [Plan(
            id: "gold", entitlements: ["read"], features: ["sso"],
            quotas: [QuotaRule(meter: "calls", window: .rolling(seconds: 3600), limit: 10, pool: .org), QuotaRule(meter: "calls", period: .day, limit: 100)],
            rateLimits: [RateRule(pool: .token, ratePerSecond: 3, burst: 1), RateRule(pool: .license, ratePerSecond: 20, burst: 40)],
            concurrency: [ConcurrencyRule(pool: .token, max: 2)], credits: CreditPolicy(pool: .org, included: 500, period: .day),
            overage: .allowAndRecord, maxTokenLifetimeSeconds: 86400, maxActiveTokens: 3, pastDueGraceSeconds: 7200)])
        XCTAssertEqual(config.maxDerivedLifetimeSeconds, 600)
        XCTAssertEqual(config.reservationLifetimeSeconds, 5)
        XCTAssertEqual(config.sweepIntervalSeconds, 30)
        XCTAssertEqual(config.tokenRetentionDays, 0)
        XCTAssertEqual(config.idempotencyRetentionHours, 48)
        XCTAssertEqual(config.expiryWarningHours, 0)
        XCTAssertEqual(config.ledgerRetentionDays, 400)
    }

    func testMistakesAreErrorsThatSayWhere() throws {
        let cases: [(String, String)] = [
            (#"{ "plans": [ { "id": "p", "quotas": [ { "meter": "m", "window": "week", "limit": 1 } ] } ] }"#, "window"),
            (#"{ "plans": [ { "id": "p", "quotas": [ { "meter": "m", "window": "day", "limit": 1, "pool": "team" } ] } ] }"#, "pool"),
            (#"{ "plans": [ { "id": "p", "quotas": [ { "meter": "m", "window": "day", "limit": 1, "scope": "x" } ] } ] }"#, "scope"),
            (#"{ "plans": [ { "id": "p", "overage": "sometimes" } ] }"#, "overage"),
            (#"{ "plans": [ { "id": "p", "rate_limits": [ { "pool": "token", "per_second": 1 } ] } ] }"#, "per_second"),
            (#"{ "plans": [ { "id": "p", "credits": { "included": 1, "period": "year" } } ] }"#, "period"),
            (#"{ "licensing": { "sweep_interval_s": 0 } }"#, "sweep_interval_s"),
            (#"{ "licensing": { "retention": 1 } }"#, "retention"),
        ]
        for (json, mentioned) in cases {
            XCTAssertThrowsError(try parse(json), json) { error in
                XCTAssertTrue("\(error)".contains(mentioned), "\(error) should name \(mentioned)")
            }
        }
    }

    /// Each refusal carries a stable code (what scripts compare), whatever its wording.
    func testMistakesCarryStableCodes() throws {
        let cases: [(String, ConfigurationError.Code)] = [
            (#"{ "state_dir": "#, .syntax),
            (#"{ "stat_dir": "./state" }"#, .unknownKey),
            (#"{ "max_frame_bytes": "big" }"#, .wrongType),
            (#"{ "licensing": { "sweep_interval_s": 0 } }"#, .outOfRange),
            (#"{ "log_level": "loud" }"#, .invalidValue),
            (#"{ "plans": [ { "id": "p" }, { "id": "p" } ] }"#, .invalidValue),
        ]
        for (json, code) in cases {
            XCTAssertThrowsError(try parse(json), json) { error in
                XCTAssertEqual((error as? ConfigurationError)?.code, code, "\(error)")
            }
        }
    }
}
