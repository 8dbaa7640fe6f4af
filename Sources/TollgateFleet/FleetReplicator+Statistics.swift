import TollgateCore
import TollgateEngine
import TollgateModel

/// What fleet mode shows of itself (`Protocol/FLEET.md` 7.3): STATS keys and the `/metrics` reading.
extension FleetReplicator {
    /// What `/metrics` shows (`Protocol/FLEET.md` 7.3).
    public func metricsReading() -> (lagSeconds: Double, stale: Bool, position: UInt64, queued: Int) {
        let now = clock.now()
        let queued = queue.statistics.queued
        return shared.withLockedValue { s in
            (Double(s.horizon.lagMillis(at: now)) / 1000, s.horizon.isStale(at: now), s.cursor.position, queued)
        }
    }

    /// STATS keys (`Protocol/FLEET.md` 7.3).
    public func statistics() -> [KeyValue] {
        let now = clock.now()
        let (queued, committed, refused) = queue.statistics
        return shared.withLockedValue { s in
            [
                KeyValue("fleet.host_id", settings.hostID),
                KeyValue("fleet.position", "\(s.cursor.position)"),
                KeyValue("fleet.lag_ms", "\(s.horizon.lagMillis(at: now))"),
                KeyValue("fleet.stale", s.horizon.isStale(at: now) ? "1" : "0"),
                KeyValue("fleet.horizon_ms", "\(settings.horizonMillis)"),
                KeyValue("fleet.connected", s.writerConnected ? "1" : "0"),
                KeyValue("fleet.queued", "\(queued)"),
                KeyValue("fleet.committed", "\(committed)"),
                KeyValue("fleet.keys_refused", "\(refused)"),
                KeyValue("fleet.live_hosts", "\(s.liveHosts)"),
                KeyValue("fleet.catch_ups", "\(s.catchUps)"),
                KeyValue("fleet.gaps", "\(s.gaps)"),
            ]
        }
    }
}
