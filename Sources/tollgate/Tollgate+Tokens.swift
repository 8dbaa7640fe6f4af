import ArgumentParser
import Foundation
import TollgateClient
import TollgateModel

// Token lifecycle beyond issue and revoke: rotation, derived tokens, leases and reservations.

struct Rotate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Give a token a new secret, keeping its id. The new secret is printed once and stored nowhere.",
        discussion: "The previous secret keeps working for the grace period, so that clients can move over; end it early with rotate-end.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Token id (tok_...).") var tokenID: String
    @Option(help: "How long the previous secret keeps working, such as 30m or 1h (0: not at all).") var grace: String = "1h"

    func validate() throws { _ = try parseSeconds(grace, option: "--grace") }

    func run() async throws {
        let graceSeconds = try parseSeconds(grace, option: "--grace")
        let (secret, token) = try await call(global, admin: true) { try await $0.rotate(RotateRequest(tokenID: tokenID, graceSeconds: graceSeconds)) }
        if global.json {
            var object = token.json
            object["secret"] = secret
            printJSON(object)
        } else {
            print(secret)
            let previous =
                token.previousSecretValidUntil > token.rotatedAt
                ? "the previous secret works until \(formatTime(token.previousSecretValidUntil)) (end that now with `tollgate rotate-end \(token.id)`)"
                : "the previous secret no longer works"
            FileHandleStderr.write("rotated \(token.id); \(previous); the secret above is shown once\n")
        }
    }
}

struct RotateEnd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate-end",
        abstract: "End a rotation's overlap now: the previous secret is refused from the next check.",
        discussion: "previous_secret_last_used_at shows when the previous secret was last presented (0: not since the daemon started).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Token id (tok_...).") var tokenID: String

    func run() async throws {
        let token = try await call(global, admin: true) { try await $0.endRotation(tokenID: tokenID) }
        global.show(token.json, human: token.human)
    }
}

struct Derive: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Exchange a token for a short-lived child token with a subset of its scopes (api socket).",
        discussion: """
            The child's secret is printed once. Its lifetime is capped by the daemon, the plan and the parent's expiry; \
            revoking the parent revokes the child. A parent that may not act now is a denial (exit 3).
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The parent token's secret, or - to read it from standard input (or use --secret-file, --secret-env).") var parent: String?
    @OptionGroup var secretInput: SecretInput
    @Option(help: "The child's lifetime, such as 15m or 1h.") var ttl: String
    @Option(name: .customLong("scope"), help: "A scope the child carries (repeatable; none: the parent's scopes).") var scopes: [String] = []

    func validate() throws {
        guard try parseSeconds(ttl, option: "--ttl") > 0 else { throw ValidationError("--ttl must be at least 1s") }
        if [parent, secretInput.secretFile, secretInput.secretEnv].compactMap({ $0 }).count != 1 {
            throw ValidationError("give the parent's secret exactly once: as an argument, - (standard input), --secret-file FILE or --secret-env VARIABLE")
        }
    }

    func run() async throws {
        let parent = try secretInput.resolve(parent, name: "the parent's secret")
        let ttlSeconds = try parseSeconds(ttl, option: "--ttl")
        let request = DeriveRequest(parent: parent, scopes: scopes, ttlSeconds: ttlSeconds)
        let (result, secret, token) = try await call(global, admin: false) { try await $0.derive(request) }
        guard result.allowed, let token else { return try result.report(json: global.json) }
        if global.json {
            var object = token.json
            object["secret"] = secret
            object["decision"] = "allow"
            printJSON(object)
        } else {
            print(secret)
            FileHandleStderr.write(
                "derived \(token.id) from \(token.parentID) for \(token.subject), expires \(formatTime(token.expiresAt)); the secret above is shown once\n")
        }
    }
}

struct Exchange: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Exchange an identity provider's JWT for a short-lived token (api socket).",
        discussion: """
            The JWT is read from standard input, or from --token-file (a Kubernetes projected token, GitHub's OIDC \
            token saved to a file); never from the command line, where other users could read it. The new token's \
            secret is printed once. A refusal exits 3 with its reason (expired, wrong_audience, …).
            """)
    @OptionGroup var global: GlobalOptions
    @Option(name: .customLong("token-file"), help: "Read the JWT from this file (default: standard input).") var tokenFile: String?
    @Option(help: "The role to use (default: the one role whose issuer and audience admit the JWT).") var role: String = ""
    @Option(help: "The token's lifetime, such as 15m (default and cap: the role's, the plan's and the JWT's own expiry).") var ttl: String?
    @Option(name: .customLong("scope"), help: "A scope the token carries (repeatable; none: all the role grants this JWT).") var scopes: [String] = []

    func run() async throws {
        let raw: String
        if let tokenFile {
            guard let data = FileManager.default.contents(atPath: tokenFile) else { throw ValidationError("cannot read the token file \(tokenFile)") }
            raw = String(decoding: data, as: UTF8.self)
        } else {
            raw = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        }
        let jwt = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !jwt.isEmpty else { throw ValidationError("no JWT was given (standard input or --token-file)") }
        let request = ExchangeRequest(subjectToken: jwt, role: role, scopes: scopes, ttlSeconds: try ttl.map { try parseSeconds($0, option: "--ttl") } ?? 0)
        let (secret, token): (String, TokenInfo)
        do {
            // Not through `call`: a refusal is an answer (exit 3 with its reason), not a failure of the tool.
            let connection = try await wrap { try await global.connect(admin: false) }
            defer { Task { await connection.close() } }
            (secret, token) = try await connection.exchange(request)
        } catch let error as TollgateClientError where error.code == .server(.exchangeRefused) {
            if global.json {
                let refusal = ExchangeRefusal(wire: error.message)
                printJSON(["decision": "refused", "reason": refusal?.code.rawValue ?? "refused", "message": refusal?.message ?? error.message])
            } else {
                FileHandleStderr.write("refused: \(error.message)\n")
            }
            throw ExitCode(ExitCodes.denied)
        } catch let error as TollgateClientError {
            throw CLIError(error)
        }
        if global.json {
            var object = token.json
            object["secret"] = secret
            printJSON(object)
        } else {
            print(secret)
            FileHandleStderr.write("exchanged for \(token.id) on license \(token.licenseID) for \(token.subject), expires \(formatTime(token.expiresAt)); the secret above is shown once\n")
        }
    }
}

struct SubjectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subject",
        abstract: "Deprovision or reactivate a subject, as the SCIM endpoint does (admin socket).",
        discussion: "deactivate revokes every token issued to the subject and refuses its exchanges; activate allows exchanges again (revoked tokens stay revoked).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "activate or deactivate.") var action: String
    @Argument(help: "The subject (as tokens carry it).") var subject: String
    @Option(help: "Who asks, recorded in the journal.") var actor: String = ""

    func validate() throws {
        guard ["activate", "deactivate"].contains(action) else { throw ValidationError("the action is activate or deactivate") }
    }

    func run() async throws {
        let request = SubjectStatusRequest(subject: subject, active: action == "activate", actor: actor)
        let revoked = try await call(global, admin: true) { try await $0.setSubjectStatus(request) }
        if global.json {
            printJSON(["subject": subject, "active": request.active, "revoked": Int(revoked)])
        } else {
            print(request.active ? "\(subject) may exchange again" : "\(subject) deprovisioned; \(revoked) token(s) revoked")
        }
    }
}

struct Release: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Release a concurrency lease (api socket). Exit 3 when it was not held.",
        discussion: "A lease also ends when the connection that took it closes.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The lease_id a check with --lease printed.") var leaseID: UInt64

    func run() async throws {
        let released = try await call(global, admin: false) { try await $0.release(leaseID: leaseID) }
        if global.json {
            printJSON(["lease_id": leaseID, "released": released])
        } else {
            print(released ? "released lease \(leaseID)" : "lease \(leaseID) was not held (released, or its connection closed)")
        }
        if !released { throw ExitCode(ExitCodes.denied) }
    }
}

struct Settle: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Charge the actual cost of a reservation and release the rest of it (api socket).",
        discussion: "Usage that happened is counted even beyond a limit; the part beyond it is reported as overage.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The reservation_id a check with --reserve printed.") var reservationID: UInt64
    @Argument(help: "Units actually used (0 releases the reservation and charges nothing).") var actualCost: UInt64

    func run() async throws {
        let result = try await call(global, admin: false) { try await $0.settle(SettleRequest(reservationID: reservationID, actualCost: actualCost)) }
        try result.report(json: global.json)
    }
}
