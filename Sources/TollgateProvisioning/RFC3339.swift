import TollgateModel

/// RFC 3339 date-times to and from Unix milliseconds, without Foundation.
///
/// Why not `ISO8601DateFormatter`: the engine keeps time as integer milliseconds and stays away from Foundation's
/// calendars (their behaviour differs between platforms and versions); the conversion is a few lines of arithmetic
/// (Howard Hinnant's `days_from_civil`), exact for every year 0000–9999 and easy to test against known values.
///
/// Accepted: `YYYY-MM-DD` `T` (or `t`, or one space, as RFC 3339 §5.6 allows) `hh:mm:ss`, an optional fraction of
/// any length (digits past the millisecond are dropped, which rounds toward the past), and `Z` (or `z`) or a
/// numeric offset `±hh:mm`. Refused: a date without a time (midnight in which zone?), leap seconds (`:60`; Unix
/// time has none), and anything else not in that grammar.
public enum RFC3339 {
    /// Why a text is not an RFC 3339 date-time, for the operator.
    public struct Failure: Error, Sendable, Hashable {
        public var reason: String
        public init(_ reason: String) { self.reason = reason }
    }

    public static func parse(_ text: String) throws(Failure) -> UnixMillis {
        var scanner = Scanner(bytes: Array(text.utf8))
        let year = try scanner.digits(4, "the year")
        try scanner.expect(UInt8(ascii: "-"), "a '-' after the year")
        let month = try scanner.digits(2, "the month")
        try scanner.expect(UInt8(ascii: "-"), "a '-' after the month")
        let day = try scanner.digits(2, "the day")
        guard let separator = scanner.next() else { throw Failure("a time of day is required after the date (e.g. T00:00:00Z)") }
        guard separator == UInt8(ascii: "T") || separator == UInt8(ascii: "t") || separator == UInt8(ascii: " ") else {
            throw Failure("expected 'T' between the date and the time")
        }
        let hour = try scanner.digits(2, "the hour")
        try scanner.expect(UInt8(ascii: ":"), "a ':' after the hour")
        let minute = try scanner.digits(2, "the minutes")
        try scanner.expect(UInt8(ascii: ":"), "a ':' after the minutes")
        let second = try scanner.digits(2, "the seconds")
        var millis: Int64 = 0
        if scanner.peek() == UInt8(ascii: ".") {
            _ = scanner.next()
            var count = 0
            while let byte = scanner.peek(), isDigit(byte) {
                _ = scanner.next()
                if count < 3 { millis = millis * 10 + Int64(byte - UInt8(ascii: "0")) }
                count += 1
            }
            guard count > 0 else { throw Failure("expected digits after the '.'") }
            for _ in count..<max(count, 3) { millis *= 10 }
        }
        guard let zone = scanner.next() else { throw Failure("a zone is required: Z or an offset such as +02:00") }
        var offsetSeconds: Int64 = 0
        switch zone {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            break
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            let offsetHours = try scanner.digits(2, "the offset hours")
            try scanner.expect(UInt8(ascii: ":"), "a ':' in the offset")
            let offsetMinutes = try scanner.digits(2, "the offset minutes")
            guard offsetHours <= 23, offsetMinutes <= 59 else { throw Failure("the offset must be between -23:59 and +23:59") }
            offsetSeconds = (offsetHours * 3600 + offsetMinutes * 60) * (zone == UInt8(ascii: "-") ? -1 : 1)
        default:
            throw Failure("a zone is required: Z or an offset such as +02:00")
        }
        guard scanner.atEnd else { throw Failure("unexpected text after the zone") }

        guard (1...12).contains(month) else { throw Failure("month \(month) does not exist") }
        guard day >= 1, day <= daysInMonth(year: year, month: month) else {
            throw Failure("day \(day) does not exist in \(year)-\(pad(month, 2))")
        }
        guard hour <= 23, minute <= 59 else { throw Failure("the time of day is out of range") }
        guard second <= 59 else {
            throw Failure(second == 60 ? "leap seconds cannot be represented in Unix time" : "the seconds are out of range")
        }
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
        return seconds * 1000 + millis
    }

    /// `2026-01-01T00:00:00Z`, with `.mmm` only when the milliseconds are not zero, so that a value read from a file
    /// is shown the way it was most likely written. Years outside 0000–9999 have no RFC 3339 form; they are shown
    /// as milliseconds.
    public static func format(_ millis: UnixMillis) -> String {
        // 0000-01-01T00:00:00Z ..< 10000-01-01T00:00:00Z; outside it the arithmetic below could overflow
        // (`Int64.min` milliseconds, which the wire allows in a license's times).
        guard (-62_167_219_200_000..<253_402_300_800_000).contains(millis) else { return "\(millis)ms" }
        let (seconds, fraction) = floorDivide(millis, 1000)
        let (days, secondOfDay) = floorDivide(seconds, 86_400)
        let (year, month, day) = civilFromDays(days)
        guard (0...9999).contains(year) else { return "\(millis)ms" }
        var text = "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T"
        text += "\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2)):\(pad(secondOfDay % 60, 2))"
        if fraction != 0 { text += ".\(pad(fraction, 3))" }
        return text + "Z"
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (negative before it).
    public static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 { CivilDate.days(year: year, month: month, day: day) }

    /// The inverse of `daysFromCivil`.
    public static func civilFromDays(_ days: Int64) -> (year: Int64, month: Int64, day: Int64) { CivilDate.date(days: days) }

    static func daysInMonth(year: Int64, month: Int64) -> Int64 {
        switch month {
        case 2: return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    private static func floorDivide(_ a: Int64, _ b: Int64) -> (quotient: Int64, remainder: Int64) {
        let q = a / b - (a % b < 0 ? 1 : 0)
        return (q, a - q * b)
    }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    private struct Scanner {
        let bytes: [UInt8]
        var index = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        var atEnd: Bool { index == bytes.count }

        func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func next() -> UInt8? {
            guard index < bytes.count else { return nil }
            defer { index += 1 }
            return bytes[index]
        }

        /// Exactly `count` decimal digits: RFC 3339 fixes the width of every field.
        mutating func digits(_ count: Int, _ what: String) throws(Failure) -> Int64 {
            var value: Int64 = 0
            for _ in 0..<count {
                guard let byte = peek(), RFC3339.isDigit(byte) else { throw Failure("expected \(count) digits for \(what)") }
                index += 1
                value = value * 10 + Int64(byte - UInt8(ascii: "0"))
            }
            return value
        }

        mutating func expect(_ byte: UInt8, _ what: String) throws(Failure) {
            guard peek() == byte else { throw Failure("expected \(what)") }
            index += 1
        }
    }
}
