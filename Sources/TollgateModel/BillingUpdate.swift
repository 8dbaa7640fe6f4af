/// What one billing-system event (a Stripe webhook) says about one subscription, already mapped to Tollgate's
/// terms by the billing module (`TollgateBilling`): which license, which plan, which status and validity. The
/// engine decides from it, against the state, whether the event is new, in order and changes anything
/// (`LicensingState.applyBilling`). A plain value: no JSON, no signature, no secret.
public struct BillingUpdate: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// A subscription object (created, updated, deleted, paused, resumed, trial_will_end): its whole state.
        case subscription
        /// An invoice of the subscription was paid: a past-due license becomes active again.
        case invoicePaid
        /// An invoice of the subscription failed: an active or trialing license becomes past due (the plan's
        /// grace period starts).
        case invoicePaymentFailed
    }

    /// The billing system's event id (`evt_…`): recorded with the change, so that a repeat is not applied again.
    public var eventID: String
    public var eventType: String
    /// When the billing system created the event: an event older than the last one applied to the same
    /// subscription is not applied.
    public var eventCreated: UnixMillis
    public var subscription: String
    /// The license the subscription maps to; empty: the one an earlier event of the subscription created.
    public var licenseID: String
    public var kind: Kind
    // The subscription's state (`.subscription` only).
    public var customer: String
    /// The organisation the customer maps to (empty: none).
    public var org: String
    public var plan: String
    public var status: LicenseStatus
    public var trialEndsAt: UnixMillis
    /// 0: open-ended.
    public var validUntil: UnixMillis
    /// 1–28, or 0: keep the license's (1 for a new one).
    public var billingAnchorDay: UInt8

    public init(
        eventID: String, eventType: String, eventCreated: UnixMillis, subscription: String, licenseID: String, kind: Kind,
        customer: String = "", org: String = "", plan: String = "", status: LicenseStatus = .active, trialEndsAt: UnixMillis = 0,
        validUntil: UnixMillis = 0, billingAnchorDay: UInt8 = 0
    ) {
        self.eventID = eventID
        self.eventType = eventType
        self.eventCreated = eventCreated
        self.subscription = subscription
        self.licenseID = licenseID
        self.kind = kind
        self.customer = customer
        self.org = org
        self.plan = plan
        self.status = status
        self.trialEndsAt = trialEndsAt
        self.validUntil = validUntil
        self.billingAnchorDay = billingAnchorDay
    }
}

/// What became of a billing event in the engine.
public enum BillingOutcome: Sendable, Hashable {
    /// Applied: the license as it is now.
    case applied(LicenseInfo)
    /// The event id was applied before (within the retention): acknowledged, not applied again.
    case duplicate
    /// An event of the same subscription created later was applied already: this older one is not.
    case stale
    /// Nothing to change (an invoice event that changes no status, an unchanged subscription).
    case unchanged
    /// An invoice event of a subscription no license is known for.
    case unknownSubscription
}
