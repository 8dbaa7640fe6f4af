import Foundation
import TollgateClient
import TollgateModel
import TollgateProtocol
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The real `tollgated` in a child process, under a load of checks, meters, issues, revokes, license puts, derives
/// (api socket), rotations (with a grace far longer than the run, or none) and rotation ends from several connections, killed with SIGKILL after a random number of acknowledged operations, restarted on
/// the same state directory, K times. After every restart, everything acknowledged is checked against what the
/// daemon recovered (PROTOCOL.md 7.2; README, Durability):
///
/// - every acknowledged (or in-doubt and then seen) revocation is present, and a revoked token is never allowed
///   again in any later round;
/// - every acknowledged ISSUE exists (TOKEN_LIST of its license) and its secret checks allowed unless revoked;
///   no token appears that was neither acknowledged nor in doubt;
/// - every acknowledged DERIVE exists with its parent, scopes and expiry; its secret checks allowed (and is refused
///   a scope it was not given) unless it or its parent was revoked (`revoked`) or it expired (ttls of 30–60 min, and
///   the expectation follows `expires_at` exactly, within a second); a REVOKE answers the token plus its live
///   derived tokens, and after a restart the derived tokens of every revoked parent are revoked with the parent's
///   `revoked_at`; an in-doubt DERIVE's child may appear, once, and is then tracked like the others;
/// - every acknowledged ROTATE and ROTATION_END is in force (`rotated_at`, `previous_valid_until`): the new secret
///   checks allowed unless revoked, each previous secret allowed until its overlap ends (the grace, or an
///   acknowledged ROTATION_END, which ends every overlap of the token) and `revoked` after; DERIVE with a previous
///   secret whose overlap ended is refused `revoked`. In-doubt rotations and ends are read back (TOKEN_GET; an end
///   also by a CHECK of a previous secret) and held to; the secret of a rotation that landed unknown is never used;
/// - every acknowledged LICENSE_PUT is in force (or a later put to the same license whose answer never came);
/// - every acknowledged METER key is still deduplicated, and each license's `events` total is between the
///   acknowledged sum and the acknowledged plus in-doubt sum — exactly the acknowledged sum plus the in-doubt
///   events that re-sending their keys shows were already counted;
/// - `calls` consumed by CHECK never exceeds acknowledged + in-doubt, and never goes below what the previous
///   restart recovered from the journal. What the flush window lost (acknowledged but forgotten) is printed,
///   not asserted: its bound is in time, not in count.
///
/// Environment: `TOLLGATE_CRASH_ROUNDS` (default 8), `TOLLGATE_CRASH_SEED`, `TOLLGATE_CRASH_WORKERS` (default 4),
/// `TOLLGATE_CRASH_MAX_ACKS` (largest kill point, default 1500), `TOLLGATE_CRASH_SNAPSHOT_BYTES` (default 65536,
/// so snapshots and compaction also get killed), `TOLLGATE_CRASH_KEEP=1` keeps the state directory.
final class CrashLoopTests: XCTestCase {
    private var process: Process?
    private var logHandle: FileHandle?

    override func tearDown() async throws {
        if let process, process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? logHandle?.close()
        process = nil
    }

    static func environment(_ name: String) -> String? { ProcessInfo.processInfo.environment[name].flatMap { $0.isEmpty ? nil : $0 } }

    // MARK: - The child process

    func startDaemon(config: String, stateDir: String, logPath: String) throws -> Process {
        let binary = try XCTUnwrap(KillTests.daemonBinary, "build tollgated first (swift build)")
        if logHandle == nil {
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
            logHandle = FileHandle(forWritingAtPath: logPath)
        }
        let child = Process()
        child.executableURL = binary
        child.arguments = ["--config", config, "--state-dir", stateDir, "--log-level", "warning"]
        child.standardOutput = FileHandle.nullDevice
        child.standardError = logHandle
        try child.run()
        process = child
        return child
    }

    /// Polls (bounded) until the admin socket answers a PING; fails at once if the daemon exits instead.
    func waitUntilServing(_ child: Process, stateDir: String, logPath: String) async throws {
        for _ in 0..<600 {
            if !child.isRunning {
                throw TestSupportError("tollgated exited with status \(child.terminationStatus) instead of serving; its log:\n\(Self.tail(logPath))")
            }
            if let connection = try? await TollgateConnection.connect(path: stateDir + "/tollgate-admin.sock") {
                let ok = (try? await connection.ping()) != nil
                await connection.close()
                if ok { return }
            }
            try await Task.sleep(for: .milliseconds(20))  // polling for readiness, not timing a result
        }
        throw TestSupportError("tollgated did not serve within 12 s; its log:\n\(Self.tail(logPath))")
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func tail(_ path: String) -> String {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(30).joined(separator: "\n")
    }

    func killAndReap(_ child: Process, ledger: CrashLedger?) {
        if let ledger { ledger.killNow(timeout: true) } else { kill(child.processIdentifier, SIGKILL) }
        child.waitUntilExit()
    }

    // MARK: - The test

    func testAcknowledgedStateSurvivesRepeatedKill9UnderLoad() async throws {
        let rounds = Self.environment("TOLLGATE_CRASH_ROUNDS").flatMap(Int.init) ?? 8
        let seed = Self.environment("TOLLGATE_CRASH_SEED").flatMap { UInt64($0) } ?? 0x7011_6A7E
        let workers = Self.environment("TOLLGATE_CRASH_WORKERS").flatMap(Int.init) ?? 4
        let maxAcks = Self.environment("TOLLGATE_CRASH_MAX_ACKS").flatMap(Int.init) ?? 1500
        let snapshotBytes = Self.environment("TOLLGATE_CRASH_SNAPSHOT_BYTES").flatMap(Int.init) ?? 65536
        let keep = Self.environment("TOLLGATE_CRASH_KEEP") == "1"
        print("crash loop: rounds=\(rounds) seed=\(seed) workers=\(workers) max_acks=\(maxAcks) snapshot_after_bytes=\(snapshotBytes)")

        let started = ContinuousClock.now
        let directory = try makeTemporaryDirectory()
        let stateDir = directory + "/state"
        let config = directory + "/config.json"
        let logPath = directory + "/tollgated.log"
        try Data(#"{ "usage_flush_interval_ms": 100, "journal": { "fsync": true, "snapshot_after_bytes": \#(snapshotBytes) } }"#.utf8)
            .write(to: URL(fileURLWithPath: config))
        var rng = SplitMix64(seed: seed)
        let ledger = CrashLedger(seed: seed)
        var child = try startDaemon(config: config, stateDir: stateDir, logPath: logPath)
        try await waitUntilServing(child, stateDir: stateDir, logPath: logPath)

        // Round 0: plan, licenses and one probe token per worker, all acknowledged before any kill.
        do {
            let admin = try await TollgateConnection.connect(path: stateDir + "/tollgate-admin.sock")
            _ = try await admin.putPlan(CrashNames.plan_)
            for w in 0..<workers {
                for license in [CrashNames.probeLicense(w), CrashNames.issueLicense(w)] {
                    _ = try await admin.putLicense(LicenseSpec(id: license, customer: "crash", plan: CrashNames.plan, status: .active))
                }
                let (secret, _) = try await admin.issue(IssueRequest(licenseID: CrashNames.probeLicense(w), subject: "probe-\(w)"))
                ledger.setProbe(worker: w, secret: secret)
                ledger.callsBase[w] = 0
            }
            await admin.close()
        }

        var lossPerKill: [UInt64] = []
        var lossMillisMixed: [UInt64] = []
        var lossMillisChecksOnly: [UInt64] = []
        var interruptedSnapshots = 0
        var snapshotFiles = Set<String>()
        var inDoubtCallsCounted: UInt64 = 0
        var landedInDoubtIssues = 0
        var landedInDoubtDerives = 0
        var landedInDoubtRotations = 0
        var landedInDoubtEnds = 0
        var dirtyReverted = 0
        var dirtyObserved = 0
        var repairs = 0
        var timeouts = 0
        var snapshotsSeen = 0
        var roundTimes: [Double] = []

        for round in 1...rounds {
            let roundStart = ContinuousClock.now
            // Every fourth round only checks: no durable write carries the usage record to disk early. Checks
            // are answered much faster, so those rounds run to four times as many acknowledgements.
            let checksOnly = round % 4 == 0
            let target = Int.random(in: 1...(checksOnly ? 4 * maxAcks : maxAcks), using: &rng)
            var connections: [(TollgateConnection, TollgateConnection)] = []
            for _ in 0..<workers {
                connections.append((
                    try await TollgateConnection.connect(path: stateDir + "/tollgate.sock"),
                    try await TollgateConnection.connect(path: stateDir + "/tollgate-admin.sock")))
            }
            ledger.beginRound(round, pid: child.processIdentifier, target: target, workers: workers, checksOnly: checksOnly)
            let loadStart = ContinuousClock.now
            let deadline = ContinuousClock.now + .seconds(20)
            await withTaskGroup(of: Void.self) { group in
                for w in 0..<workers {
                    let (api, admin) = connections[w]
                    group.addTask { await Self.runWorker(w, api: api, admin: admin, ledger: ledger, deadline: deadline) }
                }
                // The round's time bound: if the target is not reached in time, kill anyway.
                group.addTask {
                    try? await Task.sleep(until: deadline, clock: .continuous)
                    if !Task.isCancelled { ledger.killNow(timeout: true) }
                }
                for _ in 0..<workers { await group.next() }
                group.cancelAll()
            }
            killAndReap(child, ledger: ledger)
            let loadSeconds = Self.seconds(ContinuousClock.now - loadStart)
            XCTAssertEqual(child.terminationReason, .uncaughtSignal, "round \(round): the daemon died of SIGKILL")
            for (api, admin) in connections {
                await api.close()
                await admin.close()
            }
            if ledger.killedByTimeout { timeouts += 1 }
            let acks = ledger.acks
            // Snapshot files before the restart cleans up: a `.tmp` is a snapshot the kill interrupted.
            let journalFiles = (try? FileManager.default.contentsOfDirectory(atPath: stateDir + "/journal")) ?? []
            let interrupted = journalFiles.contains { $0.hasSuffix(".tmp") }
            if interrupted { interruptedSnapshots += 1 }
            snapshotFiles.formUnion(journalFiles.filter { $0.hasSuffix(".snap") })
            let (callsThisRound, checkAcks, killTime) = ledger.withLock { (ledger.callsAcked.values.reduce(0, +), ledger.checkAcks, ledger.killTime) }
            let doubt = ledger.withLock { (ledger.inDoubtMeters.count, ledger.inDoubtIssues.count, ledger.inDoubtRevokes.count, ledger.inDoubtPuts.values.map(\.count).reduce(0, +), ledger.callsInDoubt.values.reduce(0, +)) }
            let doubtKeys = ledger.withLock { (ledger.inDoubtDerives.count, ledger.inDoubtRotates.count, ledger.inDoubtEnds.count) }

            // Restart on the same state directory and check everything.
            child = try startDaemon(config: config, stateDir: stateDir, logPath: logPath)
            try await waitUntilServing(child, stateDir: stateDir, logPath: logPath)
            let pid = child.processIdentifier
            let guardTask = Task {
                // Bound on one verification: a daemon that stops answering fails the round instead of hanging it.
                try await Task.sleep(for: .seconds(90))
                kill(pid, SIGKILL)
            }
            let outcome: RoundOutcome
            do {
                outcome = try await verify(round: round, full: round == rounds, ledger: ledger, stateDir: stateDir, workers: workers, rng: &rng)
                guardTask.cancel()
            } catch {
                guardTask.cancel()
                throw error
            }
            lossPerKill.append(outcome.loss)
            inDoubtCallsCounted += outcome.inDoubtCallsCounted
            landedInDoubtIssues += outcome.landedIssues
            landedInDoubtDerives += outcome.landedDerives
            landedInDoubtRotations += outcome.landedRotations
            landedInDoubtEnds += outcome.landedEnds
            dirtyReverted += outcome.dirtyReverted
            dirtyObserved += outcome.dirtyObserved
            repairs += outcome.repaired ? 1 : 0
            snapshotsSeen += outcome.snapshotOnDisk ? 1 : 0
            let seconds = Self.seconds(ContinuousClock.now - roundStart)
            roundTimes.append(seconds)
            // The loss expressed as time: how long before the kill the oldest forgotten consumption was
            // acknowledged (to compare with usage_flush_interval_ms).
            let lossMillis = lossWindowMillis(lost: outcome.loss, acks: checkAcks, killTime: killTime) ?? 0
            if checksOnly { lossMillisChecksOnly.append(lossMillis) } else { lossMillisMixed.append(lossMillis) }
            print(String(format: "round %d%@: load %.3f s, kill at ack %d/%d%@%@; in doubt meter=%d issue=%d revoke=%d put=%d derive=%d rotate=%d end=%d calls=%d; calls acked %llu lost %llu (~%llu ms); torn tail %@; round %.2f s",
                         round, checksOnly ? " (checks only)" : "", loadSeconds, acks, target, ledger.killedByTimeout ? " (time bound)" : "", interrupted ? " (snapshot interrupted)" : "",
                         doubt.0, doubt.1, doubt.2, doubt.3, doubtKeys.0, doubtKeys.1, doubtKeys.2, doubt.4, callsThisRound, outcome.loss, lossMillis, outcome.repaired ? "repaired" : "no", seconds))
            if !ledger.violations.isEmpty { break }
        }
        killAndReap(child, ledger: nil)

        let wall = ContinuousClock.now - started
        let (medianLoss, maxLoss) = medianAndMax(lossPerKill)
        let (medianMixed, maxMixed) = medianAndMax(lossMillisMixed)
        let (medianChecksOnly, maxChecksOnly) = medianAndMax(lossMillisChecksOnly)
        let acked = ledger.withLock { ledger.ackedByKind }
        let doubts = ledger.withLock { ledger.inDoubtByKind }
        print("""
            crash loop summary: rounds=\(lossPerKill.count) seed=\(seed) workers=\(workers) wall=\(wall)
              acknowledged: total=\(acked.values.reduce(0, +)) \(acked.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
              in doubt: total=\(doubts.values.reduce(0, +)) \(doubts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
              in-doubt issues that turned out to exist: \(landedInDoubtIssues); derives: \(landedInDoubtDerives); rotations: \(landedInDoubtRotations); rotation ends: \(landedInDoubtEnds); in-doubt calls that were counted: \(inDoubtCallsCounted)
              check consumption lost per kill (flush window, units of cost): median=\(medianLoss) max=\(maxLoss) total=\(lossPerKill.reduce(0, +))
              age at the kill of the oldest forgotten check consumption: mixed rounds median=\(medianMixed) ms max=\(maxMixed) ms; checks-only rounds median=\(medianChecksOnly) ms max=\(maxChecksOnly) ms (usage_flush_interval_ms=100)
              tokens seen revoked by a CHECK before the revoke (or rotation, or end) was acknowledged: \(dirtyObserved); of them allowed again after the kill: \(dirtyReverted)
              restarts that repaired a torn tail: \(repairs); restarts with a snapshot on disk: \(snapshotsSeen); snapshots written: \(snapshotFiles.count); kills that interrupted a snapshot: \(interruptedSnapshots); rounds ended by the time bound: \(timeouts)
              violations: \(ledger.violations.count)
            """)
        XCTAssertEqual(ledger.violations, [], "acknowledged state was lost or changed across a kill -9 (seed \(seed)); state kept in \(directory)")
        if ledger.violations.isEmpty && !keep {
            try? FileManager.default.removeItem(atPath: directory)
        } else {
            print("state directory kept: \(directory)")
        }
    }

    // MARK: - Load

    static func runWorker(_ w: Int, api: TollgateConnection, admin: TollgateConnection, ledger: CrashLedger, deadline: ContinuousClock.Instant) async {
        let probe = ledger.probeSecret(w)
        while !ledger.isKilled && ContinuousClock.now < deadline {
            let op = ledger.nextOp(worker: w)
            do {
                switch op {
                case .checkCost(_, let cost):
                    let result = try await api.check(CheckRequest(token: probe, meter: CrashNames.callsMeter, cost: cost))
                    if result.allowed {
                        ledger.ackCheckCost(worker: w, cost: cost)
                    } else {
                        ledger.violation("the probe token of worker \(w) was answered \(result.reason.name)")
                    }
                case .checkPeer(let id, let secret, let expected):
                    let result = try await api.check(CheckRequest(token: secret))
                    ledger.ackCheckPeer(tokenID: id, secret: secret, expected: expected, result: result)
                case .meter(_, let key, let quantity):
                    let result = try await api.meter(MeterRequest(token: probe, meter: CrashNames.eventsMeter, quantity: quantity, idempotencyKey: key))
                    ledger.ackMeter(worker: w, key: key, quantity: quantity, result: result)
                case .issue(_, let subject):
                    let (secret, token) = try await admin.issue(IssueRequest(licenseID: CrashNames.issueLicense(w), subject: subject))
                    ledger.ackIssue(worker: w, secret: secret, token: token)
                case .revoke(let id, let secret, let bySecret):
                    let count = bySecret
                        ? try await api.revoke(RevokeRequest(target: .secret(secret), reason: "crash-loop"))
                        : try await admin.revoke(RevokeRequest(target: .tokenID(id), reason: "crash-loop"))
                    ledger.ackRevoke(tokenID: id, count: count)
                case .licensePut(let spec):
                    let info = try await admin.putLicense(spec)
                    ledger.ackLicensePut(spec, info: info)
                case .derive(_, let parentID, let secret, let expectDenied, let scopes, let ttl):
                    let (result, childSecret, child) = try await api.derive(DeriveRequest(parent: secret, scopes: scopes, ttlSeconds: ttl))
                    ledger.ackDerive(worker: w, parentID: parentID, expectDenied: expectDenied, scopes: scopes, ttl: ttl, result: result, secret: childSecret, token: child)
                case .rotate(let id, let grace):
                    let (secret, token) = try await admin.rotate(RotateRequest(tokenID: id, graceSeconds: grace))
                    ledger.ackRotate(tokenID: id, grace: grace, secret: secret, token: token)
                case .rotationEnd(let id):
                    let token = try await admin.endRotation(tokenID: id)
                    ledger.ackRotationEnd(tokenID: id, token: token)
                }
            } catch let error as TollgateClientError {
                if case .server = error.code {
                    ledger.refused(op, error)
                } else {
                    ledger.inDoubt(op)
                    return
                }
            } catch {
                ledger.inDoubt(op)
                return
            }
        }
    }

    // MARK: - Verification after a restart

    struct RoundOutcome {
        var loss: UInt64 = 0
        var inDoubtCallsCounted: UInt64 = 0
        var landedIssues = 0
        var landedDerives = 0
        var landedRotations = 0
        var landedEnds = 0
        var dirtyObserved = 0
        var dirtyReverted = 0
        var repaired = false
        var snapshotOnDisk = false
    }

    /// Up to `count` elements of `items`, chosen at random.
    static func sample<T>(_ items: [T], _ count: Int, using rng: inout SplitMix64) -> [T] {
        guard items.count > count else { return items }
        return (0..<count).map { _ in items[Int.random(in: 0..<items.count, using: &rng)] }
    }

    /// Used units of `meter` on worker `w`'s probe license: limit − remaining of a CHECK with cost 0.
    static func used(_ meter: String, worker w: Int, api: TollgateConnection, ledger: CrashLedger) async throws -> UInt64 {
        let result = try await api.check(CheckRequest(token: ledger.probeSecret(w), meter: meter, cost: 0))
        guard result.allowed, let quota = result.quota else {
            ledger.violation("the probe token of worker \(w) was answered \(result.reason.name) (quota \(String(describing: result.quota)))")
            return 0
        }
        return quota.limit - quota.remaining
    }

    func verify(round: Int, full: Bool, ledger: CrashLedger, stateDir: String, workers: Int, rng: inout SplitMix64) async throws -> RoundOutcome {
        var outcome = RoundOutcome()
        let admin = try await TollgateConnection.connect(path: stateDir + "/tollgate-admin.sock")
        let api = try await TollgateConnection.connect(path: stateDir + "/tollgate.sock")
        defer {
            Task {
                await admin.close()
                await api.close()
            }
        }
        let stats = try await admin.stats()
        outcome.repaired = stats.first { $0.key == "journal_repairs" }?.value == "1"
        outcome.snapshotOnDisk = ((try? FileManager.default.contentsOfDirectory(atPath: stateDir + "/journal")) ?? []).contains { $0.contains("snap") }

        // The plan and the fixed licenses.
        let plan = try await admin.plan(id: CrashNames.plan)
        if plan != CrashNames.plan_ { ledger.violation("plan \(CrashNames.plan) reads \(plan)") }
        for w in 0..<workers {
            for id in [CrashNames.probeLicense(w), CrashNames.issueLicense(w)] {
                let spec = try await admin.license(id: id).spec
                if spec.status != .active || spec.plan != CrashNames.plan { ledger.violation("license \(id) reads \(spec)") }
            }
        }

        // LICENSE_PUT: the last acknowledged value, or a later put whose answer never came.
        let (values, puts) = ledger.withLock { (ledger.licenseValues, ledger.inDoubtPuts) }
        for w in 0..<workers {
            for k in 0..<CrashNames.putLicensesPerWorker {
                let id = CrashNames.putLicense(w, k)
                let observed: LicenseSpec?
                do {
                    observed = try await admin.license(id: id).spec
                } catch let error as TollgateClientError where error.code == .server(.notFound) {
                    observed = nil
                }
                let acked = values[id]
                let doubtful = puts[id] ?? []
                if let observed {
                    if observed != acked && !doubtful.contains(observed) {
                        ledger.violation("license \(id) reads \(observed); acknowledged \(String(describing: acked)), in doubt \(doubtful)")
                    }
                } else if let acked {
                    ledger.violation("license \(id) is gone; acknowledged \(acked)")
                }
                ledger.resolveLicense(id, to: observed)
            }
        }

        // In-doubt revocations: applied or not, from now on the answer must not change. One that landed took the
        // derived tokens of its token with it (checked by the listing below).
        let doubtfulRevokes = ledger.withLock { Array(ledger.inDoubtRevokes) }
        for id in doubtfulRevokes {
            let info = try await admin.token(id: id)
            ledger.resolveRevoke(id, applied: info.revokedAt != 0)
        }

        // In-doubt ROTATE and ROTATION_END: landed or not (TOKEN_GET), held to from now on.
        let (doubtfulRotates, doubtfulEnds) = ledger.withLock { (Array(ledger.inDoubtRotates), Array(ledger.inDoubtEnds)) }
        for id in doubtfulRotates {
            let info = try await admin.token(id: id)
            if ledger.resolveRotation(id, info: info) { outcome.landedRotations += 1 }
        }
        for id in doubtfulEnds {
            // Landed when `previous_valid_until` moved; or, when it did not (the last rotation's overlap was over
            // already), when a previous secret the ledger holds in its overlap is now refused.
            let info = try await admin.token(id: id)
            var refused = false
            for secret in ledger.previousSecretsInOverlap(id) {
                if try await api.check(CheckRequest(token: secret)).reason == .revoked { refused = true }
            }
            if ledger.resolveRotationEnd(id, info: info, previousRefused: refused) { outcome.landedEnds += 1 }
        }

        // Every token of every issue license: all acknowledged ones (issued or derived) present with their revocation
        // state (a parent's revocation cascaded to its derived tokens, with the parent's time), parent, scopes,
        // expiry and rotation; the only others are in-doubt issues and derives that landed.
        let (issued, revoked, doubtfulIssues, landedBefore) = ledger.withLock { (ledger.issued, ledger.revoked, ledger.inDoubtIssues, ledger.landedUnknownIssues) }
        let (doubtfulDerives, cascade) = ledger.withLock { (ledger.inDoubtDerives, ledger.cascadeParent) }
        var landed: [String] = []
        var landedChildren: [(worker: Int, info: TokenInfo)] = []
        for w in 0..<workers {
            let license = CrashNames.issueLicense(w)
            var listed: [String: TokenInfo] = [:]
            var after = ""
            repeat {
                let (page, next) = try await admin.listTokens(TokenListRequest(licenseID: license, after: after, limit: 500))
                for token in page { listed[token.id] = token }
                after = next
            } while !after.isEmpty
            for token in issued.values where token.licenseID == license {
                guard let info = listed[token.id] else {
                    let what = token.parentID.isEmpty ? "" : " derived from \(token.parentID)"
                    ledger.violation("acknowledged token \(token.id)\(what) (\(token.subject), round \(token.round)) is gone")
                    continue
                }
                if info.subject != token.subject { ledger.violation("token \(token.id) has subject \(info.subject), issued as \(token.subject)") }
                if (info.revokedAt != 0) != (revoked[token.id] != nil) {
                    ledger.violation("token \(token.id) has revoked_at \(info.revokedAt) but its revocation is \(revoked[token.id] != nil ? "acknowledged" : "not acknowledged and was never seen")\(cascade[token.id].map { " (with its parent \($0))" } ?? "")")
                }
                if info.parentID != token.parentID || info.scopes != token.scopes || info.expiresAt != token.expiresAt {
                    ledger.violation("token \(token.id) reads parent \(info.parentID), scopes \(info.scopes), expires_at \(info.expiresAt); acknowledged parent \(token.parentID), scopes \(token.scopes), expires_at \(token.expiresAt)")
                }
                if info.rotatedAt != token.rotatedAt || info.previousSecretValidUntil != token.previousValidUntil {
                    ledger.violation("token \(token.id) reads rotated_at \(info.rotatedAt), previous_valid_until \(info.previousSecretValidUntil); acknowledged (or resolved) \(token.rotatedAt), \(token.previousValidUntil)")
                }
                if let parent = cascade[token.id], let parentInfo = listed[parent], info.revokedAt != parentInfo.revokedAt {
                    ledger.violation("derived token \(token.id) has revoked_at \(info.revokedAt), but the revocation of its parent \(parent) (revoked_at \(parentInfo.revokedAt)) took it along")
                }
            }
            for (id, info) in listed where issued[id] == nil && !landedBefore.contains(id) {
                if !info.parentID.isEmpty {
                    if doubtfulDerives[w] == info.parentID && !landedChildren.contains(where: { $0.worker == w }) {
                        if (info.revokedAt != 0) != (revoked[info.parentID] != nil) {
                            ledger.violation("token \(id), derived by an in-doubt DERIVE from \(info.parentID), has revoked_at \(info.revokedAt)")
                        }
                        landedChildren.append((w, info))
                    } else {
                        ledger.violation("token \(id) derived from \(info.parentID) exists but was never acknowledged nor in doubt")
                    }
                } else if doubtfulIssues[info.subject] == w {
                    landed.append(id)
                } else {
                    ledger.violation("token \(id) (\(info.subject)) exists but was never acknowledged nor in doubt")
                }
            }
        }
        outcome.landedIssues = landed.count
        outcome.landedDerives = landedChildren.count
        ledger.resolveIssues(landed: landed)
        ledger.resolveDerives(landed: landedChildren)

        // Every known secret (current, and previous ones of rotated tokens) still checks as the acknowledged changes
        // say: allowed unless the token or its parent was revoked or the secret's overlap ended (then `revoked`, and
        // never allowed again in any later round) or a derived token expired; a derived token with fewer scopes is
        // still refused a scope it does not have.
        let (roundIssued, roundRevoked, roundChanged, dirty, dirtySecrets, order) = ledger.withLock {
            (ledger.roundIssued, ledger.roundRevoked, ledger.roundChanged, ledger.dirtyRevokedObservations, ledger.dirtySecrets, ledger.issuedOrder)
        }
        let (issuedNow, revokedNow) = ledger.withLock { (ledger.issued, ledger.revoked) }
        var toCheck = Set(roundIssued).union(roundRevoked).union(doubtfulRevokes).union(dirty).union(roundChanged)
        toCheck.formUnion(landedChildren.map(\.info.id))
        toCheck.formUnion(full ? order : Self.sample(order, 150, using: &rng))
        toCheck.formUnion(Self.sample(Array(revokedNow.keys), 150, using: &rng))
        var checks: [(String, String, String?)] = []
        for id in toCheck {
            let token = issuedNow[id]!
            for secret in token.knownSecrets { checks.append((id, secret, nil)) }
            if let secret = token.secret, !token.scopes.contains("*") {
                checks.append((id, secret, CrashNames.ungrantedScope))
                checks.append((id, secret, token.scopes.first!))  // not the seeded generator: `toCheck` has no fixed order
            }
        }
        try await concurrentForEach(checks) { item in
            let (id, secret, scope) = item
            let expected = ledger.expectation(tokenID: id, secret: secret, scope: scope)
            let reason = try await api.check(CheckRequest(token: secret, scopes: scope.map { [$0] } ?? [])).reason
            if !expected.reasons.contains(reason) {
                let which = issuedNow[id]!.secret == secret ? "current" : "a previous"
                ledger.violation("token \(id) checks \(reason.name), expected \(expected.description) (\(which) secret\(scope.map { ", scope " + $0 } ?? ""); history: \(ledger.history(id)))")
            }
        }
        outcome.dirtyObserved = dirty.count
        for id in dirty where (dirtySecrets[id] ?? []).contains(where: { !ledger.expectation(tokenID: id, secret: $0).reasons.contains(.revoked) }) {
            outcome.dirtyReverted += 1
            print("round \(round): a secret of token \(id) was answered revoked by a CHECK before the change refusing it (REVOKE, ROTATE with no grace, ROTATION_END) was acknowledged, and is allowed after the kill (that change was in doubt and was lost)")
        }

        // METER: totals within [acknowledged, acknowledged + in doubt]; in-doubt keys resolved by re-sending them.
        let (sums, doubtfulMeters, roundMeters, allMeters) = ledger.withLock { (ledger.meterSum, ledger.inDoubtMeters, ledger.roundMeters, ledger.meters) }
        for w in 0..<workers {
            let acked = sums[w] ?? 0
            let mine = doubtfulMeters.filter { $0.worker == w }
            let doubtSum = mine.reduce(0) { $0 + $1.quantity }
            let before = try await Self.used(CrashNames.eventsMeter, worker: w, api: api, ledger: ledger)
            if before < acked || before > acked + doubtSum {
                ledger.violation("worker \(w): events total \(before) outside [acknowledged \(acked), acknowledged + in doubt \(acked + doubtSum)]")
            }
            var alreadyCounted: UInt64 = 0
            for m in mine {
                let result = try await api.meter(MeterRequest(token: ledger.probeSecret(w), meter: CrashNames.eventsMeter, quantity: m.quantity, idempotencyKey: m.key))
                if !result.allowed { ledger.violation("re-sent METER \(m.key) was answered \(result.reason.name)") }
                if result.duplicate { alreadyCounted += m.quantity }
            }
            if before != acked + alreadyCounted {
                ledger.violation("worker \(w): events total \(before) but acknowledged \(acked) + in-doubt events whose key was already known \(alreadyCounted)")
            }
        }
        ledger.resolveMeters(doubtfulMeters)
        let resolvedSums = ledger.withLock { ledger.meterSum }
        let resend = roundMeters + (full ? allMeters : Self.sample(allMeters, 150, using: &rng))
        try await concurrentForEach(resend) { m in
            let result = try await api.meter(MeterRequest(token: ledger.probeSecret(m.worker), meter: CrashNames.eventsMeter, quantity: m.quantity, idempotencyKey: m.key))
            if !result.duplicate { ledger.violation("acknowledged METER \(m.key) (round \(m.round)) is no longer deduplicated: it was counted again") }
        }
        for w in 0..<workers {
            let total = try await Self.used(CrashNames.eventsMeter, worker: w, api: api, ledger: ledger)
            if total != resolvedSums[w] ?? 0 {
                ledger.violation("worker \(w): events total \(total) after re-sending keys, expected exactly \(resolvedSums[w] ?? 0)")
            }
        }

        // CHECK consumption: never above acknowledged + in doubt, never below what the last restart recovered;
        // what the flush window lost is reported.
        let (bases, callsAcked, callsDoubt) = ledger.withLock { (ledger.callsBase, ledger.callsAcked, ledger.callsInDoubt) }
        for w in 0..<workers {
            let base = bases[w] ?? 0
            let acked = base + (callsAcked[w] ?? 0)
            let upper = acked + (callsDoubt[w] ?? 0)
            let used = try await Self.used(CrashNames.callsMeter, worker: w, api: api, ledger: ledger)
            if used > upper { ledger.violation("worker \(w): calls consumed \(used) above acknowledged + in doubt \(upper)") }
            if used < base { ledger.violation("worker \(w): calls consumed \(used) below the \(base) recovered at the previous restart") }
            if used < acked { outcome.loss += acked - used } else { outcome.inDoubtCallsCounted += used - acked }
            ledger.withLock { ledger.callsBase[w] = used }
        }
        return outcome
    }
}
