import TollgateEngine
import TollgateModel
import TollgateProtocol

/// The configuration's roles seed the state only where the journal has no word (`LicensingState.seedsRole`). The
/// test and the put are one critical section: a ROLE_PUT or ROLE_DELETE landing between a separate read and put
/// would otherwise be overwritten by the configuration at a reload.
extension ApplicationCore {
    /// Puts `role` if the state may be seeded with it, and waits until the put is durable. Returns false, writing
    /// nothing, when the journal already holds the name or deleted it.
    public func seedRoleDurably(_ role: IdentityRole) async throws -> Bool {
        let response: Response? = await withCheckedContinuation { continuation in
            switch seedRole(role, completion: { continuation.resume(returning: $0) }) {
            case .notSeeded: continuation.resume(returning: nil)
            case .now(let response): continuation.resume(returning: response)
            case .later: break
            }
        }
        guard let response else { return false }
        if case .error(let status, let message) = response { throw CoreError(status: status, message: message) }
        return true
    }

    private enum Seeding {
        case notSeeded
        case now(Response)
        case later
    }

    private func seedRole(_ role: IdentityRole, completion: @escaping @Sendable (Response) -> Void) -> Seeding {
        if currentJournal.statistics.failed {
            return .now(.error(.unavailable, "the journal cannot write (disk full or I/O error); the change was not made. It recovers by itself; retry later"))
        }
        let now = clock.now()
        let request = Request.rolePut(role)
        let seeding: Seeding
        do {
            seeding = try lock.withLock { () throws -> Seeding in
                if let replicator, !replicator.acceptsChanges { return .now(Self.fleetUnavailable) }
                guard state.seedsRole(named: role.name) else { return .notSeeded }
                let (response, change) = try decideLocked(request, now: now, caller: nil)
                guard let change else { return .now(response) }
                appendLocked(change, durability: .durable) { [weak self] result in
                    switch result {
                    case .success: completion(response)
                    case .failure(let error): completion(self?.answerToFailedAppend(error) ?? ApplicationCore.notDurable)
                    }
                }
                return .later
            }
        } catch {
            return .now(answer(for: error, opcode: request.opcode))
        }
        if case .later = seeding { maybeSnapshot() }
        return seeding
    }
}
