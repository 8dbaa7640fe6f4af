import TollgateModel
import TollgateTestSupport
import XCTest

@testable import TollgateEngine

/// The billing export is exact: its totals equal the sum of acknowledged usage, across restarts (journal replay),
/// compaction (snapshots), sweeps, and repeated idempotency keys.
final class UsageLedgerTests: XCTestCase {
    struct Key: Hashable {
        var licenseID: String
        var tokenID: String
        var meter: String
    }

    func testExportTotalsEqualAcknowledgedUsageAcrossRestartsAndCompaction() throws {
        for seed: UInt64 in [11, 12] {
            try run(seed: seed, events: 4000)
        }
    }

    func run(seed: UInt64, events: Int) throws {
        // 2028-02-29T20:00Z: the run crosses midnight into March (day and month boundaries).
        let f = EngineFixture(seed: seed, now: 1_835_467_200_000)
        var rng = SplitMix64(seed: seed &* 7919)
        func number(_ range: ClosedRange<Int64>) -> Int64 { range.lowerBound + Int64(rng.next() % UInt64(range.upperBound - range.lowerBound + 1)) }
        func chance(_ percent: UInt64) -> Bool { rng.next() % 100 < percent }

        var plan = Plan(id: "metered", entitlements: ["*"], quotas: [QuotaRule(meter: "calls", period: .hour, limit: 400)])
        plan.credits = CreditPolicy(pool: .license, included: 3000, period: .day)
        try f.putPlan(plan)
        var overagePlan = Plan(id: "overage", entitlements: ["*"], quotas: [QuotaRule(meter: "calls", period: .day, limit: 500, pool: .org)])
        overagePlan.overage = .allowAndRecord
        try f.putPlan(overagePlan)
        try f.putOrg(OrgSpec(id: "acme"))
        try f.putLicense(LicenseSpec(id: "lic-a", customer: "A", plan: "metered", status: .active, org: "acme", project: "web"))
        try f.putLicense(LicenseSpec(id: "lic-b", customer: "B", plan: "overage", status: .active, org: "acme", project: "batch"))
        try f.putLicense(LicenseSpec(id: "lic-c", customer: "C", plan: "overage", status: .active, billingAnchorDay: 15))
        var tokens: [(secret: String, info: TokenInfo)] = []
        for license in ["lic-a", "lic-a", "lic-b", "lic-c", "lic-c"] { tokens.append(try f.issue(license: license)) }

        var expected: [Key: UInt64] = [:]
        var expectedOverage: UInt64 = 0
        var keys: [String] = []
        var reservations: [(id: UInt64, token: TokenInfo, meter: String)] = []
        var restarts = 0, snapshots = 0, duplicates = 0, denied = 0
        func acknowledge(_ token: TokenInfo, _ meter: String, _ quantity: UInt64) {
            expected[Key(licenseID: token.licenseID, tokenID: token.id, meter: meter), default: 0] += quantity
        }

        for _ in 0..<events {
            f.advance(millis: number(0...20_000))
            let (secret, info) = tokens[Int(rng.next() % UInt64(tokens.count))]
            let meter = chance(70) ? "calls" : "bytes"
            switch rng.next() % 100 {
            case 0..<45:
                let cost = UInt64(number(1...9))
                let result = f.check(secret, meter: meter, cost: cost)
                if result.allowed { acknowledge(info, meter, cost) } else { denied += 1 }
                expectedOverage += result.overage
            case 45..<85:
                // A third of the keys are repeats of earlier ones (retries).
                let key: String
                if !keys.isEmpty && chance(33) {
                    key = keys[Int(rng.next() % UInt64(keys.count))]
                } else {
                    key = "evt-\(seed)-\(keys.count)"
                    keys.append(key)
                }
                let quantity = UInt64(number(1...50))
                let (result, change) = try f.meter(secret, meter: meter, quantity: quantity, key: key)
                XCTAssertTrue(result.allowed)
                if result.duplicate {
                    duplicates += 1
                    XCTAssertNil(change, "a repeated key is not recorded again")
                } else {
                    acknowledge(info, meter, quantity)
                    if case .metered(let entry, _)? = change { expectedOverage += entry.overage }
                }
            case 85..<90:
                let result = f.check(secret, meter: meter, cost: UInt64(number(1...20)), options: .reserve)
                if result.reservationID != 0 { reservations.append((result.reservationID, info, meter)) }
            case 90..<94:
                guard let reservation = reservations.popLast() else { continue }
                let actual = UInt64(number(0...25))
                if let result = try? f.settle(reservation.id, cost: actual) {
                    if actual > 0 { acknowledge(reservation.token, reservation.meter, actual) }
                    expectedOverage += result.overage
                }
            case 94..<96:
                f.sweep(keyRetention: 2 * Millis.day)
            case 96..<98:
                try f.takeSnapshot()
                snapshots += 1
            default:
                // A clean restart: pending usage is flushed (as on SIGTERM); reservations do not survive it.
                f.flushConsumed()
                try f.restart()
                reservations.removeAll()
                restarts += 1
            }
        }
        f.flushConsumed()
        try f.restart()

        XCTAssertGreaterThan(restarts, 10, "seed \(seed)")
        XCTAssertGreaterThan(snapshots, 10, "seed \(seed)")
        XCTAssertGreaterThan(duplicates, 200, "seed \(seed)")
        XCTAssertGreaterThan(denied, 10, "seed \(seed): some checks must be refused (quota, credits)")
        XCTAssertGreaterThan(expectedOverage, 0, "seed \(seed)")
        XCTAssertGreaterThan(f.nowMillis, 1_835_481_600_000, "seed \(seed): the run reaches March 1")

        for granularity in Period.allCases {
            let rows = f.state.usageRows(UsageQuery(from: 0, to: .max, granularity: granularity))
            var actual: [Key: UInt64] = [:]
            for row in rows { actual[Key(licenseID: row.licenseID, tokenID: row.tokenID, meter: row.meter), default: 0] += row.quantity }
            XCTAssertEqual(actual, expected, "seed \(seed), per \(granularity.name)")
            XCTAssertEqual(rows.reduce(0) { $0 + $1.overage }, expectedOverage, "seed \(seed): overage per \(granularity.name)")
            XCTAssertTrue(rows.allSatisfy { $0.licenseID != "lic-c" || $0.org.isEmpty }, "licenses without an organisation export none")
            XCTAssertTrue(rows.allSatisfy { $0.licenseID == "lic-c" || $0.org == "acme" })
        }
        // Ranges split the ledger exactly: two halves sum to the whole.
        let middle = UTCCalendar.bounds(of: .day, containing: f.nowMillis).start
        let before = f.state.usageRows(UsageQuery(from: 0, to: middle)).reduce(0) { $0 + $1.quantity }
        let after = f.state.usageRows(UsageQuery(from: middle, to: .max)).reduce(0) { $0 + $1.quantity }
        XCTAssertGreaterThan(before, 0)
        XCTAssertGreaterThan(after, 0)
        XCTAssertEqual(before + after, expected.values.reduce(0, +))
        XCTAssertEqual(f.state.usageRows(UsageQuery(from: 0, to: .max, licenseID: "lic-b")).map(\.licenseID).uniqued(), ["lic-b"])
        XCTAssertEqual(Set(f.state.usageRows(UsageQuery(from: 0, to: .max, org: "acme")).map(\.licenseID)), ["lic-a", "lic-b"])
    }
}

extension Array where Element: Hashable {
    func uniqued() -> [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}
