import ArgumentParser
import Foundation
import TollgateClient
import TollgateModel
import TollgateProtocol

/// Options every command takes. They may also be written before the command name
/// (`tollgate --socket PATH check ...`); `main` moves them after it.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "Path of the api socket.")
    var socket: String = "./state/tollgate.sock"

    @Option(name: .customLong("admin-socket"), help: "Path of the admin socket.")
    var adminSocket: String = "./state/tollgate-admin.sock"

    @Flag(name: .long, help: "Print one JSON object per answer.")
    var json = false

    /// Prints one answer: as one JSON object with `--json`, else as `field: value` lines.
    func show(_ object: [String: Any]) {
        if json { printJSON(object) } else { printFields(object) }
    }

    func connect(admin: Bool) async throws -> TollgateConnection {
        try await TollgateConnection.connect(path: admin ? adminSocket : socket)
    }
}

/// Exit codes: 0 success (and an allowed check), 3 a denied check or meter, 1 any error, 64 bad usage.
enum ExitCodes {
    static let denied: Int32 = 3
}

struct Tollgate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tollgate",
        abstract: "Talk to a running tollgated.",
        discussion: """
            Data-plane commands (check, meter, derive, release, settle, revoke --secret) use the api socket; the others \
            use the admin socket.
            Exit status: 0 ok or allowed, 3 denied (or, for release, not held), 1 error.
            """,
        subcommands: [
            Issue.self, Revoke.self, Check.self, Meter.self, Inspect.self, List.self, LicenseCommand.self, PlanCommand.self,
            Rotate.self, RotateEnd.self, Derive.self, Release.self, Settle.self, OrgCommand.self, CreditsCommand.self,
            UsageCommand.self, Events.self, Apply.self, Stats.self, Ping.self,
        ])
}

// MARK: - Commands

struct Issue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Mint a token. The secret is printed once and stored nowhere.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "License the token belongs to.") var license: String
    @Option(help: "Who the token is for (a user or a service).") var subject: String
    @Option(name: .customLong("scope"), help: "A scope the token carries (repeatable; none: whatever the plan grants).") var scopes: [String] = []
    @Option(help: "Lifetime, such as 3600s, 30m, 12h or 90d (default: no expiry).") var ttl: String?
    @Option(name: .customLong("not-before"), help: "Start of validity: RFC 3339 time or Unix milliseconds.") var notBefore: String?
    @Option(name: .customLong("meta"), help: "Metadata as KEY=VALUE (repeatable).") var metadata: [String] = []
    @Flag(help: "Mint a test-environment token (tg_test_...).") var test = false

    func run() async throws {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let pairs = try metadata.map { item -> KeyValue in
            guard let eq = item.firstIndex(of: "=") else { throw ValidationError("--meta takes KEY=VALUE, got \(item)") }
            return KeyValue(String(item[..<eq]), String(item[item.index(after: eq)...]))
        }
        let nbf = try notBefore.map(parseTime) ?? 0
        let expires = try ttl.map { try (nbf == 0 ? now : nbf) + parseDuration($0) } ?? 0
        let request = IssueRequest(licenseID: license, subject: subject, scopes: scopes, notBefore: nbf, expiresAt: expires, metadata: pairs, environment: test ? .test : .live)
        let (secret, token) = try await call(global, admin: true) { try await $0.issue(request) }
        if global.json {
            var object = token.json
            object["secret"] = secret
            printJSON(object)
        } else {
            print(secret)
            FileHandleStderr.write("issued \(token.id) for \(token.subject) on license \(token.licenseID); the secret above is shown once\n")
        }
    }
}

struct Revoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Revoke a token by id or by secret, or every token of a license, an organisation or a subject.",
        discussion: "Tokens derived from a revoked token are revoked with it. To end a rotation's overlap, see rotate-end.")
    @OptionGroup var global: GlobalOptions
    @Option(name: .customLong("token-id")) var tokenID: String?
    @Option(help: "The token secret (sent to the api socket).") var secret: String?
    @Option(help: "Revoke every token of this license.") var license: String?
    @Option(help: "Revoke every token of every license of this organisation.") var org: String?
    @Option(help: "Revoke every token issued to this subject, in any license.") var subject: String?
    @Option(help: "Why (recorded with the revocation).") var reason: String = ""
    @Option(help: "Who revokes (an operator's name; recorded with the revocation, with the caller's uid).") var actor: String = ""

    func validate() throws {
        guard [tokenID, secret, license, org, subject].compactMap({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --token-id, --secret, --license, --org, --subject")
        }
    }

    func run() async throws {
        let target: RevokeTarget =
            tokenID.map(RevokeTarget.tokenID) ?? secret.map(RevokeTarget.secret) ?? license.map(RevokeTarget.license)
            ?? org.map(RevokeTarget.org) ?? .subject(subject!)
        let request = RevokeRequest(target: target, reason: reason, actor: actor)
        let count = try await call(global, admin: !target.isSecret) { try await $0.revoke(request) }
        if global.json { printJSON(["revoked": Int(count)]) } else { print("revoked \(count) token\(count == 1 ? "" : "s")") }
    }
}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Ask whether a token may act now (consumes COST of METER when allowed).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The token secret.") var token: String
    @Option(name: .customLong("scope"), help: "A scope the action needs (repeatable).") var scopes: [String] = []
    @Option(name: .customLong("feature"), help: "A plan feature the action needs (repeatable; all are needed).") var features: [String] = []
    @Option(help: "Meter to charge.") var meter: String = ""
    @Option(help: "Units to charge to the meter.") var cost: UInt64 = 0
    @Flag(help: "List every rule evaluated: rule, owner, used/limit, and DENIED on the rule that denied.") var explain = false
    @Flag(
        help: """
            Take a concurrency lease and print its lease_id. A lease lasts until its connection closes, so one taken \
            here ends when this command exits.
            """)
    var lease = false
    @Flag(help: "Reserve COST instead of charging it and print the reservation_id; charge later with `tollgate settle`.") var reserve = false

    func validate() throws {
        if reserve && cost == 0 { throw ValidationError("--reserve needs a --cost to reserve") }
    }

    func run() async throws {
        var options: CheckOptions = []
        if explain { options.insert(.explain) }
        if lease { options.insert(.lease) }
        if reserve { options.insert(.reserve) }
        let request = CheckRequest(token: token, scopes: scopes, meter: meter, cost: cost, features: features, options: options)
        let result = try await call(global, admin: false) { try await $0.check(request) }
        try result.report(json: global.json)
    }
}

struct Meter: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Record usage a token already consumed (durable before the answer).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The token secret.") var token: String
    @Argument(help: "Meter name.") var meter: String
    @Argument(help: "Quantity (at least 1).") var quantity: UInt64
    @Option(name: .customLong("idempotency-key"), help: "A repeated key is acknowledged and not counted again.") var idempotencyKey: String = ""

    func run() async throws {
        let result = try await call(global, admin: false) { try await $0.meter(MeterRequest(token: token, meter: meter, quantity: quantity, idempotencyKey: idempotencyKey)) }
        if global.json {
            printJSON(result.json)
        } else if result.allowed {
            var line = result.duplicate ? "duplicate (not counted again)" : "recorded"
            if let quota = result.quota { line += " remaining=\(quota.remaining)/\(quota.limit)" }
            print(line)
        } else {
            print("deny \(result.reason.name)")
        }
        if !result.allowed { throw ExitCode(ExitCodes.denied) }
    }
}

struct Inspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a token by id.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Token id (tok_...).") var tokenID: String

    func run() async throws {
        let token = try await call(global, admin: true) { try await $0.token(id: tokenID) }
        global.show(token.json)
    }
}

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List tokens, optionally of one license.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Only tokens of this license.") var license: String = ""
    @Option(help: "Most tokens to show (0: all).") var limit: Int = 0

    func run() async throws {
        var after = ""
        var shown = 0
        let connection = try await global.connect(admin: true)
        defer { Task { await connection.close() } }
        repeat {
            let page = try await wrap { try await connection.listTokens(TokenListRequest(licenseID: license, after: after, limit: 500)) }
            for token in page.tokens {
                if limit > 0 && shown >= limit { return }
                shown += 1
                if global.json {
                    printJSON(token.json)
                } else {
                    let state = token.revokedAt != 0 ? "revoked" : (token.expiresAt != 0 && token.expiresAt <= Int64(Date().timeIntervalSince1970 * 1000) ? "expired" : "active")
                    print("\(token.id)  \(token.licenseID)  \(token.subject)  \(state)  scopes=\(token.scopes.joined(separator: ","))")
                }
            }
            after = page.next
        } while !after.isEmpty
    }
}

struct LicenseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "license", abstract: "Create, change or show a license.", subcommands: [Set.self, Get.self])

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create or replace a license.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "License id.") var id: String
        @Option(help: "Plan id.") var plan: String
        @Option(help: "Customer name.") var customer: String = ""
        @Option(help: "Organisation the license belongs to (default: none; the license is its own org-level pool).") var org: String = ""
        @Option(help: "Project or team inside the organisation (exported with usage).") var project: String = ""
        @Option(help: "active, trialing, past_due, canceled or expired.") var status: String = "active"
        @Option(name: .customLong("valid-from"), help: "RFC 3339 time or Unix milliseconds (default: valid from the start).") var validFrom: String?
        @Option(name: .customLong("valid-until"), help: "RFC 3339 time or Unix milliseconds (default: open-ended).") var validUntil: String?
        @Option(name: .customLong("trial-ends"), help: "With --status trialing: when the trial ends (RFC 3339 or Unix milliseconds).") var trialEnds: String?
        @Option(name: .customLong("billing-anchor-day"), help: "Day of the month (1-28, UTC) on which monthly periods start.") var billingAnchorDay: UInt8 = 1

        func validate() throws {
            guard LicenseStatus(name: status) != nil else {
                throw ValidationError("--status must be one of \(LicenseStatus.allCases.map(\.name).joined(separator: ", "))")
            }
            guard (1...28).contains(billingAnchorDay) else { throw ValidationError("--billing-anchor-day must be 1-28") }
            for time in [validFrom, validUntil, trialEnds].compactMap({ $0 }) { _ = try parseTime(time) }
        }

        func run() async throws {
            let spec = LicenseSpec(
                id: id, customer: customer, plan: plan, status: LicenseStatus(name: status)!, validUntil: try validUntil.map(parseTime) ?? 0,
                validFrom: try validFrom.map(parseTime) ?? 0, trialEndsAt: try trialEnds.map(parseTime) ?? 0, org: org, project: project,
                billingAnchorDay: billingAnchorDay)
            let info = try await call(global, admin: true) { try await $0.putLicense(spec) }
            global.show(info.json)
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a license.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "License id.") var id: String

        func run() async throws {
            let info = try await call(global, admin: true) { try await $0.license(id: id) }
            global.show(info.json)
        }
    }
}

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plan", abstract: "Create, change or show a plan (tier).", subcommands: [Set.self, Get.self])

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create or replace a plan; every license on it follows at once.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Plan id.") var id: String
        @Option(name: .customLong("entitlement"), help: "A scope the plan grants (repeatable; * grants all).") var entitlements: [String] = []
        @Option(name: .customLong("feature"), help: "A feature the plan grants (repeatable; * grants all).") var features: [String] = []
        @Option(
            name: .customLong("quota"),
            help: """
                METER:WINDOW:LIMIT[:POOL] (repeatable): WINDOW hour, day, month or rolling:SECONDS; POOL token, license \
                (default) or org. Example: requests:rolling:60:100:token.
                """)
        var quotas: [String] = []
        @Option(help: "Requests per second per license (0: unlimited); the same as --rate-limit license:RATE:BURST.") var rate: UInt32 = 0
        @Option(help: "Requests that may arrive at once (with --rate).") var burst: UInt32 = 0
        @Option(name: .customLong("rate-limit"), help: "POOL:PER_SECOND:BURST (repeatable, one per pool).") var rateLimits: [String] = []
        @Option(name: .customLong("concurrency"), help: "POOL:MAX leases held at once (repeatable, one per pool).") var concurrency: [String] = []
        @Option(help: "POOL:INCLUDED:PERIOD: every unit of cost is paid from credits, INCLUDED granted each PERIOD (hour, day, month).") var credits: String?
        @Option(help: "hard_stop (deny beyond a limit) or allow_and_record (allow, record the overage).") var overage: String = "hard_stop"
        @Option(name: .customLong("max-token-lifetime"), help: "Longest token lifetime, such as 90d (default: no limit).") var maxTokenLifetime: String = "0"
        @Option(name: .customLong("max-active-tokens"), help: "Most active tokens per license (0: no limit).") var maxActiveTokens: UInt32 = 0
        @Option(name: .customLong("past-due-grace"), help: "How long a past_due license keeps working, such as 7d (default: none).") var pastDueGrace: String = "0"

        func validate() throws { _ = try makePlan() }

        func makePlan() throws -> Plan {
            var plan = Plan(id: id, entitlements: entitlements, features: features)
            plan.quotas = try quotas.map(PlanRuleSyntax.quota)
            if rate > 0 { plan.rateLimits.append(RateRule(pool: .license, ratePerSecond: rate, burst: max(burst, 1))) }
            plan.rateLimits += try rateLimits.map(PlanRuleSyntax.rate)
            plan.concurrency = try concurrency.map(PlanRuleSyntax.concurrency)
            plan.credits = try credits.map(PlanRuleSyntax.credits)
            guard let overage = OveragePolicy(name: overage) else { throw ValidationError("--overage must be hard_stop or allow_and_record") }
            plan.overage = overage
            plan.maxTokenLifetimeSeconds = try parseSeconds(maxTokenLifetime, option: "--max-token-lifetime")
            plan.maxActiveTokens = maxActiveTokens
            plan.pastDueGraceSeconds = try parseSeconds(pastDueGrace, option: "--past-due-grace")
            return plan
        }

        func run() async throws {
            let plan = try makePlan()
            let stored = try await call(global, admin: true) { try await $0.putPlan(plan) }
            global.show(stored.json)
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a plan.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Plan id.") var id: String

        func run() async throws {
            let plan = try await call(global, admin: true) { try await $0.plan(id: id) }
            global.show(plan.json)
        }
    }
}

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the daemon's counters.")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let stats = try await call(global, admin: true) { try await $0.stats() }
        if global.json {
            printJSON(Dictionary(stats.map { ($0.key, Int($0.value).map { $0 as Any } ?? $0.value) }, uniquingKeysWith: { a, _ in a }))
        } else {
            for pair in stats { print("\(pair.key) \(pair.value)") }
        }
    }
}

struct Ping: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check that the daemon answers on the api socket.")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let started = DispatchTime.now().uptimeNanoseconds
        try await call(global, admin: false) { try await $0.ping() }
        let micros = (DispatchTime.now().uptimeNanoseconds - started) / 1000
        if global.json { printJSON(["ok": true, "round_trip_us": Int(micros)]) } else { print("pong in \(micros) µs") }
    }
}
