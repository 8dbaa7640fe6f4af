import Foundation
import NIOCore
import TollgateModel
import XCTest

@testable import TollgateEngine

/// Golden payloads of every journal record type (`Protocol/vectors/journal/payloads/`), checked both ways, so that
/// another implementation of `Protocol/JOURNAL.md` can test its record codec against ours. They also seed the
/// payload fuzzer. Set `TOLLGATE_WRITE_VECTORS=1` to rewrite them after a deliberate format change.
final class JournalPayloadVectorTests: XCTestCase {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Protocol/vectors/journal/payloads")

    static let at: UnixMillis = 1_767_225_600_000
    static let tokenID = "tok_0000000000000000000001"
    static let hash = TokenHash(0x0102_0304_0506_0708, 0x1112_1314_1516_1718, 0x2122_2324_2526_2728, 0x3132_3334_3536_3738)
    static let otherHash = TokenHash(0xA1A2_A3A4_A5A6_A7A8, 0xB1B2_B3B4_B5B6_B7B8, 0xC1C2_C3C4_C5C6_C7C8, 0xD1D2_D3D4_D5D6_D7D8)

    /// An identity role using every field (record 18).
    static var role: IdentityRole {
        var role = IdentityRole(name: "ci", issuer: "https://token.actions.githubusercontent.com", audiences: ["tollgate"], scopes: ["read"])
        role.boundClaims = [.init(claim: "repository", values: ["acme/*"])]
        role.boundClaimsMatch = .glob
        role.licenseClaim = "repository_owner"
        role.licenseMapping = ["acme": "lic_acme"]
        role.scopeClaim = "scope"
        role.maxTTLSeconds = 600
        role.leewaySeconds = .init(exp: 30, nbf: 30, iat: 30)
        return role
    }

    static var vectors: [(name: String, change: StateChange)] {
        let plan = Plan(
            id: "pro", entitlements: ["read", "write"], features: ["exports"],
            quotas: [QuotaRule(meter: "requests", period: .month, limit: 100_000), QuotaRule(meter: "requests", window: .rolling(seconds: 60), limit: 600, pool: .token)],
            rateLimits: [RateRule(pool: .license, ratePerSecond: 50, burst: 100)], concurrency: [ConcurrencyRule(pool: .token, max: 8)],
            credits: CreditPolicy(pool: .org, included: 5000, period: .month), overage: .allowAndRecord,
            maxTokenLifetimeSeconds: 7_776_000, maxActiveTokens: 100, pastDueGraceSeconds: 604_800)
        let license = LicenseSpec(
            id: "lic_acme", customer: "Acme Corp", plan: "pro", status: .pastDue, validUntil: 0, validFrom: at,
            trialEndsAt: 0, org: "acme", project: "checkout", billingAnchorDay: 15)
        let token = TokenInfo(
            id: tokenID, licenseID: "lic_acme", subject: "svc-reports", scopes: ["read"], issuedAt: at, notBefore: 0,
            expiresAt: at + 86_400_000, metadata: [KeyValue("team", "billing")], environment: .test, parentID: "tok_0000000000000000000000")
        let usage = UsageEntry(tokenID: tokenID, meter: "requests", quantity: 12, at: at + 1, overage: 2, includedCredits: 7, prepaidCredits: 5, creditPool: .org)
        let event = LicensingEvent(sequence: 1, at: at + 2, kind: .quota80, owner: "lic_acme", detail: "quota:requests:month:license@\(at)")
        var rolling = RollingCounter()
        rolling.add(3, seconds: 60, at: at)
        let book = UsageBook(
            counters: [WindowKey(.month, at): [CounterKey(pool: PoolKey(.license, "lic_acme"), meter: "requests", period: .month, start: at): 12]],
            rolling: [RollingKey(pool: PoolKey(.token, tokenID), meter: "requests", seconds: 60): rolling],
            ledger: [at: [LedgerKey(licenseID: "lic_acme", tokenID: tokenID, meter: "requests", hourStart: at): LedgerValue(quantity: 12, overage: 2)]],
            prepaid: [PoolKey(.org, "acme"): PrepaidCredits(granted: 100, spent: 5)],
            includedSpent: [IncludedCreditsKey(pool: PoolKey(.org, "acme"), start: at): 7],
            idempotencyKeys: ["evt-42": at],
            retiredSecrets: [otherHash: RetiredSecret(tokenID: tokenID, validUntil: at + 3_600_000)],
            events: [event], nextEventSequence: 2)
        return [
            ("type01-plan-put", .planPut(plan, at: at)),
            ("type02-license-put", .licensePut(license, at: at, pastDueSince: at)),
            ("type03-token-issued", .tokenIssued(TokenRecord(hash: hash, info: token))),
            ("type04-tokens-revoked", .tokensRevoked(tokenIDs: [tokenID], reason: "leaked", actor: "alice@ops uid=0", at: at)),
            ("type05-metered", .metered(usage, idempotencyKey: "evt-42")),
            ("type06-consumed", .consumed([usage, UsageEntry(tokenID: tokenID, meter: "bytes", quantity: 4096, at: at + 3)])),
            ("type07-counters-restored", .countersRestored(book)),
            ("type08-org-put", .orgPut(OrgSpec(id: "acme", name: "Acme Corp", suspended: true), at: at)),
            ("type09-token-rotated", .tokenRotated(tokenID: tokenID, newHash: otherHash, previousHash: hash, previousValidUntil: at + 3_600_000, at: at)),
            ("type10-rotation-ended", .rotationEnded(tokenID: tokenID, at: at)),
            ("type11-credits-granted", .creditsGranted(pool: .license, owner: "lic_acme", amount: 250, reason: "top-up", at: at)),
            ("type12-swept", .swept(at: at, tokenRetention: 30 * 86_400_000, keyRetention: 86_400_000, expiryWarning: 86_400_000, ledgerRetention: 100 * 86_400_000)),
            ("type13-events-recorded", .eventsRecorded([event])),
            ("type14-object-deleted", .objectDeleted(.license, id: "lic_acme", actor: "alice@ops uid=0", at: at)),
            ("type15-billing-applied", .billingApplied(BillingRecord(
                eventID: "evt_1", subscription: "sub_1", eventCreated: at - 1000, retention: 2_592_000_000,
                license: LicenseSpec(id: "lic_1", customer: "cus_1", plan: "pro", status: .pastDue, validUntil: at + 86_400_000, org: "org_acme", billingAnchorDay: 15),
                pastDueSince: at, at: at))),
            ("type16-billing-restored", .billingRestored(
                seen: [BillingSeenEvent(eventID: "evt_1", at: at)], subscriptions: [BillingSubscription(subscription: "sub_1", licenseID: "lic_1", lastEventCreated: at - 1000)])),
            ("type17-subject-status", .subjectStatus(subject: "alice@example.com", active: false, tokenIDs: ["tok_1", "tok_2"], actor: "scim uid=0", at: at)),
            ("type18-role-put", .rolePut(Self.role, at: at)),
            ("type19-role-deleted", .roleDeleted(name: "ci", actor: "alice@ops uid=0", at: at)),
            // Fleet mode (Protocol/FLEET.md 5.2): the position, and another host's revocation read at log sequence 42.
            ("type20-fleet-position", .fleetPosition(sequence: 41)),
            ("type21-fleet-applied", .fleetApplied(sequence: 42, .tokensRevoked(tokenIDs: [tokenID], reason: "leaked", actor: "alice@ops uid=0", at: at))),
            // A METER queued for the fleet log (FLEET.md 10): an empty payload, only its sequence matters.
            ("type22-fleet-usage-sent", .fleetUsageSent),
        ]
    }

    func testEveryRecordTypeHasAVector() {
        XCTAssertEqual(Self.vectors.map { Int($0.change.typeCode) }, Array(1...22))
    }

    func testPayloadsMatchTheirVectorsBothWays() throws {
        let write = ProcessInfo.processInfo.environment["TOLLGATE_WRITE_VECTORS"] == "1"
        if write { try FileManager.default.createDirectory(at: Self.directory, withIntermediateDirectories: true) }
        for (name, change) in Self.vectors {
            let bytes = try change.encodedPayload()
            let url = Self.directory.appendingPathComponent("\(name).hex")
            if write {
                let lines = stride(from: 0, to: bytes.count, by: 16).map { start in
                    bytes[start..<min(start + 16, bytes.count)].map { String(format: "%02x", $0) }.joined(separator: " ")
                }
                try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
            }
            let golden = try String(contentsOf: url, encoding: .utf8).split(whereSeparator: { $0 == " " || $0 == "\n" }).map { UInt8($0, radix: 16)! }
            XCTAssertEqual(bytes, golden, "\(name): encoding differs from the golden payload")
            XCTAssertEqual(try StateChange.decode(type: change.typeCode, payload: ByteBuffer(bytes: golden)), change, "\(name): decoding")
        }
    }

    /// Metering's records are encoded by `UsagePayload`, not by `encodePayload(into:)`: both give the same bytes
    /// (empty and small strings, non-ASCII, every pool level, extreme integers), and both refuse a string the wire
    /// cannot carry.
    func testMeteringPayloadsMatchTheGenericEncoder() throws {
        let entries = [
            UsageEntry(tokenID: Self.tokenID, meter: "requests", quantity: 1, at: Self.at),
            UsageEntry(tokenID: "t", meter: "", quantity: .max, at: -1, overage: .max, includedCredits: 3, prepaidCredits: .max, creditPool: .token),
            UsageEntry(tokenID: String(repeating: "x", count: 300), meter: "débit-€", quantity: 0, at: .max, creditPool: .org),
        ]
        var changes: [StateChange] = [.consumed([]), .consumed(entries)]
        for entry in entries {
            changes.append(.metered(entry, idempotencyKey: ""))
            changes.append(.metered(entry, idempotencyKey: "evt-" + String(repeating: "k", count: 200)))
        }
        for change in changes {
            var generic = ByteBufferAllocator().buffer(capacity: 0)
            try change.encodePayload(into: &generic)
            XCTAssertEqual(try change.encodedPayload(), Array(generic.readableBytesView), "\(change)")
        }
        let long = String(repeating: "m", count: Int(UInt16.max) + 1)
        for change in [StateChange.metered(entries[0], idempotencyKey: long), .consumed([UsageEntry(tokenID: Self.tokenID, meter: long, quantity: 1, at: 0)])] {
            XCTAssertThrowsError(try change.encodedPayload()) { XCTAssertEqual(($0 as? WireError)?.code, .valueTooLong) }
            var generic = ByteBufferAllocator().buffer(capacity: 0)
            XCTAssertThrowsError(try change.encodePayload(into: &generic)) { XCTAssertEqual(($0 as? WireError)?.code, .valueTooLong) }
        }
    }

    /// A type 21 record holds only a change another host can have made: never a fleet record, nor a host-local one.
    func testFleetAppliedRefusesARecordTheLogNeverHolds() throws {
        for inner: StateChange in [.fleetPosition(sequence: 1), .swept(at: Self.at, tokenRetention: 0, keyRetention: 0, expiryWarning: 0, ledgerRetention: 0)] {
            let bytes = try StateChange.fleetApplied(sequence: 7, inner).encodedPayload()
            XCTAssertThrowsError(try StateChange.decode(type: 21, payload: ByteBuffer(bytes: bytes)), "type \(inner.typeCode) inside 21")
        }
        // A length that runs past the record is malformed, not a crash.
        var bytes = try StateChange.fleetApplied(sequence: 7, .rotationEnded(tokenID: Self.tokenID, at: Self.at)).encodedPayload()
        bytes.removeLast()
        XCTAssertThrowsError(try StateChange.decode(type: 21, payload: ByteBuffer(bytes: bytes)))
    }

    /// Replay of a fleet host: the inner change is applied by the one `apply`, and the position only ever grows.
    func testFleetRecordsApplyTheChangeAndMoveThePositionForwardOnly() {
        var state = LicensingState()
        state.apply(.fleetApplied(sequence: 5, .orgPut(OrgSpec(id: "acme", name: "Acme", suspended: false), at: Self.at)))
        XCTAssertEqual(state.orgs["acme"]?.spec.name, "Acme")
        XCTAssertEqual(state.fleetPosition, 5)
        state.apply(.fleetPosition(sequence: 3))
        XCTAssertEqual(state.fleetPosition, 5)
        state.apply(.fleetPosition(sequence: 9))
        XCTAssertEqual(state.fleetPosition, 9)
    }
}
