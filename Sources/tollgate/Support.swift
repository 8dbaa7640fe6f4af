import ArgumentParser
import Foundation
import TollgateClient
import TollgateModel
import TollgateProtocol
import TollgateProvisioning

#if canImport(Glibc)
import Glibc
#endif

/// The command line's own refusals are ArgumentParser's (exit 64); the model's `ValidationError` (the validation
/// source) is named in full where it is meant.
typealias ValidationError = ArgumentParser.ValidationError

/// Connects, makes one call, closes; turns client errors into a `CLIError` (exit status 1).
func call<T>(_ global: GlobalOptions, admin: Bool, _ body: (TollgateConnection) async throws -> T) async throws -> T {
    let connection = try await wrap { try await global.connect(admin: admin) }
    defer { Task { await connection.close() } }
    return try await wrap { try await body(connection) }
}

func wrap<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as TollgateClientError {
        throw CLIError(error)
    }
}

/// A failure the CLI reports: a stable `code` that scripts act on, a sentence for people, and the exit status.
/// Without `--json` it is printed as `tollgate: MESSAGE` on standard error; with `--json` as one object,
/// `{"error": CODE, "message": MESSAGE}`, on standard output (where a script reads the answers), with the same
/// exit status. Messages never contain a token secret.
struct CLIError: Error {
    /// Stable codes: the server's status names (`not_found`, `invalid_argument`, …), the client's connection
    /// failures below, `usage` for a command line that does not parse (exit 64), and the provisioning file's codes.
    struct Code: RawRepresentable, Hashable {
        var rawValue: String
        init(rawValue: String) { self.rawValue = rawValue }
        init(_ rawValue: String) { self.rawValue = rawValue }
        static let daemonNotRunning = Code("daemon_not_running")
        static let permissionDenied = Code("permission_denied")
        static let connectFailed = Code("connect_failed")
        static let connectionClosed = Code("connection_closed")
        static let protocolViolation = Code("protocol_violation")
        static let invalidRequest = Code("invalid_request")
        static let usage = Code("usage")
        static let cannotRead = Code("cannot_read")
        static let cannotWrite = Code("cannot_write")
        static let noSecret = Code("no_secret")
        static let applyStopped = Code("apply_stopped")
        static func server(_ status: Status) -> Code { Code(status.name) }
    }

    var code: Code
    var message: String
    var exitCode: Int32
    /// Several errors at once (`apply`): under `--json` each as `{"code", "message"}` in `errors`; `code` is the first's.
    var details: [[String: String]] = []

    init(_ code: Code, _ message: String, exitCode: Int32 = 1) {
        self.code = code
        self.message = message
        self.exitCode = exitCode
    }

    init(_ error: TollgateClientError) {
        let code: Code
        switch error.code {
        case .daemonNotRunning: code = .daemonNotRunning
        case .permissionDenied: code = .permissionDenied
        case .connectFailed: code = .connectFailed
        case .connectionClosed: code = .connectionClosed
        case .protocolViolation: code = .protocolViolation
        case .invalidRequest: code = .invalidRequest
        case .server(let status): code = .server(status)
        }
        self.init(code, error.message)
    }

    /// A value refused by the validation source after the command line parsed (exit 1), under the rule's code.
    init(_ error: TollgateModel.ValidationError) {
        self.init(Code(error.code.rawValue), error.description)
    }

    func report(json: Bool) {
        if json {
            var object: [String: Any] = ["error": code.rawValue, "message": message]
            if !details.isEmpty { object["errors"] = details }
            printJSON(object)
        } else {
            FileHandleStderr.write("tollgate: \(message)\n")
        }
    }
}

enum FileHandleStderr {
    static func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}

func printJSON(_ object: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    print(String(decoding: data, as: UTF8.self))
}


/// RFC 3339 (`2027-01-01T00:00:00Z`) or Unix milliseconds.
func parseTime(_ text: String) throws -> UnixMillis {
    if let millis = Int64(text) { return millis }
    let formatter = ISO8601DateFormatter()
    if let date = formatter.date(from: text) { return Int64(date.timeIntervalSince1970 * 1000) }
    throw ValidationError("\(text) is neither an RFC 3339 time nor Unix milliseconds")
}

/// `90s`, `15m`, `12h`, `30d` → milliseconds.
func parseDuration(_ text: String) throws -> Int64 {
    let units: [Character: Int64] = ["s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000]
    guard let unit = text.last.flatMap({ units[$0] }), let value = Int64(text.dropLast()), value > 0 else {
        throw ValidationError("\(text) is not a duration such as 3600s, 30m, 12h or 90d")
    }
    return value * unit
}

/// A duration in whole seconds for fields that count seconds on the wire; `0` means none.
func parseSeconds(_ text: String, option: String) throws -> UInt32 {
    if text == "0" { return 0 }
    let seconds = try parseDuration(text) / 1000
    guard seconds > 0, seconds <= Int64(UInt32.max) else { throw ValidationError("\(option) must be between 1s and \(UInt32.max)s, got \(text)") }
    return UInt32(seconds)
}

func nowMillis() -> UnixMillis { Int64(Date().timeIntervalSince1970 * 1000) }

func formatTime(_ millis: UnixMillis) -> String {
    millis == 0 ? "-" : RFC3339.format(millis)
}

extension TokenInfo {
    var json: [String: Any] {
        [
            "token_id": id, "license_id": licenseID, "subject": subject, "scopes": scopes, "issued_at": issuedAt,
            "not_before": notBefore, "expires_at": expiresAt, "revoked_at": revokedAt, "revoke_reason": revokeReason,
            "revoked_by": revokedBy, "parent_id": parentID, "rotated_at": rotatedAt, "previous_secret_valid_until": previousSecretValidUntil,
            "last_used_at": lastUsedAt, "previous_secret_last_used_at": previousSecretLastUsedAt,
            "metadata": Dictionary(metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a }), "environment": environment.name,
        ]
    }
}

extension QuotaState {
    var json: [String: Any] { ["limit": limit, "remaining": remaining, "reset_at": resetAt] }
}

extension CheckResult {
    var json: [String: Any] {
        var object: [String: Any] = [
            "decision": allowed ? "allow" : "deny", "reason": reason.name, "token_id": tokenID, "license_id": licenseID, "subject": subject,
        ]
        object["quota"] = quota?.json ?? NSNull()
        if retryAfterMillis > 0 { object["retry_after_ms"] = retryAfterMillis }
        if leaseID != 0 { object["lease_id"] = leaseID }
        if reservationID != 0 { object["reservation_id"] = reservationID }
        if let creditsRemaining { object["credits_remaining"] = creditsRemaining }
        if overage > 0 { object["overage"] = overage }
        if !explanation.isEmpty {
            object["explanation"] = explanation.map { ["rule": $0.rule, "owner": $0.owner, "limit": $0.limit, "used": $0.used, "denied": $0.denied] as [String: Any] }
        }
        return object
    }
}

extension CheckResult {
    /// One line for a person: the decision, whose token it was, and every counter the answer carries.
    var line: String {
        var line = allowed ? "allow" : "deny \(reason.name)"
        if !tokenID.isEmpty { line += " token=\(tokenID) license=\(licenseID) subject=\(subject)" }
        if let quota { line += " remaining=\(quota.remaining)/\(quota.limit) reset=\(formatTime(quota.resetAt))" }
        if retryAfterMillis > 0 { line += " retry_after_ms=\(retryAfterMillis)" }
        if leaseID != 0 { line += " lease_id=\(leaseID)" }
        if reservationID != 0 { line += " reservation_id=\(reservationID)" }
        if let creditsRemaining { line += " credits_remaining=\(creditsRemaining)" }
        if overage > 0 { line += " overage=\(overage)" }
        return line
    }

    /// Explain mode: one indented line per rule, `RULE OWNER USED/LIMIT`, marked when it denied the check.
    var explanationLines: [String] {
        explanation.map { rule in
            "  \(rule.rule) \(rule.owner.isEmpty ? "-" : rule.owner) \(rule.used)/\(rule.limit)" + (rule.denied ? " DENIED" : "")
        }
    }

    /// Prints the answer (text or JSON), with its details when asked, and exits 3 when it is a denial.
    func report(json: Bool, details: CheckDetails? = nil) throws {
        if json {
            var object = self.json
            if let details { object["details"] = details.json }
            printJSON(object)
        } else {
            print(line + (details.map(\.lineSuffix) ?? ""))
            for line in explanationLines { print(line) }
        }
        if !allowed { throw ExitCode(ExitCodes.denied) }
    }
}

extension CheckDetails {
    var json: [String: Any] {
        [
            "plan_id": planID, "token_expires_at": tokenExpiresAt,
            "rate_limit": rateLimit.map { ["limit": $0.limit, "remaining": $0.remaining, "reset_ms": $0.resetMillis] as [String: Any] } ?? NSNull(),
        ]
    }

    /// Appended to the answer's line: `plan=… expires=… rate_limit=REMAINING/LIMIT rate_limit_full_in_ms=…`.
    var lineSuffix: String {
        var line = ""
        if !planID.isEmpty { line += " plan=\(planID)" }
        if let expiry = Human.time(tokenExpiresAt) { line += " expires=\(expiry)" }
        if let rate = rateLimit { line += " rate_limit=\(rate.remaining)/\(rate.limit) rate_limit_full_in_ms=\(rate.resetMillis)" }
        return line
    }
}

extension MeterResult {
    var json: [String: Any] {
        ["decision": allowed ? "allow" : "deny", "reason": reason.name, "token_id": tokenID, "license_id": licenseID, "duplicate": duplicate, "quota": quota?.json ?? NSNull()]
    }
}

extension LicenseInfo {
    var json: [String: Any] {
        [
            "license_id": spec.id, "customer": spec.customer, "plan": spec.plan, "status": spec.status.name, "valid_until": spec.validUntil,
            "valid_from": spec.validFrom, "trial_ends_at": spec.trialEndsAt, "org": spec.org, "project": spec.project,
            "billing_anchor_day": Int(spec.billingAnchorDay), "updated_at": updatedAt, "active_tokens": activeTokens,
            "past_due_since": pastDueSince, "prepaid_credits": prepaidCredits,
        ]
    }
}

extension OrgSpec {
    var json: [String: Any] { ["org_id": id, "name": name, "suspended": suspended] }
}

extension Plan {
    var json: [String: Any] {
        var object: [String: Any] = [
            "plan_id": id, "entitlements": entitlements, "features": features,
            "quotas": quotas.map { ["meter": $0.meter, "window": $0.window.name, "limit": $0.limit, "pool": $0.pool.name] as [String: Any] },
            "rate_limits": rateLimits.map { ["pool": $0.pool.name, "per_second": $0.ratePerSecond, "burst": $0.burst] as [String: Any] },
            "concurrency": concurrency.map { ["pool": $0.pool.name, "max": $0.max] as [String: Any] },
            "overage": overage.name, "max_token_lifetime_seconds": maxTokenLifetimeSeconds, "max_active_tokens": maxActiveTokens,
            "past_due_grace_seconds": pastDueGraceSeconds,
        ]
        object["credits"] = credits.map { ["pool": $0.pool.name, "included": $0.included, "period": $0.period.name] as [String: Any] } ?? NSNull()
        return object
    }
}

extension UsageRow {
    var json: [String: Any] {
        [
            "org": org, "project": project, "license_id": licenseID, "token_id": tokenID, "meter": meter,
            "period_start": periodStart, "quantity": quantity, "overage": overage,
        ]
    }
}

extension LicensingEvent {
    var json: [String: Any] { ["sequence": sequence, "at": at, "kind": kind.name, "owner": owner, "detail": detail] }
}

/// Global options may come before the command name; ArgumentParser wants them after it.
func reorderedArguments(_ arguments: [String]) -> [String] {
    var leading: [String] = []
    var rest = arguments
    while let first = rest.first, first.hasPrefix("--") {
        let name = first.split(separator: "=", maxSplits: 1).first.map(String.init) ?? first
        guard ["--socket", "--admin-socket", "--json"].contains(name) else { break }
        leading.append(rest.removeFirst())
        if name != "--json", !first.contains("="), !rest.isEmpty { leading.append(rest.removeFirst()) }
    }
    guard !leading.isEmpty else { return arguments }
    // Insert after the command path (subcommand names), before the command's own arguments.
    var path: [String] = []
    let commands: Set<String> = [
        "issue", "revoke", "check", "meter", "inspect", "list", "license", "plan", "stats", "ping", "set", "get",
        "rotate", "rotate-end", "derive", "release", "settle", "org", "credits", "grant", "usage", "export", "show", "events", "apply",
        "delete", "sync", "stripe", "exchange", "subject", "role",
    ]
    while let first = rest.first, commands.contains(first), path.count < 2 { path.append(rest.removeFirst()) }
    return path + leading + rest
}

@main
enum Main {
    static func main() async {
        let arguments = reorderedArguments(Array(CommandLine.arguments.dropFirst()))
        // `--json` anywhere before `--` asks for JSON errors too, even when the command line does not parse.
        let json = arguments.prefix { $0 != "--" }.contains("--json")
        do {
            var command = try Tollgate.parseAsRoot(arguments)
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as CLIError {
            error.report(json: json)
            exit(error.exitCode)
        } catch let error as ExitCode {
            // A denial (3) or a release of a lease not held: the answer was printed already.
            exit(error.rawValue)
        } catch {
            let status = Tollgate.exitCode(for: error)
            guard json, status != .success else { Tollgate.exit(withError: error) }
            CLIError(.usage, Tollgate.message(for: error), exitCode: status.rawValue).report(json: true)
            exit(status.rawValue)
        }
    }
}
