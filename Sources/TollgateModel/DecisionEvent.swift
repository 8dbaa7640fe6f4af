import NIOCore

/// One decision as the WATCH stream reports it (`Protocol/PROTOCOL.md` 6.22): who asked for what, the answer and
/// how long it took. Not durable: the stream is a live view, never a record (the usage ledger and the journal are).
public struct DecisionEvent: Sendable, Hashable {
    /// Where the request came from.
    public enum Source: UInt8, Sendable, Hashable, CaseIterable {
        /// CHECK on the binary protocol's api or admin socket.
        case socket = 0
        /// The HTTP listener's forward auth.
        case forwardAuth = 1

        public var name: String { self == .socket ? "socket" : "forward_auth" }
    }

    /// The decision's number among every decision since the daemon started, from 1 (a gap: decisions lost or
    /// filtered out).
    public var sequence: UInt64
    /// When it was decided (the core's clock, milliseconds since the Unix epoch).
    public var at: UnixMillis
    /// From the request's batch being taken up by the core to this answer being decided, in nanoseconds.
    public var latencyNanoseconds: UInt32
    public var source: Source
    public var reason: DenyReason
    public var tokenID: String
    public var licenseID: String
    public var subject: String
    /// Forward auth: the matched route, `METHOD path`; the binary protocol: the scopes asked for, separated by
    /// spaces. At most `maxRouteBytes` (cut at a character boundary).
    public var route: String

    public var allowed: Bool { reason == .none }

    /// The longest `route` carried; a longer one is cut.
    public static let maxRouteBytes = 128

    public init(
        sequence: UInt64, at: UnixMillis, latencyNanoseconds: UInt32, source: Source, reason: DenyReason,
        tokenID: String, licenseID: String, subject: String, route: String
    ) {
        self.sequence = sequence
        self.at = at
        self.latencyNanoseconds = latencyNanoseconds
        self.source = source
        self.reason = reason
        self.tokenID = tokenID
        self.licenseID = licenseID
        self.subject = subject
        self.route = route
    }

    /// The event as one JSON object on one line (`tollgate top --json`, the journald lines' shape), keys in a
    /// fixed order.
    public var jsonLine: String {
        "{\"sequence\":\(sequence),\"at\":\(at),\"decision\":\"\(allowed ? "allow" : "deny")\",\"reason\":\"\(reason.name)\","
            + "\"token_id\":\(JSONText.quoted(tokenID)),\"license_id\":\(JSONText.quoted(licenseID)),\"subject\":\(JSONText.quoted(subject)),"
            + "\"route\":\(JSONText.quoted(route)),\"latency_ns\":\(latencyNanoseconds),\"source\":\"\(source.name)\"}"
    }
}

/// One frame of a WATCH stream (6.22): the decisions since the previous frame and the running count of decisions
/// the watcher lost.
public struct WatchBatch: Sendable, Hashable {
    public enum Kind: UInt8, Sendable, Hashable {
        /// More frames follow.
        case events = 0
        /// The last frame of the stream.
        case end = 1
    }

    public var kind: Kind
    /// Decisions made since the stream began that this watcher did not receive because it fell behind (the
    /// server's ring overtook it), whether or not they matched its filter. Never decreases within a stream.
    public var dropped: UInt64
    public var events: [DecisionEvent]

    public init(kind: Kind, dropped: UInt64, events: [DecisionEvent]) {
        self.kind = kind
        self.dropped = dropped
        self.events = events
    }

    /// The bytes of a batch's fixed fields: kind, dropped, the event count.
    public static let headerBytes = 1 + 8 + 2
}

extension ByteBuffer {
    public mutating func writeDecisionEvent(_ event: DecisionEvent) throws {
        writeInteger(event.sequence)
        writeInteger(event.at)
        writeInteger(event.latencyNanoseconds)
        writeInteger(event.source.rawValue)
        writeInteger(event.reason.rawValue)
        try writeWireString(event.tokenID)
        try writeWireString(event.licenseID)
        try writeWireString(event.subject)
        try writeWireString(event.route)
    }

    public mutating func writeWatchBatch(_ batch: WatchBatch) throws {
        writeInteger(batch.kind.rawValue)
        writeInteger(batch.dropped)
        try writeWireCount(batch.events.count)
        for event in batch.events { try writeDecisionEvent(event) }
    }
}

extension DecisionEvent {
    /// Bytes of one event on the wire (for cutting a batch to fit a frame).
    public var wireSize: Int { 8 + 8 + 4 + 1 + 1 + 8 + tokenID.utf8.count + licenseID.utf8.count + subject.utf8.count + route.utf8.count }
}

extension WireReader {
    public mutating func decisionEvent() throws -> DecisionEvent {
        DecisionEvent(
            sequence: try u64("sequence"), at: try i64("at"), latencyNanoseconds: try u32("latency_ns"),
            source: try code("source", as: DecisionEvent.Source.self), reason: try code("reason", as: DenyReason.self),
            tokenID: try string("token_id"), licenseID: try string("license_id"), subject: try string("subject"),
            route: try string("route"))
    }

    public mutating func watchBatch() throws -> WatchBatch {
        let kind = try code("kind", as: WatchBatch.Kind.self)
        let dropped = try u64("dropped")
        var events: [DecisionEvent] = []
        for _ in 0..<(try count("events", minimumElementSize: 30)) { events.append(try decisionEvent()) }
        return WatchBatch(kind: kind, dropped: dropped, events: events)
    }
}
