import Foundation

/// A JWT's claims as JSON values, read once from the payload. Only what roles ask for is interpreted: strings,
/// numbers (NumericDate), booleans and lists of strings.
public struct Claims: Sendable {
    public enum Value: Sendable, Hashable {
        case string(String)
        case number(Double)
        case bool(Bool)
        case strings([String])
        /// An object, a list of non-strings, null: present, but not comparable with a bound.
        case other
    }

    public var values: [String: Value]

    public init(_ values: [String: Value]) { self.values = values }

    /// Parses a JSON object; nil when the bytes are not one.
    public init?(json: [UInt8]) {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(json))) as? [String: Any] else { return nil }
        var values: [String: Value] = [:]
        for (key, value) in object { values[key] = Self.value(value) }
        self.values = values
    }

    static func value(_ any: Any) -> Value {
        switch any {
        case let string as String: return .string(string)
        case let number as NSNumber:
            let type = String(cString: number.objCType)
            return type == "c" || type == "B" ? .bool(number.boolValue) : .number(number.doubleValue)
        case let list as [Any]:
            let strings = list.compactMap { $0 as? String }
            return strings.count == list.count ? .strings(strings) : .other
        default: return .other
        }
    }

    public subscript(_ claim: String) -> Value? { values[claim] }

    /// The claim as text, for bound claims and mappings: a string, a number without a fraction, a boolean.
    public func text(_ claim: String) -> String? {
        switch values[claim] {
        case .string(let s): return s
        case .number(let n) where n == n.rounded() && abs(n) < 9e15: return String(Int64(n))
        case .bool(let b): return b ? "true" : "false"
        default: return nil
        }
    }

    /// Every textual value of a claim: one for a string, each element for a list of strings.
    public func texts(_ claim: String) -> [String]? {
        if case .strings(let list) = values[claim] { return list }
        return text(claim).map { [$0] }
    }

    /// A NumericDate claim in Unix milliseconds.
    public func date(_ claim: String) -> Int64? {
        guard case .number(let seconds) = values[claim], seconds.isFinite, abs(seconds) < 1e12 else { return nil }
        return Int64((seconds * 1000).rounded(.down))
    }
}
