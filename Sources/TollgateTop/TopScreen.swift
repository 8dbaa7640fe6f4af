import TollgateModel

/// `tollgate top`'s screen as lines of text, from a `TopSummary` and the daemon's journal figures: pure, so the
/// layout is tested as text; the CLI only clears the terminal and prints them.
public enum TopScreen {
    /// The journal's state as STATS reports it (keys `journal_*`), for the header.
    public struct Journal: Sendable, Hashable {
        public var failed: Bool
        public var lastSequence: UInt64
        public var durableSequence: UInt64
        public var pendingRecords: UInt64
        public var bytes: UInt64

        public init(failed: Bool, lastSequence: UInt64, durableSequence: UInt64, pendingRecords: UInt64, bytes: UInt64) {
            self.failed = failed
            self.lastSequence = lastSequence
            self.durableSequence = durableSequence
            self.pendingRecords = pendingRecords
            self.bytes = bytes
        }

        /// From STATS pairs; nil when a key is missing.
        public init?(stats: [KeyValue]) {
            let values = Dictionary(stats.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            guard let failed = values["journal_failed"], let last = values["journal_last_seq"].flatMap(UInt64.init),
                let durable = values["journal_durable_seq"].flatMap(UInt64.init)
            else { return nil }
            self.init(
                failed: failed == "1", lastSequence: last, durableSequence: durable,
                pendingRecords: values["journal_pending"].flatMap(UInt64.init) ?? 0, bytes: values["journal_bytes"].flatMap(UInt64.init) ?? 0)
        }
    }

    /// The screen, at most `rows` lines of at most `columns` characters.
    public static func render(
        _ summary: TopSummary, journal: Journal?, license: String, windowSeconds: Int, rows: Int = 40, columns: Int = 100
    ) -> [String] {
        var lines: [String] = []
        let filter = license.isEmpty ? "all licenses" : "license \(license)"
        lines.append("tollgate top — \(filter), last \(windowSeconds) s (refreshed every second; Ctrl-C quits)")
        lines.append(
            "requests \(rate(summary.requestsPerSecond))/s   allowed \(rate(summary.allowedPerSecond))/s   denied \(rate(summary.deniedPerSecond))/s"
                + "   latency p50 \(duration(summary.latencyP50Nanoseconds))  p99 \(duration(summary.latencyP99Nanoseconds))")
        if let journal {
            let state = journal.failed ? "FAILED" : "ok"
            lines.append(
                "journal \(state)   seq \(journal.lastSequence)   durable \(journal.durableSequence)   pending \(journal.pendingRecords)   \(bytes(journal.bytes))")
        } else {
            lines.append("journal (not known)")
        }
        lines.append("watcher lost \(summary.droppedTotal) decisions (\(rate(summary.droppedPerSecond))/s)")
        lines.append("")
        lines.append(pad("DENY REASON", 24) + left("DENIED/S", 10) + left("IN WINDOW", 11))
        if summary.reasons.isEmpty { lines.append("(no denials)") }
        for row in summary.reasons.prefix(6) {
            lines.append(pad(row.reason.name, 24) + left(rate(row.perSecond), 10) + left("\(row.count)", 11))
        }
        lines.append("")
        let remaining = max(2, (rows - lines.count - 4) / 2)
        lines.append(pad("LICENSE", 34) + left("REQ/S", 10) + left("DENIED/S", 10))
        for row in summary.licenses.prefix(remaining) {
            lines.append(pad(row.id, 34) + left(rate(row.requestsPerSecond), 10) + left(rate(row.deniedPerSecond), 10))
        }
        lines.append("")
        lines.append(pad("TOKEN", 28) + pad(" LICENSE", 26) + left("REQ/S", 10) + left("DENIED/S", 10))
        for row in summary.tokens.prefix(remaining) {
            lines.append(pad(row.id, 28) + " " + pad(row.license, 25) + left(rate(row.requestsPerSecond), 10) + left(rate(row.deniedPerSecond), 10))
        }
        return lines.prefix(rows).map { String($0.prefix(columns)) }
    }

    /// A rate with one decimal below 100, none above.
    static func rate(_ value: Double) -> String {
        value < 100 ? String(format1(value)) : String(Int(value.rounded()))
    }

    private static func format1(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }

    /// Nanoseconds in a readable unit.
    static func duration(_ nanoseconds: UInt64?) -> String {
        guard let nanoseconds else { return "-" }
        if nanoseconds < 1_000 { return "\(nanoseconds) ns" }
        if nanoseconds < 1_000_000 { return "\(format1(Double(nanoseconds) / 1_000)) us" }
        return "\(format1(Double(nanoseconds) / 1_000_000)) ms"
    }

    static func bytes(_ count: UInt64) -> String {
        if count < 1 << 20 { return "\(count / 1024) KiB" }
        return "\(count >> 20) MiB"
    }

    private static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? String(text.prefix(width - 1)) + " " : text + String(repeating: " ", count: width - text.count)
    }

    private static func left(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
    }
}
