/// JSON text written by hand where a line's field order and bytes matter (usage exports, Stripe meter events):
/// the one escaping rule they share.
public enum JSONText {
    /// `text` as a JSON string literal, quotes included: `"` and `\` escaped, `\n` `\r` `\t` in their short forms,
    /// every other control character (and DEL) as `\u00XX`; everything else as it is (UTF-8).
    public static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
