import CSystemd
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// The log level of the whole daemon, changeable at run time (SIGHUP reload) by every handler at once.
public final class LogLevelControl: Sendable {
    private let box: NIOLockedValueBox<Logger.Level>

    public init(_ level: Logger.Level) { box = NIOLockedValueBox(level) }

    public var level: Logger.Level {
        get { box.withLockedValue { $0 } }
        set { box.withLockedValue { $0 = newValue } }
    }
}

/// Where structured journal entries go. The real one is `sd_journal_sendv`; tests capture the fields.
public protocol JournalSink: Sendable {
    func send(_ fields: [(name: String, value: String)])
}

/// Sends entries to systemd-journald through `sd_journal_sendv` (the variadic `sd_journal_send` cannot be
/// called from Swift).
public struct SDJournalSink: JournalSink {
    public init() {}

    public func send(_ fields: [(name: String, value: String)]) {
        var storage: [[UInt8]] = fields.map { Array("\($0.name)=\($0.value)".utf8) }
        var vectors: [iovec] = []
        vectors.reserveCapacity(storage.count)
        for index in storage.indices {
            storage[index].withUnsafeMutableBytes { raw in
                vectors.append(iovec(iov_base: raw.baseAddress, iov_len: raw.count))
            }
        }
        // The arrays outlive the call: `storage` is alive until the end of this function.
        withExtendedLifetime(storage) {
            _ = sd_journal_sendv(&vectors, CInt(vectors.count))
        }
    }
}

/// A swift-log handler that writes one structured journal entry per log call: MESSAGE, PRIORITY, CODE_FILE,
/// CODE_LINE, CODE_FUNC, SYSLOG_IDENTIFIER, and every metadata key as a field (`tollgate.token_id` becomes
/// `TOLLGATE_TOKEN_ID`), so that `journalctl -u tollgated TOLLGATE_DECISION=deny` works.
///
/// Callers never put secrets in messages or metadata; this handler does not try to scrub them.
public struct JournaldLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let identifier: String
    let control: LogLevelControl
    let sink: any JournalSink

    public init(identifier: String, control: LogLevelControl, sink: any JournalSink = SDJournalSink()) {
        self.identifier = identifier
        self.control = control
        self.sink = sink
    }

    /// The shared level: setting it on one logger sets it for the whole daemon.
    public var logLevel: Logger.Level {
        get { control.level }
        set { control.level = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = self.metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { $1 } }
        if let explicit = event.metadata { all.merge(explicit) { $1 } }
        var fields: [(name: String, value: String)] = [
            ("MESSAGE", event.message.description),
            ("PRIORITY", String(Self.syslogPriority(event.level))),
            ("CODE_FILE", event.file),
            ("CODE_LINE", String(event.line)),
            ("CODE_FUNC", event.function),
            ("SYSLOG_IDENTIFIER", identifier),
        ]
        for (key, value) in all.sorted(by: { $0.key < $1.key }) {
            fields.append((Self.fieldName(key), "\(value)"))
        }
        sink.send(fields)
    }

    /// syslog(3) priorities, as journald expects in PRIORITY.
    public static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    /// A journal field name: uppercase letters, digits and underscores, starting with a letter, at most 64 bytes.
    public static func fieldName(_ key: String) -> String {
        var name = String(key.uppercased().unicodeScalars.map { scalar -> Character in
            switch scalar {
            case "A"..."Z", "0"..."9": return Character(scalar)
            default: return "_"
            }
        })
        if let first = name.unicodeScalars.first, !("A"..."Z").contains(first) { name = "F" + name }
        return String(name.prefix(64))
    }

    /// Whether standard error is connected to the journal (systemd sets `JOURNAL_STREAM=<dev>:<inode>` of it).
    public static func standardErrorIsJournal(environment: [String: String] = SystemdEnvironment.current) -> Bool {
        guard let stream = environment["JOURNAL_STREAM"] else { return false }
        let parts = stream.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var status = stat()
        guard fstat(2, &status) == 0 else { return false }
        return UInt64(status.st_dev) == device && UInt64(status.st_ino) == inode
    }
}

/// swift-log's stderr handler with the daemon's shared, reloadable level.
public struct ControlledStreamLogHandler: LogHandler {
    var inner: StreamLogHandler
    let control: LogLevelControl

    public init(label: String, control: LogLevelControl) {
        inner = StreamLogHandler.standardError(label: label)
        inner.logLevel = .trace
        self.control = control
    }

    public var logLevel: Logger.Level {
        get { control.level }
        set { control.level = newValue }
    }

    public var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    public var metadataProvider: Logger.MetadataProvider? {
        get { inner.metadataProvider }
        set { inner.metadataProvider = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    public func log(event: LogEvent) {
        inner.log(event: event)
    }
}
