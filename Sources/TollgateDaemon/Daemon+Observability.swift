import NIOConcurrencyHelpers
import NIOHTTP1
import TollgateCore
import TollgateServer
import TollgateHTTP
import TollgateMetrics

/// The HTTP listener's reserved paths: Prometheus metrics and health (issue 15). The composition root gathers
/// what each front end counts; `TollgateMetrics` turns it into series and verdicts; the HTTP front end writes them.
extension Daemon {
    static let reservedPaths = ["/metrics", "/healthz", "/readyz"]

    func observabilityEndpoints() -> [String: ServiceEndpoint] {
        [
            "/metrics": { [weak self] in
                guard let self, let body = self.scrapeMetrics() else { return Self.unavailable("starting or stopping") }
                return ServiceAnswer(status: .ok, contentType: TollgateMetrics.contentType, body: body)
            },
            "/healthz": { ServiceAnswer(status: .ok, contentType: "text/plain; charset=utf-8", body: Array((Readiness.healthy + "\n").utf8)) },
            "/readyz": { [weak self] in
                guard let self, let verdict = self.readiness() else { return Self.unavailable("not ready: starting or stopping") }
                return ServiceAnswer(
                    status: verdict.ready ? .ok : .serviceUnavailable, contentType: "text/plain; charset=utf-8", body: Array((verdict.reason + "\n").utf8))
            },
        ]
    }

    /// Every series in the text format, or nil before the core exists and once a stop has begun.
    public func scrapeMetrics() -> [UInt8]? {
        let parts = observed.parts
        guard let core = parts.core else { return nil }
        var frontEnds = TollgateMetrics.FrontEnds()
        if let sockets = parts.server?.socketStatistics {
            frontEnds.sockets.append(("api", sockets.api.connections, sockets.api.refusedConnections, sockets.api.refusedRequests))
            frontEnds.sockets.append(("admin", sockets.admin.connections, sockets.admin.refusedConnections, sockets.admin.refusedRequests))
        }
        if let http = parts.http {
            let stats = http.statistics
            frontEnds.sockets.append(("http", stats.connections, stats.refused, nil))
            frontEnds.httpAnswers = http.answerStatistics
        }
        if let fleet = self.fleet { frontEnds.fleet = fleet.metricsReading() }
        return metrics.scrape(core.metricsSnapshot(), frontEnds)
    }

    /// `/readyz`'s verdict, or nil before the core exists and once a stop has begun.
    public func readiness() -> Readiness.Verdict? {
        let parts = observed.parts
        guard let core = parts.core else { return nil }
        return Readiness.evaluate(core.metricsSnapshot(), accepting: parts.accepting)
    }

    private static func unavailable(_ reason: String) -> ServiceAnswer {
        ServiceAnswer(status: .serviceUnavailable, contentType: "text/plain; charset=utf-8", body: Array((reason + "\n").utf8))
    }
}

/// The parts a scrape or a readiness probe reads, set by the lifecycle as they start and cleared when a stop begins.
/// The servers are held weakly, so that a probe never keeps a stopped one alive.
final class ObservedParts: Sendable {
    struct Parts: Sendable {
        var core: ApplicationCore?
        weak var server: TollgateServer?
        weak var http: TollgateHTTPServer?
        /// Raised once every socket is bound: `/readyz`'s "sockets accepting".
        var accepting = false
    }

    private let box = NIOLockedValueBox(Parts())

    var parts: Parts { box.withLockedValue { $0 } }

    func set(_ change: (inout Parts) -> Void) { box.withLockedValue(change) }
}
