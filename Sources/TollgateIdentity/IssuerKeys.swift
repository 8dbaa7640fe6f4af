import Foundation
import JWTKit
import Logging
import TollgateModel

/// One issuer's keys: the JWKS last fetched, refreshed under `KeySetPolicy`, fetched by one task at a time (callers
/// arriving meanwhile wait for that fetch rather than starting another).
public actor IssuerKeys {
    public let issuer: String
    let source: any KeySetSource
    let policy: KeySetPolicy
    let clock: @Sendable () -> Int64
    let logger: Logger
    var state = KeySetPolicy.State()
    var keys: [JWK] = []
    var inFlight: Task<Void, Never>?
    /// Fetches that failed, and keys skipped as unusable in the last set (STATS, tests).
    public private(set) var failures = 0
    public private(set) var fetches = 0
    /// Key sets received and parsed (successful fetches).
    public private(set) var fetchedSets = 0
    /// Whether the last fetch failed (the keys held may be missing one the provider has).
    var lastFetchFailed = false

    public init(issuer: String, source: any KeySetSource, policy: KeySetPolicy, clock: @escaping @Sendable () -> Int64, logger: Logger) {
        self.issuer = issuer
        self.source = source
        self.policy = policy
        self.clock = clock
        self.logger = logger
    }

    /// The key for a token's `kid` (nil: the token names none, which the set must then make unambiguous).
    public func key(for kid: String?) async throws(ExchangeRefusal) -> JWK {
        switch policy.action(state, keyKnown: lookup(kid) != nil, now: clock()) {
        case .useHeld:
            break
        case .useHeldAndRefresh:
            startFetch()
        case .fetchThenUse:
            let before = fetchedSets
            startFetch()
            await inFlight?.value
            guard policy.usable(state, now: clock()) else {
                throw ExchangeRefusal(.keysUnavailable, "the keys of issuer \(CompactJWT.printable(issuer)) cannot be fetched; retry later")
            }
            // The fetch failed (or timed out) and the key is not among those held: whether the provider has it is
            // not known, so the answer is "retry", not "no such key".
            if fetchedSets == before, lookup(kid) == nil {
                throw ExchangeRefusal(.keysUnavailable, "the keys of issuer \(CompactJWT.printable(issuer)) could not be refreshed to find kid \(CompactJWT.printable(kid ?? "")); retry later")
            }
        case .refuseUnknownKey:
            // No refresh is allowed yet; if the last one failed (or is still running), whether the provider has
            // this key is not known either.
            if inFlight != nil || lastFetchFailed, lookup(kid) == nil {
                throw ExchangeRefusal(.keysUnavailable, "the keys of issuer \(CompactJWT.printable(issuer)) could not be refreshed to find kid \(CompactJWT.printable(kid ?? "")); retry later")
            }
        case .refuseUnavailable:
            throw ExchangeRefusal(.keysUnavailable, "the keys of issuer \(CompactJWT.printable(issuer)) cannot be fetched; retry later")
        }
        guard let key = lookup(kid) else {
            throw ExchangeRefusal(.unknownKey, kid == nil
                ? "the JWT names no kid and issuer \(CompactJWT.printable(issuer)) has several keys"
                : "kid \(CompactJWT.printable(kid!)) is not among issuer \(CompactJWT.printable(issuer))'s keys")
        }
        return key
    }

    func lookup(_ kid: String?) -> JWK? {
        guard let kid else { return keys.count == 1 ? keys[0] : nil }
        return keys.first { $0.keyIdentifier?.string == kid }
    }

    /// Starts a fetch unless one is running; its result lands in `state` and `keys`.
    func startFetch() {
        guard inFlight == nil else { return }
        state.attemptedAt = clock()
        fetches += 1
        let source = self.source
        inFlight = Task.detached { [weak self] in
            let result: Result<[UInt8], any Error>
            do { result = .success(try await source.fetch()) } catch { result = .failure(error) }
            await self?.finish(result)
        }
    }

    func finish(_ result: Result<[UInt8], any Error>) {
        inFlight = nil
        switch result {
        case .success(let bytes):
            guard let parsed = Self.parse(bytes) else {
                failures += 1
                lastFetchFailed = true
                logger.warning("the identity provider's key set is not a JWKS", metadata: ["tollgate.issuer": "\(issuer)"])
                return
            }
            keys = parsed
            fetchedSets += 1
            lastFetchFailed = false
            state.fetchedAt = clock()
            logger.info("identity provider keys loaded", metadata: ["tollgate.issuer": "\(issuer)", "tollgate.keys": "\(parsed.count)"])
        case .failure(let error):
            failures += 1
            lastFetchFailed = true
            logger.warning("identity provider keys could not be fetched; the keys held are kept", metadata: [
                "tollgate.issuer": "\(issuer)", "tollgate.error": "\(error)",
            ])
        }
    }

    /// The signature keys of a JWKS: each key decoded on its own, so that one of a type jwt-kit does not know (an
    /// `oct` or encryption key) does not hide the others; keys marked `"use": "enc"` are left out.
    static func parse(_ bytes: [UInt8]) -> [JWK]? {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any], let list = object["keys"] as? [Any] else { return nil }
        let decoder = JSONDecoder()
        return list.compactMap { entry in
            guard let key = entry as? [String: Any], (key["use"] as? String).map({ $0 == "sig" }) ?? true,
                let data = try? JSONSerialization.data(withJSONObject: key)
            else { return nil }
            return try? decoder.decode(JWK.self, from: data)
        }
    }
}
