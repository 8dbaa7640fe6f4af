import DequeModule
import TollgateModel

/// What the engine remembers of billing events: the ids applied within their retention (a repeat is acknowledged,
/// not applied again) and, per subscription, its license and the creation time of the last event applied (an older
/// event is not applied over a newer one). Rebuilt by replay from the `billingApplied` records and by a snapshot's
/// `billingRestored`.
public struct BillingBook: Sendable {
    public private(set) var seen: [String: UnixMillis] = [:]
    public private(set) var subscriptions: [String: BillingSubscription] = [:]
    /// `seen` in the order recorded, so that forgetting old ids never scans them all.
    private var order = Deque<BillingSeenEvent>()

    public init() {}

    init(seen: [BillingSeenEvent], subscriptions: [BillingSubscription]) {
        for event in seen.sorted(by: { ($0.at, $0.eventID) < ($1.at, $1.eventID) }) {
            self.seen[event.eventID] = event.at
            order.append(event)
        }
        for subscription in subscriptions { self.subscriptions[subscription.subscription] = subscription }
    }

    mutating func record(_ record: BillingRecord) {
        if record.retention > 0 {
            while let oldest = order.first, oldest.at < record.at - record.retention {
                order.removeFirst()
                if seen[oldest.eventID] == oldest.at { seen[oldest.eventID] = nil }
            }
        }
        seen[record.eventID] = record.at
        order.append(BillingSeenEvent(eventID: record.eventID, at: record.at))
        let last = max(subscriptions[record.subscription]?.lastEventCreated ?? .min, record.eventCreated)
        subscriptions[record.subscription] = BillingSubscription(subscription: record.subscription, licenseID: record.license.id, lastEventCreated: last)
    }
}

extension BillingUpdate {
    /// The license a subscription's state gives (`.subscription` updates): the fields the subscription decides
    /// replace those of `previous`, the others (`valid_from`, `project`, the anchor when not given) are kept. The
    /// one rule for webhooks (`LicensingState.applyBilling`) and reconciliation (`tollgate sync stripe`).
    public func license(id: String, replacing previous: LicenseSpec?) -> LicenseSpec {
        var spec = previous ?? LicenseSpec(id: id, customer: customer, plan: plan, status: status)
        spec.customer = customer
        spec.org = org
        spec.plan = plan
        spec.status = status
        spec.trialEndsAt = status == .trialing ? trialEndsAt : 0
        spec.validUntil = validUntil
        if billingAnchorDay != 0 { spec.billingAnchorDay = billingAnchorDay }
        return spec
    }
}

extension LicensingState {
    /// Decides a billing event against the state and applies it: a repeat of an applied event id, an event older
    /// than the last one applied to its subscription, and an event that changes nothing are answered without a
    /// change; otherwise the license it puts is applied with the event id, in one record.
    ///
    /// - Parameter retention: how long an applied event id is remembered (milliseconds; recorded in the change).
    public mutating func applyBilling(_ update: BillingUpdate, at now: Timestamp, retention: Int64) throws -> (outcome: BillingOutcome, change: StateChange?) {
        if billing.seen[update.eventID] != nil { return (.duplicate, nil) }
        let known = billing.subscriptions[update.subscription]
        // Strictly older only: events of the same second are applied in the order they arrive.
        if let known, update.eventCreated < known.lastEventCreated { return (.stale, nil) }
        let licenseID = update.licenseID.isEmpty ? known?.licenseID ?? "" : update.licenseID
        let previous = licenseID.isEmpty ? nil : licenses[licenseID]
        var spec: LicenseSpec
        switch update.kind {
        case .subscription:
            guard !licenseID.isEmpty else { return (.unknownSubscription, nil) }
            spec = update.license(id: licenseID, replacing: previous?.spec)
        case .invoicePaid, .invoicePaymentFailed:
            guard let previous else { return (.unknownSubscription, nil) }
            spec = previous.spec
            if update.kind == .invoicePaid, spec.status == .pastDue { spec.status = .active }
            if update.kind == .invoicePaymentFailed, spec.status == .active || spec.status == .trialing { spec.status = .pastDue }
            guard spec != previous.spec else { return (.unchanged, nil) }
        }
        try Validate.run { () throws(ValidationError) in try Validation.license(spec) }
        guard plans[spec.plan] != nil else { throw EngineError.notFound("plan \(Self.printable(spec.plan)) does not exist") }
        let pastDueSince = spec.status != .pastDue ? 0 : previous.flatMap { $0.spec.status == .pastDue ? $0.pastDueSince : nil } ?? now.millis
        let change = StateChange.billingApplied(
            BillingRecord(eventID: update.eventID, subscription: update.subscription, eventCreated: update.eventCreated, retention: retention, license: spec, pastDueSince: pastDueSince, at: now.millis))
        apply(change)
        return (.applied(licenseInfo(id: spec.id)!), change)
    }
}
