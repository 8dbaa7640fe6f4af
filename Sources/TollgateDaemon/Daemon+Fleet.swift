import Logging
import TollgateCore
import TollgateFleet
import TollgateModel

/// Fleet mode's part of start-up and shutdown (`Protocol/FLEET.md` 5.1): with `fleet.enabled`, the replicator is
/// attached to the core before anything is served, its connections and catch-up run in a task of their own, and
/// start-up waits (at most the horizon) for the first catch-up so that the host serves the fleet's state, not only its
/// own journal's. Without it nothing here runs.
extension Daemon {
    /// Starts fleet mode when configured; returns the replicator (nil on a single host).
    func startFleet(core: ApplicationCore, journalSequenceAtStart: UInt64) async throws -> FleetReplicator? {
        guard let fleet = configuration.fleet, fleet.enabled else { return nil }
        let settings = try fleet.resolvedSettings()
        let replicator = FleetReplicator(
            settings: settings, core: core, journalSequenceAtStart: journalSequenceAtStart, clock: dependencies.clock, logger: logger)
        let task = Task { await replicator.run() }
        setFleet(replicator, task: task)
        logger.notice("fleet mode: catching up with the fleet log", metadata: [
            "tollgate.fleet.host_id": "\(settings.hostID)", "tollgate.fleet.addresses": "\(settings.addresses.map(\.description).joined(separator: ","))",
            "tollgate.fleet.position": "\(core.fleetPosition)", "tollgate.fleet.horizon_ms": "\(settings.horizonMillis)",
        ])
        await replicator.waitForFirstCatchUp(timeoutMillis: settings.horizonMillis)
        if replicator.acceptsChanges {
            logger.notice("fleet mode: caught up", metadata: ["tollgate.fleet.position": "\(core.fleetPosition)"])
        } else {
            logger.warning("fleet mode: the fleet log is unreachable; serving checks from the journal until the horizon, refusing changes")
        }
        return replicator
    }

    /// Stops the replicator's connections (what is still queued for the log stays in the local journal only).
    func stopFleet() async {
        guard let task = takeFleetTask() else { return }
        task.cancel()
        await task.value
    }

    /// STATS keys of fleet mode, when it runs.
    static func fleetStatistics(_ replicator: FleetReplicator?) -> [KeyValue] {
        replicator?.statistics() ?? []
    }
}
