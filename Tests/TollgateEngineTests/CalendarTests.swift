import Foundation
import TollgateModel
import TollgateTestSupport
import XCTest

@testable import TollgateEngine

/// Quota periods are UTC calendar periods (`Protocol/PROTOCOL.md`, "Period"). Expected instants were computed
/// with Python's `calendar.timegm`.
final class CalendarTests: XCTestCase {
    static let jan2028: UnixMillis = 1_830_297_600_000  // 2028-01-01T00:00:00Z
    static let feb2028: UnixMillis = 1_832_976_000_000  // 2028-02-01T00:00:00Z
    static let mar2028: UnixMillis = 1_835_481_600_000  // 2028-03-01T00:00:00Z
    static let dec2027: UnixMillis = 1_827_619_200_000  // 2027-12-01T00:00:00Z

    func bounds(_ period: Period, _ time: UnixMillis) -> [UnixMillis] {
        let b = UTCCalendar.bounds(of: period, containing: time)
        return [b.start, b.end]
    }

    func testHourBounds() {
        let hourStart = Self.feb2028 + 16 * Millis.day + 12 * Millis.hour  // 2028-02-17T12:00Z
        XCTAssertEqual(bounds(.hour, hourStart + 30 * Millis.minute), [hourStart, hourStart + Millis.hour])
        XCTAssertEqual(bounds(.hour, hourStart), [hourStart, hourStart + Millis.hour], "exactly at the start")
        XCTAssertEqual(bounds(.hour, hourStart - 1), [hourStart - Millis.hour, hourStart], "one ms before the start")
        XCTAssertEqual(bounds(.hour, hourStart + Millis.hour - 1), [hourStart, hourStart + Millis.hour])
        XCTAssertEqual(bounds(.hour, hourStart + Millis.hour), [hourStart + Millis.hour, hourStart + 2 * Millis.hour], "the end is exclusive")
    }

    func testDayBounds() {
        let dayStart = Self.feb2028 + 16 * Millis.day
        XCTAssertEqual(bounds(.day, dayStart + 12 * Millis.hour + 1), [dayStart, dayStart + Millis.day])
        XCTAssertEqual(bounds(.day, dayStart), [dayStart, dayStart + Millis.day], "exactly at midnight")
        XCTAssertEqual(bounds(.day, dayStart - 1), [dayStart - Millis.day, dayStart])
        XCTAssertEqual(bounds(.day, dayStart + Millis.day), [dayStart + Millis.day, dayStart + 2 * Millis.day])
        // 2028-02-29 is a day; its end is 2028-03-01.
        XCTAssertEqual(bounds(.day, Self.mar2028 - 1), [Self.mar2028 - Millis.day, Self.mar2028])
    }

    func testMonthBoundsAndLeapFebruary() {
        XCTAssertEqual(bounds(.month, Self.feb2028 + 10 * Millis.day), [Self.feb2028, Self.mar2028])
        XCTAssertEqual(Self.mar2028 - Self.feb2028, 29 * Millis.day, "2028 is a leap year")
        XCTAssertEqual(bounds(.month, Self.feb2028), [Self.feb2028, Self.mar2028], "exactly at the first instant")
        XCTAssertEqual(bounds(.month, Self.mar2028 - 1), [Self.feb2028, Self.mar2028], "2028-02-29T23:59:59.999")
        XCTAssertEqual(bounds(.month, Self.mar2028).first, Self.mar2028)
        XCTAssertEqual(bounds(.month, Self.feb2028 - 1), [Self.jan2028, Self.feb2028])
        // Non-leap Februaries: 2027 and the century year 2100; leap: 2000 (divisible by 400).
        let feb2027: UnixMillis = 1_801_440_000_000, mar2027: UnixMillis = 1_803_859_200_000
        XCTAssertEqual(bounds(.month, feb2027 + 27 * Millis.day), [feb2027, mar2027])
        XCTAssertEqual(mar2027 - feb2027, 28 * Millis.day)
        XCTAssertEqual(bounds(.month, 4_105_123_200_000 + Millis.day), [4_105_123_200_000, 4_107_542_400_000])
        XCTAssertEqual(bounds(.month, 949_363_200_000 + 28 * Millis.day), [949_363_200_000, 951_868_800_000])
    }

    /// The bounds as dates converted back to days (the earlier implementation, from the calendar's definition):
    /// the month from its anchor day (1: the first) to the same day of the next month.
    private func referenceMonth(_ time: UnixMillis, anchorDay: UInt8) -> [UnixMillis] {
        let anchor = Int64(min(max(anchorDay, 1), 28))
        let time = min(max(time, UTCCalendar.supportedRange.lowerBound), UTCCalendar.supportedRange.upperBound)
        let (year, month, day) = CivilDate.date(days: CivilDate.floorDivide(time, Millis.day))
        var (startYear, startMonth) = (year, month)
        if day < anchor { (startYear, startMonth) = month == 1 ? (year - 1, 12) : (year, month - 1) }
        let (endYear, endMonth) = startMonth == 12 ? (startYear + 1, 1) : (startYear, startMonth + 1)
        return [CivilDate.days(year: startYear, month: startMonth, day: anchor) * Millis.day, CivilDate.days(year: endYear, month: endMonth, day: anchor) * Millis.day]
    }

    func testMonthBoundsAgreeWithTheCalendarDefinitionEveryDay() {
        // Every day from 1969 to 2101 (leap years, the non-leap 2100, the epoch), at its first and last instant and
        // at noon, for anchor days at both ends and between (0 and above 28 are clamped as the license's anchor
        // is); then the ends of the supported range.
        var times: [UnixMillis] = []
        for day in Int64(-366)...Int64(48_000) {
            times += [day * Millis.day, day * Millis.day + 12 * Millis.hour, (day + 1) * Millis.day - 1]
        }
        times += [UTCCalendar.supportedRange.lowerBound, UTCCalendar.supportedRange.upperBound, .min, .max, UTCCalendar.supportedRange.lowerBound + 40 * Millis.day]
        for anchor: UInt8 in [0, 1, 2, 15, 27, 28, 29, 30] {
            for time in times {
                let b = UTCCalendar.bounds(of: .month, containing: time, anchorDay: anchor)
                guard [b.start, b.end] == referenceMonth(time, anchorDay: anchor) else {
                    return XCTFail("anchor \(anchor), time \(time): \([b.start, b.end]) != \(referenceMonth(time, anchorDay: anchor))")
                }
            }
        }
    }

    func testDecemberRollsOverToJanuary() {
        XCTAssertEqual(bounds(.month, Self.jan2028 - 1), [Self.dec2027, Self.jan2028], "2027-12-31T23:59:59.999")
        XCTAssertEqual(bounds(.month, Self.dec2027 + 15 * Millis.day), [Self.dec2027, Self.jan2028])
        XCTAssertEqual(bounds(.month, Self.jan2028), [Self.jan2028, Self.feb2028], "exactly at new year")
        XCTAssertEqual(bounds(.day, Self.jan2028 - 1), [Self.jan2028 - Millis.day, Self.jan2028])
        XCTAssertEqual(bounds(.hour, Self.jan2028 - 1), [Self.jan2028 - Millis.hour, Self.jan2028])
    }

    func testTimesBefore1970() {
        XCTAssertEqual(bounds(.hour, -1), [-Millis.hour, 0])
        XCTAssertEqual(bounds(.day, -1), [-Millis.day, 0])
        XCTAssertEqual(bounds(.month, -1), [-2_678_400_000, 0], "December 1969")
        XCTAssertEqual(bounds(.hour, -Millis.hour), [-Millis.hour, 0], "exactly at a boundary before the epoch")
        XCTAssertEqual(bounds(.hour, -Millis.hour - 1), [-2 * Millis.hour, -Millis.hour])
        XCTAssertEqual(bounds(.day, -Millis.day), [-Millis.day, 0])
        XCTAssertEqual(bounds(.month, -2_678_400_000), [-2_678_400_000, 0])
        XCTAssertEqual(bounds(.month, -2_678_400_001), [-5_270_400_000, -2_678_400_000], "November 1969")
        // 1968-02-10T05:00Z lies in leap February 1968.
        XCTAssertEqual(bounds(.month, -59_684_400_000), [-60_480_000_000, -57_974_400_000])
        XCTAssertEqual(bounds(.day, -59_684_400_000), [-59_702_400_000, -59_616_000_000])
        XCTAssertEqual(bounds(.month, 0), [0, 31 * Millis.day])
    }

    /// Against Foundation's Gregorian calendar in UTC, over 1900–2200, with the invariants every period has.
    func testAgreesWithFoundationCalendar() {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        var rng = SplitMix64(seed: 1970)
        let low: Int64 = -2_208_988_800_000  // 1900-01-01
        let high: Int64 = 7_258_118_400_000  // 2200-01-01
        for i in 0..<3_000 {
            var time = low + Int64(rng.next() % UInt64(high - low))
            // Every fifth sample sits exactly on, or one ms before, a day boundary.
            if i % 5 == 0 { time = UTCCalendar.floorDiv(time, Millis.day) * Millis.day - Int64(i % 2) }
            for (period, component) in [(Period.hour, Calendar.Component.hour), (.day, .day), (.month, .month)] {
                let b = UTCCalendar.bounds(of: period, containing: time)
                XCTAssertLessThanOrEqual(b.start, time)
                XCTAssertLessThan(time, b.end)
                let interval = calendar.dateInterval(of: component, for: Date(timeIntervalSince1970: Double(time) / 1000))!
                XCTAssertEqual(b.start, Int64((interval.start.timeIntervalSince1970 * 1000).rounded()), "\(period) start of \(time)")
                XCTAssertEqual(b.end, Int64((interval.end.timeIntervalSince1970 * 1000).rounded()), "\(period) end of \(time)")
                let next = UTCCalendar.bounds(of: period, containing: b.end)
                XCTAssertEqual(next.start, b.end, "periods are contiguous")
            }
        }
    }
}
