import Logging
import TollgateModel
import TollgateCore
import TollgateServer

/// Where policy lives: **the journal is the truth**. The configuration's `plans` only seed plans that the state does
/// not hold yet, at start-up and on reload; a plan that exists (seeded earlier, or put by `tollgate apply` /
/// `plan set` / PLAN_PUT) is never overwritten by the configuration. Before this rule every start and every
/// SIGHUP put the configuration's plans back over the applied ones: a silent policy rollback (issue 13 §1).
///
/// Every seeding is one journal record (a plan put, durable before the daemon serves or the reload completes) and
/// one audit log line with `tollgate.actor=config` and the plan it created. A configured plan that differs from
/// the journal's is left alone and logged (notice) with the fields that differ, so a configuration edit that has
/// no effect is not silent either.
extension Daemon {
    /// What a seeding did, for the reload's summary line and the tests.
    struct PlanSeeding: Equatable {
        var created: [String] = []
        /// Configured plans that exist with other contents; the journal's version stays.
        var differing: [String] = []
    }

    /// Puts the configured plans that do not exist yet. `occasion` (`start`, `reload`) goes into the log lines.
    ///
    /// The existence test and the put are two steps under the core's lock, not one: a PLAN_PUT of the same id that
    /// lands between them would be overwritten by the seed. At start-up nothing is served yet; on reload the window
    /// is one journal write long and needs an operator creating, at that instant, a plan the configuration also
    /// names (closing it needs a put-if-absent in the core).
    func seedPlans(_ plans: [Plan], into core: ApplicationCore, occasion: String) async throws -> PlanSeeding {
        var seeding = PlanSeeding()
        for plan in plans {
            if let existing = core.withState({ $0.plans[plan.id] }) {
                let differences = Self.planDifferences(stored: existing, configured: plan)
                if !differences.isEmpty {
                    seeding.differing.append(plan.id)
                    logger.notice("the configuration's plan differs from the journal's; the journal's stays (change it with tollgate apply or plan set)", metadata: [
                        "tollgate.plan": "\(plan.id)", "tollgate.occasion": "\(occasion)",
                        "tollgate.plan.differs": "\(differences.joined(separator: ","))",
                    ])
                }
                continue
            }
            try await core.putDurably(.planPut(plan))
            seeding.created.append(plan.id)
            logger.notice("plan seeded from the configuration", metadata: [
                "tollgate.audit": "1", "tollgate.actor": "config", "tollgate.occasion": "\(occasion)",
                "tollgate.plan": "\(plan.id)", "tollgate.plan.created": "\(Self.describe(plan))",
            ])
        }
        return seeding
    }

    /// The names of the fields in which two plans differ, after the normalisation a put applies (a burst of 0 is
    /// stored as 1), so that an unchanged configuration does not report a difference.
    static func planDifferences(stored: Plan, configured: Plan) -> [String] {
        var configured = configured
        for i in configured.rateLimits.indices { configured.rateLimits[i].burst = max(configured.rateLimits[i].burst, 1) }
        var fields: [String] = []
        if Set(stored.entitlements) != Set(configured.entitlements) { fields.append("entitlements") }
        if Set(stored.features) != Set(configured.features) { fields.append("features") }
        if stored.quotas != configured.quotas { fields.append("quotas") }
        if stored.rateLimits != configured.rateLimits { fields.append("rate_limits") }
        if stored.concurrency != configured.concurrency { fields.append("concurrency") }
        if stored.credits != configured.credits { fields.append("credits") }
        if stored.overage != configured.overage { fields.append("overage") }
        if stored.maxTokenLifetimeSeconds != configured.maxTokenLifetimeSeconds { fields.append("max_token_lifetime_seconds") }
        if stored.maxActiveTokens != configured.maxActiveTokens { fields.append("max_active_tokens") }
        if stored.pastDueGraceSeconds != configured.pastDueGraceSeconds { fields.append("past_due_grace_seconds") }
        return fields
    }

    /// One line naming everything the seeded plan grants and limits, for the audit log.
    static func describe(_ plan: Plan) -> String {
        var parts = ["entitlements=[\(plan.entitlements.joined(separator: " "))]", "features=[\(plan.features.joined(separator: " "))]"]
        parts.append("quotas=[\(plan.quotas.map { "\($0.name)=\($0.limit)" }.joined(separator: " "))]")
        parts.append("rate_limits=[\(plan.rateLimits.map { "\($0.name)=\($0.ratePerSecond)/s burst \($0.burst)" }.joined(separator: " "))]")
        parts.append("concurrency=[\(plan.concurrency.map { "\($0.name)=\($0.max)" }.joined(separator: " "))]")
        if let credits = plan.credits { parts.append("credits=\(credits.pool.name) \(credits.included) per \(credits.period.name)") }
        parts.append("overage=\(plan.overage.name)")
        parts.append("max_token_lifetime_seconds=\(plan.maxTokenLifetimeSeconds)")
        parts.append("max_active_tokens=\(plan.maxActiveTokens)")
        parts.append("past_due_grace_seconds=\(plan.pastDueGraceSeconds)")
        return parts.joined(separator: " ")
    }
}
