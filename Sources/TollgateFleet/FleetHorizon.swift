import TollgateEngine

/// The revocation horizon's arithmetic (`Protocol/FLEET.md` 7), on times of the host's own clock: a host admits
/// from memory until H after the last confirmed catch-up was *sent*, never from when its answer arrived, so a slow
/// answer cannot stretch the bound. Before the first catch-up, the start counts as one.
public struct FleetHorizon: Sendable, Hashable {
    /// H in milliseconds.
    public let horizonMillis: Int64
    /// When the last confirmed catch-up was sent (the start time before the first).
    public private(set) var confirmedAt: Timestamp

    public init(horizonMillis: Int64, startedAt: Timestamp) {
        self.horizonMillis = horizonMillis
        self.confirmedAt = startedAt
    }

    /// A catch-up sent at `sentAt` reached the end of the log and everything it read is applied. An older one
    /// (answers can arrive out of order after a reconnect) moves nothing.
    public mutating func confirm(sentAt: Timestamp) {
        confirmedAt = max(confirmedAt, sentAt)
    }

    /// The first instant at which every check is denied `fleet_stale`.
    public var staleAt: Timestamp { confirmedAt.adding(millis: horizonMillis) }

    public func isStale(at now: Timestamp) -> Bool { now >= staleAt }

    /// How long since the last confirmed catch-up (what STATS and metrics call the lag), in milliseconds, ≥ 0.
    public func lagMillis(at now: Timestamp) -> Int64 { max(0, (now.nanoseconds - confirmedAt.nanoseconds) / 1_000_000) }
}

/// Reconnect delays: 100 ms doubling to 5 s, and the address to try, cycling through the primary and the standbys
/// (`Protocol/FLEET.md` 5.4).
public struct ReconnectBackoff: Sendable, Hashable {
    public let addresses: Int
    public private(set) var failures = 0

    public init(addresses: Int) { self.addresses = max(1, addresses) }

    /// The address to try next (0 is the primary) and how long to wait before trying it.
    public var next: (address: Int, delayMillis: Int64) {
        let delay = failures == 0 ? 0 : min(5_000, 100 << min(failures - 1, 6))
        return (failures % addresses, Int64(delay))
    }

    public mutating func failed() { failures += 1 }
    public mutating func connected() { failures = 0 }
}
