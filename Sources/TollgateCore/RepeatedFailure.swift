import TollgateEngine

/// Retry pacing and log pacing for a background operation that may keep failing (a snapshot while the disk is
/// full): attempts back off exponentially, the first failure of a streak is logged, later ones at most once per
/// `logInterval` with how many failed since the last line, and the end of a streak is logged once.
///
/// A pure value on injected time, so the pacing is tested without waiting. Before it, a full disk logged
/// "snapshot failed" ten times a second.
public struct RepeatedFailure: Sendable {
    /// What to log for a failure: nothing (paced), or a line that stands for `failures` failures.
    public enum Report: Sendable, Equatable {
        case quiet
        case log(failures: Int, first: Bool)
    }

    public let initialBackoffMillis: Int64
    public let maxBackoffMillis: Int64
    public let logIntervalMillis: Int64

    /// Consecutive failures so far.
    public private(set) var streak = 0
    private var retryAt: Int64 = .min
    private var backoff: Int64
    private var lastLogAt: Int64 = .min
    private var unlogged = 0

    public init(initialBackoffMillis: Int64 = 1_000, maxBackoffMillis: Int64 = 60_000, logIntervalMillis: Int64 = 60_000) {
        self.initialBackoffMillis = initialBackoffMillis
        self.maxBackoffMillis = maxBackoffMillis
        self.logIntervalMillis = logIntervalMillis
        self.backoff = initialBackoffMillis
    }

    /// Whether an attempt may start now (always, outside a streak).
    public func mayAttempt(at now: Timestamp) -> Bool { now.millis >= retryAt }

    /// Records a failure at `now`: the next attempt waits for the backoff, which doubles up to its maximum.
    public mutating func failed(at now: Timestamp) -> Report {
        streak += 1
        unlogged += 1
        retryAt = now.millis + backoff
        backoff = min(backoff * 2, maxBackoffMillis)
        guard streak == 1 || now.millis - lastLogAt >= logIntervalMillis else { return .quiet }
        lastLogAt = now.millis
        defer { unlogged = 0 }
        return .log(failures: unlogged, first: streak == 1)
    }

    /// Records a success; returns the length of the streak it ends (0 when there was none).
    public mutating func succeeded() -> Int {
        defer {
            streak = 0
            unlogged = 0
            retryAt = .min
            backoff = initialBackoffMillis
        }
        return streak
    }
}
