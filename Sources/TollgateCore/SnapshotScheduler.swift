import Logging
import NIOConcurrencyHelpers
import TollgateEngine
import TollgateJournal

/// When to take a snapshot: one at a time, when the journal has grown past its target, and with backoff while
/// they fail (a full disk), their failures logged once per streak and then once a minute with a count.
final class SnapshotScheduler: Sendable {
    private struct State {
        var inProgress = false
        var failures = RepeatedFailure()
    }
    private let state = NIOLockedValueBox(State())

    /// Claims the right to start a snapshot at `now`: false while one runs or a failure's backoff lasts.
    func begin(at now: Timestamp, force: Bool) -> Bool {
        state.withLockedValue { s in
            guard !s.inProgress, force || s.failures.mayAttempt(at: now) else { return false }
            s.inProgress = true
            return true
        }
    }

    /// Records how a snapshot ended; returns what to log for a failure and the length of a failure streak a
    /// success ended.
    func finished(_ succeeded: Bool, at now: Timestamp) -> (report: RepeatedFailure.Report, endedStreak: Int) {
        state.withLockedValue { s in
            s.inProgress = false
            return succeeded ? (.quiet, s.failures.succeeded()) : (s.failures.failed(at: now), 0)
        }
    }
}

extension ApplicationCore {
    /// Starts a snapshot when the journal has grown past its target, off the request path.
    public func maybeSnapshot(force: Bool = false) {
        guard force || currentJournal.needsSnapshot else { return }
        guard snapshots.begin(at: clock.now(), force: force) else { return }
        let (copy, sequence, target): (LicensingState, UInt64, Journal) = lock.withLock {
            // Consumption applied in memory but not yet journaled must land before the snapshot's sequence,
            // or replay would count it twice (once in the snapshot, once in the later record).
            flushPendingUsageLocked()
            return (state, journal.lastSequence, journal)
        }
        let now = clock.now().millis
        let logger = self.logger
        target.snapshot(upTo: sequence, encode: {
            // Every stored value was validated to fit its encoding, so this cannot fail.
            try! copy.encodeSnapshot(now: now)
        }) { [weak self] result in
            guard let self else { return }
            let succeeded = (try? result.get()) != nil
            let (report, endedStreak) = self.snapshots.finished(succeeded, at: self.clock.now())
            self.lock.withLock {
                if succeeded { self.counters.snapshots &+= 1 } else { self.counters.snapshotFailures &+= 1 }
            }
            switch result {
            case .success:
                var metadata: Logger.Metadata = ["tollgate.journal.sequence": "\(sequence)"]
                if endedStreak > 0 { metadata["tollgate.failures_before"] = "\(endedStreak)" }
                logger.info("snapshot written", metadata: metadata)
            case .failure(let error):
                guard case .log(let failures, let first) = report else { break }
                logger.error(first ? "snapshot failed; retrying with backoff" : "snapshots still failing", metadata: [
                    "tollgate.error": "\(error)", "tollgate.failures": "\(failures)",
                ])
            }
        }
    }
}
