import TollgateModel
import XCTest

@testable import TollgateEngine

/// Threshold events fire when usage reaches at least the percentage of the limit (`used × 100 ≥ percent × limit`),
/// never earlier (issue 13 §4: with a limit of 3, `quota_80` fired at 2 used, 67 %).
final class ThresholdEventTests: XCTestCase {
    func fixture(_ plan: Plan) throws -> (EngineFixture, String) {
        let f = EngineFixture()
        try f.putPlan(plan)
        try f.putLicense("lic-1", plan: plan.id)
        let (secret, _) = try f.issue(license: "lic-1")
        return (f, secret)
    }

    /// Meters one unit at a time up to the limit and returns the usage at which each kind first appeared.
    func firstFiring(limit: UInt64, viaCheck: Bool = false) throws -> [LicensingEvent.Kind: UInt64] {
        let (f, secret) = try fixture(Plan(id: "p", entitlements: ["*"], quotas: [QuotaRule(meter: "calls", period: .day, limit: limit)]))
        var first: [LicensingEvent.Kind: UInt64] = [:]
        for used in 1...limit {
            if viaCheck {
                f.checkAllowed(secret, meter: "calls", cost: 1)
            } else {
                try f.meter(secret, meter: "calls", quantity: 1)
            }
            for event in f.state.book.events where first[event.kind] == nil { first[event.kind] = used }
        }
        return first
    }

    func testSmallLimitsFireAtOrAboveTheirPercentage() throws {
        // limit: (first usage ≥ 80 %, first usage ≥ 100 %), worked out by hand.
        let expected: [UInt64: (UInt64, UInt64)] = [1: (1, 1), 2: (2, 2), 3: (3, 3), 4: (4, 4), 5: (4, 5), 7: (6, 7), 10: (8, 10), 11: (9, 11)]
        for (limit, (at80, at100)) in expected.sorted(by: { $0.key < $1.key }) {
            let first = try firstFiring(limit: limit)
            XCTAssertEqual(first[.quota80], at80, "quota_80 with limit \(limit)")
            XCTAssertEqual(first[.quota100], at100, "quota_100 with limit \(limit)")
            XCTAssertEqual(first.count, 2, "limit \(limit): \(first)")
        }
        // Checks with a cost record usage through the same path.
        XCTAssertEqual(try firstFiring(limit: 3, viaCheck: true)[.quota80], 3)
        XCTAssertEqual(try firstFiring(limit: 5, viaCheck: true)[.quota80], 4)
    }

    func testEveryLimitUpTo200MatchesTheExactRule() throws {
        for limit in UInt64(1)...200 {
            let first = try firstFiring(limit: limit)
            let at80 = try XCTUnwrap(first[.quota80])
            XCTAssertTrue(at80 * 100 >= 80 * limit && (at80 - 1) * 100 < 80 * limit, "limit \(limit): quota_80 at \(at80)")
            XCTAssertEqual(first[.quota100], limit)
        }
    }

    /// Large limits, metered in two steps around the exact threshold, where a rounded or overflowing threshold would
    /// fire one unit early or never.
    func testLargeLimitsFireExactlyAtTheThreshold() throws {
        let cases: [(limit: UInt64, threshold80: UInt64)] = [
            (1_000_000_000_000_000_001, 800_000_000_000_000_001),  // 80 % is 8e17 + 0.8
            (UInt64.max, 14_757_395_258_967_641_292),  // (2^64 − 1) × 4 / 5, exact
            (UInt64.max - 1, 14_757_395_258_967_641_292),  // 80 % is …291.2
            (1_000_000, 800_000),
        ]
        for (limit, threshold80) in cases {
            let (f, secret) = try fixture(Plan(id: "p", entitlements: ["*"], quotas: [QuotaRule(meter: "bytes", period: .month, limit: limit)]))
            try f.meter(secret, meter: "bytes", quantity: threshold80 - 1)
            XCTAssertEqual(f.state.book.events.map(\.kind), [], "limit \(limit): one unit below 80 %")
            try f.meter(secret, meter: "bytes", quantity: 1)
            XCTAssertEqual(f.state.book.events.map(\.kind), [.quota80], "limit \(limit): at 80 %")
            try f.meter(secret, meter: "bytes", quantity: limit - threshold80 - 1)
            XCTAssertEqual(f.state.book.events.map(\.kind), [.quota80], "limit \(limit): one unit below 100 %")
            try f.meter(secret, meter: "bytes", quantity: 1)
            XCTAssertEqual(f.state.book.events.map(\.kind), [.quota80, .quota100], "limit \(limit): at 100 %")
        }
    }

    func testOneRecordCrossingBothThresholdsRecordsBoth() throws {
        let (f, secret) = try fixture(Plan(id: "p", entitlements: ["*"], quotas: [QuotaRule(meter: "calls", period: .day, limit: 3)]))
        try f.meter(secret, meter: "calls", quantity: 2)
        XCTAssertEqual(f.state.book.events.map(\.kind), [])
        try f.meter(secret, meter: "calls", quantity: 5)
        XCTAssertEqual(f.state.book.events.map(\.kind), [.quota80, .quota100])
    }

    func testCreditsLowFiresAtNinetyPercentOfTheIncludedCredits() throws {
        // included: first spend that reaches 90 %.
        for (included, at90) in [(UInt64(1), UInt64(1)), (5, 5), (10, 9), (11, 10), (20, 18)] {
            var plan = Plan(id: "p", entitlements: ["*"])
            plan.credits = CreditPolicy(pool: .license, included: included, period: .day)
            let (f, secret) = try fixture(plan)
            var first: UInt64?
            for spent in 1...included {
                try f.meter(secret, meter: "gpu", quantity: 1)
                if first == nil, f.state.book.events.contains(where: { $0.kind == .creditsLow }) { first = spent }
            }
            XCTAssertEqual(first, at90, "credits_low with \(included) included")
        }
    }

    func testTheRuleItself() {
        XCTAssertFalse(LicensingState.reaches(2, 80, of: 3))
        XCTAssertTrue(LicensingState.reaches(3, 80, of: 3))
        XCTAssertTrue(LicensingState.reaches(4, 80, of: 5))
        XCTAssertFalse(LicensingState.reaches(UInt64.max - 1, 100, of: UInt64.max))
        XCTAssertTrue(LicensingState.reaches(UInt64.max, 100, of: UInt64.max))
        XCTAssertFalse(LicensingState.reaches(14_757_395_258_967_641_291, 80, of: UInt64.max))
        XCTAssertTrue(LicensingState.reaches(14_757_395_258_967_641_292, 80, of: UInt64.max))
    }
}
