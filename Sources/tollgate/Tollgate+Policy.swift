import ArgumentParser
import Foundation
import TollgateClient
import TollgateModel
import TollgateProtocol
import TollgateProvisioning

// Listing and deleting licenses, plans and organisations, and exporting them as a provisioning file.

/// The options of the `list` subcommands.
struct ListOptions: ParsableArguments {
    @Option(help: "Most objects to show (0: all).") var limit: Int = 0
}

/// Prints the objects of a listing one per line (as JSON objects with `--json`), in the daemon's id order.
func printListing<T>(_ items: [T], global: GlobalOptions, limit: Int, json: (T) -> [String: Any], line: (T) -> String) {
    for item in limit > 0 ? Array(items.prefix(limit)) : items {
        if global.json { printJSON(json(item)) } else { print(line(item)) }
    }
}

/// Prints what a deletion removed: one line, or the object as it was with `"deleted": true`.
func printDeleted(_ object: [String: Any], global: GlobalOptions, line: String) {
    if global.json {
        var object = object
        object["deleted"] = true
        printJSON(object)
    } else {
        print(line)
    }
}

extension LicenseCommand {
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List licenses in id order, optionally of one organisation or plan.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Only licenses of this organisation.") var org: String = ""
        @Option(help: "Only licenses on this plan.") var plan: String = ""
        @OptionGroup var options: ListOptions

        func run() async throws {
            let licenses = try await call(global, admin: true) { try await $0.licenses(org: org, plan: plan) }
            printListing(licenses, global: global, limit: options.limit, json: \.json) { info in
                let spec = info.spec
                return "\(spec.id)  plan=\(spec.plan)  status=\(spec.status.name)  org=\(spec.org.isEmpty ? "-" : spec.org)  active_tokens=\(info.activeTokens)"
                    + (spec.customer.isEmpty ? "" : "  customer=\(spec.customer)")
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a license that holds no live token.",
            discussion: """
                Refused (in_use) while a token of the license is neither revoked nor expired; the error names them \
                (revoke them first: tollgate revoke --license ID). Revoked and expired tokens stay until the sweep \
                forgets them; usage stays in the ledger.
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "License id.") var id: String
        @Option(help: "Who deletes (an operator's name; journaled and logged with the caller's uid).") var actor: String = ""

        func run() async throws {
            let info = try await call(global, admin: true) { try await $0.deleteLicense(id: id, actor: actor) }
            printDeleted(info.json, global: global, line: "deleted license \(info.spec.id) (plan \(info.spec.plan)\(info.spec.org.isEmpty ? "" : ", org \(info.spec.org)"))")
        }
    }
}

extension PlanCommand {
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List plans in id order (tollgate plan get ID shows one in full).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var options: ListOptions

        func run() async throws {
            let plans = try await call(global, admin: true) { try await $0.plans() }
            printListing(plans, global: global, limit: options.limit, json: \.json) { plan in
                var line = "\(plan.id)  entitlements=\(PlanCommand.names(plan.entitlements))  features=\(PlanCommand.names(plan.features))"
                line += "  quotas=\(plan.quotas.count)  rate_limits=\(plan.rateLimits.count)  concurrency=\(plan.concurrency.count)"
                if let credits = plan.credits { line += "  credits=\(credits.included)/\(credits.period.name)" }
                return line + "  overage=\(plan.overage.name)"
            }
        }
    }

    /// `a,b` or `-`: one column a shell can split.
    static func names(_ values: [String]) -> String { values.isEmpty ? "-" : values.joined(separator: ",") }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a plan that no license is on.",
            discussion: """
                Refused (in_use) while a license, whatever its status, is on the plan; the error names them. A plan the \
                daemon's configuration seeds comes back at its next start or reload.
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Plan id.") var id: String
        @Option(help: "Who deletes (an operator's name; journaled and logged with the caller's uid).") var actor: String = ""

        func run() async throws {
            let plan = try await call(global, admin: true) { try await $0.deletePlan(id: id, actor: actor) }
            printDeleted(plan.json, global: global, line: "deleted plan \(plan.id)")
        }
    }
}

extension OrgCommand {
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List organisations in id order.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var options: ListOptions

        func run() async throws {
            let orgs = try await call(global, admin: true) { try await $0.orgs() }
            printListing(orgs, global: global, limit: options.limit, json: \.json) { org in
                "\(org.id)  suspended=\(org.suspended)" + (org.name.isEmpty ? "" : "  name=\(org.name)")
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete an organisation that no license names.",
            discussion: "Refused (in_use) while a license names the organisation; the error names them.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Organisation id.") var id: String
        @Option(help: "Who deletes (an operator's name; journaled and logged with the caller's uid).") var actor: String = ""

        func run() async throws {
            let org = try await call(global, admin: true) { try await $0.deleteOrg(id: id, actor: actor) }
            printDeleted(org.json, global: global, line: "deleted organisation \(org.id)")
        }
    }
}

struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the daemon's plans, organisations, licenses and identity roles as a provisioning file for tollgate apply.",
        discussion: """
            Objects are in id order; applying the file to the same daemon changes nothing (apply --dry-run shows every \
            object unchanged), and apply --prune of it makes another daemon hold exactly this policy. Tokens, usage and \
            credits are not policy and are not exported.
            """)
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .long], help: "Write the file here (replaced atomically) instead of standard output.") var output: String?

    func run() async throws {
        let document = try await call(global, admin: true) { connection in
            ProvisioningDocument(
                plans: try await connection.plans(), orgs: try await connection.orgs(), licenses: try await connection.licenses().map(\.spec),
                roles: try await connection.roles())
        }
        // The wire lets a license name an organisation that was never put (a subscription system may sync it first);
        // a file may not (unknown_org), so such a license is exported as it is and the file says why apply refuses it.
        let warnings = document.licensesNamingMissingOrganisations.map { "warning: license \($0.id) names organisation \($0.org), which does not exist; apply refuses it until the organisation is put" }
        for warning in warnings { FileHandleStderr.write("tollgate: \(warning)\n") }
        let yaml = document.yaml(header: [
            "tollgate export: \(document.plans.count) plans, \(document.orgs.count) organisations, \(document.licenses.count) licenses, \(document.roles.count) roles.",
            "Apply with tollgate apply FILE (add --prune to also delete what this file does not name).",
        ] + warnings)
        if let output {
            do {
                try yaml.write(toFile: output, atomically: true, encoding: .utf8)
            } catch {
                throw CLIError(.cannotWrite, "cannot write \(output): \(error.localizedDescription)")
            }
        }
        if global.json {
            var object: [String: Any] = ["plans": document.plans.count, "orgs": document.orgs.count, "licenses": document.licenses.count, "roles": document.roles.count]
            if let output { object["output"] = output } else { object["yaml"] = yaml }
            printJSON(object)
        } else if let output {
            print("exported \(document.plans.count) plans, \(document.orgs.count) organisations, \(document.licenses.count) licenses to \(output)")
        } else {
            print(yaml, terminator: "")
        }
    }
}
