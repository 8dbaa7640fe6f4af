import TollgateEngine
import TollgateModel
import TollgateProtocol

/// Verifies a subject token under the roles given (the state's, at the time of the request) and finds its grant
/// (`TollgateIdentity.IdentityVerifier.grant`). Async: the issuer's keys may have to be fetched, which the verifier
/// bounds with its own timeout.
public typealias ExchangeVerifier = @Sendable (ExchangeRequest, [IdentityRole]) async -> Result<ExchangeGrant, ExchangeRefusal>

/// EXCHANGE (issue 17): verification runs in a task, off the event loops and off the state lock, so that an
/// identity provider that is slow or unreachable delays only exchanges, never a CHECK. The grant is then minted
/// under the lock like any change and answered once its record is durable.
extension ApplicationCore {
    /// Sets (or, with nil, removes) the verifier: at start-up and on reload. `issuers` are those a role may name
    /// (ROLE_PUT refuses others; empty: every role put is refused, identity not being configured); nil: unchecked.
    public func setExchangeVerifier(_ verifier: ExchangeVerifier?, issuers: Set<String>? = nil) {
        lock.withLock {
            exchangeVerifier = verifier
            roleIssuers = issuers
        }
    }

    func exchange(_ request: ExchangeRequest, caller: Caller, completion: @escaping @Sendable (Response) -> Void) -> Response? {
        // The roles as they are now (a copy-on-write dictionary: nothing is copied unless a role changes meanwhile).
        guard let configured = lock.withLock({ exchangeVerifier.map { ($0, state.roles) } }) else {
            return answer(for: ExchangeRefusal(.notConfigured, "token exchange is not configured on this daemon (identity section)"), opcode: .exchange)
        }
        let (verifier, roles) = configured
        Task {
            switch await verifier(request, roles.values.sorted { $0.name < $1.name }) {
            case .failure(let refusal):
                self.audit("exchange refused", caller: caller.uid, ["tollgate.reason": "\(refusal.code)"])
                completion(self.answer(for: refusal, opcode: .exchange))
            case .success(let grant):
                if let answer = self.mint(grant, verifiedUnder: roles[grant.role], ttlSeconds: request.ttlSeconds, caller: caller, completion: completion) {
                    completion(answer)
                }
            }
        }
        return nil
    }

    /// Mints the grant's token under the lock and journals it; nil when the answer comes through `completion`.
    /// `role` is the role the token was verified under: if it was changed or deleted during the verification (which
    /// runs off the lock), nothing is minted under rules that no longer hold.
    func mint(
        _ grant: ExchangeGrant, verifiedUnder role: IdentityRole?, ttlSeconds: UInt32, caller: Caller, completion: @escaping @Sendable (Response) -> Void
    ) -> Response? {
        if currentJournal.statistics.failed {
            return .error(.unavailable, "the journal cannot write (disk full or I/O error); the change was not made. It recovers by itself; retry later")
        }
        let now = clock.now()
        do {
            try lock.withLock {
                guard state.roles[grant.role] == role else {
                    throw ExchangeRefusal(.roleChanged, "role \(LicensingState.printable(grant.role)) was changed or deleted while the JWT was being verified; retry")
                }
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
