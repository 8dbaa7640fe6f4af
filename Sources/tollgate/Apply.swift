import ArgumentParser
import Foundation
import TollgateClient
import TollgateModel
import TollgateProtocol
import TollgateProvisioning

struct Apply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make the plans, organisations, licenses and identity roles a YAML file declares exist as declared.",
        discussion: """
            Shows the diff against the daemon first (+ create, ~ update, = unchanged with --verbose, - delete with \
            --prune), then puts organisations, then plans, then licenses, then identity roles that are new or differ. \
            Objects the file does not name are left alone, unless --prune: then they are deleted after the puts, roles \
            first, then licenses, then plans, then organisations (the daemon refuses, in_use, to delete a license with live tokens, or a plan or \
            organisation a remaining license uses, and apply stops there). Applying the same file twice changes nothing \
            the second time. Nothing is sent if the file has any error. See examples/provisioning.yaml; tollgate \
            export writes the daemon's policy in this format.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The provisioning file (YAML).") var file: String
    @Flag(name: .customLong("dry-run"), help: "Show the diff and send nothing.") var dryRun = false
    @Flag(help: "Also list the objects that are unchanged.") var verbose = false
    @Flag(help: "Delete the roles, licenses, plans and organisations on the daemon that the file does not name.") var prune = false
    @Option(help: "With --prune: who deletes (journaled and logged with the caller's uid).") var actor: String = "tollgate-apply"

    func run() async throws {
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw CLIError(.cannotRead, "cannot read \(file): \(error.localizedDescription)")
        }
        let connection = try await wrap { try await global.connect(admin: true) }
        defer { Task { await connection.close() } }

        let document = try await parse(text, connection)
        let current = try await wrap { try await fetchCurrent(document, connection) }
        let changes = ProvisioningPlan.diff(document: document, current: current, prune: prune)

        if !global.json { print(ProvisioningPlan.render(changes, verbose: verbose), terminator: "") }
        if let http = document.http, !global.json {
            print("http: \(http.rules.count) route\(http.rules.count == 1 ? "" : "s") checked (default \(http.fallback.name)); not applied: routes are tollgated's configuration (http.routes)")
        }
        var applied = 0
        if !dryRun {
            for change in changes where change.isChange {
                do {
                    try await put(change, from: document, connection)
                } catch let error as TollgateClientError {
                    var failure = CLIError(
                        .applyStopped,
                        "apply stopped at \(change.kind.rawValue) \(change.id): \(error.message); \(applied) of \(changes.filter(\.isChange).count) changes were applied")
                    // The daemon's own code (in_use for a refused deletion) for scripts, under --json.
                    failure.details = [["code": CLIError(error).code.rawValue, "message": error.message]]
                    throw failure
                }
                applied += 1
            }
        }

        let created = changes.filter { if case .create = $0 { return true } else { return false } }.count
        let updated = changes.filter { if case .update = $0 { return true } else { return false } }.count
        let deleted = changes.filter { if case .delete = $0 { return true } else { return false } }.count
        let unchanged = changes.count - created - updated - deleted
        if global.json {
            var object: [String: Any] = [
                "dry_run": dryRun, "created": created, "updated": updated, "unchanged": unchanged, "applied": applied,
                "changes": changes.map(\.json),
            ]
            if prune { object["deleted"] = deleted }
            // Only for files with an http section: the routes checked (not applied; see ProvisioningDocument.http).
            if let http = document.http { object["http_routes_checked"] = http.rules.count }
            printJSON(object)
        } else if dryRun {
            print("dry run: nothing was applied")
        } else {
            print("\(created) created, \(updated) updated, \(unchanged) unchanged" + (prune ? ", \(deleted) deleted" : ""))
        }
    }

    /// Parses the whole file and reports every error in it, not only the first. A license may name a plan or
    /// organisation that only the daemon has; the names the file does not declare are looked up once each, and the
    /// file is parsed again knowing which exist, until it parses or only errors are left.
    func parse(_ text: String, _ connection: TollgateConnection) async throws -> ProvisioningDocument {
        var plans = Swift.Set<String>()
        var orgs = Swift.Set<String>()
        var lookedUp = Swift.Set<String>()
        while true {
            let (document, errors) = ProvisioningDocument.parseReportingAll(yaml: text, existingPlanIDs: plans, existingOrgIDs: orgs)
            if errors.isEmpty { return document }
            var found = false
            for error in errors {
                switch error {
                case .unknownPlan(_, let id) where lookedUp.insert("plan:" + id).inserted:
                    if try await wrap({ try await exists { try await connection.plan(id: id) } }) {
                        plans.insert(id)
                        found = true
                    }
                case .unknownOrg(_, let id) where lookedUp.insert("org:" + id).inserted:
                    if try await wrap({ try await exists { try await connection.org(id: id) } }) {
                        orgs.insert(id)
                        found = true
                    }
                default:
                    break
                }
            }
            if found { continue }
            let lines = errors.map { "\(file): \($0.message) [\($0.code)]" }
            var failure = CLIError(
                CLIError.Code("\(errors[0].code)"), errors.count == 1 ? lines[0] : "\(errors.count) errors; nothing was applied:\n  " + lines.joined(separator: "\n  "))
            failure.details = errors.map { ["code": "\($0.code)", "message": $0.message] }
            throw failure
        }
    }

    /// The daemon's copy of every object the document names; absent ids are simply missing. With `--prune`, every
    /// object on the daemon (the listings), since those the file does not name are to be deleted.
    func fetchCurrent(_ document: ProvisioningDocument, _ connection: TollgateConnection) async throws -> CurrentObjects {
        if prune {
            return CurrentObjects(
                plans: try await connection.plans(), orgs: try await connection.orgs(), licenses: try await connection.licenses().map(\.spec),
                roles: document.managesRoles ? try await connection.roles() : [])
        }
        var current = CurrentObjects()
        for org in document.orgs { current.orgs[org.id] = try await absentIfNotFound { try await connection.org(id: org.id) } }
        for plan in document.plans { current.plans[plan.id] = try await absentIfNotFound { try await connection.plan(id: plan.id) } }
        for license in document.licenses {
            current.licenses[license.id] = try await absentIfNotFound { try await connection.license(id: license.id) }?.spec
        }
        // Roles have no GET: one listing (a daemon holds few), kept only for the names the file declares.
        if !document.roles.isEmpty {
            let named = Swift.Set(document.roles.map(\.name))
            for role in try await connection.roles() where named.contains(role.name) { current.roles[role.name] = role }
        }
        return current
    }

    func put(_ change: ProvisioningChange, from document: ProvisioningDocument, _ connection: TollgateConnection) async throws {
        if case .delete(let kind, let id) = change {
            switch kind {
            case .org: _ = try await connection.deleteOrg(id: id, actor: actor)
            case .plan: _ = try await connection.deletePlan(id: id, actor: actor)
            case .license: _ = try await connection.deleteLicense(id: id, actor: actor)
            case .role: _ = try await connection.deleteRole(name: id, actor: actor)
            }
            if verbose && !global.json { print("deleted \(kind.rawValue) \(id)") }
            return
        }
        switch change.kind {
        case .org: _ = try await connection.putOrg(document.org(change.id)!)
        case .plan: _ = try await connection.putPlan(document.plan(change.id)!)
        case .license: _ = try await connection.putLicense(document.license(change.id)!)
        case .role: _ = try await connection.putRole(document.role(change.id)!)
        }
        if verbose && !global.json { print("put \(change.kind.rawValue) \(change.id)") }
    }
}

/// nil when the daemon answers `not_found`; any other error is thrown.
func absentIfNotFound<T>(_ body: () async throws -> T) async throws -> T? {
    do {
        return try await body()
    } catch let error as TollgateClientError where error.code == .server(.notFound) {
        return nil
    }
}

func exists<T>(_ body: () async throws -> T) async throws -> Bool {
    try await absentIfNotFound(body) != nil
}

extension ProvisioningChange {
    var json: [String: Any] {
        var object: [String: Any] = ["kind": kind.rawValue, "id": id]
        switch self {
        case .create: object["action"] = "create"
        case .unchanged: object["action"] = "unchanged"
        case .delete: object["action"] = "delete"
        case .update(_, _, let fields):
            object["action"] = "update"
            object["fields"] = fields.map { ["field": $0.field, "old": $0.old, "new": $0.new] }
        }
        return object
    }
}
