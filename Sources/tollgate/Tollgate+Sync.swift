import ArgumentParser
import Foundation
import TollgateBilling
import TollgateClient
import TollgateEngine
import TollgateModel
import TollgateProvisioning

struct SyncCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync", abstract: "Reconcile licenses with a billing system's export.", subcommands: [Stripe.self])

    struct Stripe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "stripe",
            abstract: "Reconcile licenses with a Stripe export of subscriptions (missed webhooks).",
            discussion: """
                FILE is a JSON export of subscriptions in the shape of Stripe's list API ({"object": "list", "data": [...]}, \
                as `stripe subscriptions list` prints it), or an array of subscriptions. Each is mapped with the webhook's \
                mapping (http.stripe.mapping of the tollgated configuration given with --config) into the license it \
                gives; the differences from the licenses held are shown and, without --dry-run, put (LICENSE_PUT, \
                journaled and audited like every other).
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The export (JSON).") var file: String
        @Option(help: "The tollgated configuration whose http.stripe.mapping maps the export (or a file holding just the mapping object).")
        var config: String = "/etc/tollgate/tollgated.json"
        @Flag(name: .customLong("dry-run"), help: "Show the differences, change nothing.") var dryRun = false

        func run() async throws {
            func readJSON(_ path: String) throws -> Data {
                guard let data = FileManager.default.contents(atPath: path) else { throw CLIError(.cannotRead, "cannot read \(path)") }
                return data
            }
            let mapping: StripeMapping
            let export: StripeReconciliation.Export
            do {
                guard let configuration = try? JSONSerialization.jsonObject(with: try readJSON(config)) else {
                    throw CLIError(.invalidRequest, "\(config) is not JSON")
                }
                mapping = try StripeMapping.read(configuration: configuration)
                export = try StripeReconciliation.read([UInt8](try readJSON(file)), mapping: mapping)
            } catch let error as TollgateModel.ValidationError {
                throw CLIError(error)
            }
            if export.hasMore {
                FileHandleStderr.write("tollgate: the export says more pages follow (has_more): subscriptions not in it are not reconciled\n")
            }
            let changes = try await call(global, admin: true) { connection -> [SyncChange] in
                var changes: [SyncChange] = []
                for interpretation in export.subscriptions {
                    switch interpretation {
                    case .update(let update):
                        let current: LicenseSpec?
                        do {
                            current = try await connection.license(id: update.licenseID).spec
                        } catch let error as TollgateClientError where error.code == .server(.notFound) {
                            current = nil
                        }
                        let target = update.license(id: update.licenseID, replacing: current)
                        changes.append(SyncChange(subscription: update.subscription, license: update.licenseID, current: current, target: target, skipped: nil))
                    case .unmapped(_, _, let reason), .malformed(let reason):
                        changes.append(SyncChange(subscription: "", license: "", current: nil, target: nil, skipped: reason))
                    case .unknownType:
                        continue
                    }
                }
                if !dryRun {
                    for change in changes where change.kind == "create" || change.kind == "update" {
                        _ = try await connection.putLicense(change.target!)
                    }
                }
                return changes
            }
            let counts = Dictionary(grouping: changes, by: \.kind).mapValues(\.count)
            if global.json {
                printJSON([
                    "dry_run": dryRun,
                    "changes": changes.map { change -> [String: Any] in
                        var object: [String: Any] = ["action": change.kind]
                        if !change.license.isEmpty { object["license_id"] = change.license }
                        if !change.subscription.isEmpty { object["subscription"] = change.subscription }
                        if let reason = change.skipped { object["reason"] = reason }
                        if !change.differences.isEmpty { object["fields"] = Dictionary(uniqueKeysWithValues: change.differences.map { ($0.field, ["from": $0.from, "to": $0.to]) }) }
                        return object
                    },
                    "created": counts["create"] ?? 0, "updated": counts["update"] ?? 0, "unchanged": counts["unchanged"] ?? 0, "skipped": counts["skip"] ?? 0,
                ])
                return
            }
            for change in changes {
                switch change.kind {
                case "skip": print("skip \(change.skipped ?? "")")
                case "unchanged": print("unchanged \(change.license) (\(change.subscription))")
                default:
                    let fields = change.differences.map { $0.from.isEmpty ? "\($0.field) \($0.to)" : "\($0.field) \($0.from) -> \($0.to)" }
                    print("\(change.kind) \(change.license) (\(change.subscription)): \(fields.joined(separator: ", "))")
                }
            }
            print("\(counts["create"] ?? 0) to create, \(counts["update"] ?? 0) to update, \(counts["unchanged"] ?? 0) unchanged, \(counts["skip"] ?? 0) skipped"
                + (dryRun ? " (dry run: nothing changed)" : ""))
        }
    }
}

/// One subscription of the export against the license held.
struct SyncChange: Sendable {
    var subscription: String
    var license: String
    var current: LicenseSpec?
    var target: LicenseSpec?
    var skipped: String?

    var kind: String {
        if skipped != nil { return "skip" }
        if current == nil { return "create" }
        return current == target ? "unchanged" : "update"
    }

    /// The fields that differ, as operators read them (times in RFC 3339).
    var differences: [(field: String, from: String, to: String)] {
        guard let target else { return [] }
        func time(_ millis: UnixMillis) -> String { millis == 0 ? "none" : RFC3339.format(millis) }
        let fields: [(String, (LicenseSpec) -> String)] = [
            ("plan", { $0.plan }), ("status", { $0.status.name }), ("org", { $0.org.isEmpty ? "none" : $0.org }), ("customer", { $0.customer }),
            ("valid_until", { time($0.validUntil) }), ("trial_ends_at", { time($0.trialEndsAt) }), ("billing_anchor_day", { String($0.billingAnchorDay) }),
        ]
        return fields.compactMap { name, value in
            let to = value(target)
            guard let current else { return (name, "", to) }
            let from = value(current)
            return from == to ? nil : (name, from, to)
        }
    }
}
