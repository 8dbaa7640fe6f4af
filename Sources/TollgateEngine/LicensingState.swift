import Crypto
import TollgateModel

/// The whole licensing state of one Tollgate: plans, licenses, tokens, usage. A plain value with no I/O and no
/// clock: time comes in as arguments, randomness as an argument, and every durable change goes through
/// `apply(_:)`, the same function that replays the journal.
public struct LicensingState: Sendable {
    public internal(set) var plans: [String: Plan] = [:]
    public internal(set) var licenses: [String: LicenseRecord] = [:]
    /// Tokens by the hash of their secret: the check path's only lookup.
    public internal(set) var tokens: [TokenHash: TokenRecord] = [:]
    /// Token id → hash, for the control plane.
    public internal(set) var tokenIDs: [String: TokenHash] = [:]
    /// License id → its token ids, in issue order.
    public internal(set) var licenseTokens: [String: [String]] = [:]
    public internal(set) var licenseUsage: [LicenseUsageKey: UInt64] = [:]
    public internal(set) var tokenUsage: [TokenUsageKey: UInt64] = [:]
    /// Idempotency key → when it was recorded.
    public internal(set) var idempotencyKeys: [String: UnixMillis] = [:]
    /// Rate limiter state (GCRA theoretical arrival time, in nanoseconds) per license. Not journaled: after a
    /// restart every license starts with a full burst.
    var rateLimiterTAT: [String: RateLimiterState] = [:]

    public init() {}

    /// GCRA state of one license, with the policy it was computed under.
    struct RateLimiterState: Sendable, Hashable {
        var tat: Int64
        var interval: Int64
        var tolerance: Int64
    }

    public struct LicenseRecord: Sendable, Hashable {
        public var spec: LicenseSpec
        public var updatedAt: UnixMillis
    }

    // MARK: - The one mutation entry point

    /// Applies one journaled change. Must be deterministic: replaying the same changes in the same order gives
    /// the same state. Changes were validated when they were decided, so applying never fails; facts that no
    /// longer match (a revoked token that is gone) are skipped.
    public mutating func apply(_ change: StateChange) {
        switch change {
        case .planPut(let plan, _):
            plans[plan.id] = plan
        case .licensePut(let spec, let at):
            licenses[spec.id] = LicenseRecord(spec: spec, updatedAt: at)
        case .tokenIssued(let record):
            if let previous = tokenIDs[record.info.id], previous != record.hash { tokens[previous] = nil }
            if tokens[record.hash] == nil, tokenIDs[record.info.id] == nil {
                licenseTokens[record.info.licenseID, default: []].append(record.info.id)
            }
            tokens[record.hash] = record
            tokenIDs[record.info.id] = record.hash
        case .tokensRevoked(let ids, let reason, let at):
            for id in ids {
                guard let hash = tokenIDs[id], tokens[hash]?.info.revokedAt == 0 else { continue }
                tokens[hash]!.info.revokedAt = at
                tokens[hash]!.info.revokeReason = reason
            }
        case .metered(let entry, let key):
            recordUsage(entry)
            if !key.isEmpty { idempotencyKeys[key] = entry.at }
        case .consumed(let entries):
            for entry in entries { recordUsage(entry) }
        case .countersRestored(let counters):
            for (key, value) in counters.licenseUsage { licenseUsage[key, default: 0].saturatingAdd(value) }
            for (key, value) in counters.tokenUsage { tokenUsage[key, default: 0].saturatingAdd(value) }
            for (key, at) in counters.idempotencyKeys { idempotencyKeys[key] = at }
        }
    }

    /// Counts usage against the token (per month) and its license (per hour, day and month, so that a quota of
    /// any period reads one counter).
    mutating func recordUsage(_ entry: UsageEntry) {
        guard let hash = tokenIDs[entry.tokenID], let licenseID = tokens[hash]?.info.licenseID else { return }
        for period in Period.allCases {
            let start = UTCCalendar.bounds(of: period, containing: entry.at).start
            licenseUsage[LicenseUsageKey(licenseID: licenseID, meter: entry.meter, period: period, periodStart: start), default: 0].saturatingAdd(entry.quantity)
        }
        let month = UTCCalendar.bounds(of: .month, containing: entry.at).start
        tokenUsage[TokenUsageKey(tokenID: entry.tokenID, meter: entry.meter, monthStart: month), default: 0].saturatingAdd(entry.quantity)
    }

    // MARK: - Reads

    public static func hash(of token: String) -> TokenHash {
        var token = token
        return token.withUTF8 { hash(utf8: $0) }
    }

    public static func hash(utf8: UnsafeBufferPointer<UInt8>) -> TokenHash {
        let digest = SHA256.hash(data: UnsafeRawBufferPointer(utf8))
        return digest.withUnsafeBytes { raw in
            // Big-endian words, so that writing them big-endian gives the digest's bytes in order.
            TokenHash(
                UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
                UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
                UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 24, as: UInt64.self)))
        }
    }

    public func token(id: String) -> TokenRecord? {
        tokenIDs[id].flatMap { tokens[$0] }
    }

    public func licenseInfo(id: String) -> LicenseInfo? {
        guard let record = licenses[id] else { return nil }
        let active = (licenseTokens[id] ?? []).reduce(into: UInt32(0)) { count, tokenID in
            if token(id: tokenID)?.info.revokedAt == 0 { count += 1 }
        }
        return LicenseInfo(spec: record.spec, updatedAt: record.updatedAt, activeTokens: active)
    }

    /// Usage of `meter` by `licenseID` in the period of kind `period` that contains `time`.
    public func usage(licenseID: String, meter: String, period: Period, at time: UnixMillis) -> UInt64 {
        let start = UTCCalendar.bounds(of: period, containing: time).start
        return licenseUsage[LicenseUsageKey(licenseID: licenseID, meter: meter, period: period, periodStart: start)] ?? 0
    }

    /// Usage of `meter` by the token, summed over all time.
    public func usage(tokenID: String, meter: String) -> UInt64 {
        tokenUsage.reduce(into: 0) { sum, element in
            if element.key.tokenID == tokenID, element.key.meter == meter { sum.saturatingAdd(element.value) }
        }
    }

    /// Tokens in ascending id order, optionally of one license, starting after `after`.
    public func listTokens(licenseID: String, after: String, limit: Int) -> (tokens: [TokenInfo], more: Bool) {
        let ids: [String]
        if licenseID.isEmpty {
            ids = tokenIDs.keys.filter { $0 > after }.sorted()
        } else {
            ids = (licenseTokens[licenseID] ?? []).filter { $0 > after }.sorted()
        }
        let page = ids.prefix(limit).compactMap { token(id: $0)?.info }
        return (page, ids.count > limit)
    }
}

extension UInt64 {
    /// Usage counters stop at the maximum instead of wrapping: a wrapped counter would hand a caller a fresh quota.
    @inline(__always)
    mutating func saturatingAdd(_ other: UInt64) {
        let (sum, overflow) = addingReportingOverflow(other)
        self = overflow ? .max : sum
    }
}
