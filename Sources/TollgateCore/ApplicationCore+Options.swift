import NIOCore

extension ApplicationCore {
    public struct Options: Sendable {
        public var maxFrameSize: Int
        public var maxTokens: Int
        public var maxLicenses: Int
        /// Check consumption is journaled at least this often; a crash may forget at most this window.
        public var usageFlushInterval: TimeAmount
        /// Pending check consumption entries that trigger a flush before the interval elapses.
        public var usageFlushBatch: Int
        public var serverName: String
        /// The longest lifetime of a token made by DERIVE.
        public var maxDerivedLifetimeMillis: Int64
        /// How long a reservation is held before it is released unsettled.
        public var reservationLifetimeMillis: Int64
        /// How often the journaled sweep runs (expiry events, forgetting long-gone tokens, pruning counters).
        public var sweepInterval: TimeAmount
        /// Revoked or expired tokens are forgotten (answered as unknown) this long after they stopped working.
        public var tokenRetentionMillis: Int64
        /// Idempotency keys are remembered this long.
        public var idempotencyRetentionMillis: Int64
        /// Tokens expiring within this time get a `token_expiring` event.
        public var expiryWarningMillis: Int64
        /// Ledger hours older than this are dropped by the sweep (0: never).
        public var ledgerRetentionMillis: Int64

        public init(
            maxFrameSize: Int = 65536, maxTokens: Int = 10_000_000, maxLicenses: Int = 1_000_000,
            usageFlushInterval: TimeAmount = .milliseconds(100), usageFlushBatch: Int = 4096, serverName: String = "tollgated/0.1.0",
            maxDerivedLifetimeMillis: Int64 = 3_600_000, reservationLifetimeMillis: Int64 = 60_000, sweepInterval: TimeAmount = .seconds(60),
            tokenRetentionMillis: Int64 = 30 * 86_400_000, idempotencyRetentionMillis: Int64 = 86_400_000, expiryWarningMillis: Int64 = 86_400_000,
            ledgerRetentionMillis: Int64 = 100 * 86_400_000
        ) {
            self.ledgerRetentionMillis = ledgerRetentionMillis
            self.maxDerivedLifetimeMillis = maxDerivedLifetimeMillis
            self.reservationLifetimeMillis = reservationLifetimeMillis
            self.sweepInterval = sweepInterval
            self.tokenRetentionMillis = tokenRetentionMillis
            self.idempotencyRetentionMillis = idempotencyRetentionMillis
            self.expiryWarningMillis = expiryWarningMillis
            self.maxFrameSize = maxFrameSize
            self.maxTokens = maxTokens
            self.maxLicenses = maxLicenses
            self.usageFlushInterval = usageFlushInterval
            self.usageFlushBatch = usageFlushBatch
            self.serverName = serverName
        }
    }
}
