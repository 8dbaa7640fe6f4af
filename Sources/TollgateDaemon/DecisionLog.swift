import Logging
import NIOConcurrencyHelpers
import TollgateCore
import TollgateEngine
import TollgateModel

/// Which decisions of the stream become log lines (`decision_log`): pure, so the sampling and the cap are tested
/// without a logger or a clock.
///
/// Sampling is by sequence number (a decision is logged when its number is a multiple of `sampleEvery`), so the
/// choice does not depend on timing and two daemons sample alike. The cap bounds the lines of one second; sampled
/// decisions beyond it are counted (`overCap`), not written.
public struct DecisionLogPolicy: Sendable {
    public let sampleEvery: UInt64
    public let maxLinesPerSecond: Int
    private var second: Int64 = .min
    private var linesThisSecond = 0
    /// Sampled decisions not written because the second's cap was reached.
    public private(set) var overCap: UInt64 = 0
    public private(set) var written: UInt64 = 0

    public init(sampleEvery: Int, maxLinesPerSecond: Int) {
        precondition(sampleEvery > 0 && maxLinesPerSecond > 0)
        self.sampleEvery = UInt64(sampleEvery)
        self.maxLinesPerSecond = maxLinesPerSecond
    }

    /// Whether `event`, read at `nowMillis`, is written.
    public mutating func admits(_ event: DecisionEvent, nowMillis: Int64) -> Bool {
        guard event.sequence % sampleEvery == 0 else { return false }
        let second = nowMillis / 1000
        if second != self.second {
            self.second = second
            linesThisSecond = 0
        }
        guard linesThisSecond < maxLinesPerSecond else {
            overCap &+= 1
            return false
        }
        linesThisSecond += 1
        written &+= 1
        return true
    }
}

/// The sampled decision log: a subscription to the core's decision stream, drained every 100 ms by a task of its
/// own, each admitted decision written as one info line (journald fields under systemd). It never slows a check:
/// it reads the ring the checks write, and when it falls behind (the log cannot keep up) the ring overwrites what
/// it has not read; those decisions are counted as `lost`, and a warning says so at most once a minute.
final class DecisionLog: Sendable {
    struct Counts: Sendable {
        var written: UInt64 = 0
        var overCap: UInt64 = 0
        var lost: UInt64 = 0
    }

    private let counts = NIOLockedValueBox(Counts())
    private let task: NIOLockedValueBox<Task<Void, Never>?> = NIOLockedValueBox(nil)

    var statistics: Counts { counts.withLockedValue { $0 } }

    /// Starts draining `core`'s decisions into `logger`.
    func start(core: ApplicationCore, configuration: DecisionLogConfiguration, clock: any WallClock, logger: Logger) {
        let subscription = core.watchDecisions()
        let counts = self.counts
        let running = Task {
            defer { subscription.cancel() }
            var policy = DecisionLogPolicy(sampleEvery: configuration.sampleEvery, maxLinesPerSecond: configuration.maxLinesPerSecond)
            var warnedLost: UInt64 = 0
            var lastWarning: Int64 = .min
            while !Task.isCancelled {
                // A drain cadence, not a wait for a condition: the ring is read 10 times a second.
                try? await Task.sleep(for: .milliseconds(100))
                let now = clock.now().millis
                for event in subscription.poll(limit: ApplicationCore.decisionRingCapacity) where policy.admits(event, nowMillis: now) {
                    logger.info("decision", metadata: Self.metadata(event))
                }
                let lost = subscription.dropped
                counts.withLockedValue { $0 = Counts(written: policy.written, overCap: policy.overCap, lost: lost) }
                if lost > warnedLost, now - lastWarning >= 60_000 {
                    logger.warning("the decision log fell behind and lost decisions", metadata: [
                        "tollgate.decision_log.lost": "\(lost)", "tollgate.decision_log.lost_since_last_warning": "\(lost - warnedLost)",
                    ])
                    warnedLost = lost
                    lastWarning = now
                }
            }
        }
        task.withLockedValue { $0 = running }
    }

    func stop() {
        task.withLockedValue { $0 }?.cancel()
    }

    static func metadata(_ event: DecisionEvent) -> Logger.Metadata {
        [
            "tollgate.decision": "\(event.allowed ? "allow" : "deny")", "tollgate.reason": "\(event.reason.name)",
            "tollgate.token_id": "\(event.tokenID)", "tollgate.license": "\(event.licenseID)", "tollgate.subject": "\(event.subject)",
            "tollgate.route": "\(event.route)", "tollgate.latency_ns": "\(event.latencyNanoseconds)", "tollgate.sequence": "\(event.sequence)",
            "tollgate.source": "\(event.source.name)",
        ]
    }
}
