import TollgateModel
import TollgateTestSupport
import XCTest

@testable import TollgateEngine

/// Tokens bound to the processes that may present them (metadata `tollgate.bind_uids`).
final class TokenBindingTests: XCTestCase {
    func bound(_ value: String) throws -> (EngineFixture, String) {
        let f = EngineFixture()
        try f.putPlan("pro", entitlements: ["*"], quotas: [QuotaRule(meter: "m", period: .day, limit: 10)])
        try f.putLicense("lic-1", plan: "pro")
        let (secret, _) = try f.issue(license: "lic-1", subject: "svc", metadata: [KeyValue(TokenBinding.metadataKey, value)])
        return (f, secret)
    }

    func testOnlyListedCallersMayPresentABoundToken() throws {
        let (f, secret) = try bound("1000, 1001")
        XCTAssertEqual(f.state.check(CheckRequest(token: secret), at: f.now, caller: 1000).result.reason, .none)
        XCTAssertEqual(f.state.check(CheckRequest(token: secret), at: f.now, caller: 1001).result.reason, .none)
        let stranger = f.state.check(CheckRequest(token: secret, meter: "m", cost: 1), at: f.now, caller: 1002)
        XCTAssertEqual(stranger.result.reason, .callerNotAllowed)
        XCTAssertNil(stranger.consumed, "a refused caller consumes nothing")
        XCTAssertEqual(f.state.check(CheckRequest(token: secret), at: f.now, caller: nil).result.reason, .callerNotAllowed, "unknown caller: refused")
        let meter = try f.state.meter(MeterRequest(token: secret, meter: "m", quantity: 1), at: f.now, caller: 1002)
        XCTAssertEqual(meter.result.reason, .callerNotAllowed)
        XCTAssertNil(meter.change)
    }

    func testUnboundTokensAcceptAnyCaller() throws {
        let (f, secret, _) = try EngineFixture.standard()
        XCTAssertEqual(f.state.check(CheckRequest(token: secret), at: f.now, caller: 4242).result.reason, .none)
        XCTAssertEqual(f.state.check(CheckRequest(token: secret), at: f.now, caller: nil).result.reason, .none)
    }

    func testTheBindingSurvivesReplay() throws {
        let (f, secret) = try bound("7")
        var replayed = LicensingState()
        for change in f.changes { replayed.apply(change) }
        XCTAssertEqual(replayed.check(CheckRequest(token: secret), at: f.now, caller: 8).result.reason, .callerNotAllowed)
        XCTAssertEqual(replayed.check(CheckRequest(token: secret), at: f.now, caller: 7).result.reason, .none)
    }

    func testMalformedBindingsAndOtherReservedKeysAreRefused() throws {
        for value in ["", "abc", "1,,2", "-1", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17"] {
            XCTAssertThrowsError(try bound(value), "'\(value)'") { XCTAssertEqual(($0 as? EngineError)?.code, .invalidArgument) }
        }
        let f = EngineFixture()
        try f.putPlan("pro")
        try f.putLicense("lic-1", plan: "pro")
        XCTAssertThrowsError(try f.issue(license: "lic-1", subject: "s", metadata: [KeyValue("tollgate.other", "x")])) {
            XCTAssertEqual(($0 as? EngineError)?.code, .invalidArgument)
        }
    }
}
