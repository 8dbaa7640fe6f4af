import ArgumentParser
import TollgateModel

/// The colon-separated forms `plan set` takes for a plan's rules, e.g. `requests:rolling:60:100:token`.
///
/// A rolling window's name contains a colon itself (`rolling:60`), so a quota is read from its fixed positions: the
/// meter first, then the window (two parts when it is rolling), then the limit and the optional pool.
enum PlanRuleSyntax {
    /// `METER:WINDOW:LIMIT[:POOL]`; the pool defaults to `license`.
    static func quota(_ text: String) throws -> QuotaRule {
        let usage = "--quota takes METER:WINDOW:LIMIT[:POOL] (WINDOW hour, day, month or rolling:SECONDS), got \(text)"
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 3, !parts[0].isEmpty else { throw ValidationError(usage) }
        let windowParts = parts[1] == "rolling" ? 2 : 1
        let rest = parts.dropFirst(1 + windowParts)
        guard (1...2).contains(rest.count) else { throw ValidationError(usage) }
        let windowName = parts[1..<(1 + windowParts)].joined(separator: ":")
        guard let window = QuotaWindow(name: windowName) else {
            throw ValidationError("--quota: \(windowName) is not a window (hour, day, month or rolling:SECONDS)")
        }
        guard let limit = UInt64(rest.first!) else { throw ValidationError("--quota: the limit \(rest.first!) is not a whole number") }
        let pool = try rest.count == 2 ? self.pool(rest.last!, option: "--quota") : .license
        return QuotaRule(meter: parts[0], window: window, limit: limit, pool: pool)
    }

    /// `POOL:PER_SECOND:BURST`.
    static func rate(_ text: String) throws -> RateRule {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3, let perSecond = UInt32(parts[1]), perSecond > 0, let burst = UInt32(parts[2]) else {
            throw ValidationError("--rate-limit takes POOL:PER_SECOND:BURST with PER_SECOND at least 1, such as license:100:200, got \(text)")
        }
        return RateRule(pool: try pool(parts[0], option: "--rate-limit"), ratePerSecond: perSecond, burst: max(burst, 1))
    }

    /// `POOL:MAX`.
    static func concurrency(_ text: String) throws -> ConcurrencyRule {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2, let max = UInt32(parts[1]), max > 0 else {
            throw ValidationError("--concurrency takes POOL:MAX with MAX at least 1, such as token:8, got \(text)")
        }
        return ConcurrencyRule(pool: try pool(parts[0], option: "--concurrency"), max: max)
    }

    /// `POOL:INCLUDED:PERIOD`.
    static func credits(_ text: String) throws -> CreditPolicy {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3, let included = UInt64(parts[1]), let period = Period(name: parts[2]) else {
            throw ValidationError("--credits takes POOL:INCLUDED:PERIOD (PERIOD hour, day or month), such as license:50000:month, got \(text)")
        }
        return CreditPolicy(pool: try pool(parts[0], option: "--credits"), included: included, period: period)
    }

    static func pool(_ name: String, option: String) throws -> PoolLevel {
        guard let pool = PoolLevel(name: name) else { throw ValidationError("\(option): \(name) is not a pool (token, license or org)") }
        return pool
    }
}
