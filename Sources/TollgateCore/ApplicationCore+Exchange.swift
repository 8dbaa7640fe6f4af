import TollgateEngine
import TollgateModel
import TollgateProtocol

/// Verifies a subject token and finds its grant (`TollgateIdentity.IdentityVerifier.grant`). Async: the issuer's
/// keys may have to be fetched, which the verifier bounds with its own timeout.
public typealias ExchangeVerifier = @Sendable (ExchangeRequest) async -> Result<ExchangeGrant, ExchangeRefusal>

/// EXCHANGE (issue 17): verification runs in a task, off the event loops and off the state lock, so that an
/// identity provider that is slow or unreachable delays only exchanges, never a CHECK. The grant is then minted
/// under the lock like any change and answered once its record is durable.
extension ApplicationCore {
    /// Sets (or, with nil, removes) the verifier: at start-up and on reload.
    public func setExchangeVerifier(_ verifier: ExchangeVerifier?) {
        lock.withLock { exchangeVerifier = verifier }
    }

    func exchange(_ request: ExchangeRequest, caller: Caller, completion: @escaping @Sendable (Response) -> Void) -> Response? {
        guard let verifier = lock.withLock({ exchangeVerifier }) else {
            return answer(for: ExchangeRefusal(.notConfigured, "token exchange is not configured on this daemon (identity section)"), opcode: .exchange)
        }
        Task {
            switch await verifier(request) {
            case .failure(let refusal):
                self.audit("exchange refused", caller: caller.uid, ["tollgate.reason": "\(refusal.code)"])
                completion(self.answer(for: refusal, opcode: .exchange))
            case .success(let grant):
                if let answer = self.mint(grant, ttlSeconds: request.ttlSeconds, caller: caller, completion: completion) { completion(answer) }
            }
        }
        return nil
    }

    /// Mints the grant's token under the lock and journals it; nil when the answer comes through `completion`.
    func mint(_ grant: ExchangeGrant, ttlSeconds: UInt32, caller: Caller, completion: @escaping @Sendable (Response) -> Void) -> Response? {
        if currentJournal.statistics.failed {
            return .error(.unavailable, "the journal cannot write (disk full or I/O error); the change was not made. It recovers by itself; retry later")
        }
        let now = clock.now()
        do {
            try lock.withLock {
                guard state.tokens.count < maxTokens else {
                    throw EngineError(.invalidArgument, "the token store is full (\(maxTokens) tokens); raise limits.max_tokens")
                }
                let (secret, token, change) = try state.exchange(grant, ttlSeconds: ttlSeconds, at: now, maxLifetime: options.maxDerivedLifetimeMillis, using: &rng)
                audit("token exchanged", caller: caller.uid, [
                    "tollgate.token_id": "\(token.id)", "tollgate.license": "\(token.licenseID)", "tollgate.role": "\(grant.role)",
                    "tollgate.issuer": "\(grant.issuer)",
                ])
                appendLocked(change, durability: .durable) { [weak self] result in
                    switch result {
                    case .success: completion(.issue(secret: secret, token: token))
                    case .failure(let error): completion(self?.answerToFailedAppend(error) ?? ApplicationCore.notDurable)
                    }
                }
            }
        } catch {
            if let refusal = error as? ExchangeRefusal {
                audit("exchange refused", caller: caller.uid, ["tollgate.reason": "\(refusal.code)", "tollgate.role": "\(grant.role)"])
            }
            return answer(for: error, opcode: .exchange)
        }
        maybeSnapshot()
        return nil
    }
}
