/// The one source of the rules for values that callers may store: ids, scopes, meter names, windows, texts,
/// metadata and plans. The engine (every request over the wire), the daemon's configuration, `tollgate apply` and
/// the CLI all call these functions, so the same value gets the same verdict, with the same message, wherever it
/// enters (issue 12 item 4, issue 13 §3). The rules are published in PROTOCOL.md ("Value rules") and the README.
///
/// Messages never hold a token secret: values are quoted through `ValidationError.quoted`, which withholds anything
/// that looks like one. A message names the rule and the bound, not where the value came from: each entry point
/// puts its own location in `field` (a path in a file, an option of the CLI).

/// Bounds on what callers may store, so that one request cannot bloat the state or the journal.
public enum Limits {
    public static let maxIdentifier = 128
    public static let maxSubject = 256
    public static let maxScopes = 64
    public static let maxScope = 128
    public static let maxMetadataPairs = 32
    public static let maxMetadataKey = 64
    public static let maxMetadataValue = 256
    public static let maxMeterName = 64
    public static let maxIdempotencyKey = 128
    public static let maxReason = 256
    public static let maxCustomer = 256
    /// A project groups licenses inside an organisation; it is exported with usage, so it is kept id-sized.
    public static let maxProject = 128
    /// Per plan, each of quotas, rate limits and concurrency limits.
    public static let maxQuotas = 64
    /// Above this the GCRA interval (1 s / rate) would fall below a microsecond.
    public static let maxRatePerSecond: UInt32 = 1_000_000
    /// A rolling window is counted in 60 slices; at 60 s each slice is one second, the finest the counters keep
    /// meaningfully (shorter windows would count in slices of a few milliseconds and leave it in jumps nobody
    /// expects from "per N seconds"). A rate limit is the tool for sub-minute limits.
    public static let minRollingSeconds: UInt32 = 60
    /// 400 days: longer than any calendar window, so a rolling window never needs more history than the ledger.
    public static let maxRollingSeconds: UInt32 = 400 * 86_400
    /// HTTP route rules (`http.routes`): how many, and how long a path pattern may be.
    public static let maxRoutes = 1024
    public static let maxPathPattern = 512
}

/// Why a value was refused. `code` is stable (scripts and tests compare it, and two errors are equal when their
/// codes are); `field` says where the value was (a path such as `plans[0].quotas[1].meter`, or empty when the
/// caller knows); `message` is one sentence for a person, without the field, so that every entry point can show
/// the same sentence.
public struct ValidationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The codes shared with `tollgate apply`'s file errors, so a script reads one vocabulary.
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// A well-typed value that breaks a rule (id syntax, meter name, a rule given twice, …).
        public static let invalidValue = Code(rawValue: "invalid_value")
        /// A number outside the range its field takes.
        public static let outOfRange = Code(rawValue: "out_of_range")
        /// A name outside a closed set (window, pool, period, overage, status).
        public static let invalidName = Code(rawValue: "invalid_name")
        /// A value of the wrong type (a string where a number is expected, …).
        public static let wrongType = Code(rawValue: "wrong_type")
        /// A key an object cannot do without.
        public static let missingKey = Code(rawValue: "missing_key")
        /// A key the format does not have.
        public static let unknownKey = Code(rawValue: "unknown_key")
        /// A token asked for with a scope that its license's plan does not grant.
        public static let scopeNotGranted = Code(rawValue: "scope_not_granted")
        /// A license names an organisation that does not exist.
        public static let unknownOrg = Code(rawValue: "unknown_org")
        /// A license, plan or organisation asked to be deleted while something still uses it.
        public static let inUse = Code(rawValue: "in_use")

        public var description: String { rawValue }
    }

    public var code: Code
    public var field: String
    public var message: String
    /// For `unknown_key`: the key that was probably meant.
    public var suggestion: String?

    public init(_ code: Code, field: String = "", _ message: String, suggestion: String? = nil) {
        self.code = code
        self.field = field
        self.message = message
        self.suggestion = suggestion
    }

    /// The same error, located: `field` prefixed with `path` (`quotas[0].meter` in `plans[2]` is
    /// `plans[2].quotas[0].meter`).
    public func at(_ path: String) -> ValidationError {
        var copy = self
        copy.field = path.isEmpty ? field : field.isEmpty ? path : field.hasPrefix("[") ? path + field : path + "." + field
        return copy
    }

    /// `field: message`, or the message alone when there is no field.
    public var description: String {
        if code == .missingKey { return "\(field) is required" }
        return field.isEmpty ? message : "\(field): \(message)"
    }

    /// Compared by code, as STYLE.md asks: the wording may improve, the verdict may not drift.
    public static func == (l: ValidationError, r: ValidationError) -> Bool { l.code == r.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }

    /// A value made safe to put in a message: bounded, control characters replaced, and anything that could be a
    /// token secret (even a mistyped one) withheld.
    public static func quoted(_ value: String) -> String {
        if value.hasPrefix("tg_") { return "(withheld: looks like a token secret)" }
        let cut = value.unicodeScalars.prefix(64).map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) }
        return "'" + String(cut) + (value.unicodeScalars.count > 64 ? "…" : "") + "'"
    }
}

/// The rules. Each function throws the first rule the value breaks, with `field` set relative to the value it was
/// given (an entry point locates it further with `ValidationError.at(_:)`).
public enum Validation {
    // MARK: Ids, texts, scopes

    /// Whether every UTF-8 byte of `value` passes `test`, over the string's contiguous bytes: `utf8.allSatisfy`
    /// walks the view's iterator and cost ~240 instructions for a six-letter meter name on every METER (callgrind).
    @inline(__always)
    static func everyByte(of value: String, _ test: (UInt8) -> Bool) -> Bool {
        if let answer = value.utf8.withContiguousStorageIfAvailable({ $0.allSatisfy(test) }) { return answer }
        return value.utf8.allSatisfy(test)
    }

    /// Ids of licenses, plans, organisations and the token ids of the control plane: 1–128 bytes of
    /// `A-Z a-z 0-9 _ . : -`, so that they can be log keys, file names and CSV cells without quoting.
    public static func identifier(_ value: String, _ what: String = "an id", field: String = "") throws(ValidationError) {
        guard !value.isEmpty, value.utf8.count <= Limits.maxIdentifier, everyByte(of: value, isIdentifierByte) else {
            throw ValidationError(.invalidValue, field: field, "\(what) must be 1–\(Limits.maxIdentifier) characters of A-Z a-z 0-9 _ . : -")
        }
    }

    @inlinable
    public static func isIdentifierByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    /// Free text (customer, names, reasons, subjects): any UTF-8 up to `max` bytes; `allowEmpty: false` asks for at
    /// least one byte.
    public static func text(_ value: String, max: Int, _ what: String, allowEmpty: Bool = true, field: String = "") throws(ValidationError) {
        guard value.utf8.count <= max, allowEmpty || !value.isEmpty else {
            throw ValidationError(.invalidValue, field: field, "\(what) must be \(allowEmpty ? 0 : 1)–\(max) bytes")
        }
    }

    /// A token's subject (who or what it was issued to): 1–256 bytes of UTF-8.
    public static func subject(_ value: String, field: String = "") throws(ValidationError) {
        try text(value, max: Limits.maxSubject, "the subject", allowEmpty: false, field: field)
    }

    /// One scope or feature: 1–128 bytes of printable ASCII without spaces (`*` grants all).
    public static func scope(_ value: String, field: String = "") throws(ValidationError) {
        guard !value.isEmpty, value.utf8.count <= Limits.maxScope, everyByte(of: value, { $0 > 0x20 && $0 < 0x7F }) else {
            throw ValidationError(.invalidValue, field: field, "a scope must be 1–\(Limits.maxScope) printable ASCII characters without spaces")
        }
    }

    /// A list of scopes or features (`what`: "scopes", "entitlements", "features"): at most 64, each valid, each
    /// listed once (a repeated one is almost always a copy-and-paste slip, and would be stored twice).
    public static func scopes(_ values: [String], _ what: String = "scopes", field: String = "") throws(ValidationError) {
        guard values.count <= Limits.maxScopes else {
            throw ValidationError(.invalidValue, field: field, "at most \(Limits.maxScopes) \(what) are allowed")
        }
        var seen = Set<String>()
        for (index, value) in values.enumerated() {
            try scope(value, field: "\(field)[\(index)]")
            guard seen.insert(value).inserted else {
                throw ValidationError(.invalidValue, field: "\(field)[\(index)]", "\(quotedPlain(value)) is listed twice")
            }
        }
    }

    /// A token may carry only scopes its license's plan grants (or `*`: whatever the plan grants). Checked when a
    /// token is issued, so that a token that could never pass a check is refused then, with the reason, instead of
    /// being denied `insufficient_scope` at every use. (A plan changed later can still take a scope away; checks
    /// then deny it, as before.)
    public static func scopesGranted(_ scopes: [String], by plan: Plan, license: String, field: String = "") throws(ValidationError) {
        if plan.entitlements.contains("*") { return }
        for (index, scope) in scopes.enumerated() where scope != "*" && !plan.entitlements.contains(scope) {
            let granted = plan.entitlements.isEmpty ? "no scopes" : plan.entitlements.sorted().joined(separator: ", ")
            throw ValidationError(
                .scopeNotGranted, field: "\(field)[\(index)]",
                "scope \(ValidationError.quoted(scope)) is not granted by plan \(plan.id) of license \(ValidationError.quoted(license)) (it grants \(granted)); a token may carry only scopes its plan grants, or * for all of them")
        }
    }

    /// Token metadata: at most 32 pairs, keys 1–64 bytes, values up to 256; keys under `tollgate.` are reserved,
    /// and the one defined (`tollgate.bind_uids`) must parse.
    public static func metadata(_ pairs: [KeyValue], field: String = "") throws(ValidationError) {
        guard pairs.count <= Limits.maxMetadataPairs else {
            throw ValidationError(.invalidValue, field: field, "at most \(Limits.maxMetadataPairs) metadata pairs are allowed")
        }
        for (index, pair) in pairs.enumerated() {
            let at = "\(field)[\(index)]"
            try text(pair.key, max: Limits.maxMetadataKey, "a metadata key", allowEmpty: false, field: at)
            try text(pair.value, max: Limits.maxMetadataValue, "a metadata value", field: at)
            guard pair.key.hasPrefix(TokenBinding.reservedPrefix) else { continue }
            guard pair.key == TokenBinding.metadataKey else {
                throw ValidationError(
                    .invalidValue, field: at,
                    "metadata keys starting with \(TokenBinding.reservedPrefix) are reserved; the only one defined is \(TokenBinding.metadataKey)")
            }
            guard TokenBinding.parse(pair.value) != nil else {
                throw ValidationError(.invalidValue, field: at, "\(TokenBinding.metadataKey) must be a comma-separated list of 1 to 16 uids")
            }
        }
    }

    // MARK: Meters and windows

    /// The characters a meter name may use: `A-Z a-z 0-9 _ . -`. No spaces, commas, quotes or colons, so that a
    /// name needs no quoting in CSV exports, JSON lines, log keys or the CLI's `METER:WINDOW:LIMIT`, and so that a
    /// rule's name (`quota:METER:WINDOW:POOL`) splits back into its parts.
    public static let meterNameCharacters = "A-Z a-z 0-9 _ . -"

    /// A meter name: 1–64 bytes of `meterNameCharacters`.
    public static func meterName(_ value: String, field: String = "") throws(ValidationError) {
        guard isValidMeterNameLength(value), everyByte(of: value, isMeterNameByte) else {
            throw ValidationError(
                .invalidValue, field: field,
                "\(quotedPlain(value)) is not a meter name: use 1–\(Limits.maxMeterName) characters of \(meterNameCharacters)")
        }
    }

    /// The length part of the meter-name rule alone, for the CHECK path, which enforces only the length (a CHECK
    /// with an unknown meter consumes nothing but the rate limits, and the hot path must stay cheap): `utf8.count`
    /// of a native string is O(1).
    @inlinable
    public static func isValidMeterNameLength(_ value: String) -> Bool {
        let count = value.utf8.count
        return count >= 1 && count <= Limits.maxMeterName
    }

    @inlinable
    public static func isMeterNameByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    /// What a window may be, for messages and `invalid_name` lists.
    public static let windowNames = ["hour", "day", "month", "rolling:SECONDS (SECONDS \(Limits.minRollingSeconds)–\(Limits.maxRollingSeconds))"]

    /// Reads a window by name: `hour`, `day`, `month` or `rolling:SECONDS` with SECONDS 60–34560000 (400 days).
    public static func window(named text: String, field: String = "") throws(ValidationError) -> QuotaWindow {
        if let period = Period(name: text) { return .calendar(period) }
        if text.hasPrefix("rolling:"), let seconds = UInt32(text.dropFirst(8)) {
            let window = QuotaWindow.rolling(seconds: seconds)
            try self.window(window, field: field)
            return window
        }
        throw windowError(text, field: field)
    }

    /// A window decoded from the wire or built in code: a rolling one must be 60 s–400 days.
    public static func window(_ window: QuotaWindow, field: String = "") throws(ValidationError) {
        guard case .rolling(let seconds) = window else { return }
        guard (Limits.minRollingSeconds...Limits.maxRollingSeconds).contains(seconds) else { throw windowError(window.name, field: field) }
    }

    static func windowError(_ text: String, field: String) -> ValidationError {
        ValidationError(
            .invalidName, field: field,
            "\(ValidationError.quoted(text)) is not a window: use hour, day, month or rolling:SECONDS with SECONDS from \(Limits.minRollingSeconds) (one minute) to \(Limits.maxRollingSeconds) (400 days)")
    }

    /// A value of a closed set (pool, period, overage, status) read by its name.
    public static func named<T>(_ text: String, _ parse: (String) -> T?, allowed: [String], field: String = "") throws(ValidationError) -> T {
        guard let value = parse(text) else {
            throw ValidationError(.invalidName, field: field, "\(ValidationError.quoted(text)) is not one of \(allowed.joined(separator: ", "))")
        }
        return value
    }

    // MARK: Plans

    /// Every rule of a plan: its id; entitlements and features; at most 64 quotas, rate limits and concurrency
    /// limits each; each quota's meter name and window; one quota per (meter, window, pool); rate limits of
    /// 1–1000000 per second, one per pool; concurrency limits of at least 1, one per pool. Counts and lifetimes
    /// are unsigned 32-bit numbers by type (0: none). Fields are relative to the plan (`quotas[1].window`).
    public static func plan(_ plan: Plan) throws(ValidationError) {
        try identifier(plan.id, "the plan id", field: "id")
        try scopes(plan.entitlements, "entitlements", field: "entitlements")
        try scopes(plan.features, "features", field: "features")
        for (count, key) in [(plan.quotas.count, "quotas"), (plan.rateLimits.count, "rate_limits"), (plan.concurrency.count, "concurrency")]
        where count > Limits.maxQuotas {
            throw ValidationError(.invalidValue, field: key, "at most \(Limits.maxQuotas) \(key.replacingUnderscores) are allowed in a plan")
        }
        var seen = Set<String>()
        for (index, quota) in plan.quotas.enumerated() {
            try meterName(quota.meter, field: "quotas[\(index)].meter")
            try window(quota.window, field: "quotas[\(index)].window")
            guard seen.insert(quota.name).inserted else {
                throw ValidationError(.invalidValue, field: "quotas[\(index)]", "\(quota.name) is given twice")
            }
        }
        for (index, rule) in plan.rateLimits.enumerated() {
            try ratePerSecond(rule.ratePerSecond, field: "rate_limits[\(index)].rate_per_second")
            guard seen.insert(rule.name).inserted else {
                throw ValidationError(.invalidValue, field: "rate_limits[\(index)].pool", "a rate limit at \(rule.pool.name) level is given twice")
            }
        }
        for (index, rule) in plan.concurrency.enumerated() {
            guard rule.max >= 1 else {
                throw ValidationError(.outOfRange, field: "concurrency[\(index)].max", "0 is out of range (a concurrency limit must be at least 1)")
            }
            guard seen.insert(rule.name).inserted else {
                throw ValidationError(.invalidValue, field: "concurrency[\(index)].pool", "a concurrency limit at \(rule.pool.name) level is given twice")
            }
        }
    }

    /// 1–1000000 checks per second (a burst of 0 is stored as 1).
    public static func ratePerSecond(_ value: UInt32, field: String = "") throws(ValidationError) {
        guard (1...Limits.maxRatePerSecond).contains(value) else {
            throw ValidationError(.outOfRange, field: field, "\(value) is out of range (a rate limit must be 1–\(Limits.maxRatePerSecond) per second)")
        }
    }

    // MARK: Licenses and organisations

    /// A license as LICENSE_PUT, `license set` and `apply` give it. Whether its plan and organisation exist is the
    /// caller's to check (the engine knows the plans; see `organisationExists`).
    public static func license(_ spec: LicenseSpec) throws(ValidationError) {
        try identifier(spec.id, "the license id", field: "id")
        try text(spec.customer, max: Limits.maxCustomer, "the customer", field: "customer")
        if !spec.org.isEmpty { try identifier(spec.org, "the organisation id", field: "org") }
        try text(spec.project, max: Limits.maxProject, "the project", field: "project")
        try identifier(spec.plan, "the plan id", field: "plan")
        guard (1...28).contains(spec.billingAnchorDay) else {
            throw ValidationError(.outOfRange, field: "billing_anchor_day", "\(spec.billingAnchorDay) is out of range (billing_anchor_day must be 1–28)")
        }
        guard spec.validUntil == 0 || spec.validUntil > spec.validFrom else {
            throw ValidationError(.invalidValue, field: "valid_until", "valid_until must be later than valid_from")
        }
    }

    /// The verdict on a license naming an organisation that does not exist, shared by `tollgate apply` and
    /// `tollgate license set` (the wire's LICENSE_PUT accepts it, so that a subscription system may sync a license
    /// before its organisation; org-level pools are then counted under that id).
    public static func unknownOrganisation(_ org: String, field: String = "org") -> ValidationError {
        ValidationError(.unknownOrg, field: field, "no organisation \(ValidationError.quoted(org)) exists (create it first: tollgate org set \(org), or an orgs entry in the file)")
    }

    public static func organisation(_ spec: OrgSpec) throws(ValidationError) {
        try identifier(spec.id, "the organisation id", field: "id")
        try text(spec.name, max: Limits.maxCustomer, "the name", field: "name")
    }

    // MARK: Deletion

    /// How many of the users an `in_use` refusal names by id; the others are counted.
    public static let maxUsersNamed = 5

    /// Whether a license, plan or organisation may be deleted: only when nothing uses it, so that a deletion never
    /// leaves a reference that changes what a check answers. What *uses* each kind (the caller, which knows the
    /// state, collects `users`, their ids in ascending order):
    ///
    /// - a **plan**: every license on it, whatever its status (a canceled license put back to active must find its
    ///   plan; a license on a missing plan answers `license_inactive`);
    /// - an **organisation**: every license that names it (deleting it would silently lift a suspension, and its
    ///   licenses' org-level pools would then count under an id nobody declares);
    /// - a **license**: every live token of it: not revoked and not expired (those would start answering
    ///   `license_inactive` instead of being revoked on purpose). Revoked and expired tokens do not hold a license;
    ///   they stay until the sweep forgets them, and its usage stays in the ledger for billing.
    ///
    /// The refusal names the first `maxUsersNamed` users and counts the rest, so the operator knows what to move or
    /// revoke first.
    public static func deletion(of kind: PolicyObjectKind, _ id: String, usedBy users: [String]) throws(ValidationError) {
        guard !users.isEmpty else { return }
        let named = users.prefix(maxUsersNamed).joined(separator: ", ") + (users.count > maxUsersNamed ? ", …" : "")
        let plural = users.count == 1 ? "" : "s"
        let what: String
        switch kind {
        case .plan:
            what = "\(users.count) license\(plural) \(users.count == 1 ? "is" : "are") on it (\(named)); move \(users.count == 1 ? "it" : "them") to another plan or delete \(users.count == 1 ? "it" : "them") first"
        case .org:
            what = "\(users.count) license\(plural) name\(users.count == 1 ? "s" : "") it (\(named)); move \(users.count == 1 ? "it" : "them") to another organisation or delete \(users.count == 1 ? "it" : "them") first"
        case .license:
            what = "it holds \(users.count) live token\(plural) (\(named)); revoke \(users.count == 1 ? "it" : "them") first (tollgate revoke --license \(id))"
        }
        throw ValidationError(.inUse, "\(kind.name) \(ValidationError.quoted(id)) is in use: \(what)")
    }

    // MARK: HTTP routes

    /// An HTTP method as a route names it: `*` (any), or 1–20 upper-case letters (`GET`, `PROPFIND`). Upper case
    /// only, because methods are case-sensitive and every proxy sends them in upper case: a rule for `get` would
    /// never match.
    public static func httpMethod(_ value: String, field: String = "") throws(ValidationError) {
        guard value == "*" || ((1...20).contains(value.utf8.count) && value.utf8.allSatisfy({ $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") })) else {
            throw ValidationError(.invalidValue, field: field, "\(quotedPlain(value)) is not a method: use * or an upper-case method such as GET")
        }
    }

    /// A route's path pattern (syntax in `RouteRule`'s documentation), parsed.
    public static func pathPattern(_ value: String, field: String = "") throws(ValidationError) -> PathPattern {
        switch PathPattern.parse(value) {
        case .success(let pattern): return pattern
        case .failure(let problem): throw ValidationError(.invalidValue, field: field, "path pattern \(quotedPlain(value)) \(problem.message)")
        }
    }

    /// Every rule of one route: its method, its scopes and features (as a token's), its meter name; a cost needs a
    /// meter (a cost charged to no meter would be silently nothing). Fields are relative to the route.
    public static func route(_ rule: RouteRule) throws(ValidationError) {
        try httpMethod(rule.method, field: "method")
        try scopes(rule.scopes, "scopes", field: "scopes")
        try scopes(rule.features, "features", field: "features")
        if rule.meter.isEmpty {
            guard rule.cost == 0 else { throw ValidationError(.invalidValue, field: "cost", "a cost needs a meter to charge") }
        } else {
            try meterName(rule.meter, field: "meter")
        }
    }

    /// A route table: at most `Limits.maxRoutes` rules, each valid. Two rules with the same method and pattern are
    /// refused, since the second could never match.
    public static func routes(_ table: RouteTable, field: String = "routes") throws(ValidationError) {
        guard table.rules.count <= Limits.maxRoutes else {
            throw ValidationError(.invalidValue, field: field, "at most \(Limits.maxRoutes) routes are allowed")
        }
        var seen = Set<String>()
        for (index, rule) in table.rules.enumerated() {
            do throws(ValidationError) { try route(rule) } catch { throw error.at("\(field)[\(index)]") }
            guard seen.insert("\(rule.method) \(rule.path.description)").inserted else {
                throw ValidationError(.invalidValue, field: "\(field)[\(index)]", "\(rule.method) \(rule.path.description) is given twice; the second could never match")
            }
        }
    }

    /// `HOST:PORT` for the HTTP listener's optional TCP port: HOST must be a loopback address (`127.0.0.0/8` or
    /// `[::1]`; names are refused, since `localhost` may resolve elsewhere), PORT 1–65535. A forward-auth answer says
    /// who a token belongs to, so it is never offered beyond the host.
    /// The Stripe webhook's request path: an absolute path of 2–256 bytes of unreserved URL characters and `/`,
    /// not the forward-auth endpoint's (`/v1/forward-auth`).
    public static func webhookPath(_ value: String, field: String = "") throws(ValidationError) {
        let allowed = value.utf8.allSatisfy { isIdentifierByte($0) && $0 != UInt8(ascii: ":") || $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "~") }
        guard value.hasPrefix("/"), (2...256).contains(value.utf8.count), allowed, !value.contains("//") else {
            throw ValidationError(.invalidValue, field: field, "\(ValidationError.quoted(value)) is not a webhook path (an absolute path of 2–256 characters of A-Z a-z 0-9 _ . - ~ /)")
        }
        guard value != "/v1/forward-auth" else {
            throw ValidationError(.invalidValue, field: field, "the webhook path must differ from the forward-auth endpoint /v1/forward-auth")
        }
    }

    /// A Stripe object id used as a mapping key (`price_…`, `prod_…`, `cus_…`) or a price's lookup key: 1–255
    /// printable ASCII bytes without spaces.
    public static func billingKey(_ value: String, field: String = "") throws(ValidationError) {
        guard (1...255).contains(value.utf8.count), value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw ValidationError(.invalidValue, field: field, "\(ValidationError.quoted(value)) must be 1–255 printable ASCII characters without spaces")
        }
    }

    /// A Stripe webhook signing secret as read from its file or credential: 8–1024 bytes, none of them a control
    /// character or a space (the message never repeats it).
    public static func signingSecret(_ bytes: [UInt8], source: String, field: String = "") throws(ValidationError) {
        guard (8...1024).contains(bytes.count), bytes.allSatisfy({ $0 > 0x20 && $0 != 0x7F }) else {
            throw ValidationError(.invalidValue, field: field, "the signing secret in \(source) must be one line of 8–1024 printable characters (a whsec_… string)")
        }
    }

    public static func loopbackEndpoint(_ value: String, field: String = "", allowPortZero: Bool = false) throws(ValidationError) -> (host: String, port: Int) {
        let host: Substring, portText: Substring
        if value.hasPrefix("[") {
            guard let close = value.firstIndex(of: "]"), value[value.index(after: close)...].hasPrefix(":") else {
                throw loopbackError(value, field: field)
            }
            host = value[value.index(after: value.startIndex)..<close]
            portText = value[value.index(close, offsetBy: 2)...]
        } else {
            guard let colon = value.lastIndex(of: ":") else { throw loopbackError(value, field: field) }
            host = value[..<colon]
            portText = value[value.index(after: colon)...]
        }
        guard let port = Int(portText), ((allowPortZero ? 0 : 1)...65535).contains(port) else {
            throw ValidationError(.outOfRange, field: field, "the port of \(quotedPlain(value)) must be 1–65535")
        }
        if host == "::1" { return (String(host), port) }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4, octets.allSatisfy({ $0.count <= 3 && UInt8($0) != nil }), octets[0] == "127" else {
            throw loopbackError(value, field: field)
        }
        return (String(host), port)
    }

    static func loopbackError(_ value: String, field: String) -> ValidationError {
        ValidationError(.invalidValue, field: field, "\(quotedPlain(value)) is not a loopback address: use 127.0.0.1:PORT or [::1]:PORT (the HTTP listener is never offered beyond the host)")
    }

    /// Quoted without the secret check for values that cannot be secrets by their own rule's failure alone.
    static func quotedPlain(_ value: String) -> String { ValidationError.quoted(value) }
}

/// Binding a token to the processes that may present it: metadata `tollgate.bind_uids` = `1000,1001` makes the
/// token usable only by callers whose uid (from the socket's peer credentials) is listed, so a secret leaked to
/// another process on the host is useless there.
public enum TokenBinding {
    public static let metadataKey = "tollgate.bind_uids"
    /// Metadata keys with this prefix are reserved for the daemon.
    public static let reservedPrefix = "tollgate."

    /// The uids of a binding value, or nil when it is not a comma-separated list of 1–16 uids.
    public static func parse(_ value: String) -> [UInt32]? {
        let parts = value.split(separator: ",", omittingEmptySubsequences: false)
        guard (1...16).contains(parts.count) else { return nil }
        let uids = parts.compactMap { UInt32(String($0.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())) }
        return uids.count == parts.count ? uids : nil
    }
}

extension String {
    fileprivate var replacingUnderscores: String { String(map { $0 == "_" ? " " : $0 }) }
}
