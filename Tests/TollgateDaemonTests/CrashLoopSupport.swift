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
    /// CHECK (no meter) of some acknowledged issued token of any worker; `knownRevoked`: its revocation was
    /// acknowledged (or seen after a restart) before this check was sent.
    case checkPeer(tokenID: String, secret: String, knownRevoked: Bool)
    /// METER on meter `events` with a unique idempotency key.
    case meter(worker: Int, key: String, quantity: UInt64)
    case issue(worker: Int, subject: String)
    case revoke(tokenID: String, secret: String, bySecret: Bool)
    case licensePut(LicenseSpec)

    var kind: String {
        switch self {
        case .checkCost: return "check_cost"
        case .checkPeer: return "check_peer"
        case .meter: return "meter"
        case .issue: return "issue"
        case .revoke: return "revoke"
        case .licensePut: return "license_put"
        }
    }
}

/// A token whose ISSUE was acknowledged (or that was revealed by a later read).
struct IssuedToken: Sendable {
    var id: String
    var secret: String
    var licenseID: String
    var subject: String
    var worker: Int
    var round: Int
}

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
            switch roll {
            case 0..<30:
                return .checkCost(worker: w, cost: UInt64.random(in: 1...5, using: &rng))
            case 30..<38 where !issuedOrder.isEmpty:
                let id = issuedOrder.randomElement(using: &rng)!
                let token = issued[id]!
                return .checkPeer(tokenID: id, secret: token.secret, knownRevoked: revoked[id] != nil)
            case 38..<63:
                return .meter(worker: w, key: "cl-\(seed)-w\(w)-\(sequence)", quantity: UInt64.random(in: 1...10, using: &rng))
            case 63..<78:
                return .issue(worker: w, subject: "cl-r\(round)-w\(w)-\(sequence)")
            case 78..<90 where !(pools[w] ?? []).isEmpty:
                let index = Int.random(in: 0..<pools[w]!.count, using: &rng)
                let id = pools[w]!.remove(at: index)
                return .revoke(tokenID: id, secret: issued[id]!.secret, bySecret: Bool.random(using: &rng))
            case 90..<100:
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

    func ackCheckPeer(tokenID: String, knownRevoked: Bool, result: CheckResult) {
        var problem: String?
        withLock {
            if knownRevoked && result.reason != .revoked {
                problem = "token \(tokenID), whose revocation was acknowledged, was answered \(result.reason.name) by a CHECK"
            } else if !knownRevoked && result.reason == .revoked && revoked[tokenID] == nil {
                dirtyRevokedObservations.insert(tokenID)
            } else if result.reason != .revoked && result.reason != .none {
                problem = "acknowledged token \(tokenID) was answered \(result.reason.name)"
            }
            acknowledgedLocked("check_peer")
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
            issued[token.id] = IssuedToken(id: token.id, secret: secret, licenseID: token.licenseID, subject: token.subject, worker: worker, round: round)
            issuedOrder.append(token.id)
            roundIssued.append(token.id)
            pools[worker, default: []].append(token.id)
            acknowledgedLocked("issue")
        }
    }

    func ackRevoke(tokenID: String, count: UInt32) {
        var problem: String?
        withLock {
            if count != 1 { problem = "REVOKE of live token \(tokenID) answered count \(count)" }
            revoked[tokenID] = round
            roundRevoked.append(tokenID)
            acknowledgedLocked("revoke")
        }
        if let problem { violation(problem) }
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
                revoked[id] = round
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
