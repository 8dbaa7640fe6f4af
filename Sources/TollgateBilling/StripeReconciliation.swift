import Foundation
import TollgateModel

/// Reconciliation for missed webhooks (`tollgate sync stripe FILE`): a JSON export of subscriptions in the shape of
/// Stripe's list API (`{"object": "list", "data": [...], "has_more": false}`, as `GET /v1/subscriptions` and the
/// `stripe subscriptions list` CLI print it, or a bare array) mapped with the webhook's mapping.
public enum StripeReconciliation {
    public struct Export: Sendable {
        /// One per subscription, in the file's order: its update (with no event id) or why it is not Tollgate's.
        public var subscriptions: [StripeEvent.Interpretation]
        /// The list says more pages follow: the export is incomplete.
        public var hasMore: Bool
    }

    public static func read(_ bytes: [UInt8], mapping: StripeMapping) throws(ValidationError) -> Export {
        guard let json = try? JSONSerialization.jsonObject(with: Data(bytes)) else {
            throw ValidationError(.invalidValue, "the export is not JSON")
        }
        let objects: [Any]
        var hasMore = false
        if let list = json as? [String: Any] {
            guard let data = list["data"] as? [Any] else { throw ValidationError(.invalidValue, "the export has no data list (the shape of Stripe's list API)") }
            objects = data
            hasMore = list["has_more"] as? Bool ?? false
        } else if let array = json as? [Any] {
            objects = array
        } else {
            throw ValidationError(.invalidValue, "the export must be a list object or an array of subscriptions")
        }
        var subscriptions: [StripeEvent.Interpretation] = []
        for (index, object) in objects.enumerated() {
            guard let subscription = object as? [String: Any], subscription["object"] as? String ?? "subscription" == "subscription" else {
                throw ValidationError(.invalidValue, "data[\(index)] is not a subscription")
            }
            subscriptions.append(StripeEvent.subscription(subscription, id: "", type: "sync", created: 0, mapping: mapping))
        }
        return Export(subscriptions: subscriptions, hasMore: hasMore)
    }
}

extension StripeMapping {
    /// The mapping from a JSON object shaped like `http.stripe.mapping`, or from a whole tollgated configuration
    /// (its `http.stripe.mapping` is taken), checked by the same validation source as the daemon's configuration.
    public static func read(configuration json: Any) throws(ValidationError) -> StripeMapping {
        guard var object = json as? [String: Any] else { throw ValidationError(.wrongType, "the mapping must be a JSON object") }
        if let http = object["http"] {
            guard let stripe = (http as? [String: Any])?["stripe"] as? [String: Any] else {
                throw ValidationError(.missingKey, field: "http.stripe", "the configuration has no http.stripe section")
            }
            object = stripe["mapping"] as? [String: Any] ?? [:]
        }
        let known: Set<String> = ["prices", "products", "lookup_keys", "customers", "org_metadata_key", "license_metadata_key", "license_prefix", "period_end_slack_s"]
        if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw ValidationError(.unknownKey, field: unknown, "unknown mapping key \(unknown)")
        }
        func table(_ key: String, _ what: String) throws(ValidationError) -> [String: String] {
            guard let value = object[key] else { return [:] }
            guard let table = value as? [String: String] else { throw ValidationError(.wrongType, field: key, "\(key) must be an object of strings") }
            for (stripeID, id) in table {
                try Validation.billingKey(stripeID, field: key)
                try Validation.identifier(id, what, field: key)
            }
            return table
        }
        func string(_ key: String) throws(ValidationError) -> String? {
            guard let value = object[key] else { return nil }
            guard let text = value as? String else { throw ValidationError(.wrongType, field: key, "\(key) must be a string") }
            return text
        }
        var mapping = StripeMapping()
        mapping.plansByPrice = try table("prices", "the plan id")
        mapping.plansByProduct = try table("products", "the plan id")
        mapping.plansByLookupKey = try table("lookup_keys", "the plan id")
        mapping.orgsByCustomer = try table("customers", "the organisation id")
        if let key = try string("org_metadata_key") {
            if !key.isEmpty { try Validation.billingKey(key, field: "org_metadata_key") }
            mapping.orgMetadataKey = key
        }
        if let key = try string("license_metadata_key") {
            if !key.isEmpty { try Validation.billingKey(key, field: "license_metadata_key") }
            mapping.licenseMetadataKey = key
        }
        if let prefix = try string("license_prefix") {
            if !prefix.isEmpty { try Validation.identifier(prefix, "the license prefix", field: "license_prefix") }
            mapping.licensePrefix = prefix
        }
        if let value = object["period_end_slack_s"] {
            guard let number = value as? NSNumber, let slack = Int64(exactly: number.doubleValue), (-1...31 * 86_400).contains(slack) else {
                throw ValidationError(.outOfRange, field: "period_end_slack_s", "period_end_slack_s must be an integer from -1 to 2678400")
            }
            mapping.periodEndSlackSeconds = slack
        }
        return mapping
    }
}
