/// The one plan document model: the daemon's JSON configuration (`plans`) and `tollgate apply`'s YAML file
/// (`plans:`) are both turned into a `DocumentNode` tree by their own parser, and this one reader turns a plan's
/// node into a `Plan`, checking it with `Validation.plan`. So a plan means the same, and is refused for the same
/// reason with the same message, whichever file it is written in (issue 12 item 4).
///
/// The layout, with snake_case keys:
///
/// ```yaml
/// id: pro
/// entitlements: ["*"]                 # scopes the plan grants
/// features: [exports, sso]
/// quotas:
///   - {meter: api_calls, window: month, limit: 1000000}          # pool: license by default
///   - {meter: api_calls, window: "rolling:60", limit: 2000, pool: token}
///   - {meter: exports, period: day, limit: 100}                  # `period`: a calendar window (hour, day, month)
/// rate_limits: [{pool: license, rate_per_second: 100, burst: 200}]   # burst: 1 by default
/// rate_per_second: 5                  # shorthand for one license-wide rate limit (with `burst`)
/// concurrency: [{pool: token, max: 8}]
/// credits: {pool: license, included: 50000, period: month}         # included: 0 by default
/// overage: allow_and_record           # hard_stop by default
/// max_token_lifetime_seconds: 7776000
/// max_active_tokens: 100
/// past_due_grace_seconds: 604800
/// ```

/// A parsed document, independent of its syntax. Scalars keep what their parser resolved them to, so that each
/// format's own typing rules (YAML's unquoted `2024` is a number) hold, and a scalar the parser could not accept
/// carries its error to the place where it is read.
public indirect enum DocumentNode: Sendable, Hashable {
    case null
    case bool(Bool)
    /// An integer as decimal text (it may exceed `Int64`, as a `UInt64` limit does).
    case integer(String)
    case string(String)
    /// A scalar of another type (a float, a date), with its text, so a message can show it.
    case other(type: String, text: String)
    /// A scalar its parser refused (a YAML 1.1 octal, say): the error is reported if the field is read.
    case invalid(ValidationError)
    case list([DocumentNode])
    /// Keys in document order.
    case mapping([DocumentEntry])

    public var isNull: Bool { if case .null = self { return true } else { return false } }
}

public struct DocumentEntry: Sendable, Hashable {
    public var key: String
    public var value: DocumentNode
    public init(_ key: String, _ value: DocumentNode) {
        self.key = key
        self.value = value
    }
}

/// Reads one mapping strictly: each field with the type it must have, and every key the caller did not ask for is
/// an error, because a misspelt key silently ignored is a limit silently not enforced.
public struct DocumentReader {
    public let path: String
    private let entries: [DocumentEntry]
    private var seen = Set<String>()

    public init(_ node: DocumentNode, path: String) throws(ValidationError) {
        guard case .mapping(let entries) = node else {
            throw ValidationError(.wrongType, field: path.isEmpty ? "the document" : path, "must be a mapping (an object)")
        }
        self.path = path
        self.entries = entries
    }

    public func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The value under `key`; nil when absent or null, so an optional field can be written out empty.
    public mutating func value(_ key: String) -> DocumentNode? {
        seen.insert(key)
        guard let node = entries.first(where: { $0.key == key })?.value, !node.isNull else { return nil }
        return node
    }

    public func has(_ key: String) -> Bool { entries.contains { $0.key == key && !$0.value.isNull } }

    public mutating func string(_ key: String) throws(ValidationError) -> String? {
        guard let node = value(key) else { return nil }
        return try Self.string(node, child(key))
    }

    public mutating func requiredString(_ key: String) throws(ValidationError) -> String {
        guard let value = try string(key) else { throw ValidationError(.missingKey, field: child(key), "is required") }
        return value
    }

    public mutating func integer<T: FixedWidthInteger>(_ key: String, _ type: T.Type = T.self) throws(ValidationError) -> T? {
        guard let node = value(key) else { return nil }
        return try Self.integer(node, child(key), T.self)
    }

    public mutating func strings(_ key: String) throws(ValidationError) -> [String]? {
        guard let node = value(key) else { return nil }
        guard case .list(let elements) = node else { throw Self.wrongType(node, child(key), "a list of strings") }
        var strings: [String] = []
        for (index, element) in elements.enumerated() { strings.append(try Self.string(element, "\(child(key))[\(index)]")) }
        return strings
    }

    public mutating func mapping(_ key: String) throws(ValidationError) -> DocumentReader? {
        guard let node = value(key) else { return nil }
        return try DocumentReader(node, path: child(key))
    }

    /// The mappings of a list; an absent key is an empty list.
    public mutating func mappings(_ key: String) throws(ValidationError) -> [DocumentReader] {
        guard let node = value(key) else { return [] }
        guard case .list(let elements) = node else { throw Self.wrongType(node, child(key), "a list") }
        var readers: [DocumentReader] = []
        for (index, element) in elements.enumerated() { readers.append(try DocumentReader(element, path: "\(child(key))[\(index)]")) }
        return readers
    }

    /// A value of a closed set, by its name.
    public mutating func named<T>(_ key: String, _ parse: (String) -> T?, allowed: [String]) throws(ValidationError) -> T? {
        guard let text = try string(key) else { return nil }
        return try Validation.named(text, parse, allowed: allowed, field: child(key))
    }

    /// Refuses, before any field is read, the first key outside `keys`: a misspelt key must be reported as such
    /// (with the key it was probably meant to be), not as the required key it was meant to be being missing.
    public func allowOnly(_ keys: [String]) throws(ValidationError) {
        let allowed = Set(keys)
        guard let unknown = entries.first(where: { !allowed.contains($0.key) })?.key else { return }
        throw Self.unknownKey(child(unknown), unknown, among: allowed)
    }

    /// Refuses the first key that no reader asked for.
    public func finish() throws(ValidationError) {
        guard let unknown = entries.first(where: { !seen.contains($0.key) })?.key else { return }
        throw Self.unknownKey(child(unknown), unknown, among: seen)
    }

    static func unknownKey(_ path: String, _ key: String, among known: Set<String>) -> ValidationError {
        let suggestion = suggestion(for: key, among: known)
        return ValidationError(.unknownKey, field: path, "unknown key" + (suggestion.map { " (did you mean \($0)?)" } ?? ""), suggestion: suggestion)
    }

    // MARK: Scalars

    public static func string(_ node: DocumentNode, _ path: String) throws(ValidationError) -> String {
        if case .string(let text) = node { return text }
        if case .invalid(let error) = node { throw error }
        throw wrongType(node, path, "a string")
    }

    public static func integer<T: FixedWidthInteger>(_ node: DocumentNode, _ path: String, _ type: T.Type = T.self) throws(ValidationError) -> T {
        switch node {
        case .integer(let text):
            guard let value = T(text) else {
                throw ValidationError(.outOfRange, field: path, "\(text) is out of range (\(T.min)–\(T.max))")
            }
            return value
        case .invalid(let error):
            throw error
        default:
            throw wrongType(node, path, "an integer")
        }
    }

    /// "must be an integer"; for a scalar of another type, with its text and how to write it as a string.
    static func wrongType(_ node: DocumentNode, _ path: String, _ expected: String) -> ValidationError {
        if case .invalid(let error) = node { return error }
        let text: String?
        switch node {
        case .bool(let value): text = value ? "true" : "false"
        case .integer(let value): text = value
        case .other(_, let value): text = value
        default: text = nil
        }
        if let text, expected == "a string" {
            return ValidationError(.wrongType, field: path, "must be a string (\(text) is read as another type; quote it: \"\(text)\")")
        }
        return ValidationError(.wrongType, field: path, "must be \(expected)")
    }

    /// Known keys a person might reach for instead of ours (other tools' names), then anything within two edits.
    public static func suggestion(for key: String, among known: Set<String>) -> String? {
        let synonyms = [
            "per_second": "rate_per_second", "rate": "rate_per_second", "scopes": "entitlements", "limits": "quotas",
            "rate_limit": "rate_limits", "plan_id": "plan", "org_id": "org", "organization": "org", "organisation": "org",
            "anchor_day": "billing_anchor_day", "expires_at": "valid_until", "starts_at": "valid_from",
        ]
        if let synonym = synonyms[key], known.contains(synonym) { return synonym }
        let best = known.map { (name: $0, distance: editDistance(key, $0)) }.min { ($0.distance, $0.name) < ($1.distance, $1.name) }
        guard let best, best.distance <= 2 else { return nil }
        return best.name
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.utf8), b = Array(b.utf8)
        var previous = Array(0...b.count)
        for i in a.indices {
            var current = [i + 1]
            for j in b.indices {
                current.append(Swift.min(previous[j + 1] + 1, current[j] + 1, previous[j] + (a[i] == b[j] ? 0 : 1)))
            }
            previous = current
        }
        return previous[b.count]
    }
}

/// Reads a plan from its document node (see the layout above). Every value rule is `Validation.plan`'s, located at
/// the plan's path; this reader adds only what is about the document (types, keys, both `window` and `period`).
public enum PlanDocument {
    public static let keys = [
        "id", "entitlements", "features", "quotas", "rate_limits", "rate_per_second", "burst", "concurrency", "credits", "overage",
        "max_token_lifetime_seconds", "max_active_tokens", "past_due_grace_seconds",
    ]

    public static func read(_ reader: inout DocumentReader) throws(ValidationError) -> Plan {
        try reader.allowOnly(keys)
        var plan = Plan(id: try reader.requiredString("id"), entitlements: try reader.strings("entitlements") ?? [])
        // The id first, so that an error in another field does not hide a malformed id.
        do throws(ValidationError) { try Validation.identifier(plan.id, "the plan id") } catch { throw error.at(reader.child("id")) }
        plan.features = try reader.strings("features") ?? []
        for var quota in try reader.mappings("quotas") { plan.quotas.append(try readQuota(&quota)) }
        for var rate in try reader.mappings("rate_limits") { plan.rateLimits.append(try readRate(&rate)) }
        // The core protocol's shorthand: one license-wide rate limit (0: none), placed after the list.
        if let perSecond = try reader.integer("rate_per_second", UInt32.self), perSecond > 0 {
            let burst = try reader.integer("burst", UInt32.self) ?? 1
            plan.rateLimits.append(RateRule(pool: .license, ratePerSecond: perSecond, burst: max(burst, 1)))
        } else {
            _ = try reader.integer("burst", UInt32.self)
        }
        for var rule in try reader.mappings("concurrency") {
            try rule.allowOnly(["pool", "max"])
            let pool = try pool(&rule)
            guard let max = try rule.integer("max", UInt32.self) else { throw ValidationError(.missingKey, field: rule.child("max"), "is required") }
            try rule.finish()
            plan.concurrency.append(ConcurrencyRule(pool: pool, max: max))
        }
        if var credits = try reader.mapping("credits") {
            try credits.allowOnly(["pool", "included", "period"])
            let pool = try pool(&credits)
            guard let included = try credits.integer("included", UInt64.self) else {
                throw ValidationError(.missingKey, field: credits.child("included"), "is required")
            }
            let period = try credits.named("period", Period.init(name:), allowed: Period.allCases.map(\.name)) ?? .month
            try credits.finish()
            plan.credits = CreditPolicy(pool: pool, included: included, period: period)
        }
        plan.overage = try reader.named("overage", OveragePolicy.init(name:), allowed: OveragePolicy.allCases.map(\.name)) ?? .hardStop
        plan.maxTokenLifetimeSeconds = try reader.integer("max_token_lifetime_seconds", UInt32.self) ?? 0
        plan.maxActiveTokens = try reader.integer("max_active_tokens", UInt32.self) ?? 0
        plan.pastDueGraceSeconds = try reader.integer("past_due_grace_seconds", UInt32.self) ?? 0
        try reader.finish()
        do throws(ValidationError) { try Validation.plan(plan) } catch { throw error.at(reader.path) }
        return plan
    }

    /// `window` takes any window (`month`, `rolling:60`); `period` takes a calendar period (`hour`, `day`,
    /// `month`), the configuration's older key. Exactly one of them.
    static func readQuota(_ reader: inout DocumentReader) throws(ValidationError) -> QuotaRule {
        try reader.allowOnly(["meter", "window", "period", "limit", "pool"])
        let meter = try reader.requiredString("meter")
        // The meter before the window, as a plan is checked, so that a rule with two faults reports the same one
        // wherever it is written.
        do throws(ValidationError) { try Validation.meterName(meter) } catch { throw error.at(reader.child("meter")) }
        let window: QuotaWindow
        switch (reader.has("window"), reader.has("period")) {
        case (true, true):
            throw ValidationError(.invalidValue, field: reader.child("period"), "give window or period, not both")
        case (false, false):
            throw ValidationError(.missingKey, field: reader.child("window"), "is required")
        case (true, false):
            window = try Validation.window(named: try reader.requiredString("window"), field: reader.child("window"))
        case (false, true):
            window = .calendar(try reader.named("period", Period.init(name:), allowed: Period.allCases.map(\.name))!)
        }
        _ = reader.value("window")
        _ = reader.value("period")
        guard let limit = try reader.integer("limit", UInt64.self) else { throw ValidationError(.missingKey, field: reader.child("limit"), "is required") }
        let pool = try pool(&reader)
        try reader.finish()
        return QuotaRule(meter: meter, window: window, limit: limit, pool: pool)
    }

    /// `burst` defaults to 1, as the engine stores a rate limit given without one, so the diff after an apply is
    /// empty.
    static func readRate(_ reader: inout DocumentReader) throws(ValidationError) -> RateRule {
        try reader.allowOnly(["pool", "rate_per_second", "burst"])
        let pool = try pool(&reader)
        guard let rate = try reader.integer("rate_per_second", UInt32.self) else {
            throw ValidationError(.missingKey, field: reader.child("rate_per_second"), "is required")
        }
        do throws(ValidationError) { try Validation.ratePerSecond(rate) } catch { throw error.at(reader.child("rate_per_second")) }
        let burst = try reader.integer("burst", UInt32.self) ?? 1
        guard burst >= 1 else { throw ValidationError(.outOfRange, field: reader.child("burst"), "0 is out of range (a burst must be at least 1)") }
        try reader.finish()
        return RateRule(pool: pool, ratePerSecond: rate, burst: burst)
    }

    static func pool(_ reader: inout DocumentReader) throws(ValidationError) -> PoolLevel {
        try reader.named("pool", PoolLevel.init(name:), allowed: PoolLevel.allCases.map(\.name)) ?? .license
    }
}
