import TollgateModel

/// Values written as they would be in a provisioning file (YAML flow style), so that a diff line can be read
/// against the file, and a rule copied from it back into the file.
enum FieldFormat {
    /// Plain when YAML would read it back as the same string, double-quoted otherwise (empty, spaces, `*`, a
    /// number, `yes`…). Plain only from a letter or `_` on: YAML reads `-1`, `.5` and `.inf` as numbers, and `@`
    /// cannot start a plain scalar, so `tollgate export` (which writes every string through here) stays exact.
    static func text(_ value: String) -> String {
        let startsPlain = value.utf8.first.map { $0 == UInt8(ascii: "_") || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0 | 0x20) } ?? false
        let plain = startsPlain && value.utf8.allSatisfy(isPlainByte)
            && !["true", "false", "yes", "no", "on", "off", "null", "none", "y", "n"].contains(value.lowercased())
        if plain { return value }
        return doubleQuoted(value)
    }

    /// A YAML double-quoted scalar: always read back as exactly `value`, whatever it holds.
    static func doubleQuoted(_ value: String) -> String {
        var quoted = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": quoted += "\\\""
            case "\\": quoted += "\\\\"
            case "\n": quoted += "\\n"
            case "\t": quoted += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    let hex = String(scalar.value, radix: 16)
                    quoted += "\\x" + String(repeating: "0", count: 2 - hex.count) + hex
                } else if (0x80...0x9F).contains(scalar.value) || [0x2028, 0x2029, 0xFEFF].contains(scalar.value) {
                    // Line breaks to YAML (NEL, LS, PS) and a BOM would be folded or dropped inside the quotes.
                    let hex = String(scalar.value, radix: 16)
                    quoted += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    quoted.unicodeScalars.append(scalar)
                }
            }
        }
        return quoted + "\""
    }

    private static func isPlainByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "/"), UInt8(ascii: "@"):
            return true
        default:
            return false
        }
    }

    /// An id that may be empty (a license's organisation): `none` when it is.
    static func optionalID(_ value: String) -> String { value.isEmpty ? "none" : text(value) }

    /// 0 means "none" in the model.
    static func timestamp(_ millis: UnixMillis) -> String { millis == 0 ? "none" : RFC3339.format(millis) }

    static func list(_ elements: [String]) -> String { "[" + elements.joined(separator: ", ") + "]" }

    static func quota(_ rule: QuotaRule) -> String {
        "{meter: \(text(rule.meter)), window: \(text(rule.window.name)), limit: \(rule.limit), pool: \(rule.pool.name)}"
    }

    static func rate(_ rule: RateRule) -> String {
        "{pool: \(rule.pool.name), rate_per_second: \(rule.ratePerSecond), burst: \(rule.burst)}"
    }

    static func concurrency(_ rule: ConcurrencyRule) -> String { "{pool: \(rule.pool.name), max: \(rule.max)}" }

    static func credits(_ policy: CreditPolicy?) -> String {
        guard let policy else { return "none" }
        return "{pool: \(policy.pool.name), included: \(policy.included), period: \(policy.period.name)}"
    }

    /// `{claim: value}` or `{claim: [a, b]}` per bound claim, in claim order.
    static func boundClaims(_ bound: [IdentityRole.BoundClaim]) -> String {
        "{" + bound.map { "\(text($0.claim)): " + ($0.values.count == 1 ? text($0.values[0]) : list($0.values.map(text))) }.joined(separator: ", ") + "}"
    }

    /// A claim-value → id mapping in key order, or `{}`.
    static func mapping(_ table: [String: String]) -> String {
        "{" + table.sorted { $0.key < $1.key }.map { "\(text($0.key)): \(text($0.value))" }.joined(separator: ", ") + "}"
    }

    static func leeways(_ leeway: IdentityRole.Leeways) -> String { "{exp: \(leeway.exp), nbf: \(leeway.nbf), iat: \(leeway.iat)}" }
}
