import Foundation
import TollgateClient
import TollgateModel
import TollgateProtocol

#if canImport(Glibc)
import Glibc
#endif


/// One operation of the crash-loop load.
enum CrashOp: Sendable {
    /// CHECK with a cost on meter `calls` with the worker's probe token (quota consumption, flush window).
    case checkCost(worker: Int, cost: UInt64)
    /// CHECK (no meter) of a known secret (current or previous) of some acknowledged token of any worker;
    /// `expected`: the answer the acknowledged (or, after a restart, resolved) changes call for when it was sent
    /// (a revocation, a parent's revocation, a rotation overlap ended).
    case checkPeer(tokenID: String, secret: String, expected: CheckExpectation)
    /// METER on meter `events` with a unique idempotency key.
    case meter(worker: Int, key: String, quantity: UInt64)
    case issue(worker: Int, subject: String)
    /// REVOKE by id (admin) or by a known secret of the token (api; current or previous).
    case revoke(tokenID: String, secret: String, bySecret: Bool)
    case licensePut(LicenseSpec)
    /// DERIVE (api) from an issued token of the worker, presented by its current secret or by a previous one;
    /// `expectDenied`: that previous secret's overlap has ended (acknowledged), so the answer must be `revoked`.
    case derive(worker: Int, parentID: String, secret: String, expectDenied: Bool, scopes: [String], ttl: UInt32)
    /// ROTATE (admin) of a token of the worker.
    case rotate(tokenID: String, grace: UInt32)
    /// ROTATION_END (admin) of a token of the worker.
    case rotationEnd(tokenID: String)

    var kind: String {
        switch self {
        case .checkCost: return "check_cost"
        case .checkPeer: return "check_peer"
        case .meter: return "meter"
        case .issue: return "issue"
        case .revoke: return "revoke"
        case .licensePut: return "license_put"
        case .derive: return "derive"
        case .rotate: return "rotate"
        case .rotationEnd: return "rotation_end"
        }
    }
}

/// A secret a ROTATE replaced, with the end of its overlap as the ledger knows it (acknowledged or resolved).
struct PreviousSecret: Sendable {
    var secret: String
    var validUntil: Int64
}

/// A token whose ISSUE or DERIVE was acknowledged (or, for a derived token, that was revealed by a later read).
struct IssuedToken: Sendable {
    var id: String
    /// The current secret; nil when it is not known (a DERIVE or ROTATE whose answer never came, and that landed).
    var secret: String?
    var licenseID: String
    var subject: String
    var worker: Int
    var round: Int
    /// The token it was derived from; empty for an issued token.
    var parentID: String = ""
    var scopes: [String] = ["*"]
    var expiresAt: Int64 = 0
    var rotatedAt: Int64 = 0
    var previousValidUntil: Int64 = 0
    /// Secrets replaced by acknowledged (or resolved) rotations whose secret was known.
    var previous: [PreviousSecret] = []
    /// What the ledger knows happened to the token (rotations, ends, with rounds and times; never a secret), for
    /// the messages of violations.
    var history: [String] = []

    /// Every secret of the token the ledger knows.
    var knownSecrets: [String] { (secret.map { [$0] } ?? []) + previous.map(\.secret) }
}

/// The answers a CHECK of one secret may get (more than one only within a second of a derived token's expiry).
struct CheckExpectation: Sendable {
    var reasons: Set<DenyReason>
    var only: DenyReason? { reasons.count == 1 ? reasons.first : nil }
    var description: String { reasons.map(\.name).sorted().joined(separator: " or ") }
}

func wallMillis() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

struct AckedMeter: Sendable {
    var key: String
    var worker: Int
    var quantity: UInt64
    var round: Int
}

/// Names shared by the test and the ledger.
enum CrashNames {
    static let plan = "crash_plan"
    static let eventsMeter = "events"
    static let callsMeter = "calls"
    static let quotaLimit: UInt64 = 1_000_000_000_000_000
    /// Probe license of a worker: its probe token meters `events` and consumes `calls`.
    static func probeLicense(_ w: Int) -> String { "lic_w\(w)" }
    /// License the worker issues (and revokes) tokens on.
    static func issueLicense(_ w: Int) -> String { "iss_w\(w)" }
    /// Licenses the worker overwrites with LICENSE_PUT.
    static func putLicense(_ w: Int, _ k: Int) -> String { "lp_w\(w)_\(k)" }
    static let putLicensesPerWorker = 3
    /// Scopes a derived token may be restricted to (issued tokens carry `*`), and one it never gets.
    static let deriveScopes = ["read", "write", "report"]
    static let ungrantedScope = "billing"
    /// Grace of a ROTATE that is not 0: far longer than any run.
    static let longGrace: UInt32 = 7 * 86_400

    static var plan_: Plan {
        Plan(id: plan, entitlements: ["*"], quotas: [
            QuotaRule(meter: eventsMeter, period: .month, limit: quotaLimit),
            QuotaRule(meter: callsMeter, period: .month, limit: quotaLimit),
        ])
    }
}

/// Everything the daemon acknowledged, everything in doubt, and what was observed. Shared by the worker tasks
/// (synchronous methods under a lock, so the kill can be sent at the exact acknowledgement that reaches the
/// round's target).
final class CrashLedger: @unchecked Sendable {
    private let lock = NSLock()

    // MARK: Persistent across rounds (acknowledged, or in doubt and then resolved by a read after a restart)
    private(set) var probeSecrets: [Int: String] = [:]
    private(set) var issued: [String: IssuedToken] = [:]
    private(set) var issuedOrder: [String] = []
    /// Revocations acknowledged, or in doubt and seen applied after a restart: must stay revoked forever.
    private(set) var revoked: [String: Int] = [:]  // id → round it became known
    /// Per worker: acknowledged tokens not revoked and not being revoked (candidates for REVOKE).
    private var pools: [Int: [String]] = [:]
    private(set) var meters: [AckedMeter] = []
    private(set) var meterSum: [Int: UInt64] = [:]
    /// `calls` usage per worker as read right after the last restart.
    var callsBase: [Int: UInt64] = [:]
    /// Current value of each put license (acknowledged, or resolved after a restart).
    private(set) var licenseValues: [String: LicenseSpec] = [:]
    /// Tokens whose ISSUE was in doubt and that turned out to exist (secret unknown).
    private(set) var landedUnknownIssues: Set<String> = []
    /// Parent id → its derived tokens (acknowledged, or in doubt and then seen).
    private(set) var children: [String: [String]] = [:]
    /// Derived token → the token whose revocation revoked it with it (the cascade of 8.9).
    private(set) var cascadeParent: [String: String] = [:]

    // MARK: This round
    private(set) var round = 0
    private var pid: pid_t = 0
    private var target = 0
    private(set) var acks = 0
    private(set) var killed = false
    private(set) var killedByTimeout = false
    /// Monotonic nanoseconds at which SIGKILL was sent.
    private(set) var killTime: UInt64 = 0
    /// This round: only CHECKs, so no durable write carries the usage record along (the flush timer alone).
    private(set) var checksOnly = false
    /// (monotonic nanoseconds of the answer, cost) of every acknowledged CHECK with a cost, this round.
    private(set) var checkAcks: [(at: UInt64, cost: UInt64)] = []
    private(set) var roundIssued: [String] = []
    private(set) var roundRevoked: [String] = []
    private(set) var roundMeters: [AckedMeter] = []
    private(set) var callsAcked: [Int: UInt64] = [:]
    private(set) var callsInDoubt: [Int: UInt64] = [:]
    private(set) var inDoubtMeters: [AckedMeter] = []
    /// subject → worker
    private(set) var inDoubtIssues: [String: Int] = [:]
    private(set) var inDoubtRevokes: Set<String> = []
    /// license → values put without an answer (after its last acknowledged value)
    private(set) var inDoubtPuts: [String: [LicenseSpec]] = [:]
    /// Tokens a CHECK answered `revoked` for before their revocation was acknowledged (a read of a change not yet
    /// durable). Reported, not asserted: if the revoke is then lost, the token is allowed again.
    private(set) var dirtyRevokedObservations: Set<String> = []
    /// The secrets of those observations (kept in memory only, never printed).
    private(set) var dirtySecrets: [String: Set<String>] = [:]
    /// Tokens rotated, rotation-ended or derived from this round (acknowledged or in doubt): checked after the restart.
    private(set) var roundChanged: Set<String> = []
    /// Tokens a ROTATE was sent for this round: a token is rotated at most once a round, so an in-doubt rotation
    /// always has a `rotated_at` different from the last acknowledged one (a restart lies between them).
    private var roundRotated: Set<String> = []
    /// worker → parent id of its DERIVE whose answer never came
    private(set) var inDoubtDerives: [Int: String] = [:]
    private(set) var inDoubtRotates: Set<String> = []
    private(set) var inDoubtEnds: Set<String> = []

    // MARK: Totals
    private(set) var ackedByKind: [String: Int] = [:]
    private(set) var inDoubtByKind: [String: Int] = [:]
    private(set) var violations: [String] = []
    private var rngs: [Int: SplitMix64] = [:]
    private var sequence = 0
    let seed: UInt64

    init(seed: UInt64) { self.seed = seed }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    func violation(_ message: String) {
        withLock { violations.append("round \(round): " + message) }
        print("CRASHLOOP VIOLATION round \(round): \(message)")
    }

    func setProbe(worker: Int, secret: String) { withLock { probeSecrets[worker] = secret } }
    func probeSecret(_ worker: Int) -> String { withLock { probeSecrets[worker]! } }

    /// Starts a load round against the process `pid`, which is killed at the `target`-th acknowledgement.
    func beginRound(_ round: Int, pid: pid_t, target: Int, workers: Int, checksOnly: Bool) {
        withLock {
            self.checksOnly = checksOnly
            checkAcks = []
            killTime = 0
            self.round = round
            self.pid = pid
            self.target = target
            acks = 0
            killed = false
            killedByTimeout = false
            roundIssued = []
            roundRevoked = []
            roundMeters = []
            callsAcked = [:]
            callsInDoubt = [:]
            inDoubtMeters = []
            inDoubtIssues = [:]
            inDoubtRevokes = []
            inDoubtPuts = [:]
            dirtyRevokedObservations = []
            dirtySecrets = [:]
            roundChanged = []
            roundRotated = []
            inDoubtDerives = [:]
            inDoubtRotates = []
            inDoubtEnds = []
            for w in 0..<workers where rngs[w] == nil {
                rngs[w] = SplitMix64(seed: seed &+ UInt64(w + 1) &* 0x1000_0001)
            }
        }
    }

    var isKilled: Bool { withLock { killed } }

    /// SIGKILL now (the round's time bound ran out before the target was reached).
    func killNow(timeout: Bool) {
        withLock {
            guard !killed else { return }
            killed = true
            killedByTimeout = timeout
            killTime = monotonicNanoseconds()
            kill(pid, SIGKILL)
        }
    }

    /// Picks the next operation of worker `w`.
    func nextOp(worker w: Int) -> CrashOp {
        withLock {
            var rng = rngs[w]!
            defer { rngs[w] = rng }
            sequence += 1
            var roll = Int.random(in: 0..<100, using: &rng)
            if checksOnly { roll = roll < 80 ? 0 : 30 }
            let pool = pools[w] ?? []
            switch roll {
            case 0..<30:
                return .checkCost(worker: w, cost: UInt64.random(in: 1...5, using: &rng))
            case 30..<38 where !issuedOrder.isEmpty:
                let id = issuedOrder.randomElement(using: &rng)!
                let token = issued[id]!
                guard let secret = token.knownSecrets.randomElement(using: &rng) else { return .checkCost(worker: w, cost: 1) }
                return .checkPeer(tokenID: id, secret: secret, expected: expectationLocked(token, secret: secret, now: wallMillis()))
            case 38..<60:
                return .meter(worker: w, key: "cl-\(seed)-w\(w)-\(sequence)", quantity: UInt64.random(in: 1...10, using: &rng))
            case 60..<71:
                return .issue(worker: w, subject: "cl-r\(round)-w\(w)-\(sequence)")
            case 71..<78:
                // Parents: the worker's own issued tokens (only this worker revokes, rotates or derives from them, so
                // its acknowledged view of them is exact when it sends).
                let parents = pool.filter { issued[$0]!.parentID.isEmpty && !issued[$0]!.knownSecrets.isEmpty }
                guard let id = parents.randomElement(using: &rng) else { return .checkCost(worker: w, cost: 1) }
                let parent = issued[id]!
                var secret = parent.secret
                var expectDenied = false
                if !parent.previous.isEmpty && (secret == nil || Int.random(in: 0..<3, using: &rng) == 0) {
                    let previous = parent.previous.randomElement(using: &rng)!
                    secret = previous.secret
                    expectDenied = wallMillis() >= previous.validUntil
                }
                let scopes = Int.random(in: 0..<4, using: &rng) == 0
                    ? [] : CrashNames.deriveScopes.filter { _ in Bool.random(using: &rng) }
                return .derive(worker: w, parentID: id, secret: secret!, expectDenied: expectDenied,
                               scopes: scopes, ttl: UInt32.random(in: 1800...3600, using: &rng))
            case 78..<88 where !pool.isEmpty:
                let index = Int.random(in: 0..<pool.count, using: &rng)
                let id = pools[w]!.remove(at: index)
                let secret = issued[id]!.knownSecrets.randomElement(using: &rng)
                let bySecret = Bool.random(using: &rng) && secret != nil
                return .revoke(tokenID: id, secret: secret ?? "", bySecret: bySecret)
            case 88..<93:
                guard let id = pool.filter({ !roundRotated.contains($0) }).randomElement(using: &rng) else { return .checkCost(worker: w, cost: 1) }
                roundRotated.insert(id)
                return .rotate(tokenID: id, grace: Int.random(in: 0..<4, using: &rng) == 0 ? 0 : CrashNames.longGrace)
            case 93..<95:
                guard let id = pool.filter({ issued[$0]!.rotatedAt != 0 }).randomElement(using: &rng) else { return .checkCost(worker: w, cost: 1) }
                return .rotationEnd(tokenID: id)
            case 95..<100:
                let k = Int.random(in: 0..<CrashNames.putLicensesPerWorker, using: &rng)
                let status = LicenseStatus.allCases.randomElement(using: &rng)!
                return .licensePut(LicenseSpec(
                    id: CrashNames.putLicense(w, k), customer: "cust-\(sequence)", plan: CrashNames.plan, status: status,
                    validUntil: Bool.random(using: &rng) ? 0 : 4_102_444_800_000 + Int64(sequence)))
            default:
                return .checkCost(worker: w, cost: 1)
            }
        }
    }

    /// Counts an acknowledgement; sends SIGKILL when it is the round's target-th. Call with the lock held.
    private func acknowledgedLocked(_ kind: String) {
        ackedByKind[kind, default: 0] += 1
        acks += 1
        if !killed && acks >= target {
            killed = true
            killTime = monotonicNanoseconds()
            kill(pid, SIGKILL)
        }
    }

    func ackCheckCost(worker: Int, cost: UInt64) {
        withLock {
            callsAcked[worker, default: 0] += cost
            checkAcks.append((monotonicNanoseconds(), cost))
            acknowledgedLocked("check_cost")
        }
    }

    func ackCheckPeer(tokenID: String, secret: String, expected: CheckExpectation, result: CheckResult) {
        var problem: String?
        withLock {
            let which = issued[tokenID]?.secret == secret ? "current" : "a previous"
            if expected.reasons.contains(result.reason) {
                // as the acknowledged changes say
            } else if expected.only == .revoked {
                problem = "token \(tokenID) (\(which) secret), whose revocation or end of overlap was acknowledged, was answered \(result.reason.name) by a CHECK (history: \((issued[tokenID]?.history ?? []).joined(separator: "; ")))"
            } else if result.reason == .revoked {
                dirtyRevokedObservations.insert(tokenID)
                dirtySecrets[tokenID, default: []].insert(secret)
            } else {
                problem = "acknowledged token \(tokenID) (\(which) secret) was answered \(result.reason.name), expected \(expected.description)"
            }
            acknowledgedLocked("check_peer")
        }
        if let problem { violation(problem) }
    }

    /// What a CHECK of `secret` (a known secret of `token`) must answer at `now` (wall-clock milliseconds, the
    /// daemon's clock), from what the ledger holds: PROTOCOL.md 8.8 steps 3 and 4 (a previous secret whose overlap
    /// ended; the token or its parent revoked; expired), then, with `scope`, step 7. Call with the lock held.
    func expectationLocked(_ token: IssuedToken, secret: String, now: Int64, scope: String? = nil) -> CheckExpectation {
        if secret != token.secret, let previous = token.previous.first(where: { $0.secret == secret }), now >= previous.validUntil {
            return CheckExpectation(reasons: [.revoked])
        }
        if revoked[token.id] != nil || (!token.parentID.isEmpty && revoked[token.parentID] != nil) {
            return CheckExpectation(reasons: [.revoked])
        }
        let usable: DenyReason = scope.map { scope in token.scopes.contains("*") || token.scopes.contains(scope) ? .none : .insufficientScope } ?? .none
        if token.expiresAt != 0 {
            // A second either side of the expiry: the two clocks are read at slightly different moments.
            if now >= token.expiresAt + 1000 { return CheckExpectation(reasons: [.expired]) }
            if now >= token.expiresAt - 1000 { return CheckExpectation(reasons: [.expired, usable]) }
        }
        return CheckExpectation(reasons: [usable])
    }

    func expectation(tokenID: String, secret: String, scope: String? = nil) -> CheckExpectation {
        withLock { expectationLocked(issued[tokenID]!, secret: secret, now: wallMillis(), scope: scope) }
    }

    func ackDerive(worker: Int, parentID: String, expectDenied: Bool, scopes: [String], ttl: UInt32, result: CheckResult, secret: String, token: TokenInfo?) {
        var problem: String?
        withLock {
            defer { acknowledgedLocked("derive") }
            roundChanged.insert(parentID)
            let parent = issued[parentID]!
            if expectDenied {
                if result.reason != .revoked || token != nil {
                    problem = "DERIVE from token \(parentID) with a previous secret whose overlap had ended was answered \(result.reason.name) (a token: \(token != nil)), expected revoked"
                }
                return
            }
            guard result.allowed, let token, !secret.isEmpty else {
                problem = "DERIVE from token \(parentID) was answered \(result.reason.name), expected allowed"
                return
            }
            let wantScopes = scopes.isEmpty ? parent.scopes : scopes
            if token.parentID != parentID || token.licenseID != parent.licenseID || token.subject != parent.subject
                || token.scopes != wantScopes || token.expiresAt != token.issuedAt + Int64(ttl) * 1000 || token.revokedAt != 0 {
                problem = "DERIVE from token \(parentID) answered child \(token.id) with parent \(token.parentID), license \(token.licenseID), scopes \(token.scopes) (asked \(wantScopes)), expires_at − issued_at \(token.expiresAt - token.issuedAt) ms (ttl \(ttl) s), revoked_at \(token.revokedAt)"
            }
            issued[token.id] = IssuedToken(
                id: token.id, secret: secret, licenseID: token.licenseID, subject: token.subject, worker: worker, round: round,
                parentID: parentID, scopes: token.scopes, expiresAt: token.expiresAt)
            issuedOrder.append(token.id)
            roundIssued.append(token.id)
            pools[worker, default: []].append(token.id)
            children[parentID, default: []].append(token.id)
        }
        if let problem { violation(problem) }
    }

    func ackRotate(tokenID: String, grace: UInt32, secret: String, token info: TokenInfo) {
        var problem: String?
        withLock {
            if info.id != tokenID || info.rotatedAt == 0 || info.previousSecretValidUntil != info.rotatedAt + Int64(grace) * 1000 {
                problem = "ROTATE of \(tokenID) (grace \(grace) s) answered token \(info.id) rotated_at \(info.rotatedAt) previous_valid_until \(info.previousSecretValidUntil)"
            }
            var token = issued[tokenID]!
            if let old = token.secret { token.previous.append(PreviousSecret(secret: old, validUntil: info.previousSecretValidUntil)) }
            token.secret = secret
            token.rotatedAt = info.rotatedAt
            token.previousValidUntil = info.previousSecretValidUntil
            token.history.append("round \(round): ROTATE grace \(grace) s acknowledged, rotated_at \(info.rotatedAt)")
            issued[tokenID] = token
            roundChanged.insert(tokenID)
            acknowledgedLocked("rotate")
        }
        if let problem { violation(problem) }
    }

    func ackRotationEnd(tokenID: String, token info: TokenInfo) {
        var problem: String?
        withLock {
            let now = wallMillis()
            var token = issued[tokenID]!
            if info.id != tokenID || info.rotatedAt != token.rotatedAt || info.previousSecretValidUntil > now {
                problem = "ROTATION_END of \(tokenID) answered token \(info.id) rotated_at \(info.rotatedAt) (known \(token.rotatedAt)) previous_valid_until \(info.previousSecretValidUntil) (now \(now))"
            }
            // PROTOCOL.md 6.15: every previous secret of the token is refused from the next check.
            for i in token.previous.indices { token.previous[i].validUntil = min(token.previous[i].validUntil, now) }
            token.previousValidUntil = info.previousSecretValidUntil
            token.history.append("round \(round): ROTATION_END acknowledged at \(now), previous_valid_until \(info.previousSecretValidUntil)")
            issued[tokenID] = token
            roundChanged.insert(tokenID)
            acknowledgedLocked("rotation_end")
        }
        if let problem { violation(problem) }
    }

    func ackMeter(worker: Int, key: String, quantity: UInt64, result: MeterResult) {
        var problem: String?
        withLock {
            if !result.allowed || result.duplicate {
                problem = "METER \(key) was answered \(result.reason.name) duplicate=\(result.duplicate)"
            } else {
                let m = AckedMeter(key: key, worker: worker, quantity: quantity, round: round)
                meters.append(m)
                roundMeters.append(m)
                meterSum[worker, default: 0] += quantity
            }
            acknowledgedLocked("meter")
        }
        if let problem { violation(problem) }
    }

    func ackIssue(worker: Int, secret: String, token: TokenInfo) {
        withLock {
            issued[token.id] = IssuedToken(id: token.id, secret: secret, licenseID: token.licenseID, subject: token.subject, worker: worker, round: round, scopes: token.scopes)
            issuedOrder.append(token.id)
            roundIssued.append(token.id)
            pools[worker, default: []].append(token.id)
            acknowledgedLocked("issue")
        }
    }

    func ackRevoke(tokenID: String, count: UInt32) {
        var problem: String?
        withLock {
            let cascaded = revokeLocked(tokenID)
            // The token and its derived tokens not yet revoked (PROTOCOL.md 6.5, 8.9).
            if count != 1 + UInt32(cascaded.count) {
                problem = "REVOKE of live token \(tokenID) answered count \(count), expected 1 + \(cascaded.count) live derived tokens"
            }
            acknowledgedLocked("revoke")
        }
        if let problem { violation(problem) }
    }

    /// Records the revocation of `id` and of its derived tokens not yet revoked (returned). Lock held.
    @discardableResult
    private func revokeLocked(_ id: String) -> [String] {
        revoked[id] = round
        roundRevoked.append(id)
        let cascaded = (children[id] ?? []).filter { revoked[$0] == nil }
        for child in cascaded {
            revoked[child] = round
            cascadeParent[child] = id
            roundRevoked.append(child)
        }
        if !cascaded.isEmpty, let w = issued[id]?.worker {
            let gone = Set(cascaded)
            pools[w]?.removeAll { gone.contains($0) }
        }
        return cascaded
    }

    func ackLicensePut(_ spec: LicenseSpec, info: LicenseInfo) {
        var problem: String?
        withLock {
            if info.spec != spec { problem = "LICENSE_PUT \(spec.id) answered \(info.spec) for \(spec)" }
            licenseValues[spec.id] = spec
            inDoubtPuts[spec.id] = nil  // a later acknowledged put supersedes earlier unanswered ones
            acknowledgedLocked("license_put")
        }
        if let problem { violation(problem) }
    }

    /// The operation's answer never came: it may or may not have happened.
    func inDoubt(_ op: CrashOp) {
        withLock {
            inDoubtByKind[op.kind, default: 0] += 1
            switch op {
            case .checkCost(let w, let cost): callsInDoubt[w, default: 0] += cost
            case .checkPeer: break
            case .meter(let w, let key, let quantity): inDoubtMeters.append(AckedMeter(key: key, worker: w, quantity: quantity, round: round))
            case .issue(let w, let subject): inDoubtIssues[subject] = w
            case .revoke(let id, _, _): inDoubtRevokes.insert(id)
            case .licensePut(let spec): inDoubtPuts[spec.id, default: []].append(spec)
            case .derive(let w, let parent, _, let expectDenied, _, _):
                roundChanged.insert(parent)
                if !expectDenied { inDoubtDerives[w] = parent }
            case .rotate(let id, _):
                roundChanged.insert(id)
                inDoubtRotates.insert(id)
            case .rotationEnd(let id):
                roundChanged.insert(id)
                inDoubtEnds.insert(id)
            }
        }
    }

    /// An operation refused with an error status (never expected under this load).
    func refused(_ op: CrashOp, _ error: Error) {
        violation("\(op.kind) was refused: \(error)")
        // Give a revoke candidate back: the refusal says nothing was done.
        if case .revoke(let id, _, _) = op {
            withLock { if let w = issued[id]?.worker { pools[w, default: []].append(id) } }
        }
    }

    // MARK: Resolution after a restart

    func resolveRevoke(_ id: String, applied: Bool) {
        withLock {
            inDoubtRevokes.remove(id)
            if applied {
                revokeLocked(id)
            } else if let w = issued[id]?.worker {
                pools[w, default: []].append(id)
            }
        }
    }

    func resolveMeters(_ resolved: [AckedMeter]) {
        withLock {
            for m in resolved {
                meters.append(m)
                roundMeters.append(m)
                meterSum[m.worker, default: 0] += m.quantity
            }
            inDoubtMeters = []
        }
    }

    func resolveLicense(_ id: String, to spec: LicenseSpec?) {
        withLock {
            if let spec { licenseValues[id] = spec }
            inDoubtPuts[id] = nil
        }
    }

    /// An in-doubt ROTATE, resolved by TOKEN_GET: it landed when `rotated_at` moved (the token is rotated at most
    /// once a round, so an acknowledged rotation never shares it). Its secret is unknown from then on; the secret
    /// it replaced is a previous one with the overlap read back. Returns whether it landed.
    func resolveRotation(_ id: String, info: TokenInfo) -> Bool {
        withLock {
            inDoubtRotates.remove(id)
            var token = issued[id]!
            guard info.rotatedAt != token.rotatedAt else { return false }
            if let old = token.secret { token.previous.append(PreviousSecret(secret: old, validUntil: info.previousSecretValidUntil)) }
            token.secret = nil
            token.rotatedAt = info.rotatedAt
            token.previousValidUntil = info.previousSecretValidUntil
            token.history.append("round \(round): in-doubt ROTATE landed, rotated_at \(info.rotatedAt)")
            issued[id] = token
            return true
        }
    }

    /// The known previous secrets of `id` whose overlap the ledger holds as running (not revoked token).
    func previousSecretsInOverlap(_ id: String) -> [String] {
        withLock {
            let now = wallMillis()
            guard let token = issued[id], revoked[id] == nil else { return [] }
            return token.previous.filter { $0.validUntil > now + 1000 }.map(\.secret)
        }
    }

    /// An in-doubt ROTATION_END, resolved by TOKEN_GET: it landed when `previous_valid_until` moved (to its time),
    /// or when a previous secret in its overlap is refused (`previousRefused`). From then on every previous secret
    /// must be refused (checked with the other secrets).
    func resolveRotationEnd(_ id: String, info: TokenInfo, previousRefused: Bool) -> Bool {
        withLock {
            inDoubtEnds.remove(id)
            var token = issued[id]!
            let moved = info.previousSecretValidUntil != token.previousValidUntil
            guard moved || previousRefused else { return false }
            let end = moved ? info.previousSecretValidUntil : wallMillis()
            for i in token.previous.indices { token.previous[i].validUntil = min(token.previous[i].validUntil, end) }
            token.previousValidUntil = info.previousSecretValidUntil
            token.history.append("round \(round): in-doubt ROTATION_END landed, previous_valid_until \(info.previousSecretValidUntil)")
            issued[id] = token
            return true
        }
    }

    func history(_ id: String) -> String { withLock { (issued[id]?.history ?? []).joined(separator: "; ") } }

    /// In-doubt DERIVEs whose child turned out to exist (secret unknown): tracked from now on (present, revoked with
    /// their parent, rotatable and revocable by id).
    func resolveDerives(landed: [(worker: Int, info: TokenInfo)]) {
        withLock {
            for (w, info) in landed {
                issued[info.id] = IssuedToken(
                    id: info.id, secret: nil, licenseID: info.licenseID, subject: info.subject, worker: w, round: round,
                    parentID: info.parentID, scopes: info.scopes, expiresAt: info.expiresAt)
                issuedOrder.append(info.id)
                pools[w, default: []].append(info.id)
                children[info.parentID, default: []].append(info.id)
            }
            inDoubtDerives = [:]
        }
    }

    func resolveIssues(landed: [String]) {
        withLock {
            landedUnknownIssues.formUnion(landed)
            inDoubtIssues = [:]
        }
    }
}

func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// How long before the kill the oldest forgotten check consumption was acknowledged, assuming what is forgotten
/// is the most recent consumption (`lost` units of the newest acknowledgements). Nil when nothing was lost.
func lossWindowMillis(lost: UInt64, acks: [(at: UInt64, cost: UInt64)], killTime: UInt64) -> UInt64? {
    guard lost > 0 else { return nil }
    var sum: UInt64 = 0
    for ack in acks.sorted(by: { $0.at > $1.at }) {
        sum += ack.cost
        if sum >= lost { return killTime > ack.at ? (killTime - ack.at) / 1_000_000 : 0 }
    }
    return acks.map(\.at).min().map { killTime > $0 ? (killTime - $0) / 1_000_000 : 0 }
}

/// Runs `body` over `items` with at most `width` calls in flight (requests are pipelined on one connection).
func concurrentForEach<T: Sendable>(_ items: [T], width: Int = 32, _ body: @escaping @Sendable (T) async throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        var iterator = items.makeIterator()
        for _ in 0..<width {
            guard let item = iterator.next() else { break }
            group.addTask { try await body(item) }
        }
        while try await group.next() != nil {
            if let item = iterator.next() { group.addTask { try await body(item) } }
        }
    }
}

/// Median and maximum of a list of counts.
func medianAndMax(_ values: [UInt64]) -> (median: UInt64, max: UInt64) {
    guard !values.isEmpty else { return (0, 0) }
    let sorted = values.sorted()
    return (sorted[sorted.count / 2], sorted.last!)
}
