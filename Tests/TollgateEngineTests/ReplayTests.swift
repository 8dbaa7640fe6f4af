import NIOCore
import TollgateModel
import TollgateTestSupport
import XCTest

@testable import TollgateEngine

/// The core property: the changes the engine returns, applied in order to an empty state (after a trip through
/// the journal payload codec), rebuild the same state; and so does a snapshot.
final class ReplayTests: XCTestCase {
    /// 2028-02-29T20:00:00Z: a run of a few hours crosses midnight and the end of a leap February.
    static let start: UnixMillis = 1_835_467_200_000

    struct RunStats {
        var reasons: [DenyReason: Int] = [:]
        var consumedChecks = 0
        var duplicates = 0
        var meters = 0
        var revoked = 0
        var validationErrors = 0
        var rotations = 0
        var derived = 0
        var settled = 0
        var overage = 0
    }

    /// Drives a fixture through `operations` random operations and returns it with what happened.
    func randomRun(seed: UInt64, operations: Int) throws -> (EngineFixture, RunStats) {
        let f = EngineFixture(seed: seed, now: Self.start)
        var rng = SplitMix64(seed: seed ^ 0xA5A5_A5A5)
        var stats = RunStats()
        var secrets: [String] = []
        var tokenIDs: [String] = []
        var licenseIDs: [String] = []
        let scopePool = ["read", "write", "admin"]
        let meterPool = ["requests", "bytes", "other"]

        func pick<T>(_ values: [T]) -> T { values[Int(rng.next() % UInt64(values.count))] }
        func chance(_ percent: UInt64) -> Bool { rng.next() % 100 < percent }
        func number(_ range: ClosedRange<Int64>) -> Int64 { range.lowerBound + Int64(rng.next() % UInt64(range.upperBound - range.lowerBound + 1)) }
        func someScopes() -> [String] { scopePool.filter { _ in chance(40) } }

        func putRandomPlan() throws {
            var entitlements = someScopes()
            if chance(25) { entitlements.append("*") }
            var quotas = ["requests", "bytes"].compactMap { meter -> QuotaRule? in
                chance(60) ? QuotaRule(meter: meter, period: pick(Period.allCases), limit: UInt64(number(5...80)), pool: chance(70) ? .license : pick(PoolLevel.allCases)) : nil
            }
            if chance(30) { quotas.append(QuotaRule(meter: "requests", window: .rolling(seconds: UInt32(number(60...600))), limit: UInt64(number(5...60)), pool: pick(PoolLevel.allCases))) }
            let rate: UInt32 = chance(40) ? 0 : UInt32(number(1...5))
            var plan = Plan(id: pick(["free", "pro", "team"]), entitlements: entitlements, quotas: quotas, ratePerSecond: rate, burst: UInt32(number(0...3)))
            if chance(30) { plan.rateLimits.append(RateRule(pool: pick([.token, .org]), ratePerSecond: UInt32(number(1...5)), burst: UInt32(number(1...3)))) }
            if chance(30) { plan.credits = CreditPolicy(pool: pick(PoolLevel.allCases), included: UInt64(number(0...100)), period: pick(Period.allCases)) }
            if chance(30) { plan.concurrency = [ConcurrencyRule(pool: pick(PoolLevel.allCases), max: UInt32(number(1...3)))] }
            plan.features = chance(50) ? ["exports"] : []
            plan.overage = chance(50) ? .allowAndRecord : .hardStop
            plan.pastDueGraceSeconds = chance(50) ? 0 : UInt32(number(1...7200))
            try f.putPlan(plan)
        }
        func putRandomLicense() throws {
            let id = "lic-\(number(0...3))"
            let status: LicenseStatus = chance(80) ? pick([.active, .trialing]) : pick([.pastDue, .canceled, .expired])
            let validUntil = chance(80) ? 0 : f.nowMillis + number(-Millis.hour...(5 * Millis.hour))
            var spec = LicenseSpec(id: id, customer: "c", plan: pick(Array(f.state.plans.keys).sorted()), status: status, validUntil: validUntil)
            spec.org = chance(60) ? pick(["acme", "globex"]) : ""
            spec.billingAnchorDay = chance(50) ? 1 : UInt8(number(2...28))
            spec.trialEndsAt = status == .trialing && chance(50) ? f.nowMillis + number(-Millis.hour...(3 * Millis.hour)) : 0
            spec.validFrom = chance(10) ? f.nowMillis + number(1...Millis.hour) : 0
            if spec.validUntil != 0 && spec.validUntil <= spec.validFrom { spec.validUntil = 0 }
            try f.putLicense(spec)
            if !licenseIDs.contains(id) { licenseIDs.append(id) }
        }
        var leases: [UInt64] = []
        var reservations: [UInt64] = []

        try putRandomPlan()
        try putRandomLicense()
        for _ in 0..<operations {
            // Time stands still (bursts for the rate limiter), moves by up to 20 s (with nanoseconds), or
            // sometimes by half an hour.
            if chance(2) { f.advance(millis: number(20...40) * Millis.minute) }
            if chance(60) { f.advance(nanoseconds: number(0...20_000_000_000)) }
            let op = rng.next() % 100
            switch op {
            case 0..<4:
                try putRandomPlan()
            case 4..<9:
                try putRandomLicense()
            case 9..<20:
                let notBefore = chance(15) ? f.nowMillis + number(-Millis.hour...Millis.hour) : 0
                let expiresAt = chance(30) ? max(notBefore, f.nowMillis) + number(1...(3 * Millis.hour)) : 0
                let metadata = chance(30) ? [KeyValue("n", "\(secrets.count)")] : []
                var scopes = chance(30) ? [] : someScopes()
                let license = pick(licenseIDs)
                // ISSUE refuses scopes the license's plan does not grant (issue 13 §3): draw among those it grants.
                if let plan = f.state.licenses[license].flatMap({ f.state.plans[$0.spec.plan] }), !plan.entitlements.contains("*") {
                    scopes = scopes.filter(plan.entitlements.contains)
                }
                let (secret, info) = try f.issue(
                    license: license, subject: "subject-\(secrets.count)", scopes: scopes, notBefore: notBefore,
                    expiresAt: expiresAt, metadata: metadata, environment: pick(TokenEnvironment.allCases))
                secrets.append(secret)
                tokenIDs.append(info.id)
            case 20..<58:
                guard !secrets.isEmpty else { continue }
                let token = chance(90) ? pick(secrets) : (chance(50) ? f.unissuedToken() : "tg_live_bad")
                let scopes = Array(scopePool.filter { _ in chance(20) }.prefix(1))
                let cost = UInt64(number(0...8))
                let meter = pick(["", "requests", "bytes", "other"])
                var options: CheckOptions = chance(20) ? [.explain] : []
                if chance(10) { options.insert(.lease) }
                if chance(10) { options.insert(.reserve) }
                // Sometimes a few at once, for the rate limiter.
                for _ in 0..<number(1...3) {
                    let consumedBefore = f.consumed.count
                    let result = f.check(token, scopes: scopes, meter: meter, cost: cost, features: chance(20) ? ["exports"] : [], options: options)
                    stats.reasons[result.reason, default: 0] += 1
                    if f.consumed.count > consumedBefore { stats.consumedChecks += 1 }
                    if result.overage > 0 { stats.overage += 1 }
                    if result.leaseID != 0 { leases.append(result.leaseID) }
                    if result.reservationID != 0 { reservations.append(result.reservationID) }
                }
            case 58..<60:
                if let lease = leases.popLast() { XCTAssertTrue(f.state.release(leaseID: lease)) }
                if let reservation = reservations.popLast(), (try? f.settle(reservation, cost: UInt64(number(0...12)))) != nil { stats.settled += 1 }
            case 60..<62:
                guard !tokenIDs.isEmpty else { continue }
                let id = pick(tokenIDs)
                guard f.state.token(id: id)?.info.revokedAt == 0 else { continue }
                if chance(70) {
                    let (secret, _, change) = try f.state.rotate(RotateRequest(tokenID: id, graceSeconds: UInt32(number(0...600))), at: f.now, using: &f.rng)
                    f.record(change)
                    secrets.append(secret)
                    stats.rotations += 1
                    if chance(30) { f.record(try f.state.endRotation(tokenID: id, at: f.now).change) }
                } else {
                    f.record(try f.state.endRotation(tokenID: id, at: f.now).change)
                }
            case 62..<64:
                guard !secrets.isEmpty else { continue }
                let outcome = try? f.state.derive(DeriveRequest(parent: pick(secrets), ttlSeconds: UInt32(number(1...7200))), at: f.now, maxLifetime: Millis.hour, using: &f.rng)
                if let outcome, let token = outcome.token {
                    f.record(outcome.change)
                    secrets.append(outcome.secret)
                    tokenIDs.append(token.id)
                    stats.derived += 1
                }
            case 64..<65:
                f.record(try f.state.grantCredits(CreditsGrant(pool: .license, owner: pick(licenseIDs), amount: UInt64(number(1...50))), at: f.now).change)
                try f.putOrg(OrgSpec(id: pick(["acme", "globex"]), name: "n", suspended: chance(20)))
            case 65..<66:
                f.sweep(tokenRetention: 3 * Millis.hour, keyRetention: 6 * Millis.hour, expiryWarning: Millis.hour)
                f.state.expireReservations(at: f.nowMillis)
            case 66..<89:
                guard !secrets.isEmpty else { continue }
                let key = chance(50) ? "" : "key-\(number(0...14))"
                let quantity: UInt64 = chance(3) ? 0 : UInt64(number(1...100))
                do {
                    let (result, change) = try f.meter(pick(secrets), meter: pick(meterPool), quantity: quantity, key: key)
                    stats.meters += 1
                    if result.duplicate {
                        stats.duplicates += 1
                        XCTAssertNil(change)
                    }
                } catch let error as EngineError {
                    XCTAssertEqual(error.code, .invalidArgument)
                    XCTAssertEqual(quantity, 0)
                    stats.validationErrors += 1
                }
            case 89..<92:
                guard !secrets.isEmpty else { continue }
                let target: RevokeTarget
                switch rng.next() % 12 {
                case 0: target = .license(pick(licenseIDs))
                case 10: target = .org(pick(["acme", "globex"]))
                case 11: target = .subject("subject-\(number(0...Int64(secrets.count)))")
                case 1..<5: target = .tokenID(pick(tokenIDs))
                default: target = .secret(pick(secrets))
                }
                do {
                    stats.revoked += Int(try f.revoke(target, reason: "reason-\(op)", actor: "ops uid=0").revoked)
                } catch let error as EngineError where error.code == .notFound {
                    // An organisation or subject that has no tokens (yet).
                }
            default:
                f.flushConsumed()
            }
        }
        f.flushConsumed()
        return (f, stats)
    }

    func testReplayOfChangesRebuildsTheState() throws {
        for seed: UInt64 in [1, 2, 3] {
            let (f, stats) = try randomRun(seed: seed, operations: 1000)
            // The run must have exercised what it is meant to.
            XCTAssertGreaterThan(stats.consumedChecks, 20, "seed \(seed)")
            XCTAssertGreaterThan(stats.duplicates, 1, "seed \(seed)")
            XCTAssertGreaterThan(stats.revoked, 0, "seed \(seed)")
            XCTAssertGreaterThan(stats.validationErrors, 0, "seed \(seed)")
            XCTAssertGreaterThan(stats.reasons[.none] ?? 0, 30, "seed \(seed)")
            XCTAssertGreaterThan(stats.reasons.count, 6, "seed \(seed): reasons \(stats.reasons)")
            XCTAssertNotNil(stats.reasons[.rateLimited], "seed \(seed): reasons \(stats.reasons)")
            XCTAssertNotNil(stats.reasons[.quotaExceeded], "seed \(seed): reasons \(stats.reasons)")
            XCTAssertGreaterThan(stats.rotations, 0, "seed \(seed)")
            XCTAssertGreaterThan(stats.derived, 0, "seed \(seed)")
            XCTAssertGreaterThan(stats.overage, 0, "seed \(seed)")
            XCTAssertFalse(f.state.book.events.isEmpty, "seed \(seed)")
            XCTAssertFalse(f.state.book.retiredSecrets.isEmpty, "seed \(seed)")
            XCTAssertGreaterThan(f.nowMillis, Self.start + 4 * Millis.hour, "the run crosses midnight and March 1")
            XCTAssertLessThan(f.nowMillis, Self.start + 20 * Millis.hour, "nothing is old enough to be pruned")
            XCTAssertFalse(f.state.book.idempotencyKeys.isEmpty)
            XCTAssertTrue(f.changes.contains { if case .consumed = $0 { return true } else { return false } })

            var replayed = LicensingState()
            for change in f.changes {
                let decoded = try change.roundTripped()
                XCTAssertEqual(decoded, change, "payload round trip")
                replayed.apply(decoded)
            }
            assertSameDurableState(replayed, f.state, "replay of seed \(seed)")

            let snapshot = try f.state.encodeSnapshot(now: f.nowMillis)
            let restored = try LicensingState.decodeSnapshot(snapshot)
            assertSameDurableState(restored, f.state, "snapshot of seed \(seed)")
            let replayedSnapshot = try LicensingState.decodeSnapshot(try replayed.encodeSnapshot(now: f.nowMillis))
            assertSameDurableState(replayedSnapshot, f.state, "snapshot of the replayed state, seed \(seed)")
        }
    }

    /// The rebuilt states decide like the original (once the non-journaled rate limiter has refilled).
    func testRebuiltStatesDecideLikeTheOriginal() throws {
        let (f, _) = try randomRun(seed: 4, operations: 500)
        var original = f.state
        var replayed = LicensingState()
        for change in f.changes { replayed.apply(try change.roundTripped()) }
        var restored = try LicensingState.decodeSnapshot(try f.state.encodeSnapshot(now: f.nowMillis))
        let later = f.now.adding(millis: 10 * Millis.minute)
        var reasons = Set<DenyReason>()
        XCTAssertGreaterThan(f.issuedSecrets.count, 20)
        for secret in f.issuedSecrets {
            for (meter, cost) in [("requests", UInt64(1)), ("bytes", 3), ("", 0)] {
                let request = CheckRequest(token: secret, scopes: ["read"], meter: meter, cost: cost)
                let expected = original.check(request, at: later)
                XCTAssertEqual(replayed.check(request, at: later).result, expected.result)
                XCTAssertEqual(restored.check(request, at: later).result, expected.result)
                reasons.insert(expected.result.reason)
            }
        }
        XCTAssertTrue(reasons.contains(.none), "\(reasons)")
        XCTAssertGreaterThan(reasons.count, 2, "\(reasons)")
    }

    /// A state loaded from a snapshot numbers its token-store entries differently from the live state it was taken
    /// from (which reuses the places of forgotten tokens) and from a replay. Their sweeps must still warn, forget and
    /// number events alike, and they must answer alike.
    func testStatesWithDifferentTokenPlacesSweepAndDecideAlike() throws {
        let f = EngineFixture(seed: 77, now: Self.start)
        try f.putPlan("pro")
        for license in ["lic-a", "lic-b"] { try f.putLicense(license, plan: "pro") }
        let soon = f.nowMillis + 5 * Millis.day
        var secrets: [String] = []
        for i in 0..<12 {
            // A third expire together (equal deadlines), a third soon after the others, some are revoked.
            let expiry = i % 3 == 0 ? soon : f.nowMillis + Int64(i + 1) * Millis.day
            let token = try f.issue(license: i % 2 == 0 ? "lic-a" : "lic-b", subject: "s\(i % 4)", expiresAt: expiry)
            secrets.append(token.secret)
            if i % 4 == 1 { try f.revoke(.tokenID(token.info.id)) }
        }
        f.advance(millis: 3 * Millis.day)
        f.sweep(tokenRetention: Millis.day)
        let forgotten = 12 - f.state.tokens.count
        XCTAssertGreaterThan(forgotten, 2, "the sweep forgot revoked and expired tokens")
        // New tokens take the forgotten ones' places in the live state, and expire with the first group.
        for i in 0..<forgotten + 2 { secrets.append(try f.issue(license: i % 2 == 0 ? "lic-b" : "lic-a", subject: "s\(i % 4)", expiresAt: soon).secret) }

        var replayed = LicensingState()
        for change in f.changes { replayed.apply(try change.roundTripped()) }
        let restored = try LicensingState.decodeSnapshot(try f.state.encodeSnapshot(now: f.nowMillis))
        var states = [f.state, replayed, restored]
        let names = ["live", "replayed", "snapshot"]
        // Revoking by subject lists the same tokens in the same order everywhere (the journal records that list).
        let revocations = try states.indices.map { try states[$0].revoke(RevokeRequest(target: .subject("s1"), reason: "r"), at: f.now).change }
        XCTAssertNotNil(revocations[0])
        XCTAssertEqual(revocations[1], revocations[0])
        XCTAssertEqual(revocations[2], revocations[0])
        for (at, warning) in [(soon - 12 * Millis.hour, Millis.day), (soon + 2 * Millis.day, Millis.day)] {
            for i in states.indices {
                _ = states[i].sweep(at: Timestamp(millis: at), tokenRetention: Millis.day, keyRetention: Millis.day, expiryWarning: warning)
            }
            XCTAssertFalse(states[0].book.events.isEmpty)
            for i in 1..<states.count {
                assertSameDurableState(states[i], states[0], "\(names[i]) after the sweep at \(at)")
                XCTAssertEqual(states[i].listTokens(licenseID: "", after: "", limit: 100).tokens, states[0].listTokens(licenseID: "", after: "", limit: 100).tokens)
            }
        }
        let later = Timestamp(millis: soon + 3 * Millis.day)
        for secret in secrets {
            let expected = states[0].check(CheckRequest(token: secret, scopes: []), at: later).result
            for i in 1..<states.count { XCTAssertEqual(states[i].check(CheckRequest(token: secret, scopes: []), at: later).result, expected, names[i]) }
        }
    }

    func testTruncatedPayloadsAreRejected() throws {
        let (f, _) = try randomRun(seed: 5, operations: 1000)
        var samples: [UInt8: [StateChange]] = [:]
        for change in f.changes where samples[change.typeCode, default: []].count < 3 {
            samples[change.typeCode, default: []].append(change)
        }
        // A snapshot's counters record covers type 7.
        let book = UsageBook(
            counters: Dictionary(uniqueKeysWithValues: f.state.book.counters.prefix(5).map { ($0.key, $0.value) }),
            ledger: Dictionary(uniqueKeysWithValues: f.state.book.ledger.prefix(5).map { ($0.key, $0.value) }),
            idempotencyKeys: Dictionary(uniqueKeysWithValues: f.state.book.idempotencyKeys.prefix(5).map { ($0.key, $0.value) }))
        samples[7] = [.countersRestored(book)]
        XCTAssertEqual(Set(samples.keys), Set(1...13), "every record type is sampled")

        var cuts = 0
        for change in samples.values.joined() {
            let payload = try change.encodedPayload()
            XCTAssertEqual(try StateChange.decode(type: change.typeCode, payload: ByteBuffer(bytes: payload)), change)
            for length in 0..<payload.count {
                cuts += 1
                XCTAssertThrowsError(
                    try StateChange.decode(type: change.typeCode, payload: ByteBuffer(bytes: payload[0..<length])),
                    "type \(change.typeCode) cut at \(length) of \(payload.count)")
            }
            XCTAssertThrowsError(try StateChange.decode(type: change.typeCode, payload: ByteBuffer(bytes: payload + [0])), "trailing byte")
        }
        XCTAssertGreaterThan(cuts, 500)
        for type: UInt8 in [0, 8, 255] {
            XCTAssertThrowsError(try StateChange.decode(type: type, payload: ByteBuffer(bytes: try samples[1]![0].encodedPayload())))
        }
    }

    func testTruncatedSnapshotInsideAnEntryIsRejected() throws {
        let (f, _) = try randomRun(seed: 6, operations: 120)
        let snapshot = try f.state.encodeSnapshot(now: f.nowMillis)
        // Entry boundaries: u8 type, u32 length, payload.
        var boundaries: Set<Int> = [0]
        var offset = 0
        while offset < snapshot.count {
            let length = snapshot[(offset + 1)...(offset + 4)].reduce(0) { $0 << 8 | Int($1) }
            offset += 5 + length
            boundaries.insert(offset)
        }
        XCTAssertEqual(offset, snapshot.count)
        XCTAssertGreaterThan(boundaries.count, 5)
        var rng = SplitMix64(seed: 6)
        let firstEntryEnd = boundaries.filter { $0 > 0 }.min()!
        let cuts = Array(1..<min(firstEntryEnd, snapshot.count)) + (0..<300).map { _ in 1 + Int(rng.next() % UInt64(snapshot.count - 1)) }
        for cut in cuts where !boundaries.contains(cut) {
            XCTAssertThrowsError(try LicensingState.decodeSnapshot(Array(snapshot[0..<cut])), "cut at \(cut)")
        }
    }

    func testSweepAndSnapshotPruneOnlyOldKeysAndShortPeriodCounters() throws {
        let (f, secret, _) = try EngineFixture.standard(quotas: [QuotaRule(meter: "bytes", period: .month, limit: 100)])
        try f.countLicenseUsage(of: "bytes")
        let t0 = f.nowMillis
        try f.meter(secret, meter: "bytes", quantity: 40, key: "once")
        f.set(millis: t0 + Millis.day)
        var restored = try LicensingState.decodeSnapshot(try f.state.encodeSnapshot(now: f.nowMillis))
        XCTAssertEqual(restored.book.idempotencyKeys["once"], t0, "kept for 24 hours")
        XCTAssertEqual(restored.usage(licenseID: "lic-1", meter: "bytes", period: .hour, at: t0), 40)

        f.set(millis: t0 + 3 * Millis.day)
        f.record(f.state.sweep(at: f.now, tokenRetention: 30 * Millis.day, keyRetention: Millis.day, expiryWarning: 0))
        restored = try LicensingState.decodeSnapshot(try f.state.encodeSnapshot(now: f.nowMillis))
        XCTAssertNil(restored.book.idempotencyKeys["once"])
        XCTAssertEqual(restored.usage(licenseID: "lic-1", meter: "bytes", period: .hour, at: t0), 0, "old hourly counter pruned")
        XCTAssertEqual(restored.usage(licenseID: "lic-1", meter: "bytes", period: .day, at: t0), 0, "old daily counter pruned")
        XCTAssertEqual(restored.usage(licenseID: "lic-1", meter: "bytes", period: .month, at: f.nowMillis), 40, "monthly counter kept")
        XCTAssertEqual(restored.tokens, f.state.tokens)
        let result = restored.check(CheckRequest(token: secret, meter: "bytes", cost: 61), at: f.now).result
        XCTAssertEqual(result.reason, .quotaExceeded, "the month's usage survives the snapshot")
    }

    func testApplyIgnoresRevocationsOfUnknownOrRevokedTokens() throws {
        let (f, secret, token) = try EngineFixture.standard()
        f.state.apply(.tokensRevoked(tokenIDs: ["tok_unknown"], reason: "x", actor: "", at: 5))
        f.checkAllowed(secret)
        f.state.apply(.tokensRevoked(tokenIDs: [token.id], reason: "first", actor: "", at: 10))
        f.state.apply(.tokensRevoked(tokenIDs: [token.id], reason: "second", actor: "", at: 20))
        XCTAssertEqual(f.state.token(id: token.id)?.info.revokedAt, 10)
        XCTAssertEqual(f.state.token(id: token.id)?.info.revokeReason, "first")
        f.state.apply(.consumed([UsageEntry(tokenID: "tok_unknown", meter: "m", quantity: 1, at: f.nowMillis)]))
        XCTAssertTrue(f.state.book.counters.isEmpty)
    }
}
