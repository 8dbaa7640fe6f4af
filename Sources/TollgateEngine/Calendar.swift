import TollgateModel

/// UTC calendar arithmetic for quota periods, without Foundation: periods must be computed the same way on
/// every host and in every replay, and on the check path.
public enum UTCCalendar {
    static let millisPerHour: Int64 = 3_600_000
    static let millisPerDay: Int64 = 86_400_000

    /// The earliest and latest times periods are computed for (years 1 to 9999). Times outside are clamped, so that
    /// a timestamp from a damaged or hostile record can never overflow the arithmetic below.
    public static let supportedRange: ClosedRange<UnixMillis> = -62_135_596_800_000...253_402_300_799_999

    /// The start and end (exclusive) of the period of kind `period` that contains `time` (clamped to
    /// `supportedRange`).
    public static func bounds(of period: Period, containing time: UnixMillis) -> (start: UnixMillis, end: UnixMillis) {
        let time = min(max(time, supportedRange.lowerBound), supportedRange.upperBound)
        switch period {
        case .hour:
            let start = floorDiv(time, millisPerHour) * millisPerHour
            return (start, start + millisPerHour)
        case .day:
            let start = floorDiv(time, millisPerDay) * millisPerDay
            return (start, start + millisPerDay)
        case .month:
            // The date once, then the month's first day and length from it (not two more conversions from a date:
            // ~150 instructions fewer a call, and a metered check computes a month's bounds twice; callgrind,
            // issue 19).
            let days = floorDiv(time, millisPerDay)
            let (year, month, day) = civil(fromDays: days)
            let start = days - (day - 1)
            return (start * millisPerDay, (start + length(year: year, month: month)) * millisPerDay)
        }
    }

    /// Days in `month` (1–12) of `year` (proleptic Gregorian).
    static func length(year: Int64, month: Int64) -> Int64 {
        switch month {
        case 2: return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Like `bounds(of:containing:)`, with months starting on day `anchorDay` (1–28) of each month at 00:00 UTC:
    /// a license billed on the 15th counts its monthly quota from the 15th to the 14th.
    public static func bounds(of period: Period, containing time: UnixMillis, anchorDay: UInt8) -> (start: UnixMillis, end: UnixMillis) {
        guard period == .month, anchorDay > 1 else { return bounds(of: period, containing: time) }
        let anchor = Int64(min(anchorDay, 28))
        let time = min(max(time, supportedRange.lowerBound), supportedRange.upperBound)
        let days = floorDiv(time, millisPerDay)
        let (year, month, day) = civil(fromDays: days)
        // From the anchor day of this month (or, before it, of the previous one) to the same day a month later: an
        // anchor is at most 28, so it exists in every month, and the period is as long as the month it starts in.
        let start: Int64
        let length: Int64
        if day >= anchor {
            start = days - (day - anchor)
            length = Self.length(year: year, month: month)
        } else {
            let previous = month == 1 ? (year: year - 1, month: Int64(12)) : (year: year, month: month - 1)
            length = Self.length(year: previous.year, month: previous.month)
            start = days - day - length + anchor
        }
        return (start * millisPerDay, (start + length) * millisPerDay)
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { CivilDate.floorDivide(a, b) }
    static func civil(fromDays days: Int64) -> (year: Int64, month: Int64, day: Int64) { CivilDate.date(days: days) }
}
