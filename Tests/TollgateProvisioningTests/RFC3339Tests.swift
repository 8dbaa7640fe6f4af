import TollgateModel
import XCTest

@testable import TollgateProvisioning

final class RFC3339Tests: XCTestCase {
    /// Known instants, from `date -u -d ... +%s` and well-known Unix times (1e9 s, 1234567890 s, 2^31-1 s).
    func testParsesKnownInstants() throws {
        let vectors: [(String, UnixMillis)] = [
            ("1970-01-01T00:00:00Z", 0),
            ("1970-01-01T00:00:00.001Z", 1),
            ("1970-01-02T00:00:00Z", 86_400_000),
            ("2000-02-29T00:00:00Z", 951_782_400_000),
            ("2000-03-01T00:00:00Z", 951_868_800_000),
            ("2024-02-29T12:00:00Z", 1_709_208_000_000),
            ("2001-09-09T01:46:40Z", 1_000_000_000_000),
            ("2009-02-13T23:31:30Z", 1_234_567_890_000),
            ("2038-01-19T03:14:07Z", 2_147_483_647_000),
            ("2026-01-01T00:00:00Z", 1_767_225_600_000),
            ("9999-12-31T23:59:59Z", 253_402_300_799_000),
        ]
        for (text, millis) in vectors {
            XCTAssertEqual(try RFC3339.parse(text), millis, text)
        }
    }

    func testAppliesNumericOffsets() throws {
        let newYear2026: UnixMillis = 1_767_225_600_000
        XCTAssertEqual(try RFC3339.parse("2026-01-01T01:00:00+01:00"), newYear2026)
        XCTAssertEqual(try RFC3339.parse("2025-12-31T19:00:00-05:00"), newYear2026)
        XCTAssertEqual(try RFC3339.parse("2026-01-01T05:30:00+05:30"), newYear2026)
        XCTAssertEqual(try RFC3339.parse("2026-01-01T00:00:00+00:00"), newYear2026)
        XCTAssertEqual(try RFC3339.parse("2026-01-01T00:00:00-00:00"), newYear2026)
        XCTAssertEqual(try RFC3339.parse("2025-12-31T10:01:00-13:59"), newYear2026)
        // The offset moves the date across a leap day.
        XCTAssertEqual(try RFC3339.parse("2024-02-29T23:00:00-02:00"), try RFC3339.parse("2024-03-01T01:00:00Z"))
        // Before the epoch: the parser is exact there too (the document refuses such values).
        XCTAssertEqual(try RFC3339.parse("1970-01-01T00:00:00+00:01"), -60_000)
        XCTAssertEqual(try RFC3339.parse("1969-12-31T23:59:59Z"), -1000)
        XCTAssertEqual(try RFC3339.parse("0000-01-01T00:00:00Z"), -62_167_219_200_000)
    }

    func testReadsFractionsAndTheAllowedVariants() throws {
        XCTAssertEqual(try RFC3339.parse("2009-02-13T23:31:30.1Z"), 1_234_567_890_100)
        XCTAssertEqual(try RFC3339.parse("2009-02-13T23:31:30.12Z"), 1_234_567_890_120)
        XCTAssertEqual(try RFC3339.parse("2009-02-13T23:31:30.123Z"), 1_234_567_890_123)
        // Digits past the millisecond are dropped.
        XCTAssertEqual(try RFC3339.parse("2009-02-13T23:31:30.123999999Z"), 1_234_567_890_123)
        XCTAssertEqual(try RFC3339.parse("2009-02-13t23:31:30z"), 1_234_567_890_000)
        XCTAssertEqual(try RFC3339.parse("2009-02-13 23:31:30Z"), 1_234_567_890_000)
    }

    func testRejectsMalformedAndImpossibleTimes() {
        let bad = [
            "", "2026-01-01", "2026-01-01T00:00:00", "2026-1-01T00:00:00Z", "26-01-01T00:00:00Z", "2026-01-01T0:00:00Z",
            "2026-01-01X00:00:00Z", "2026-01-01T00:00Z", "2026-01-01T00:00:00.Z", "2026-01-01T00:00:00+0100",
            "2026-01-01T00:00:00+01", "2026-01-01T00:00:00+24:00", "2026-01-01T00:00:00+01:60", "2026-01-01T00:00:00Zjunk",
            "2026-00-10T00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-00T00:00:00Z", "2026-01-32T00:00:00Z",
            "2026-04-31T00:00:00Z", "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2100-02-29T00:00:00Z",
            "2000-02-30T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T23:60:00Z", "2026-06-30T23:59:60Z",
            " 2026-01-01T00:00:00Z", "２０２６-01-01T00:00:00Z",
        ]
        for text in bad {
            XCTAssertThrowsError(try RFC3339.parse(text), "accepted \(text)")
        }
        XCTAssertThrowsError(try RFC3339.parse("2026-06-30T23:59:60Z")) { error in
            XCTAssertEqual((error as? RFC3339.Failure)?.reason, "leap seconds cannot be represented in Unix time")
        }
        XCTAssertThrowsError(try RFC3339.parse("2023-02-29T00:00:00Z")) { error in
            XCTAssertEqual((error as? RFC3339.Failure)?.reason, "day 29 does not exist in 2023-02")
        }
    }

    func testLeapDaysFollowTheGregorianRule() {
        for (year, leap) in [(1600, true), (1900, false), (2000, true), (2023, false), (2024, true), (2100, false), (2400, true)] {
            XCTAssertEqual((try? RFC3339.parse("\(year)-02-29T00:00:00Z")) != nil, leap, "\(year)")
        }
    }

    /// `daysFromCivil` against a plain count of the days in every month from 1970 to 2400.
    func testDaysFromCivilMatchesCountingDays() {
        var days: Int64 = 0
        for year in Int64(1970)...2400 {
            for month in Int64(1)...12 {
                XCTAssertEqual(RFC3339.daysFromCivil(year: year, month: month, day: 1), days, "\(year)-\(month)")
                let civil = RFC3339.civilFromDays(days)
                XCTAssertTrue(civil == (year, month, 1), "\(year)-\(month)")
                days += RFC3339.daysInMonth(year: year, month: month)
            }
        }
    }

    func testFormatsAndRoundTrips() throws {
        XCTAssertEqual(RFC3339.format(0), "1970-01-01T00:00:00Z")
        XCTAssertEqual(RFC3339.format(1_709_208_000_123), "2024-02-29T12:00:00.123Z")
        XCTAssertEqual(RFC3339.format(-1), "1969-12-31T23:59:59.999Z")
        XCTAssertEqual(RFC3339.format(253_402_300_799_000), "9999-12-31T23:59:59Z")
        XCTAssertEqual(RFC3339.format(253_402_300_800_000), "253402300800000ms")
        XCTAssertEqual(RFC3339.format(-62_167_219_200_000), "0000-01-01T00:00:00Z")
        XCTAssertEqual(RFC3339.format(-62_167_219_200_001), "-62167219200001ms")
        // The wire allows any i64 in a license's times; formatting the extremes must not trap (it overflowed).
        XCTAssertEqual(RFC3339.format(.min), "\(Int64.min)ms")
        XCTAssertEqual(RFC3339.format(.max), "\(Int64.max)ms")
        var millis: Int64 = -86_400_000 * 800
        while millis < 4_102_444_800_000 {  // 2100-01-01
            XCTAssertEqual(try RFC3339.parse(RFC3339.format(millis)), millis)
            millis += 7_654_321_987
        }
    }
}
