import NIOCore
import TollgateModel
import XCTest

@testable import TollgateEngine

/// Inputs found by the libFuzzer targets in Fuzz/ (`scripts/fuzz.sh`). Each one crashed the process before its fix;
/// after the fix, decoding and applying it must either work or throw `WireError`, never trap.
final class FuzzRegressionTests: XCTestCase {
    /// Decodes and applies `payload` as replay would, to a state in which token "t" of license "L" exists.
    private func replay(type: UInt8, payload: [UInt8]) {
        var state = LicensingState()
        state.apply(.planPut(Plan(id: "P", entitlements: ["*"]), at: 1))
        state.apply(.licensePut(LicenseSpec(id: "L", customer: "c", plan: "P", status: .active), at: 1, pastDueSince: 0))
        let info = TokenInfo(id: "t", licenseID: "L", subject: "x", scopes: ["*"], issuedAt: 1, notBefore: 0, expiresAt: 0, environment: .test)
        state.apply(.tokenIssued(TokenRecord(hash: TokenHash(1, 2, 3, 4), info: info)))
        do {
            let change = try StateChange.decode(type: type, payload: ByteBuffer(bytes: payload))
            state.apply(change)  // crashed: arithmetic overflow in UTCCalendar.bounds (fuzz-payloads)
        } catch is WireError {
            // Rejecting a usage time outside the calendar's range is a valid fix too.
        } catch {
            XCTFail("unexpected error \(error)")
        }
    }

    /// fuzz-payloads: a METER record (type 5) whose `at` is Int64.min. `recordUsage` computes the hour, day and month
    /// containing `at`; `floorDiv(at, millisPerHour) * millisPerHour` overflows below Int64.min and traps.
    func testMeteredUsageAtInt64MinDoesNotCrash() {
        replay(type: 5, payload: [
            0x00, 0x01, 0x74,  // token_id "t"
            0x00, 0x01, 0x6d,  // meter "m"
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,  // quantity 1
            0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // at = Int64.min
            0x00, 0x00,  // idempotency_key ""
        ])
    }

    /// The same through a consumed batch (type 6): `recordUsage` from `apply(.consumed)`, LicensingState.swift line 59.
    func testConsumedUsageAtInt64MinDoesNotCrash() {
        replay(type: 6, payload: [
            0x00, 0x00, 0x00, 0x01,  // one entry (30 bytes: the decoder wants at least 28 per entry)
            0x00, 0x01, 0x74,  // token_id "t"
            0x00, 0x09, 0x6d, 0x6d, 0x6d, 0x6d, 0x6d, 0x6d, 0x6d, 0x6d, 0x6d,  // meter "mmmmmmmmm"
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,  // quantity 1
            0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // at = Int64.min
        ])
    }

    /// The same through a snapshot payload (what start-up decodes): token "t" issued, then a METER record at Int64.min.
    func testSnapshotWithUsageAtInt64MinDoesNotCrash() {
        let snapshot: [UInt8] = [
            0x03, 0x00, 0x00, 0x00, 0x50, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x74, 0x00, 0x01, 0x4c, 0x00, 0x01, 0x78, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x01, 0x05, 0x00, 0x00, 0x00, 0x18, 0x00, 0x01, 0x74, 0x00, 0x01, 0x6d,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00,
        ]
        do {
            _ = try LicensingState.decodeSnapshot(snapshot)
        } catch is WireError {
        } catch {
            XCTFail("unexpected error \(error)")
        }
    }
}
