import Foundation
import TollgateModel
import TollgateProvisioning

/// What a person reads without `--json`: `field: value` lines in the order of the protocol's tables (stable, not
/// alphabetical), times in RFC 3339 UTC, and fields that are absent on the wire (a time of 0, an empty string)
/// left out rather than shown as `0` or `<null>`. The field names are the JSON output's, so one grep works on both.
typealias HumanFields = [(String, String?)]

func printHuman(_ fields: HumanFields) {
    for case (let key, let value?) in fields {
        // A list value starts with a newline: its items follow on indented lines.
        print(value.hasPrefix("\n") ? "\(key):\(value)" : "\(key): \(value)")
    }
}

enum Human {
    /// RFC 3339 UTC, or nil (absent) for 0, the wire's "none".
    static func time(_ millis: UnixMillis) -> String? { millis == 0 ? nil : RFC3339.format(millis) }

    static func text(_ value: String) -> String? { value.isEmpty ? nil : value }

    /// `a, b, c`, or `none`.
    static func list(_ items: [String]) -> String { items.isEmpty ? "none" : items.joined(separator: ", ") }

    /// One indented line per item, or nil when there is none.
    static func lines(_ items: [String]) -> String? { items.isEmpty ? nil : items.map { "\n  \($0)" }.joined() }

    /// `7776000 (90d)`: seconds as the wire has them, with the largest whole unit.
    static func seconds(_ value: UInt32, zero: String) -> String {
        guard value > 0 else { return zero }
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] as [(String, UInt32)] where value % size == 0 {
            return "\(value) (\(value / size)\(unit))"
        }
        return "\(value)"
    }
}

extension TokenInfo {
    var human: HumanFields {
        [
            ("token_id", id), ("license_id", licenseID), ("subject", subject), ("scopes", Human.list(scopes)), ("environment", environment.name),
            ("parent_id", Human.text(parentID)), ("issued_at", Human.time(issuedAt)), ("not_before", Human.time(notBefore)),
            ("expires_at", Human.time(expiresAt) ?? "never"), ("revoked_at", Human.time(revokedAt)), ("revoke_reason", Human.text(revokeReason)),
            ("revoked_by", Human.text(revokedBy)), ("rotated_at", Human.time(rotatedAt)),
            ("previous_secret_valid_until", Human.time(previousSecretValidUntil)), ("last_used_at", Human.time(lastUsedAt)),
            ("previous_secret_last_used_at", Human.time(previousSecretLastUsedAt)),
            ("metadata", Human.lines(metadata.map { "\($0.key)=\($0.value)" })),
        ]
    }
}

extension LicenseInfo {
    var human: HumanFields {
        [
            ("license_id", spec.id), ("customer", Human.text(spec.customer)), ("plan", spec.plan), ("status", spec.status.name),
            ("org", Human.text(spec.org)), ("project", Human.text(spec.project)), ("valid_from", Human.time(spec.validFrom)),
            ("valid_until", Human.time(spec.validUntil)), ("trial_ends_at", Human.time(spec.trialEndsAt)),
            ("billing_anchor_day", "\(spec.billingAnchorDay)"), ("past_due_since", Human.time(pastDueSince)),
            ("active_tokens", "\(activeTokens)"), ("prepaid_credits", "\(prepaidCredits)"), ("updated_at", Human.time(updatedAt)),
        ]
    }
}

extension OrgSpec {
    var human: HumanFields { [("org_id", id), ("name", Human.text(name)), ("suspended", "\(suspended)")] }
}

extension Plan {
    /// Rules one per line, as the plan lists them (their order decides which quota an answer shows on a tie).
    var human: HumanFields {
        [
            ("plan_id", id), ("entitlements", Human.list(entitlements)), ("features", Human.list(features)),
            ("quotas", Human.lines(quotas.map { "\($0.name) limit \($0.limit)" })),
            ("rate_limits", Human.lines(rateLimits.map { "\($0.name) \($0.ratePerSecond)/s burst \($0.burst)" })),
            ("concurrency", Human.lines(concurrency.map { "\($0.name) max \($0.max)" })),
            ("credits", credits.map { "\($0.included) included per \($0.period.name), pool \($0.pool.name)" }),
            ("overage", overage.name),
            ("max_token_lifetime_seconds", Human.seconds(maxTokenLifetimeSeconds, zero: "no limit")),
            ("max_active_tokens", maxActiveTokens == 0 ? "no limit" : "\(maxActiveTokens)"),
            ("past_due_grace_seconds", Human.seconds(pastDueGraceSeconds, zero: "0 (none)")),
        ]
    }
}
