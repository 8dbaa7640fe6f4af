import TollgateModel

/// Values written as they would be in a provisioning file (YAML flow style), so that a diff line can be read
/// against the file, and a rule copied from it back into the file.
enum FieldFormat {
    /// Plain when YAML would read it back as the same string, double-quoted otherwise (empty, spaces, `*`, a
    /// number, `yes`…).
    static func text(_ value: String) -> String {
        let plain = !value.isEmpty && value.utf8.allSatisfy(isPlainByte) && !(value.first?.isNumber ?? false)
            && !["true", "false", "yes", "no", "on", "off", "null", "none"].contains(value.lowercased())
        if plain { return value }
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
}
