import ArgumentParser
import Foundation
import TollgateBuildInfo
import TollgateClient
import TollgateModel
import TollgateProtocol
import TollgateProvisioning

/// Options every command takes. They may also be written before the command name
/// (`tollgate --socket PATH check ...`); `main` moves them after it.
struct GlobalOptions: ParsableArguments {
    @Option(
        name: .long,
        help: "Path of the api socket (default: $TOLLGATE_SOCKET, else /run/tollgate/tollgate.sock when it exists, else ./state/tollgate.sock).")
    var socket: String?

    @Option(
        name: .customLong("admin-socket"),
        help: """
            Path of the admin socket (default: $TOLLGATE_ADMIN_SOCKET, else /run/tollgate/tollgate-admin.sock when it exists, \
            else ./state/tollgate-admin.sock).
            """)
    var adminSocket: String?

    @Flag(name: .long, help: "Print one JSON object per answer, and errors as {\"error\": CODE, \"message\": ...} on standard output.")
    var json = false

    /// Prints one answer: as one JSON object with `--json`, else as `field: value` lines in `order`.
    func show(_ object: [String: Any], human: [(String, String?)]) {
        if json { printJSON(object) } else { printHuman(human) }
    }

    var apiSocketPath: String { socket ?? SocketDefaults.path(environment: "TOLLGATE_SOCKET", installed: SocketDefaults.installedAPI, local: SocketDefaults.localAPI) }
    var adminSocketPath: String {
        adminSocket ?? SocketDefaults.path(environment: "TOLLGATE_ADMIN_SOCKET", installed: SocketDefaults.installedAdmin, local: SocketDefaults.localAdmin)
    }

    func connect(admin: Bool) async throws -> TollgateConnection {
        try await TollgateConnection.connect(path: admin ? adminSocketPath : apiSocketPath)
    }
}

/// Where the sockets are when no option names them: the environment first, then the paths the packaged systemd
/// units create (`/run/tollgate/…`) when a socket is there, then the daemon's own default (`./state/…`, what
/// `make run` uses), so the same CLI works on an installed host and in a checkout.
enum SocketDefaults {
    static let installedAPI = "/run/tollgate/tollgate.sock"
    static let installedAdmin = "/run/tollgate/tollgate-admin.sock"
    static let localAPI = "./state/tollgate.sock"
    static let localAdmin = "./state/tollgate-admin.sock"

    static func path(environment variable: String, installed: String, local: String) -> String {
        if let value = ProcessInfo.processInfo.environment[variable], !value.isEmpty { return value }
        var info = stat()
        if stat(installed, &info) == 0 && (info.st_mode & S_IFMT) == S_IFSOCK { return installed }
        return local
    }
}

/// Where a command gets a token secret, so that it need not be on the command line (where `ps` and shell history
/// show it): the argument `-` reads it from standard input, `--secret-file` from a file, `--secret-env` from an
/// environment variable. Only the first line counts, without surrounding white space.
struct SecretInput: ParsableArguments {
    @Option(name: .customLong("secret-file"), help: "Read the token secret from this file (its first line) instead of the command line.")
    var secretFile: String?

    @Option(name: .customLong("secret-env"), help: "Read the token secret from this environment variable instead of the command line.")
    var secretEnv: String?

    var isGiven: Bool { secretFile != nil || secretEnv != nil }

    /// The secret from exactly one of: `argument` (`-`: standard input), the file, the variable.
    func resolve(_ argument: String?, name: String = "the token secret") throws -> String {
        let sources = [argument, secretFile, secretEnv].compactMap { $0 }.count
        guard sources == 1 else {
            throw ValidationError("give \(name) exactly once: as an argument, - (standard input), --secret-file FILE or --secret-env VARIABLE")
        }
        let raw: String
        if let secretFile {
            guard let data = FileManager.default.contents(atPath: secretFile) else { throw CLIError(.cannotRead, "cannot read the secret file \(secretFile)") }
            raw = String(decoding: data, as: UTF8.self)
        } else if let secretEnv {
            guard let value = ProcessInfo.processInfo.environment[secretEnv] else {
                throw CLIError(.noSecret, "the environment variable \(secretEnv) is not set")
            }
            raw = value
        } else if argument == "-" {
            raw = readLine(strippingNewline: true) ?? ""
        } else {
            return argument!
        }
        let secret = raw.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard !secret.isEmpty else { throw CLIError(.noSecret, "no token secret in \(secretFile.map { "the file \($0)" } ?? secretEnv.map { "$\($0)" } ?? "standard input")") }
        return secret
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
            Exit status: 0 ok or allowed, 3 denied (or, for release, not held), 1 error, 64 bad usage.
            """,
        version: "tollgate \(BuildInfo.description)",
        subcommands: [
            Issue.self, Revoke.self, Check.self, Meter.self, Inspect.self, List.self, LicenseCommand.self, PlanCommand.self,
            Rotate.self, RotateEnd.self, Derive.self, Exchange.self, SubjectCommand.self, RoleCommand.self, Release.self, Settle.self, OrgCommand.self, CreditsCommand.self,
            UsageCommand.self, Events.self, Apply.self, Export.self, SyncCommand.self, Stats.self, Ping.self, Top.self,
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
    @Option(name: .customLong("token-id"), help: "Revoke the token with this id (tok_...), and the tokens derived from it.") var tokenID: String?
    @Option(help: "Revoke the token this secret belongs to (sent to the api socket); - reads it from standard input.") var secret: String?
    @OptionGroup var secretInput: SecretInput
    @Option(help: "Revoke every token of this license.") var license: String?
    @Option(help: "Revoke every token of every license of this organisation.") var org: String?
    @Option(help: "Revoke every token issued to this subject, in any license.") var subject: String?
    @Option(help: "Why (recorded with the revocation).") var reason: String = ""
    @Option(help: "Who revokes (an operator's name; recorded with the revocation, with the caller's uid).") var actor: String = ""

    func validate() throws {
        guard [tokenID, secret, secretInput.secretFile, secretInput.secretEnv, license, org, subject].compactMap({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --token-id, --secret, --secret-file, --secret-env, --license, --org, --subject")
        }
    }

    func run() async throws {
        let secret = secret != nil || secretInput.isGiven ? try secretInput.resolve(secret, name: "the secret") : nil
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
    @Argument(help: "The token secret, or - to read it from standard input (or use --secret-file, --secret-env).") var token: String?
    @OptionGroup var secretInput: SecretInput
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
    @Flag(help: "Also print the plan, the token's expiry and the tightest rate limit (remaining/limit, when it is full again).") var details = false

    func validate() throws {
        if reserve && cost == 0 { throw ValidationError("--reserve needs a --cost to reserve") }
        if [token, secretInput.secretFile, secretInput.secretEnv].compactMap({ $0 }).count != 1 {
            throw ValidationError("give the token secret exactly once: as an argument, - (standard input), --secret-file FILE or --secret-env VARIABLE")
        }
    }

    func run() async throws {
        let token = try secretInput.resolve(token)
        var options: CheckOptions = []
        if explain { options.insert(.explain) }
        if lease { options.insert(.lease) }
        if reserve { options.insert(.reserve) }
        let request = CheckRequest(token: token, scopes: scopes, meter: meter, cost: cost, features: features, options: options)
        if details {
            let (result, details) = try await call(global, admin: false) { try await $0.checkDetailed(request) }
            try result.report(json: global.json, details: details)
        } else {
            let result = try await call(global, admin: false) { try await $0.check(request) }
            try result.report(json: global.json)
        }
    }
}

struct Meter: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Record usage a token already consumed (durable before the answer).")
    @OptionGroup var global: GlobalOptions
    @Argument(
        help: ArgumentHelp(
            """
            [SECRET] METER QUANTITY: the token secret (or - to read it from standard input; leave it out with \
            --secret-file or --secret-env), the meter name and the quantity (at least 1).
            """, valueName: "secret-meter-quantity"))
    var arguments: [String]
    @OptionGroup var secretInput: SecretInput
    @Option(name: .customLong("idempotency-key"), help: "A repeated key is acknowledged and not counted again.") var idempotencyKey: String = ""

    /// The secret argument (nil when a flag names its source), the meter and the quantity.
    func parsed() throws -> (secret: String?, meter: String, quantity: UInt64) {
        let expected = secretInput.isGiven ? 2 : 3
        guard arguments.count == expected else {
            throw ValidationError(secretInput.isGiven ? "expected METER QUANTITY (the secret comes from --secret-file/--secret-env)" : "expected SECRET METER QUANTITY")
        }
        guard let quantity = UInt64(arguments[expected - 1]) else { throw ValidationError("QUANTITY must be a whole number, got \(arguments[expected - 1])") }
        return (secretInput.isGiven ? nil : arguments[0], arguments[expected - 2], quantity)
    }

    func validate() throws { _ = try parsed() }

    func run() async throws {
        let (argument, meter, quantity) = try parsed()
        let token = try secretInput.resolve(argument)
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
        global.show(token.json, human: token.human)
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
    static let configuration = CommandConfiguration(
        commandName: "license", abstract: "Create, change, show, list or delete a license.", subcommands: [Set.self, Get.self, List.self, Delete.self])

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
            do {
                try Validation.license(try spec())
            } catch let error as TollgateModel.ValidationError {
                throw ValidationError(error.description)
            }
        }

        func spec() throws -> LicenseSpec {
            LicenseSpec(
                id: id, customer: customer, plan: plan, status: LicenseStatus(name: status)!, validUntil: try validUntil.map(parseTime) ?? 0,
                validFrom: try validFrom.map(parseTime) ?? 0, trialEndsAt: try trialEnds.map(parseTime) ?? 0, org: org, project: project,
                billingAnchorDay: billingAnchorDay)
        }

        func run() async throws {
            let spec = try spec()
            let info = try await call(global, admin: true) { connection -> LicenseInfo in
                // An organisation that does not exist is refused, as `apply` refuses it (issue 13 §3: one verdict).
                // The wire's LICENSE_PUT still accepts it, so a subscription system may sync a license first.
                if !spec.org.isEmpty {
                    do {
                        _ = try await connection.org(id: spec.org)
                    } catch let error as TollgateClientError where error.code == .server(.notFound) {
                        throw CLIError(Validation.unknownOrganisation(spec.org, field: "--org"))
                    }
                }
                return try await connection.putLicense(spec)
            }
            global.show(info.json, human: info.human)
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a license.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "License id.") var id: String

        func run() async throws {
            let info = try await call(global, admin: true) { try await $0.license(id: id) }
            global.show(info.json, human: info.human)
        }
    }
}

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan", abstract: "Create, change, show, list or delete a plan (tier).", subcommands: [Set.self, Get.self, List.self, Delete.self])

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
        @Option(name: .customLong("max-token-lifetime"), help: "Longest token lifetime, such as 90d (default: no limit).") var maxTokenLifetime: String?
        @Option(name: .customLong("max-active-tokens"), help: "Most active tokens per license (default: no limit).") var maxActiveTokens: UInt32?
        @Option(name: .customLong("past-due-grace"), help: "How long a past_due license keeps working, such as 7d (default: none).") var pastDueGrace: String?

        func validate() throws { _ = try makePlan() }

        /// The plan from the options, refused here (exit 64) by the same rules the daemon applies.
        func makePlan() throws -> Plan {
            let lifetime = try parseSeconds(maxTokenLifetime ?? "0", option: "--max-token-lifetime")
            let grace = try parseSeconds(pastDueGrace ?? "0", option: "--past-due-grace")
            do {
                return try PlanRuleSyntax.plan(
                    id: id, entitlements: entitlements, features: features, quotas: quotas, rate: rate, burst: burst, rateLimits: rateLimits,
                    concurrency: concurrency, credits: credits, overage: overage, maxTokenLifetimeSeconds: lifetime,
                    maxActiveTokens: maxActiveTokens ?? 0, pastDueGraceSeconds: grace)
            } catch {
                throw ValidationError(error.description)
            }
        }

        func run() async throws {
            let plan = try makePlan()
            let stored = try await call(global, admin: true) { try await $0.putPlan(plan) }
            global.show(stored.json, human: stored.human)
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a plan.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Plan id.") var id: String

        func run() async throws {
            let plan = try await call(global, admin: true) { try await $0.plan(id: id) }
            global.show(plan.json, human: plan.human)
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
