import NIOCore
import TollgateModel
import TollgateTestSupport
import XCTest

@testable import TollgateEngine

/// Billing events in the engine: exactly once, in order per subscription, replayed from the journal and restored
/// from a snapshot.
final class BillingTests: XCTestCase {
    let retention: Int64 = 30 * Millis.day

    func subscriptionEvent(_ id: String, created: UnixMillis, plan: String = "pro", status: LicenseStatus = .active, validUntil: UnixMillis = 0) -> BillingUpdate {
        BillingUpdate(
            eventID: id, eventType: "customer.subscription.updated", eventCreated: created, subscription: "sub_1", licenseID: "lic_1", kind: .subscription,
            customer: "cus_1", org: "org_1", plan: plan, status: status, validUntil: validUntil)
    }

    func fixture() throws -> EngineFixture {
        let f = EngineFixture()
        try f.putPlan(Plan(id: "pro", entitlements: ["*"], pastDueGraceSeconds: 3600))
        try f.putPlan(Plan(id: "basic", entitlements: ["*"]))
        return f
    }

    @discardableResult
    func apply(_ f: EngineFixture, _ update: BillingUpdate) throws -> BillingOutcome {
        let (outcome, change) = try f.state.applyBilling(update, at: f.now, retention: retention)
        f.record(change)
        return outcome
    }

    func testAnEventPutsTheLicenseAndARepeatIsNotApplied() throws {
        let f = try fixture()
        let t = f.nowMillis
        guard case .applied(let info) = try apply(f, subscriptionEvent("evt_1", created: t)) else { return XCTFail("not applied") }
        XCTAssertEqual(info.spec.plan, "pro")
        XCTAssertEqual(info.spec.org, "org_1")
        XCTAssertEqual(f.state.billing.seen["evt_1"], t)
        let changes = f.changes.count
        XCTAssertEqual(try apply(f, subscriptionEvent("evt_1", created: t, plan: "basic")), .duplicate)
        XCTAssertEqual(f.state.licenses["lic_1"]?.spec.plan, "pro")
        XCTAssertEqual(f.changes.count, changes, "a repeat writes nothing")
    }

    func testAnOlderEventNeverOverwritesANewerOne() throws {
        let f = try fixture()
        let t = f.nowMillis
        // Delivered in reverse: the downgrade (newer) first, then the upgrade (older).
        XCTAssertNotEqual(try apply(f, subscriptionEvent("evt_new", created: t + 10_000, plan: "basic")), .stale)
        XCTAssertEqual(try apply(f, subscriptionEvent("evt_old", created: t, plan: "pro")), .stale)
        XCTAssertEqual(f.state.licenses["lic_1"]?.spec.plan, "basic")
        // An event of the same second is applied (Stripe's `created` has second resolution).
        guard case .applied = try apply(f, subscriptionEvent("evt_same", created: t + 10_000, plan: "pro")) else { return XCTFail("not applied") }
    }

    func testInvoicesMoveTheStatusAndKeepThePastDueDate() throws {
        let f = try fixture()
        var t = f.nowMillis
        try apply(f, subscriptionEvent("evt_1", created: t))
        func invoice(_ id: String, paid: Bool) -> BillingUpdate {
            t += 1000
            return BillingUpdate(eventID: id, eventType: paid ? "invoice.paid" : "invoice.payment_failed", eventCreated: t, subscription: "sub_1", licenseID: "", kind: paid ? .invoicePaid : .invoicePaymentFailed)
        }
        guard case .applied(let failed) = try apply(f, invoice("evt_f1", paid: false)) else { return XCTFail("not applied") }
        XCTAssertEqual(failed.spec.status, .pastDue)
        XCTAssertEqual(failed.pastDueSince, f.nowMillis)
        f.advance(millis: Millis.minute)
        XCTAssertEqual(try apply(f, invoice("evt_f2", paid: false)), .unchanged, "a second failure keeps the grace's start")
        XCTAssertEqual(f.state.licenses["lic_1"]?.pastDueSince, failed.pastDueSince)
        guard case .applied(let paid) = try apply(f, invoice("evt_p", paid: true)) else { return XCTFail("not applied") }
        XCTAssertEqual(paid.spec.status, .active)
        XCTAssertEqual(paid.pastDueSince, 0)
        let unknown = BillingUpdate(eventID: "evt_x", eventType: "invoice.paid", eventCreated: t, subscription: "sub_other", licenseID: "", kind: .invoicePaid)
        XCTAssertEqual(try apply(f, unknown), .unknownSubscription)
    }

    func testAMissingPlanIsRefusedAndNothingIsRemembered() throws {
        let f = try fixture()
        XCTAssertThrowsError(try apply(f, subscriptionEvent("evt_1", created: f.nowMillis, plan: "gold")))
        XCTAssertNil(f.state.billing.seen["evt_1"])
        XCTAssertNil(f.state.licenses["lic_1"])
    }

    func testReplayAndSnapshotRememberEventsAndOrder() throws {
        let f = try fixture()
        let t = f.nowMillis
        try apply(f, subscriptionEvent("evt_1", created: t + 5000, plan: "basic"))
        // Through the codec, as the journal replays it.
        var replayed = LicensingState()
        for change in f.changes { replayed.apply(try StateChange.decode(type: change.typeCode, payload: ByteBuffer(bytes: try change.encodedPayload()))) }
        var snapshotted = try LicensingState.decodeSnapshot(f.state.encodeSnapshot(now: f.nowMillis))
        for var state in [replayed, snapshotted] {
            XCTAssertEqual(state.licenses["lic_1"]?.spec.plan, "basic")
            XCTAssertEqual(try state.applyBilling(subscriptionEvent("evt_1", created: t + 5000), at: f.now, retention: retention).outcome, .duplicate)
            XCTAssertEqual(try state.applyBilling(subscriptionEvent("evt_0", created: t), at: f.now, retention: retention).outcome, .stale)
        }
        XCTAssertEqual(snapshotted.billing.subscriptions, f.state.billing.subscriptions)
        _ = try snapshotted.applyBilling(subscriptionEvent("evt_2", created: t + 6000), at: f.now, retention: retention)
    }

    func testEventIdsAreForgottenAfterTheRetention() throws {
        let f = try fixture()
        let t = f.nowMillis
        try apply(f, subscriptionEvent("evt_1", created: t))
        f.advance(millis: retention + 1)
        try apply(f, subscriptionEvent("evt_2", created: t + 1000))
        XCTAssertNil(f.state.billing.seen["evt_1"])
        XCTAssertNotNil(f.state.billing.seen["evt_2"])
        // Still refused as older than the subscription's last event.
        XCTAssertEqual(try apply(f, subscriptionEvent("evt_1", created: t)), .stale)
    }

    func testAStateWithoutBillingEventsWritesTheSnapshotItAlwaysDid() throws {
        let f = try fixture()
        let bytes = try f.state.encodeSnapshot(now: f.nowMillis)
        var buffer = ByteBuffer(bytes: bytes)
        while let type = buffer.readInteger(as: UInt8.self), let length = buffer.readInteger(as: UInt32.self) {
            XCTAssertNotEqual(type, 16)
            buffer.moveReaderIndex(forwardBy: Int(length))
        }
    }
}
