import NIOCore
import TollgateModel
import TollgateTestSupport
import XCTest

@testable import TollgateEngine


enum Millis {
    static let second: Int64 = 1_000
    static let minute: Int64 = 60_000
    static let hour: Int64 = 3_600_000
    static let day: Int64 = 86_400_000
}

/// One `LicensingState`, a seeded generator and a manual clock. Nothing here reads the system clock or sleeps:
/// time moves only when a test calls `advance`. Every change the engine returns is recorded in `changes`, and
/// usage consumed by checks in `consumed`, so tests can replay them.
final class EngineFixture {
    /// 2028-02-17T12:30:00Z: mid-hour, mid-day, mid-month, in a leap year.
    static let epoch: UnixMillis = 1_834_403_400_000

    var state = LicensingState()
    var rng: SplitMix64
    var now: Timestamp
    private(set) var changes: [StateChange] = []
    private(set) var consumed: [UsageEntry] = []
    /// Every secret `issue` returned, in order.
    private(set) var issuedSecrets: [String] = []
    /// Index into `consumed` of the first entry not yet flushed into `changes`.
    private var unflushed = 0

    init(seed: UInt64 = 0x5EED, now: UnixMillis = EngineFixture.epoch) {
        rng = SplitMix64(seed: seed)
        self.now = Timestamp(millis: now)
    }

    var nowMillis: UnixMillis { now.millis }

    func advance(millis: Int64) { now = now.adding(millis: millis) }
    func advance(nanoseconds: Int64) { now = Timestamp(nanoseconds: now.nanoseconds + nanoseconds) }
    func set(millis: UnixMillis) { now = Timestamp(millis: millis) }

    @discardableResult
    func putPlan(
        _ id: String, entitlements: [String] = ["*"], quotas: [QuotaRule] = [], rate: UInt32 = 0, burst: UInt32 = 0
    ) throws -> Plan {
        try putPlan(Plan(id: id, entitlements: entitlements, quotas: quotas, ratePerSecond: rate, burst: burst))
    }

    /// Puts a plan no license uses, with a quota on `meter` for every period at the license level: the engine counts
    /// only the (level, period) counters some plan reads, so tests that read those counters directly ask for them.
    func countLicenseUsage(of meter: String) throws {
        try putPlan("counters-\(meter)", quotas: Period.allCases.map { QuotaRule(meter: meter, period: $0, limit: .max) })
    }

    @discardableResult
    func putLicense(_ id: String, plan: String, status: LicenseStatus = .active, validUntil: UnixMillis = 0) throws -> LicenseInfo {
        try putLicense(LicenseSpec(id: id, customer: "Customer of \(id)", plan: plan, status: status, validUntil: validUntil))
    }

    @discardableResult
    func putLicense(_ spec: LicenseSpec) throws -> LicenseInfo {
        flushConsumed()
        let (info, change) = try state.putLicense(spec, at: now)
        if let change { changes.append(change) }
        return info
    }

    @discardableResult
    func putPlan(_ plan: Plan) throws -> Plan {
        flushConsumed()
        let (stored, change) = try state.putPlan(plan, at: now)
        if let change { changes.append(change) }
        return stored
    }

    @discardableResult
    func putOrg(_ org: OrgSpec) throws -> OrgSpec {
        let (stored, change) = try state.putOrg(org, at: now)
        if let change { changes.append(change) }
        return stored
    }

    /// The journaled sweep. Like plan and license changes, it is preceded by a flush of pending usage (as in the
    /// daemon), because it changes how usage is counted.
    func sweep(tokenRetention: Int64 = 30 * Millis.day, keyRetention: Int64 = Millis.day, expiryWarning: Int64 = 0, ledgerRetention: Int64 = 0) {
        flushConsumed()
        changes.append(state.sweep(at: now, tokenRetention: tokenRetention, keyRetention: keyRetention, expiryWarning: expiryWarning, ledgerRetention: ledgerRetention))
    }

    /// Records a change made by a command the fixture has no wrapper for.
    func record(_ change: StateChange?) {
        if let change { changes.append(change) }
    }

    @discardableResult
    func issue(
        license: String, subject: String = "alice", scopes: [String] = [], notBefore: UnixMillis = 0,
        expiresAt: UnixMillis = 0, metadata: [KeyValue] = [], environment: TokenEnvironment = .live
    ) throws -> (secret: String, info: TokenInfo) {
        let request = IssueRequest(
            licenseID: license, subject: subject, scopes: scopes, notBefore: notBefore, expiresAt: expiresAt,
            metadata: metadata, environment: environment)
        let (secret, info, change) = try state.issue(request, at: now, using: &rng)
        changes.append(change)
        issuedSecrets.append(secret)
        return (secret, info)
    }

    @discardableResult
    func check(_ token: String, scopes: [String] = [], meter: String = "", cost: UInt64 = 0, features: [String] = [], options: CheckOptions = []) -> CheckResult {
        check(CheckRequest(token: token, scopes: scopes, meter: meter, cost: cost, features: features, options: options))
    }

    @discardableResult
    func check(_ request: CheckRequest) -> CheckResult {
        let (result, entry) = state.check(request, at: now)
        if let entry { consumed.append(entry) }
        return result
    }

    /// Settles a reservation; its usage is recorded like check consumption.
    @discardableResult
    func settle(_ id: UInt64, cost: UInt64) throws -> CheckResult {
        let (result, entry) = try state.settle(SettleRequest(reservationID: id, actualCost: cost), at: now)
        if let entry { consumed.append(entry) }
        return result
    }

    /// A check that must come back allowed or the test fails; returns the usage it consumed.
    @discardableResult
    func checkAllowed(
        _ token: String, scopes: [String] = [], meter: String = "", cost: UInt64 = 0, features: [String] = [], options: CheckOptions = [],
        file: StaticString = #filePath, line: UInt = #line
    ) -> CheckResult {
        let result = check(token, scopes: scopes, meter: meter, cost: cost, features: features, options: options)
        XCTAssertEqual(result.reason, .none, "expected the check to be allowed", file: file, line: line)
        return result
    }

    @discardableResult
    func meter(_ token: String, meter: String = "bytes", quantity: UInt64 = 1, key: String = "") throws -> (result: MeterResult, change: StateChange?) {
        let outcome = try state.meter(MeterRequest(token: token, meter: meter, quantity: quantity, idempotencyKey: key), at: now)
        if let change = outcome.change { changes.append(change) }
        return outcome
    }

    @discardableResult
    func revoke(_ target: RevokeTarget, reason: String = "test", actor: String = "") throws -> (revoked: UInt32, change: StateChange?) {
        let outcome = try state.revoke(RevokeRequest(target: target, reason: reason, actor: actor), at: now)
        if let change = outcome.change { changes.append(change) }
        return outcome
    }

    /// Appends the usage consumed by checks since the last flush to `changes` as one `.consumed` change, as the
    /// daemon does at each journal flush.
    func flushConsumed() {
        if let events = state.takeUnjournaledEvents() { changes.append(events) }
        guard unflushed < consumed.count else { return }
        changes.append(.consumed(Array(consumed[unflushed...])))
        unflushed = consumed.count
    }

    /// The last snapshot taken, and how many changes it covers.
    private var snapshot: (bytes: [UInt8], covers: Int)?

    /// Writes a snapshot of everything journaled so far, as the daemon's compaction does.
    func takeSnapshot() throws {
        flushConsumed()
        snapshot = (try state.encodeSnapshot(now: nowMillis), changes.count)
    }

    /// A restart: the state rebuilt from the last snapshot (if any) and the changes after it, each through the
    /// journal payload codec. What was counted but not flushed is lost, as in a crash; call `flushConsumed` first
    /// for a clean stop.
    func restart() throws {
        var rebuilt = try snapshot.map { try LicensingState.decodeSnapshot($0.bytes) } ?? LicensingState()
        for change in changes[(snapshot?.covers ?? 0)...] { rebuilt.apply(try change.roundTripped()) }
        state = rebuilt
        consumed.removeSubrange(unflushed...)
    }

    /// A well-formed token that was never issued (valid shape and checksum).
    func unissuedToken(environment: TokenEnvironment = .live) -> String {
        TokenFormat.make(environment: environment, randomBytes: rng.bytes(32))
    }

    /// Plan `pro` (entitlements `read`, `write`), license `lic-1` on it, and one `*` token of `lic-1`.
    static func standard(
        quotas: [QuotaRule] = [], rate: UInt32 = 0, burst: UInt32 = 0, entitlements: [String] = ["read", "write"]
    ) throws -> (fixture: EngineFixture, secret: String, token: TokenInfo) {
        let f = EngineFixture()
        try f.putPlan("pro", entitlements: entitlements, quotas: quotas, rate: rate, burst: burst)
        try f.putLicense("lic-1", plan: "pro")
        let (secret, info) = try f.issue(license: "lic-1", subject: "alice")
        return (f, secret, info)
    }
}

/// Asserts that `body` throws an `EngineError` with `code`.
func assertEngineError<T>(
    _ code: EngineError.Code, _ message: @autoclosure () -> String = "", file: StaticString = #filePath, line: UInt = #line,
    _ body: () throws -> T
) {
    do {
        _ = try body()
        XCTFail("expected EngineError \(code), nothing was thrown. \(message())", file: file, line: line)
    } catch let error as EngineError {
        XCTAssertEqual(error.code, code, "\(error.message). \(message())", file: file, line: line)
    } catch {
        XCTFail("expected EngineError \(code), got \(error). \(message())", file: file, line: line)
    }
}

/// Asserts that two states hold the same durable content (everything but the non-journaled rate limiter).
func assertSameDurableState(
    _ actual: LicensingState, _ expected: LicensingState, _ what: String, file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertEqual(actual.plans, expected.plans, "\(what): plans", file: file, line: line)
    XCTAssertEqual(actual.orgs, expected.orgs, "\(what): organisations", file: file, line: line)
    XCTAssertEqual(actual.licenses, expected.licenses, "\(what): licenses", file: file, line: line)
    XCTAssertEqual(actual.tokens, expected.tokens, "\(what): tokens (and issue order per license)", file: file, line: line)
    XCTAssertEqual(actual.children, expected.children, "\(what): derived tokens", file: file, line: line)
    XCTAssertEqual(actual.book.counters, expected.book.counters, "\(what): usage counters", file: file, line: line)
    XCTAssertEqual(actual.book.rolling, expected.book.rolling, "\(what): rolling windows", file: file, line: line)
    XCTAssertEqual(actual.book.ledger, expected.book.ledger, "\(what): ledger", file: file, line: line)
    XCTAssertEqual(actual.book.prepaid, expected.book.prepaid, "\(what): prepaid credits", file: file, line: line)
    XCTAssertEqual(actual.book.includedSpent, expected.book.includedSpent, "\(what): included credits", file: file, line: line)
    XCTAssertEqual(actual.book.idempotencyKeys, expected.book.idempotencyKeys, "\(what): idempotency keys", file: file, line: line)
    XCTAssertEqual(actual.book.retiredSecrets, expected.book.retiredSecrets, "\(what): retired secrets", file: file, line: line)
    XCTAssertEqual(actual.book.events, expected.book.events, "\(what): events", file: file, line: line)
}

extension Array where Element == UInt8 {
    /// Whether `needle` occurs as a contiguous run of bytes.
    func containsSubsequence(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return needle.isEmpty }
        for start in 0...(count - needle.count) where self[start] == needle[0] {
            if self[start..<(start + needle.count)].elementsEqual(needle) { return true }
        }
        return false
    }
}

extension StateChange {
    /// Encodes and decodes through the journal payload codec.
    func roundTripped() throws -> StateChange {
        try StateChange.decode(type: typeCode, payload: ByteBuffer(bytes: try encodedPayload()))
    }
}
