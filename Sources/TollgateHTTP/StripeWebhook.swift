import Logging
import NIOConcurrencyHelpers
import NIOHTTP1
import TollgateAuthorization
import TollgateBilling
import TollgateCore
import TollgateModel
import TollgateServer

/// The Stripe webhook endpoint's settings (`http.stripe`). The signing secrets are bytes read from files or systemd
/// credentials; `description` never shows them.
public struct StripeWebhookSettings: Sendable, Hashable, CustomStringConvertible {
    /// The request path Stripe posts to (through the reverse proxy).
    public var path: String
    /// One signing secret, or two while one replaces the other: read from `secretSources` when the daemon starts
    /// or reloads (`HTTPConfiguration.resolvedPolicy`), never written in the configuration.
    public var secrets: [[UInt8]]
    /// Where the secrets are read from: files, or systemd credentials (`$CREDENTIALS_DIRECTORY/<name>`).
    public var secretSources: [StripeSecretSource] = []
    public var toleranceSeconds: Int64
    public var mapping: StripeMapping
    /// How long an applied event id is remembered (a repeat within it is acknowledged and not applied).
    public var eventRetentionMillis: Int64
    /// The largest event body accepted; beyond it: 413.
    public var maxBodyBytes: Int

    public init(
        path: String = "/v1/stripe/webhook", secrets: [[UInt8]], toleranceSeconds: Int64 = StripeSignature.defaultToleranceSeconds,
        mapping: StripeMapping = StripeMapping(), eventRetentionMillis: Int64 = 30 * 86_400_000, maxBodyBytes: Int = 1 << 20
    ) {
        self.path = path
        self.secrets = secrets
        self.toleranceSeconds = toleranceSeconds
        self.mapping = mapping
        self.eventRetentionMillis = eventRetentionMillis
        self.maxBodyBytes = maxBodyBytes
    }

    public var description: String { "StripeWebhookSettings(path: \(path), secrets: \(secrets.count) redacted)" }
}

/// A file holding one signing secret, and how messages name it (the path, or `credential <name>`).
public struct StripeSecretSource: Sendable, Hashable {
    public var path: String
    public var label: String
    public init(path: String, label: String) {
        self.path = path
        self.label = label
    }
}

/// Counts of webhook requests by what became of them (STATS `http_stripe_*`).
public struct StripeWebhookCounters: Sendable, Hashable {
    public var applied: UInt64 = 0
    public var duplicates: UInt64 = 0
    public var stale: UInt64 = 0
    public var unchanged: UInt64 = 0
    public var unknownTypes: UInt64 = 0
    public var unmapped: UInt64 = 0
    public var badSignatures: UInt64 = 0
    public var refused: UInt64 = 0
    public init() {}
}

extension HTTPFrontEnd {
    /// A webhook request's answer, through `completion` (after the journal when the event is applied). Decides
    /// nothing itself: the signature and the mapping are `TollgateBilling`'s, the change the core's.
    func stripeWebhook(_ head: HTTPRequestHead, body: [UInt8], peer: PeerCredentials?, completion: @escaping @Sendable (ForwardAuthAnswer) -> Void) {
        let live = self.live.withLockedValue { $0 }
        guard live.access.admits(peer) else {
            return completion(.refused(.forbidden, reason: ForwardAuthProblem.peerNotAllowed.rawValue))
        }
        guard let settings = live.policy.stripe else { return completion(.refused(.notFound, reason: "not_found")) }
        guard head.method == .POST else {
            var answer = ForwardAuthAnswer.refused(.methodNotAllowed, reason: "method_not_allowed")
            answer.headers.append(("Allow", "POST"))
            return completion(answer)
        }
        let now = clock.now().millis
        if let problem = StripeSignature.verify(
            header: head.headers.first(name: "stripe-signature"), body: body, secrets: settings.secrets, now: now / 1000, tolerance: settings.toleranceSeconds)
        {
            stripeCounters.withLockedValue { $0.badSignatures &+= 1 }
            logger.warning("stripe webhook refused: bad signature", metadata: ["tollgate.stripe.problem": "\(problem.rawValue)"])
            return completion(.refused(.badRequest, reason: problem.rawValue))
        }
        switch StripeEvent.interpret(body, mapping: settings.mapping) {
        case .malformed(let why):
            logger.warning("stripe webhook refused: malformed event", metadata: ["tollgate.stripe.problem": "\(why)"])
            completion(.refused(.badRequest, reason: "malformed_event"))
        case .unknownType(let id, let type):
            stripeCounters.withLockedValue { $0.unknownTypes &+= 1 }
            logger.debug("stripe event type not handled", metadata: ["tollgate.stripe.event": "\(id)", "tollgate.stripe.type": "\(type)"])
            completion(Self.stripeReceived("ignored"))
        case .unmapped(let id, let type, let reason):
            stripeCounters.withLockedValue { $0.unmapped &+= 1 }
            logger.warning("stripe event not applied: not mapped", metadata: ["tollgate.stripe.event": "\(id)", "tollgate.stripe.type": "\(type)", "tollgate.stripe.reason": "\(reason)"])
            completion(Self.stripeReceived("unmapped"))
        case .update(let update):
            core.applyBilling(update, retention: settings.eventRetentionMillis) { [stripeCounters, logger] answer in
                switch answer {
                case .decided(let outcome):
                    let word: String
                    switch outcome {
                    case .applied:
                        word = "applied"
                        stripeCounters.withLockedValue { $0.applied &+= 1 }
                    case .duplicate:
                        word = "duplicate"
                        stripeCounters.withLockedValue { $0.duplicates &+= 1 }
                    case .stale:
                        word = "stale"
                        stripeCounters.withLockedValue { $0.stale &+= 1 }
                    case .unchanged:
                        word = "unchanged"
                        stripeCounters.withLockedValue { $0.unchanged &+= 1 }
                    case .unknownSubscription:
                        word = "unknown_subscription"
                        stripeCounters.withLockedValue { $0.unmapped &+= 1 }
                    }
                    completion(Self.stripeReceived(word))
                case .refused(let message):
                    stripeCounters.withLockedValue { $0.refused &+= 1 }
                    logger.error("stripe event refused by the engine; stripe will retry it", metadata: ["tollgate.stripe.event": "\(update.eventID)", "tollgate.error": "\(message)"])
                    // 422: Stripe retries it (for up to three days), so fixing the mapping or the plan lets it apply.
                    completion(.refused(.unprocessableEntity, reason: "not_applicable"))
                case .unavailable:
                    completion(.refused(.serviceUnavailable, reason: "unavailable"))
                }
            }
        }
    }

    /// `{"received":true,"outcome":"<word>"}`: every 2xx answer; the words are fixed, never input.
    static func stripeReceived(_ outcome: String) -> ForwardAuthAnswer {
        ForwardAuthAnswer(status: .ok, headers: [], body: #"{"received":true,"outcome":""# + outcome + #""}"#)
    }
}
