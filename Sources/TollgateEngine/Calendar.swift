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

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    /// Howard Hinnant's `days_from_civil`: days since 1970-01-01 of a proleptic Gregorian date.
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = floorDiv(y, 400)
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// Howard Hinnant's `civil_from_days`.
    static func civil(fromDays z0: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = z0 + 719_468
        let era = floorDiv(z, 146_097)
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
