import TollgateModel

#if canImport(Glibc)
import Glibc
#endif

/// A point in wall-clock time with nanosecond resolution: milliseconds for expiry and periods,
/// nanoseconds for the rate limiter.
public struct Timestamp: Sendable, Hashable, Comparable {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    public init(millis: UnixMillis) { self.nanoseconds = millis * 1_000_000 }

    public var millis: UnixMillis { UTCCalendar.floorDiv(nanoseconds, 1_000_000) }

    public static func < (l: Timestamp, r: Timestamp) -> Bool { l.nanoseconds < r.nanoseconds }

    public func adding(millis: Int64) -> Timestamp { Timestamp(nanoseconds: nanoseconds + millis * 1_000_000) }
}

/// Where the daemon gets "now". The engine never reads a clock itself; tests inject a manual one.
public protocol WallClock: Sendable {
    func now() -> Timestamp
}

/// The system's real-time clock.
public struct SystemWallClock: WallClock {
    public init() {}
    public func now() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp(nanoseconds: Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec))
    }
}
