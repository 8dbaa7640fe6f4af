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
/// roles:                                                             # identity roles (the layout of identity.roles)
///   - name: ci
///     issuer: https://token.actions.githubusercontent.com
///     bound_audiences: [https://tollgate.example.com]
///     bound_claims: {repository: "acme/*"}
///     bound_claims_type: glob
///     license_claim: repository_owner
///     license_mapping: {acme: lic_acme_prod}
///     scopes: [read]
///     max_ttl_s: 900
/// ```
///
/// An `http:` section (`routes:` and `default:`, the layout of the daemon configuration's `http.routes`) is checked
/// with the same rules, and reported, not applied (see `ProvisioningDocument.http`).
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
            try reader.allowOnly(["plans", "orgs", "licenses", "roles", "http"], orKeysWhere: { $0.hasPrefix("x-") })
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
        document.managesRoles = reader.has("roles")
        for var roleReader in attempt({ () throws(ProvisioningError) in try reader.mappings("roles") }) ?? [] {
            guard let role = attempt({ () throws(ProvisioningError) in try readRole(&roleReader) }) else { continue }
            if attempt({ () throws(ProvisioningError) in try firstPaths.register(role.name, kind: "role", at: roleReader.child("name")) }) != nil {
                document.roles.append(role)
            }
        }
        if let httpReader = attempt({ () throws(ProvisioningError) in try reader.mapping("http") }) ?? nil {
            document.http = attempt({ () throws(ProvisioningError) in try readRoutes(httpReader) })
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

    /// A plan is read by the one plan document model (`PlanDocument`, shared with the daemon's configuration):
    /// the YAML mapping becomes a `DocumentNode` with YAML's own typing, and every value rule is `Validation`'s.
    static func readPlan(_ reader: inout MappingReader) throws(ProvisioningError) -> Plan {
        let node = try YAMLValue.document(reader.node, reader.path)
        do throws(ValidationError) {
            var document = try DocumentReader(node, path: reader.path)
            return try PlanDocument.read(&document)
        } catch {
            throw ProvisioningError(error)
        }
    }

    /// A role is read by the one role document model (`RoleDocument`, shared with the daemon configuration's
    /// `identity.roles`), every value rule `Validation.identityRole`'s.
    static func readRole(_ reader: inout MappingReader) throws(ProvisioningError) -> IdentityRole {
        let node = try YAMLValue.document(reader.node, reader.path)
        do throws(ValidationError) {
            var document = try DocumentReader(node, path: reader.path)
            return try RoleDocument.read(&document)
        } catch {
            throw ProvisioningError(error)
        }
    }

    /// The `http:` section, by the one route document model the daemon's configuration uses.
    static func readRoutes(_ reader: MappingReader) throws(ProvisioningError) -> RouteTable {
        let node = try YAMLValue.document(reader.node, reader.path)
        do throws(ValidationError) {
            var document = try DocumentReader(node, path: reader.path)
            try document.allowOnly(["routes", "default"])
            let table = try RouteDocument.readTable(&document)
            try document.finish()
            return table
        } catch {
            throw ProvisioningError(error)
        }
    }

    static func readOrg(_ reader: inout MappingReader) throws(ProvisioningError) -> OrgSpec {
        try reader.allowOnly(["id", "name", "suspended"])
        let id = try reader.requiredString("id")
        try check(reader.path) { () throws(ValidationError) in try Validation.identifier(id, "the organisation id", field: "id") }
        let name = try reader.string("name") ?? ""
        let suspended = try reader.bool("suspended") ?? false
        try reader.finish()
        let org = OrgSpec(id: id, name: name, suspended: suspended)
        try check(reader.path) { () throws(ValidationError) in try Validation.organisation(org) }
        return org
    }

    static func readLicense(_ reader: inout MappingReader) throws(ProvisioningError) -> LicenseSpec {
        try reader.allowOnly([
            "id", "customer", "org", "project", "plan", "status", "valid_from", "valid_until", "trial_ends_at", "billing_anchor_day",
        ])
        let id = try reader.requiredString("id")
        try check(reader.path) { () throws(ValidationError) in try Validation.identifier(id, "the license id", field: "id") }
        let customer = try reader.string("customer") ?? ""
        try check(reader.path) { () throws(ValidationError) in try Validation.text(customer, max: Limits.maxCustomer, "the customer", field: "customer") }
        let org = try reader.string("org") ?? ""
        if !org.isEmpty { try check(reader.path) { () throws(ValidationError) in try Validation.identifier(org, "the organisation id", field: "org") } }
        let project = try reader.string("project") ?? ""
        try check(reader.path) { () throws(ValidationError) in try Validation.text(project, max: Limits.maxProject, "the project", field: "project") }
        let plan = try reader.requiredString("plan")
        try check(reader.path) { () throws(ValidationError) in try Validation.identifier(plan, "the plan id", field: "plan") }
        let status = try required(name(&reader, "status", LicenseStatus.self), reader.child("status"))
        let validFrom = try reader.timestamp("valid_from") ?? 0
        let validUntil = try reader.timestamp("valid_until") ?? 0
        let trialEndsAt = try reader.timestamp("trial_ends_at") ?? 0
        let anchorDay = try reader.integer("billing_anchor_day", in: UInt8(1)...28) ?? 1
        try reader.finish()
        let license = LicenseSpec(
            id: id, customer: customer, plan: plan, status: status, validUntil: validUntil, validFrom: validFrom,
            trialEndsAt: trialEndsAt, org: org, project: project, billingAnchorDay: anchorDay)
        try check(reader.path) { () throws(ValidationError) in try Validation.license(license) }
        return license
    }

    /// Runs a rule of the validation source and reports its error at `path` in the file.
    static func check(_ path: String, _ rule: () throws(ValidationError) -> Void) throws(ProvisioningError) {
        do throws(ValidationError) { try rule() } catch { throw ProvisioningError(error.at(path)) }
    }

    // MARK: Field rules

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
