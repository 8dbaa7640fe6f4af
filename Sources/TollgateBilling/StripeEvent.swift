import Foundation
import TollgateModel

/// A Stripe event (the JSON body of a webhook, already authenticated by `StripeSignature`) in Tollgate's terms.
/// Pure: bytes and a mapping in, a decision out; no clock (times are the event's own), no I/O.
public enum StripeEvent {
    /// The event types that change a license.
    public static let subscriptionTypes: Set<String> = [
        "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
        "customer.subscription.paused", "customer.subscription.resumed", "customer.subscription.trial_will_end",
    ]
    public static let invoiceTypes: Set<String> = ["invoice.paid", "invoice.payment_failed"]

    public enum Interpretation: Sendable, Hashable {
        /// Hand this to the core.
        case update(BillingUpdate)
        /// Acknowledged (2xx) and not applied: an event type Tollgate does not handle.
        case unknownType(eventID: String, type: String)
        /// Acknowledged and not applied: a handled type whose subscription is not Tollgate's (no license rule
        /// gives it a license, or none of its prices maps to a plan). The reason names Stripe ids only.
        case unmapped(eventID: String, type: String, reason: String)
        /// The body is not an event Tollgate can read (answered 400).
        case malformed(String)
    }

    /// Reads `body` as an event and maps it.
    public static func interpret(_ body: [UInt8], mapping: StripeMapping) -> Interpretation {
        guard let json = try? JSONSerialization.jsonObject(with: Data(body)), let event = json as? [String: Any] else {
            return .malformed("the body is not a JSON object")
        }
        guard let id = event["id"] as? String, !id.isEmpty, id.utf8.count <= 255 else { return .malformed("the event has no id") }
        guard let type = event["type"] as? String else { return .malformed("the event has no type") }
        guard let created = integer(event["created"]) else { return .malformed("the event has no created time") }
        guard subscriptionTypes.contains(type) || invoiceTypes.contains(type) else { return .unknownType(eventID: id, type: type) }
        guard let object = (event["data"] as? [String: Any])?["object"] as? [String: Any] else { return .malformed("the event has no data.object") }
        if invoiceTypes.contains(type) {
            return invoice(object, id: id, type: type, created: created, mapping: mapping)
        }
        return subscription(object, id: id, type: type, created: created, mapping: mapping)
    }

    static func subscription(_ object: [String: Any], id: String, type: String, created: Int64, mapping: StripeMapping) -> Interpretation {
        guard let subscription = object["id"] as? String, !subscription.isEmpty else { return .malformed("the subscription has no id") }
        guard let statusText = object["status"] as? String else { return .malformed("the subscription has no status") }
        guard let status = StripeMapping.licenseStatus(statusText) else {
            return .unmapped(eventID: id, type: type, reason: "subscription status \(statusText) is not known")
        }
        let metadata = strings(object["metadata"])
        guard let license = mapping.license(subscription: subscription, metadata: metadata) else {
            return .unmapped(eventID: id, type: type, reason: "no license for subscription \(subscription)")
        }
        let customer = identifier(object["customer"]) ?? ""
        let items = ((object["items"] as? [String: Any])?["data"] as? [[String: Any]]) ?? []
        var plan: String?
        var periodEnd = integer(object["current_period_end"])
        for item in items {
            // API versions from 2025-03-31 carry the period on the items.
            if let end = integer(item["current_period_end"]) { periodEnd = max(periodEnd ?? end, end) }
            guard plan == nil, let price = item["price"] as? [String: Any] else { continue }
            plan = mapping.plan(price: price["id"] as? String ?? "", product: identifier(price["product"]) ?? "", lookupKey: price["lookup_key"] as? String ?? "")
        }
        if plan == nil, let price = object["plan"] as? [String: Any] {
            // The legacy single-plan field.
            plan = mapping.plan(price: price["id"] as? String ?? "", product: identifier(price["product"]) ?? "", lookupKey: "")
        }
        guard let plan else { return .unmapped(eventID: id, type: type, reason: "no price of subscription \(subscription) maps to a plan") }
        var validUntil: Int64 = 0
        if let ended = integer(object["ended_at"]) {
            validUntil = ended * 1000
        } else if let cancelAt = integer(object["cancel_at"]) {
            validUntil = cancelAt * 1000
        } else if let periodEnd, mapping.periodEndSlackSeconds >= 0 {
            validUntil = (periodEnd + mapping.periodEndSlackSeconds) * 1000
        }
        var anchorDay: UInt8 = 0
        if let anchor = integer(object["billing_cycle_anchor"]) {
            anchorDay = UInt8(min(28, CivilDate.date(days: CivilDate.floorDivide(anchor, 86_400)).day))
        }
        return .update(BillingUpdate(
            eventID: id, eventType: type, eventCreated: created * 1000, subscription: subscription, licenseID: license, kind: .subscription,
            customer: customer, org: mapping.organisation(customer: customer, metadata: metadata), plan: plan, status: status,
            trialEndsAt: (integer(object["trial_end"]) ?? 0) * 1000, validUntil: validUntil, billingAnchorDay: anchorDay))
    }

    static func invoice(_ object: [String: Any], id: String, type: String, created: Int64, mapping: StripeMapping) -> Interpretation {
        // `subscription` up to API 2025-02-24; `parent.subscription_details.subscription` from 2025-03-31.
        let details = ((object["parent"] as? [String: Any])?["subscription_details"] as? [String: Any]) ?? (object["subscription_details"] as? [String: Any])
        guard let subscription = identifier(object["subscription"]) ?? identifier(details?["subscription"]) else {
            return .unmapped(eventID: id, type: type, reason: "the invoice belongs to no subscription")
        }
        // The license from the subscription's metadata when the invoice carries it; otherwise the engine uses the
        // license an earlier event of the subscription put.
        var license = ""
        if !mapping.licenseMetadataKey.isEmpty, let value = strings(details?["metadata"])[mapping.licenseMetadataKey] { license = value }
        return .update(BillingUpdate(
            eventID: id, eventType: type, eventCreated: created * 1000, subscription: subscription, licenseID: license,
            kind: type == "invoice.paid" ? .invoicePaid : .invoicePaymentFailed))
    }

    /// An id given either as a string or as an expanded object.
    static func identifier(_ value: Any?) -> String? {
        if let text = value as? String { return text.isEmpty ? nil : text }
        if let object = value as? [String: Any] { return object["id"] as? String }
        return nil
    }

    static func integer(_ value: Any?) -> Int64? {
        guard let number = value as? NSNumber else { return nil }
        // Seconds far outside any real date are refused rather than overflowing a millisecond time.
        let seconds = number.int64Value
        guard number.doubleValue == Double(seconds), abs(seconds) < 1 << 40 else { return nil }
        return seconds
    }

    static func strings(_ value: Any?) -> [String: String] {
        guard let object = value as? [String: Any] else { return [:] }
        return object.compactMapValues { $0 as? String }
    }
}
