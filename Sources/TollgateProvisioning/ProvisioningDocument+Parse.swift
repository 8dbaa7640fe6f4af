import TollgateModel
import Yams

/// Reading a provisioning file. The layout, with snake_case keys as in the daemon's JSON configuration:
///
/// ```yaml
/// plans:
///   - id: pro
///     entitlements: ["*"]                 # scopes the plan grants
///     features: [exports, sso]
///     quotas:
///       - {meter: api_calls, window: month, limit: 1000000}          # pool: license by default
///       - {meter: api_calls, window: "rolling:60", limit: 2000, pool: token}
///       - {meter: exports, period: day, limit: 100}                  # `period`, as in the daemon configuration
///     rate_limits: [{pool: license, rate_per_second: 100, burst: 200}]
///     concurrency: [{pool: token, max: 8}]
///     credits: {pool: license, included: 50000, period: month}
///     overage: allow_and_record                                      # hard_stop by default
///     max_token_lifetime_seconds: 7776000
///     max_active_tokens: 100
///     past_due_grace_seconds: 604800
/// orgs:
///   - {id: acme, name: "Acme Corp", suspended: false}
/// licenses:
///   - {id: lic_acme_prod, customer: "Acme Corp", org: acme, project: checkout, plan: pro, status: active,
///      valid_from: 2026-01-01T00:00:00Z, valid_until: 1798761600000, trial_ends_at: ~, billing_anchor_day: 15}
/// ```
///
/// Top-level keys starting with `x-` are ignored (as in Compose files), so that anchors shared by several plans
/// have somewhere to live: `x-base: &base {...}` then `<<: *base`.
extension ProvisioningDocument {
    /// Parses and checks a whole file. Plans and organisations a license names must be in the file or among the
    /// existing ids given (those on the daemon), so that a typo is caught before anything is applied. Throws the
    /// first error; `parseReportingAll` returns every one.
    public static func parse(
        yaml: String, existingPlanIDs: Set<String> = [], existingOrgIDs: Set<String> = []
    ) throws(ProvisioningError) -> ProvisioningDocument {
        let (document, errors) = parseReportingAll(yaml: yaml, existingPlanIDs: existingPlanIDs, existingOrgIDs: existingOrgIDs)
        if let first = errors.first { throw first }
        return document
    }

    /// Parses a whole file and returns every error it finds, in file order, so that an operator fixes a file in one
    /// round instead of one error per run: one per object (a plan, an organisation or a license is read up to its
    /// first error, then the next object is read), then every license that names a plan or organisation that exists
    /// nowhere. A file that is not YAML, or whose top level is wrong, is one error. The document is complete only
    /// when the list is empty.
    public static func parseReportingAll(
        yaml: String, existingPlanIDs: Set<String> = [], existingOrgIDs: Set<String> = []
    ) -> (document: ProvisioningDocument, errors: [ProvisioningError]) {
        var errors: [ProvisioningError] = []
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            return (ProvisioningDocument(), [Self.syntaxError(error)])
        }
        guard let root, !YAMLValue.isNull(root) else { return (ProvisioningDocument(), []) }

        var reader: MappingReader
        do throws(ProvisioningError) {
            reader = try MappingReader(root, path: "")
            try reader.allowOnly(["plans", "orgs", "licenses"], orKeysWhere: { $0.hasPrefix("x-") })
        } catch {
            return (ProvisioningDocument(), [error])
        }
        /// Each object's errors are recorded and the next object read.
        func attempt<T>(_ body: () throws(ProvisioningError) -> T) -> T? {
            do throws(ProvisioningError) {
                return try body()
            } catch {
                errors.append(error)
                return nil
            }
        }
        var document = ProvisioningDocument()
        var firstPaths = IDRegistry()
        // Ids of objects that are declared but invalid: a license naming one is not reported a second time.
        var invalidIDs = Set<String>()
        for var planReader in attempt({ () throws(ProvisioningError) in try reader.mappings("plans") }) ?? [] {
            guard let plan = attempt({ () throws(ProvisioningError) in try readPlan(&planReader) }) else {
                if let id = try? planReader.string("id") { invalidIDs.insert(id) }
                continue
            }
            if attempt({ () throws(ProvisioningError) in try firstPaths.register(plan.id, kind: "plan", at: planReader.child("id")) }) != nil {
                document.plans.append(plan)
            }
        }
        for var orgReader in attempt({ () throws(ProvisioningError) in try reader.mappings("orgs") }) ?? [] {
            guard let org = attempt({ () throws(ProvisioningError) in try readOrg(&orgReader) }) else {
                if let id = try? orgReader.string("id") { invalidIDs.insert(id) }
                continue
            }
            if attempt({ () throws(ProvisioningError) in try firstPaths.register(org.id, kind: "org", at: orgReader.child("id")) }) != nil {
                document.orgs.append(org)
            }
        }
        var licensePaths: [String] = []
        for var licenseReader in attempt({ () throws(ProvisioningError) in try reader.mappings("licenses") }) ?? [] {
            guard let license = attempt({ () throws(ProvisioningError) in try readLicense(&licenseReader) }) else { continue }
            if attempt({ () throws(ProvisioningError) in try firstPaths.register(license.id, kind: "license", at: licenseReader.child("id")) }) != nil {
                document.licenses.append(license)
                licensePaths.append(licenseReader.path)
            }
        }
        for key in reader.unreadKeys where key.hasPrefix("x-") { _ = reader.value(key) }
        _ = attempt({ () throws(ProvisioningError) in try reader.finish() })

        let planIDs = existingPlanIDs.union(document.plans.map(\.id))
        let orgIDs = existingOrgIDs.union(document.orgs.map(\.id))
        for (license, path) in zip(document.licenses, licensePaths) {
            if !planIDs.contains(license.plan) && !invalidIDs.contains(license.plan) {
                errors.append(.unknownPlan(path: YAMLValue.child(path, "plan"), id: license.plan))
            }
            if !license.org.isEmpty && !orgIDs.contains(license.org) && !invalidIDs.contains(license.org) {
                errors.append(.unknownOrg(path: YAMLValue.child(path, "org"), id: license.org))
            }
        }
        return (document, errors)
    }

    private static func syntaxError(_ error: Error) -> ProvisioningError {
        guard let error = error as? YamlError else { return .invalidYAML(line: 0, column: 0, problem: "\(error)") }
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let detail = context.map { "\(problem) (\($0.text) at line \($0.mark.line), column \($0.mark.column))" } ?? problem
            return .invalidYAML(line: mark.line, column: mark.column, problem: detail)
        case .duplicatedKeysInMapping(let duplicates, let context):
            return .duplicateKey(key: duplicates.first ?? "?", line: context.mark.line, column: context.mark.column)
        case .reader(let problem, _, _, _):
            return .invalidYAML(line: 0, column: 0, problem: problem)
        default:
            return .invalidYAML(line: 0, column: 0, problem: "\(error)")
        }
    }

    // MARK: Objects

    static func readPlan(_ reader: inout MappingReader) throws(ProvisioningError) -> Plan {
        try reader.allowOnly([
            "id", "entitlements", "features", "quotas", "rate_limits", "concurrency", "credits", "overage",
            "max_token_lifetime_seconds", "max_active_tokens", "past_due_grace_seconds",
        ])
        let id = try identifier(reader.requiredString("id"), reader.child("id"))
        var plan = Plan(id: id, entitlements: try scopes(&reader, "entitlements"))
        plan.features = try scopes(&reader, "features")

        var quotaPaths: [String: String] = [:]
        let quotaReaders = try reader.mappings("quotas")
        guard quotaReaders.count <= Limits.maxQuotas else {
            throw .invalidValue(path: reader.child("quotas"), reason: "at most \(Limits.maxQuotas) quotas are allowed")
        }
        for var quotaReader in quotaReaders {
            let quota = try readQuota(&quotaReader)
            if let first = quotaPaths.updateValue(quotaReader.path, forKey: quota.name) {
                throw .invalidValue(path: quotaReader.path, reason: "\(quota.name) is already given at \(first)")
            }
            plan.quotas.append(quota)
        }
        var ratePaths: [PoolLevel: String] = [:]
        for var rateReader in try reader.mappings("rate_limits") {
            let rule = try readRate(&rateReader)
            if let first = ratePaths.updateValue(rateReader.path, forKey: rule.pool) {
                throw .invalidValue(path: rateReader.child("pool"), reason: "a rate limit at \(rule.pool.name) level is already given at \(first)")
            }
            plan.rateLimits.append(rule)
        }
        var concurrencyPaths: [PoolLevel: String] = [:]
        for var concurrencyReader in try reader.mappings("concurrency") {
            let rule = try readConcurrency(&concurrencyReader)
            if let first = concurrencyPaths.updateValue(concurrencyReader.path, forKey: rule.pool) {
                throw .invalidValue(
                    path: concurrencyReader.child("pool"), reason: "a concurrency limit at \(rule.pool.name) level is already given at \(first)")
            }
            plan.concurrency.append(rule)
        }
        if var creditsReader = try reader.mapping("credits") {
            plan.credits = try readCredits(&creditsReader)
        }
        plan.overage = try name(&reader, "overage", OveragePolicy.self) ?? .hardStop
        plan.maxTokenLifetimeSeconds = try reader.integer("max_token_lifetime_seconds", in: 0...UInt32.max) ?? 0
        plan.maxActiveTokens = try reader.integer("max_active_tokens", in: 0...UInt32.max) ?? 0
        plan.pastDueGraceSeconds = try reader.integer("past_due_grace_seconds", in: 0...UInt32.max) ?? 0
        try reader.finish()
        return plan
    }

    /// `window` takes any window (`month`, `rolling:60`); `period` is the daemon configuration's name for calendar
    /// windows and is accepted so a plan can be moved from one file to the other. Exactly one of them.
    static func readQuota(_ reader: inout MappingReader) throws(ProvisioningError) -> QuotaRule {
        try reader.allowOnly(["meter", "window", "period", "limit", "pool"])
        let meter = try reader.requiredString("meter")
        guard !meter.isEmpty, meter.utf8.count <= Limits.maxMeterName else {
            throw .invalidValue(path: reader.child("meter"), reason: "a meter name must be 1–\(Limits.maxMeterName) bytes")
        }
        let window: QuotaWindow
        switch (reader.has("window"), reader.has("period")) {
        case (true, true):
            throw .invalidValue(path: reader.child("period"), reason: "give window or period, not both")
        case (false, false):
            throw .missingKey(path: reader.child("window"))
        case (true, false):
            let text = try reader.requiredString("window")
            guard let parsed = QuotaWindow(name: text) else {
                throw .invalidName(path: reader.child("window"), value: text, allowed: ["hour", "day", "month", "rolling:SECONDS"])
            }
            window = parsed
        case (false, true):
            window = .calendar(try name(&reader, "period", Period.self)!)
        }
        _ = reader.value("window")
        _ = reader.value("period")
        let limit = try required(reader.integer("limit", in: 0...UInt64.max), reader.child("limit"))
        let pool = try name(&reader, "pool", PoolLevel.self) ?? .license
        try reader.finish()
        return QuotaRule(meter: meter, window: window, limit: limit, pool: pool)
    }

    /// `burst` defaults to 1, as the engine stores a rate limit given without one, so that the diff after an apply
    /// is empty.
    static func readRate(_ reader: inout MappingReader) throws(ProvisioningError) -> RateRule {
        try reader.allowOnly(["pool", "rate_per_second", "burst"])
        let pool = try name(&reader, "pool", PoolLevel.self) ?? .license
        let rate = try required(reader.integer("rate_per_second", in: 1...Limits.maxRatePerSecond), reader.child("rate_per_second"))
        let burst = try reader.integer("burst", in: 1...UInt32.max) ?? 1
        try reader.finish()
        return RateRule(pool: pool, ratePerSecond: rate, burst: burst)
    }

    static func readConcurrency(_ reader: inout MappingReader) throws(ProvisioningError) -> ConcurrencyRule {
        try reader.allowOnly(["pool", "max"])
        let pool = try name(&reader, "pool", PoolLevel.self) ?? .license
        let max = try required(reader.integer("max", in: 1...UInt32.max), reader.child("max"))
        try reader.finish()
        return ConcurrencyRule(pool: pool, max: max)
    }

    static func readCredits(_ reader: inout MappingReader) throws(ProvisioningError) -> CreditPolicy {
        try reader.allowOnly(["pool", "included", "period"])
        let pool = try name(&reader, "pool", PoolLevel.self) ?? .license
        let included = try required(reader.integer("included", in: 0...UInt64.max), reader.child("included"))
        let period = try name(&reader, "period", Period.self) ?? .month
        try reader.finish()
        return CreditPolicy(pool: pool, included: included, period: period)
    }

    static func readOrg(_ reader: inout MappingReader) throws(ProvisioningError) -> OrgSpec {
        try reader.allowOnly(["id", "name", "suspended"])
        let id = try identifier(reader.requiredString("id"), reader.child("id"))
        let name = try text(reader.string("name") ?? "", reader.child("name"))
        let suspended = try reader.bool("suspended") ?? false
        try reader.finish()
        return OrgSpec(id: id, name: name, suspended: suspended)
    }

    static func readLicense(_ reader: inout MappingReader) throws(ProvisioningError) -> LicenseSpec {
        try reader.allowOnly([
            "id", "customer", "org", "project", "plan", "status", "valid_from", "valid_until", "trial_ends_at", "billing_anchor_day",
        ])
        let id = try identifier(reader.requiredString("id"), reader.child("id"))
        let customer = try text(reader.string("customer") ?? "", reader.child("customer"))
        let org = try reader.string("org") ?? ""
        if !org.isEmpty { _ = try identifier(org, reader.child("org")) }
        let project = try text(reader.string("project") ?? "", reader.child("project"))
        let plan = try identifier(reader.requiredString("plan"), reader.child("plan"))
        let status = try required(name(&reader, "status", LicenseStatus.self), reader.child("status"))
        let validFrom = try reader.timestamp("valid_from") ?? 0
        let validUntil = try reader.timestamp("valid_until") ?? 0
        if validFrom != 0, validUntil != 0, validUntil <= validFrom {
            throw .invalidValue(path: reader.child("valid_until"), reason: "must be after valid_from")
        }
        let trialEndsAt = try reader.timestamp("trial_ends_at") ?? 0
        let anchorDay = try reader.integer("billing_anchor_day", in: UInt8(1)...28) ?? 1
        try reader.finish()
        return LicenseSpec(
            id: id, customer: customer, plan: plan, status: status, validUntil: validUntil, validFrom: validFrom,
            trialEndsAt: trialEndsAt, org: org, project: project, billingAnchorDay: anchorDay)
    }

    // MARK: Field rules

    /// The engine's limits, repeated here so that a file breaking them is refused with a path before anything is
    /// applied (this module depends on the model only; the engine still checks on its side).
    enum Limits {
        static let maxIdentifier = 128
        static let maxScopes = 64
        static let maxScope = 128
        static let maxMeterName = 64
        static let maxText = 256
        static let maxQuotas = 64
        static let maxRatePerSecond: UInt32 = 1_000_000
    }

    /// Ids: 1–128 bytes of `[A-Za-z0-9_.:-]`, the engine's rule, so that they can be used in log keys and paths.
    static func identifier(_ value: String, _ path: String) throws(ProvisioningError) -> String {
        guard !value.isEmpty, value.utf8.count <= Limits.maxIdentifier, value.utf8.allSatisfy(isIdentifierByte) else {
            throw .invalidValue(path: path, reason: "an id must be 1–\(Limits.maxIdentifier) characters of A-Z a-z 0-9 _ . : -")
        }
        return value
    }

    private static func isIdentifierByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    static func text(_ value: String, _ path: String) throws(ProvisioningError) -> String {
        guard value.utf8.count <= Limits.maxText else { throw .invalidValue(path: path, reason: "at most \(Limits.maxText) bytes") }
        return value
    }

    /// Scopes and features: 1–128 bytes of printable ASCII without spaces, each listed once.
    static func scopes(_ reader: inout MappingReader, _ key: String) throws(ProvisioningError) -> [String] {
        let values = try reader.strings(key) ?? []
        guard values.count <= Limits.maxScopes else { throw .invalidValue(path: reader.child(key), reason: "at most \(Limits.maxScopes) are allowed") }
        var seen = Set<String>()
        for (index, value) in values.enumerated() {
            let path = "\(reader.child(key))[\(index)]"
            guard !value.isEmpty, value.utf8.count <= Limits.maxScope, value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw .invalidValue(path: path, reason: "must be 1–\(Limits.maxScope) printable ASCII characters without spaces")
            }
            guard seen.insert(value).inserted else { throw .invalidValue(path: path, reason: "\(value) is listed twice") }
        }
        return values
    }

    static func name<T: ProvisioningName>(_ reader: inout MappingReader, _ key: String, _ type: T.Type) throws(ProvisioningError) -> T? {
        guard let text = try reader.string(key) else { return nil }
        guard let value = T(name: text) else { throw .invalidName(path: reader.child(key), value: text, allowed: T.allNames) }
        return value
    }

    static func required<T>(_ value: T?, _ path: String) throws(ProvisioningError) -> T {
        guard let value else { throw .missingKey(path: path) }
        return value
    }
}

/// The model's enums that the file names by their stable names.
protocol ProvisioningName {
    init?(name: String)
    static var allNames: [String] { get }
}

extension PoolLevel: ProvisioningName {
    static var allNames: [String] { allCases.map(\.name) }
}

extension Period: ProvisioningName {
    static var allNames: [String] { allCases.map(\.name) }
}

extension OveragePolicy: ProvisioningName {
    static var allNames: [String] { allCases.map(\.name) }
}

extension LicenseStatus: ProvisioningName {
    static var allNames: [String] { allCases.map(\.name) }
}

/// Where each id was first declared, per kind, so a duplicate names both places.
struct IDRegistry {
    private var paths: [String: [String: String]] = [:]

    mutating func register(_ id: String, kind: String, at path: String) throws(ProvisioningError) {
        if let first = paths[kind, default: [:]][id] { throw .duplicateID(path: path, id: id, firstPath: first) }
        paths[kind, default: [:]][id] = path
    }
}
