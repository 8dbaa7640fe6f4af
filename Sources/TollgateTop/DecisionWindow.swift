import TollgateModel

/// The decisions of the last few seconds, added up for `tollgate top`: pure, the time is an argument (the CLI passes
/// a monotonic clock), so that rates, top-N and percentiles are tested without a terminal or a daemon.
///
/// One bucket per second over `seconds` seconds (the current second, still filling, is one of them). Rates are
/// counts over the time the buckets cover (the whole seconds before the current one and the part of it gone by, or
/// the time since the first batch when that is shorter), so the first second does not read as a spike.
public struct DecisionWindow: Sendable {
    public let seconds: Int
    private var buckets: [Bucket]
    /// The second (of the caller's clock) the newest bucket counts.
    private var newestSecond: Int64?
    /// When the first batch arrived: the window covers at most the time since.
    private var firstMillis: Int64?
    /// The drop count of the stream as last reported (it is cumulative on the wire).
    private var lastDropped: UInt64 = 0

    public init(seconds: Int = 5) {
        precondition(seconds > 0)
        self.seconds = seconds
        self.buckets = Array(repeating: Bucket(), count: seconds)
    }

    struct Bucket: Sendable {
        var requests = 0
        var denied = 0
        var dropped: UInt64 = 0
        var reasons: [DenyReason: Int] = [:]
        var licenses: [String: Counts] = [:]
        var tokens: [String: TokenCounts] = [:]
        var latency = LatencyHistogram()
    }

    public struct Counts: Sendable, Hashable {
        public var requests = 0
        public var denied = 0
    }

    struct TokenCounts: Sendable {
        var counts = Counts()
        var licenseID = ""
    }

    /// Adds a batch received at `nowMillis` (monotonic milliseconds) with the stream's cumulative `dropped`.
    public mutating func add(_ events: [DecisionEvent], dropped: UInt64, nowMillis: Int64) {
        let index = advance(to: nowMillis)
        if firstMillis == nil { firstMillis = nowMillis }
        if dropped > lastDropped { buckets[index].dropped += dropped - lastDropped }
        lastDropped = max(lastDropped, dropped)
        for event in events {
            buckets[index].requests += 1
            let denied = !event.allowed
            if denied {
                buckets[index].denied += 1
                buckets[index].reasons[event.reason, default: 0] += 1
            }
            let license = event.licenseID.isEmpty ? "-" : event.licenseID
            buckets[index].licenses[license, default: Counts()].requests += 1
            if denied { buckets[index].licenses[license, default: Counts()].denied += 1 }
            let token = event.tokenID.isEmpty ? "-" : event.tokenID
            buckets[index].tokens[token, default: TokenCounts()].counts.requests += 1
            if denied { buckets[index].tokens[token, default: TokenCounts()].counts.denied += 1 }
            buckets[index].tokens[token]!.licenseID = license
            buckets[index].latency.record(event.latencyNanoseconds)
        }
    }

    /// Moves the window to the second of `nowMillis`, emptying the buckets it leaves behind; returns the index of
    /// the current bucket.
    @discardableResult
    private mutating func advance(to nowMillis: Int64) -> Int {
        let second = nowMillis / 1000
        if let newest = newestSecond, second > newest {
            let steps = min(Int(second - newest), seconds)
            for step in 1...steps { buckets[Int((newest + Int64(step)) % Int64(seconds))] = Bucket() }
        }
        if newestSecond == nil || second > newestSecond! { newestSecond = second }
        return Int(newestSecond! % Int64(seconds))
    }

    /// What the window holds at `nowMillis`: rates per second, the busiest `top` licenses and tokens, denials by
    /// reason, latency percentiles.
    public mutating func summary(nowMillis: Int64, top: Int = 10) -> TopSummary {
        advance(to: nowMillis)
        // The buckets cover the seconds before the current one, whole, and the part of the current one gone by.
        let covered = Double(seconds - 1) + Double(nowMillis % 1000) / 1000
        let span = max(0.001, min(covered, Double(nowMillis - (firstMillis ?? nowMillis)) / 1000))
        var requests = 0, denied = 0
        var dropped: UInt64 = 0
        var reasons: [DenyReason: Int] = [:]
        var licenses: [String: Counts] = [:]
        var tokens: [String: TokenCounts] = [:]
        var latency = LatencyHistogram()
        for bucket in buckets {
            requests += bucket.requests
            denied += bucket.denied
            dropped += bucket.dropped
            for (reason, count) in bucket.reasons { reasons[reason, default: 0] += count }
            for (license, counts) in bucket.licenses {
                licenses[license, default: Counts()].requests += counts.requests
                licenses[license, default: Counts()].denied += counts.denied
            }
            for (token, counts) in bucket.tokens {
                tokens[token, default: TokenCounts()].counts.requests += counts.counts.requests
                tokens[token, default: TokenCounts()].counts.denied += counts.counts.denied
                tokens[token]!.licenseID = counts.licenseID
            }
            latency.merge(bucket.latency)
        }
        func busiest<T>(_ rows: [(String, T)], _ counts: (T) -> Counts) -> [(String, T)] {
            Array(rows.sorted { (counts($0.1).requests, $1.0) > (counts($1.1).requests, $0.0) }.prefix(top))
        }
        return TopSummary(
            spanSeconds: span, requestsPerSecond: Double(requests) / span, deniedPerSecond: Double(denied) / span,
            droppedPerSecond: Double(dropped) / span, droppedTotal: lastDropped,
            reasons: reasons.sorted { ($0.value, $1.key.rawValue) > ($1.value, $0.key.rawValue) }
                .map { TopSummary.ReasonRow(reason: $0.key, perSecond: Double($0.value) / span, count: $0.value) },
            licenses: busiest(licenses.map { ($0.key, $0.value) }, { $0 }).map {
                TopSummary.Row(id: $0.0, license: $0.0, requestsPerSecond: Double($0.1.requests) / span, deniedPerSecond: Double($0.1.denied) / span)
            },
            tokens: busiest(tokens.map { ($0.key, $0.value) }, { $0.counts }).map {
                TopSummary.Row(id: $0.0, license: $0.1.licenseID, requestsPerSecond: Double($0.1.counts.requests) / span, deniedPerSecond: Double($0.1.counts.denied) / span)
            },
            latencyP50Nanoseconds: latency.percentile(0.50), latencyP99Nanoseconds: latency.percentile(0.99))
    }
}

/// What one refresh of `tollgate top` shows.
public struct TopSummary: Sendable, Hashable {
    public struct ReasonRow: Sendable, Hashable {
        public var reason: DenyReason
        public var perSecond: Double
        public var count: Int
    }

    public struct Row: Sendable, Hashable {
        /// A license id or a token id.
        public var id: String
        public var license: String
        public var requestsPerSecond: Double
        public var deniedPerSecond: Double
    }

    public var spanSeconds: Double
    public var requestsPerSecond: Double
    public var deniedPerSecond: Double
    public var droppedPerSecond: Double
    /// Decisions the watcher lost since it started (the stream's count).
    public var droppedTotal: UInt64
    /// Denials by reason, most frequent first.
    public var reasons: [ReasonRow]
    /// Busiest first.
    public var licenses: [Row]
    public var tokens: [Row]
    /// Nil while the window holds no decision.
    public var latencyP50Nanoseconds: UInt64?
    public var latencyP99Nanoseconds: UInt64?

    public var allowedPerSecond: Double { requestsPerSecond - deniedPerSecond }
}

/// Latencies in log-linear buckets: 8 per power of two, so a percentile is within 1/8 (12.5 %) of the true value,
/// in constant memory whatever the rate.
public struct LatencyHistogram: Sendable, Hashable {
    static let subBuckets = 8
    private var counts = [Int](repeating: 0, count: 33 * 8)
    public private(set) var total = 0

    public init() {}

    static func index(_ value: UInt32) -> Int {
        guard value >= UInt32(subBuckets) else { return Int(value) }
        let power = 31 - value.leadingZeroBitCount  // >= 3
        let sub = Int(value >> UInt32(power - 3)) & (subBuckets - 1)
        return (power - 2) * subBuckets + sub
    }

    /// The largest value of bucket `index` (a percentile reports the upper bound of its bucket).
    static func upperBound(_ index: Int) -> UInt64 {
        guard index >= subBuckets else { return UInt64(index) }
        let power = index / subBuckets + 2
        let sub = UInt64(index % subBuckets)
        return ((UInt64(subBuckets) + sub + 1) << UInt64(power - 3)) - 1
    }

    public mutating func record(_ value: UInt32) {
        counts[Self.index(value)] += 1
        total += 1
    }

    public mutating func merge(_ other: LatencyHistogram) {
        for index in counts.indices { counts[index] += other.counts[index] }
        total += other.total
    }

    /// The value at or below which `fraction` of the recorded values are (its bucket's upper bound); nil when empty.
    public func percentile(_ fraction: Double) -> UInt64? {
        guard total > 0 else { return nil }
        let rank = max(1, Int((fraction * Double(total)).rounded(.up)))
        var seen = 0
        for index in counts.indices {
            seen += counts[index]
            if seen >= rank { return Self.upperBound(index) }
        }
        return nil
    }
}
