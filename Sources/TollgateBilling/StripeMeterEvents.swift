import Crypto
import TollgateModel

/// Usage rows of the exact ledger as Stripe Billing meter events (one JSON object per line), in the shape of the
/// meter event API (`POST /v1/billing/meter_events`): `event_name`, `payload` with `stripe_customer_id` and `value`
/// (strings, as Stripe takes them), `identifier` and `timestamp` (Unix seconds).
///
/// The `identifier` is derived from the row's identity (license, token, meter, granularity and period start), not
/// from its quantity, so an export sent twice is counted once by Stripe (it refuses an identifier it has seen).
/// That is only right for periods that are over: `tollgate usage export --format stripe-meter-events` exports only
/// whole, ended periods, so a row never grows after it was sent.
public enum StripeMeterEvents {
    /// Which number of a row is billed.
    public enum Value: String, Sendable, CaseIterable {
        /// All usage.
        case quantity
        /// Only the part beyond a quota or the credits that the plan's overage policy allowed.
        case overage
    }

    /// `tg_` and 40 hexadecimal digits of the SHA-256 of the row's identity: 43 characters, within Stripe's limit.
    public static func identifier(_ row: UsageRow, granularity: Period) -> String {
        // Each field is length-prefixed, so no two identities share their bytes.
        var bytes: [UInt8] = []
        for field in ["tollgate-meter-event-v1", row.licenseID, row.tokenID, row.meter, granularity.name, String(row.periodStart)] {
            let utf8 = Array(field.utf8)
            bytes += [UInt8(truncatingIfNeeded: utf8.count >> 8), UInt8(truncatingIfNeeded: utf8.count)] + utf8
        }
        let digits = Array("0123456789abcdef".utf8)
        var hex: [UInt8] = []
        for byte in SHA256.hash(data: bytes).prefix(20) {
            hex.append(digits[Int(byte >> 4)])
            hex.append(digits[Int(byte & 15)])
        }
        return "tg_" + String(decoding: hex, as: UTF8.self)
    }

    /// One meter event, or nil when the row bills nothing (a value of 0: Stripe would count an empty event).
    public static func line(_ row: UsageRow, customer: String, eventName: String, value: Value, granularity: Period) -> String? {
        let amount = value == .quantity ? row.quantity : row.overage
        guard amount > 0 else { return nil }
        let timestamp = row.periodStart >= 0 ? row.periodStart / 1000 : (row.periodStart - 999) / 1000
        return #"{"event_name":"# + JSONText.quoted(eventName) + #","identifier":"# + JSONText.quoted(identifier(row, granularity: granularity))
            + #","payload":{"stripe_customer_id":"# + JSONText.quoted(customer) + #","value":""# + String(amount) + #""},"timestamp":"# + String(timestamp) + "}"
    }

    /// Whether `customer` can be a Stripe customer id (`cus_…`, no spaces or quotes).
    public static func isCustomerID(_ customer: String) -> Bool {
        customer.hasPrefix("cus_") && customer.utf8.count > 4 && customer.utf8.count <= 255
            && customer.utf8.allSatisfy { Validation.isIdentifierByte($0) }
    }
}
