import TollgateModel

/// How Stripe's objects map to Tollgate's: prices (or products, or lookup keys) to plans, customers to
/// organisations, subscriptions to licenses. Configured in `http.stripe.mapping` (README, "Stripe").
public struct StripeMapping: Sendable, Hashable {
    /// Price id (`price_…`) → plan id. Tried first.
    public var plansByPrice: [String: String]
    /// Product id (`prod_…`) → plan id. Tried when the price is not mapped.
    public var plansByProduct: [String: String]
    /// A price's `lookup_key` → plan id. Tried last.
    public var plansByLookupKey: [String: String]
    /// Customer id (`cus_…`) → organisation id.
    public var orgsByCustomer: [String: String]
    /// A subscription metadata key naming the organisation, used when the customer is not in `orgsByCustomer`
    /// (empty: none; then the license has no organisation).
    public var orgMetadataKey: String
    /// A subscription metadata key naming the license (empty: none).
    public var licenseMetadataKey: String
    /// Without that metadata, the license id is this prefix followed by the subscription id without its `sub_`
    /// (`lic_` makes `sub_1Abc` the license `lic_1Abc`); empty: such a subscription is not Tollgate's and its
    /// events are acknowledged and not applied.
    public var licensePrefix: String
    /// Validity ends this long after `current_period_end` (so a renewal's webhook has time to arrive), unless the
    /// subscription ends earlier (`cancel_at`, `ended_at`). Seconds; negative: no end from the period.
    public var periodEndSlackSeconds: Int64

    public init(
        plansByPrice: [String: String] = [:], plansByProduct: [String: String] = [:], plansByLookupKey: [String: String] = [:],
        orgsByCustomer: [String: String] = [:], orgMetadataKey: String = "", licenseMetadataKey: String = "tollgate_license", licensePrefix: String = "lic_",
        periodEndSlackSeconds: Int64 = 3 * 86_400
    ) {
        self.plansByPrice = plansByPrice
        self.plansByProduct = plansByProduct
        self.plansByLookupKey = plansByLookupKey
        self.orgsByCustomer = orgsByCustomer
        self.orgMetadataKey = orgMetadataKey
        self.licenseMetadataKey = licenseMetadataKey
        self.licensePrefix = licensePrefix
        self.periodEndSlackSeconds = periodEndSlackSeconds
    }

    /// The plan of a subscription item's price: by price id, then product, then lookup key.
    public func plan(price: String, product: String, lookupKey: String) -> String? {
        plansByPrice[price] ?? (product.isEmpty ? nil : plansByProduct[product]) ?? (lookupKey.isEmpty ? nil : plansByLookupKey[lookupKey])
    }

    /// The license of a subscription: its metadata's, else the prefix rule's, else none.
    public func license(subscription: String, metadata: [String: String]) -> String? {
        if !licenseMetadataKey.isEmpty, let id = metadata[licenseMetadataKey], !id.isEmpty { return id }
        guard !licensePrefix.isEmpty, !subscription.isEmpty else { return nil }
        let bare = subscription.hasPrefix("sub_") ? String(subscription.dropFirst(4)) : subscription
        return licensePrefix + bare
    }

    public func organisation(customer: String, metadata: [String: String]) -> String {
        if let org = orgsByCustomer[customer] { return org }
        if !orgMetadataKey.isEmpty, let org = metadata[orgMetadataKey] { return org }
        return ""
    }

    /// Stripe's subscription status → the license status. `paused` (a trial ended without a payment method, or
    /// collection paused) is inactive, like `canceled`, until `customer.subscription.resumed`; `incomplete` (the
    /// first payment not made yet) gives no access either. Nil: a status this version does not know.
    public static func licenseStatus(_ status: String) -> LicenseStatus? {
        switch status {
        case "trialing": return .trialing
        case "active": return .active
        case "past_due": return .pastDue
        case "unpaid", "canceled", "incomplete_expired", "incomplete", "paused": return .canceled
        default: return nil
        }
    }
}
