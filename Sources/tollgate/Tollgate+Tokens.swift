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
