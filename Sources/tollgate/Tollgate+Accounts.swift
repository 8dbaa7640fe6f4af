import ArgumentParser
import Foundation
import TollgateClient
import TollgateModel
import TollgateProtocol

// Organisations and prepaid credits.

struct OrgCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "org", abstract: "Create, change, show, list or delete an organisation.", subcommands: [Set.self, Get.self, List.self, Delete.self])

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create or replace an organisation.",
            discussion: "Suspending an organisation denies every license in it; `org set ID` without --suspended lifts a suspension.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Organisation id.") var id: String
        @Option(help: "Display name (default: keep the current name).") var name: String?
        @Flag(help: "Suspend the organisation.") var suspended = false

        func run() async throws {
            let stored = try await call(global, admin: true) { connection -> OrgSpec in
                var currentName = ""
                if name == nil {
                    do {
                        currentName = try await connection.org(id: id).name
                    } catch let error as TollgateClientError where error.code == .server(.notFound) {
                        currentName = ""
                    }
                }
                return try await connection.putOrg(OrgSpec(id: id, name: name ?? currentName, suspended: suspended))
            }
            global.show(stored.json, human: stored.human)
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show an organisation.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Organisation id.") var id: String

        func run() async throws {
            let org = try await call(global, admin: true) { try await $0.org(id: id) }
            global.show(org.json, human: org.human)
        }
    }
}

struct CreditsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "credits", abstract: "Manage prepaid credits.", subcommands: [Grant.self])

    struct Grant: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add prepaid credits to a license, a token or an organisation; prints the prepaid balance.",
            discussion: "Prepaid credits are spent after the plan's included credits and never expire.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Grant to this license's pool.") var license: String?
        @Option(help: "Grant to this token's pool (token id).") var token: String?
        @Option(help: "Grant to this organisation's pool.") var org: String?
        @Argument(help: "Credits to add (at least 1).") var amount: UInt64
        @Option(help: "Why (recorded with the grant).") var reason: String = ""

        func validate() throws {
            guard [license, token, org].compactMap({ $0 }).count == 1 else { throw ValidationError("give exactly one of --license, --token, --org") }
            guard amount > 0 else { throw ValidationError("the amount must be at least 1") }
        }

        func run() async throws {
            let (pool, owner): (PoolLevel, String) = license.map { (.license, $0) } ?? token.map { (.token, $0) } ?? (.org, org!)
            let grant = CreditsGrant(pool: pool, owner: owner, amount: amount, reason: reason)
            let balance = try await call(global, admin: true) { try await $0.grantCredits(grant) }
            if global.json {
                printJSON(["pool": pool.name, "owner": owner, "granted": amount, "prepaid_balance": balance])
            } else {
                print("prepaid balance of \(pool.name) \(owner): \(balance)")
            }
        }
    }
}
