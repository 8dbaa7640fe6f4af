import Foundation
import TollgateBilling
import TollgateEngine
import TollgateModel
import XCTest

/// Stripe events mapped to Tollgate's terms, without I/O.
final class StripeEventTests: XCTestCase {
    let mapping = StripeMapping(
        plansByPrice: ["price_pro_monthly": "pro"], plansByProduct: ["prod_team": "team"], plansByLookupKey: ["starter_monthly": "starter"],
        orgsByCustomer: ["cus_acme": "org_acme"], orgMetadataKey: "tollgate_org")

    func event(_ type: String, id: String = "evt_1", created: Int = 1_767_225_600, object: [String: Any]) -> [UInt8] {
        let event: [String: Any] = ["id": id, "object": "event", "type": type, "created": created, "data": ["object": object]]
        return [UInt8](try! JSONSerialization.data(withJSONObject: event))
    }

    func subscription(status: String = "active", price: [String: Any] = ["id": "price_pro_monthly", "product": "prod_x"], extra: [String: Any] = [:]) -> [String: Any] {
        var object: [String: Any] = [
            "id": "sub_123", "object": "subscription", "customer": "cus_acme", "status": status, "metadata": [String: String](),
            "current_period_end": 1_769_904_000, "cancel_at": NSNull(), "ended_at": NSNull(), "trial_end": NSNull(),
            "billing_cycle_anchor": 1_767_225_600 + 14 * 86_400,
            "items": ["object": "list", "data": [["id": "si_1", "price": price]]],
        ]
        for (key, value) in extra { object[key] = value }
        return object
    }

    func update(_ body: [UInt8]) -> BillingUpdate? {
        if case .update(let update) = StripeEvent.interpret(body, mapping: mapping) { return update }
        return nil
    }

    func testAnActiveSubscriptionMapsToItsLicensePlanAndOrganisation() throws {
        let u = try XCTUnwrap(update(event("customer.subscription.created", object: subscription())))
        XCTAssertEqual(u.eventID, "evt_1")
        XCTAssertEqual(u.eventCreated, 1_767_225_600_000)
        XCTAssertEqual(u.subscription, "sub_123")
        XCTAssertEqual(u.licenseID, "lic_123")
        XCTAssertEqual(u.kind, .subscription)
        XCTAssertEqual(u.plan, "pro")
        XCTAssertEqual(u.org, "org_acme")
        XCTAssertEqual(u.customer, "cus_acme")
        XCTAssertEqual(u.status, .active)
        // Validity: the period's end plus the slack (three days by default).
        XCTAssertEqual(u.validUntil, (1_769_904_000 + 3 * 86_400) * 1000)
        // The billing anchor 2026-01-15 → day 15.
        XCTAssertEqual(u.billingAnchorDay, 15)
    }

    func testPlanByPriceThenProductThenLookupKey() {
        XCTAssertEqual(update(event("customer.subscription.updated", object: subscription(price: ["id": "price_other", "product": "prod_team"])))?.plan, "team")
        XCTAssertEqual(update(event("customer.subscription.updated", object: subscription(price: ["id": "price_other", "product": ["id": "prod_team"]])))?.plan, "team")
        XCTAssertEqual(update(event("customer.subscription.updated", object: subscription(price: ["id": "price_x", "product": "prod_x", "lookup_key": "starter_monthly"])))?.plan, "starter")
        guard case .unmapped = StripeEvent.interpret(event("customer.subscription.updated", object: subscription(price: ["id": "price_x", "product": "prod_x"])), mapping: mapping) else {
            return XCTFail("an unmapped price is acknowledged, not applied")
        }
    }

    func testLicenseFromMetadataBeforeTheRuleAndOrgFromMetadata() {
        let object = subscription(extra: ["metadata": ["tollgate_license": "lic_custom", "tollgate_org": "org_meta"], "customer": "cus_other"])
        let u = update(event("customer.subscription.updated", object: object))
        XCTAssertEqual(u?.licenseID, "lic_custom")
        XCTAssertEqual(u?.org, "org_meta")
        var noRule = mapping
        noRule.licensePrefix = ""
        guard case .unmapped = StripeEvent.interpret(event("customer.subscription.updated", object: subscription()), mapping: noRule) else {
            return XCTFail("a subscription without a license is not Tollgate's")
        }
    }

    func testStatusesMapAsDocumented() {
        let expected: [String: LicenseStatus] = [
            "trialing": .trialing, "active": .active, "past_due": .pastDue, "unpaid": .canceled, "canceled": .canceled,
            "incomplete_expired": .canceled, "incomplete": .canceled, "paused": .canceled,
        ]
        for (stripe, status) in expected {
            XCTAssertEqual(update(event("customer.subscription.updated", object: subscription(status: stripe)))?.status, status, stripe)
        }
        guard case .unmapped = StripeEvent.interpret(event("customer.subscription.updated", object: subscription(status: "brand_new")), mapping: mapping) else {
            return XCTFail("an unknown status is not guessed")
        }
    }

    func testTrialCancelAtAndEndedAtSetTheValidity() {
        let trial = update(event("customer.subscription.created", object: subscription(status: "trialing", extra: ["trial_end": 1_768_435_200])))
        XCTAssertEqual(trial?.status, .trialing)
        XCTAssertEqual(trial?.trialEndsAt, 1_768_435_200_000)
        let cancelling = update(event("customer.subscription.updated", object: subscription(extra: ["cancel_at": 1_769_904_000, "cancel_at_period_end": true])))
        XCTAssertEqual(cancelling?.validUntil, 1_769_904_000_000)
        let ended = update(event("customer.subscription.deleted", object: subscription(status: "canceled", extra: ["ended_at": 1_768_000_000, "cancel_at": 1_769_904_000])))
        XCTAssertEqual(ended?.validUntil, 1_768_000_000_000)
        XCTAssertEqual(ended?.status, .canceled)
        var open = mapping
        open.periodEndSlackSeconds = -1
        if case .update(let u) = StripeEvent.interpret(event("customer.subscription.updated", object: subscription()), mapping: open) {
            XCTAssertEqual(u.validUntil, 0)
        } else {
            XCTFail("expected an update")
        }
    }

    func testThePeriodOnTheItemsOfNewerAPIVersions() {
        var object = subscription()
        object["current_period_end"] = nil
        object["items"] = ["data": [["id": "si_1", "current_period_end": 1_770_000_000, "price": ["id": "price_pro_monthly"]]]]
        XCTAssertEqual(update(event("customer.subscription.updated", object: object))?.validUntil, (1_770_000_000 + 3 * 86_400) * 1000)
    }

    func testInvoicesOfBothAPIShapes() {
        let old = update(event("invoice.payment_failed", object: ["id": "in_1", "object": "invoice", "customer": "cus_acme", "subscription": "sub_123"]))
        XCTAssertEqual(old?.kind, .invoicePaymentFailed)
        XCTAssertEqual(old?.subscription, "sub_123")
        XCTAssertEqual(old?.licenseID, "")
        let new = update(event("invoice.paid", object: [
            "id": "in_2", "object": "invoice",
            "parent": ["type": "subscription_details", "subscription_details": ["subscription": "sub_123", "metadata": ["tollgate_license": "lic_custom"]]],
        ]))
        XCTAssertEqual(new?.kind, .invoicePaid)
        XCTAssertEqual(new?.subscription, "sub_123")
        XCTAssertEqual(new?.licenseID, "lic_custom")
        guard case .unmapped = StripeEvent.interpret(event("invoice.paid", object: ["id": "in_3", "object": "invoice"]), mapping: mapping) else {
            return XCTFail("a one-off invoice is not a subscription's")
        }
    }

    func testUnknownTypesAndMalformedBodies() {
        XCTAssertEqual(StripeEvent.interpret(event("charge.succeeded", object: ["id": "ch_1"]), mapping: mapping), .unknownType(eventID: "evt_1", type: "charge.succeeded"))
        for bad in ["", "[]", "{}", #"{"id":"evt_1","type":"invoice.paid"}"#, #"{"id":"evt_1","type":"invoice.paid","created":1}"#, "{not json"] {
            guard case .malformed = StripeEvent.interpret(Array(bad.utf8), mapping: mapping) else { return XCTFail("accepted \(bad)") }
        }
    }
}

/// Usage rows as Stripe meter events.
final class StripeMeterEventTests: XCTestCase {
    let row = UsageRow(org: "org_acme", project: "", licenseID: "lic_1", tokenID: "tok_1", meter: "requests", periodStart: 1_767_225_600_000, quantity: 120, overage: 20)

    func testALineInStripesShape() throws {
        let line = try XCTUnwrap(StripeMeterEvents.line(row, customer: "cus_acme", eventName: "api_requests", value: .quantity, granularity: .hour))
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertEqual(object["event_name"] as? String, "api_requests")
        XCTAssertEqual((object["timestamp"] as? NSNumber)?.int64Value, 1_767_225_600)
        let payload = try XCTUnwrap(object["payload"] as? [String: String])
        XCTAssertEqual(payload, ["stripe_customer_id": "cus_acme", "value": "120"])
        let identifier = try XCTUnwrap(object["identifier"] as? String)
        XCTAssertTrue(identifier.hasPrefix("tg_"))
        XCTAssertEqual(identifier.count, 43)
        XCTAssertEqual(StripeMeterEvents.line(row, customer: "cus_acme", eventName: "api_overage", value: .overage, granularity: .hour)?.contains(#""value":"20""#), true)
    }

    func testTheIdentifierIsTheRowsIdentityNotItsQuantity() {
        var same = row
        same.quantity = 999
        XCTAssertEqual(StripeMeterEvents.identifier(row, granularity: .hour), StripeMeterEvents.identifier(same, granularity: .hour))
        var others: [UsageRow] = []
        for change in 0..<4 {
            var other = row
            switch change {
            case 0: other.licenseID = "lic_2"
            case 1: other.tokenID = "tok_2"
            case 2: other.meter = "bytes"
            default: other.periodStart += 3_600_000
            }
            others.append(other)
        }
        let identifiers = Set(([row] + others).map { StripeMeterEvents.identifier($0, granularity: .hour) } + [StripeMeterEvents.identifier(row, granularity: .day)])
        XCTAssertEqual(identifiers.count, 6)
        // Field boundaries count: ("lic_1", "tok_1") and ("lic_1t", "ok_1") differ.
        var shifted = row
        shifted.licenseID = "lic_1t"
        shifted.tokenID = "ok_1"
        XCTAssertNotEqual(StripeMeterEvents.identifier(row, granularity: .hour), StripeMeterEvents.identifier(shifted, granularity: .hour))
    }

    func testNothingToBillIsNoEventAndCustomersAreChecked() {
        var empty = row
        empty.overage = 0
        XCTAssertNil(StripeMeterEvents.line(empty, customer: "cus_acme", eventName: "x", value: .overage, granularity: .hour))
        XCTAssertTrue(StripeMeterEvents.isCustomerID("cus_Q1acme"))
        XCTAssertFalse(StripeMeterEvents.isCustomerID("Acme Corp"))
        XCTAssertFalse(StripeMeterEvents.isCustomerID("cus_"))
        XCTAssertFalse(StripeMeterEvents.isCustomerID("cus_a\"b"))
    }
}

/// Reconciliation's reading of an export and of the mapping, without I/O.
final class StripeReconciliationTests: XCTestCase {
    func testAnExportInTheListShapeAndTheMappingFromAConfiguration() throws {
        let configuration: [String: Any] = ["state_dir": "/x", "http": ["stripe": ["secret_files": ["/f"], "mapping": ["prices": ["price_p": "pro"], "license_prefix": "L_"]]]]
        let mapping = try StripeMapping.read(configuration: configuration)
        XCTAssertEqual(mapping.plansByPrice, ["price_p": "pro"])
        XCTAssertEqual(mapping.licensePrefix, "L_")
        let export: [String: Any] = [
            "object": "list", "has_more": true,
            "data": [
                ["id": "sub_a", "object": "subscription", "customer": "cus_a", "status": "active", "items": ["data": [["price": ["id": "price_p"]]]]],
                ["id": "sub_b", "object": "subscription", "customer": "cus_b", "status": "active", "items": ["data": [["price": ["id": "price_x"]]]]],
            ],
        ]
        let read = try StripeReconciliation.read([UInt8](try JSONSerialization.data(withJSONObject: export)), mapping: mapping)
        XCTAssertTrue(read.hasMore)
        XCTAssertEqual(read.subscriptions.count, 2)
        guard case .update(let update) = read.subscriptions[0] else { return XCTFail("expected an update") }
        XCTAssertEqual(update.licenseID, "L_a")
        XCTAssertEqual(update.license(id: "L_a", replacing: nil).plan, "pro")
        guard case .unmapped = read.subscriptions[1] else { return XCTFail("an unmapped price is skipped") }
    }

    func testRefusals() {
        XCTAssertThrowsError(try StripeMapping.read(configuration: ["prices": ["price_p": "pro"], "plans": [:]])) {
            XCTAssertEqual(($0 as? ValidationError)?.code, .unknownKey)
        }
        XCTAssertThrowsError(try StripeMapping.read(configuration: ["prices": ["price_p": "not a plan"]]))
        XCTAssertThrowsError(try StripeMapping.read(configuration: ["http": [:]])) { XCTAssertEqual(($0 as? ValidationError)?.code, .missingKey) }
        for bad in ["{", "3", #"{"object":"list"}"#, #"[{"object":"invoice","id":"in_1"}]"#] {
            XCTAssertThrowsError(try StripeReconciliation.read(Array(bad.utf8), mapping: StripeMapping()), bad)
        }
    }
}
