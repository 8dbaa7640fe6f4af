/// When an issuer's key set is fetched again, and how long one is trusted: pure, time is an argument.
///
/// - A key set is refreshed when it is older than `refreshAfter` (in the background while it is still usable).
/// - A token naming an unknown `kid` triggers one refresh, but not more often than once per `minRefreshInterval`
///   (so a stream of tokens with made-up key ids cannot turn the daemon into a load generator against the IdP).
/// - A failed fetch keeps the keys held; they stay usable until `maxAge` after the last successful fetch, then
///   exchanges are refused `keys_unavailable` until a fetch succeeds.
public struct KeySetPolicy: Sendable, Hashable {
    public var refreshAfterMillis: Int64
    public var minRefreshIntervalMillis: Int64
    public var maxAgeMillis: Int64

    public init(refreshAfterMillis: Int64 = 3_600_000, minRefreshIntervalMillis: Int64 = 60_000, maxAgeMillis: Int64 = 86_400_000) {
        self.refreshAfterMillis = refreshAfterMillis
        self.minRefreshIntervalMillis = minRefreshIntervalMillis
        self.maxAgeMillis = maxAgeMillis
    }

    /// What is known of one issuer's key set.
    public struct State: Sendable, Hashable {
        /// When the keys held were fetched; nil: none ever was.
        public var fetchedAt: Int64?
        /// When a fetch was last started (successful or not).
        public var attemptedAt: Int64?
        public init(fetchedAt: Int64? = nil, attemptedAt: Int64? = nil) {
            self.fetchedAt = fetchedAt
            self.attemptedAt = attemptedAt
        }
    }

    /// Whether the keys held may verify a token now.
    public func usable(_ state: State, now: Int64) -> Bool {
        guard let fetchedAt = state.fetchedAt else { return false }
        return now - fetchedAt <= maxAgeMillis
    }

    /// Whether a fetch may start now: never more than once per `minRefreshInterval`.
    public func mayFetch(_ state: State, now: Int64) -> Bool {
        guard let attemptedAt = state.attemptedAt else { return true }
        return now - attemptedAt >= minRefreshIntervalMillis
    }

    /// Whether the keys held are due for a refresh (also while still usable).
    public func stale(_ state: State, now: Int64) -> Bool {
        guard let fetchedAt = state.fetchedAt else { return true }
        return now - fetchedAt >= refreshAfterMillis
    }

    /// What to do for a token whose `kid` is (or is not) in the keys held.
    public enum Action: Sendable, Hashable {
        /// Verify with the keys held.
        case useHeld
        /// Verify with the keys held, and refresh them in the background.
        case useHeldAndRefresh
        /// Fetch first (the key is unknown or nothing usable is held), then look again.
        case fetchThenUse
        /// The key is unknown and a refresh is not allowed yet: `unknown_key`.
        case refuseUnknownKey
        /// Nothing usable is held and no fetch is allowed yet: `keys_unavailable`.
        case refuseUnavailable
    }

    public func action(_ state: State, keyKnown: Bool, now: Int64) -> Action {
        let usable = usable(state, now: now), mayFetch = mayFetch(state, now: now)
        if usable && keyKnown { return stale(state, now: now) && mayFetch ? .useHeldAndRefresh : .useHeld }
        if mayFetch { return .fetchThenUse }
        return usable ? .refuseUnknownKey : .refuseUnavailable
    }
}
