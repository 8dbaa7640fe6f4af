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
            let days = floorDiv(time, millisPerDay)
            let (year, month, _) = civil(fromDays: days)
            let start = daysFromCivil(year: year, month: month, day: 1) * millisPerDay
            let (nextYear, nextMonth) = month == 12 ? (year + 1, 1) : (year, month + 1)
            let end = daysFromCivil(year: nextYear, month: nextMonth, day: 1) * millisPerDay
            return (start, end)
        }
    }

    /// Like `bounds(of:containing:)`, with months starting on day `anchorDay` (1–28) of each month at 00:00 UTC:
    /// a license billed on the 15th counts its monthly quota from the 15th to the 14th.
    public static func bounds(of period: Period, containing time: UnixMillis, anchorDay: UInt8) -> (start: UnixMillis, end: UnixMillis) {
        guard period == .month, anchorDay > 1 else { return bounds(of: period, containing: time) }
        let anchor = Int64(min(anchorDay, 28))
        let time = min(max(time, supportedRange.lowerBound), supportedRange.upperBound)
        let (year, month, day) = civil(fromDays: floorDiv(time, millisPerDay))
        var (startYear, startMonth) = (year, month)
        if day < anchor { (startYear, startMonth) = month == 1 ? (year - 1, 12) : (year, month - 1) }
        let (endYear, endMonth) = startMonth == 12 ? (startYear + 1, 1) : (startYear, startMonth + 1)
        return (daysFromCivil(year: startYear, month: startMonth, day: anchor) * millisPerDay,
                daysFromCivil(year: endYear, month: endMonth, day: anchor) * millisPerDay)
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { CivilDate.floorDivide(a, b) }
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 { CivilDate.days(year: year, month: month, day: day) }
    static func civil(fromDays days: Int64) -> (year: Int64, month: Int64, day: Int64) { CivilDate.date(days: days) }
}
