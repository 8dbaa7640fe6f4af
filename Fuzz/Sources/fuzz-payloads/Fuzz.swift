import FuzzSupport
import NIOCore
import TollgateEngine
import TollgateModel

/// The engine's journal payloads (`Protocol/JOURNAL.md` section 10). The first byte picks the decoder:
/// - `0x00...0x7F`: `StateChange.decode(type: byte, payload: rest)`, as replay does for every record;
/// - `0x80...0xFF`: `LicensingState.decodeSnapshot(rest)`, as start-up does for the loaded snapshot.
///
/// Invariants: decoding either succeeds or throws `WireError`, never crashes. A decoded change has the type it was
/// decoded as and re-encodes to exactly the payload. Applying it (to a state where the tokens it names exist, so
/// usage is counted) never crashes. Whatever state results, `encodeSnapshot` writes it and `decodeSnapshot` reads
/// that back without error, to the same plans, licenses, tokens and token usage.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard size >= 1, let data else { return 0 }
    let selector = data[0]
    let rest = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    if selector < 0x80 {
        checkRecord(type: selector, payload: rest)
    } else {
        checkSnapshot(rest)
    }
    return 0
}

let now: UnixMillis = 1_700_000_000_000

func checkRecord(type: UInt8, payload: [UInt8]) {
    let change: StateChange
    do {
        change = try StateChange.decode(type: type, payload: ByteBuffer(bytes: payload))
    } catch is WireError {
        return
    } catch {
        fuzzCheck(false, "StateChange.decode threw a non-WireError: \(error)")
        return
    }
    fuzzCheck(change.typeCode == type, "type \(type) decoded as a change of type \(change.typeCode)")
    do {
        let again = try change.encodedPayload()
        fuzzCheck(again == payload, "type \(type) payload round trip: \(fuzzHex(payload)) -> \(fuzzHex(again))")
    } catch {
        fuzzCheck(false, "a decoded change of type \(type) does not encode: \(error)")
    }

    // A state in which the tokens the change names exist, so that usage is really counted.
    var state = LicensingState()
    state.apply(.planPut(Plan(id: "fuzz-plan", entitlements: ["*"]), at: 1))
    state.apply(.licensePut(LicenseSpec(id: "fuzz-license", customer: "fuzz", plan: "fuzz-plan", status: .active), at: 1, pastDueSince: 0))
    var named: [String] = []
    switch change {
    case .metered(let entry, _): named = [entry.tokenID]
    case .consumed(let entries): named = entries.map(\.tokenID)
    case .tokensRevoked(let ids, _, _, _): named = ids
    case .tokenRotated(let id, _, _, _, _), .rotationEnded(let id, _): named = [id]
    default: break
    }
    for (i, id) in named.enumerated() where state.token(id: id) == nil {
        let info = TokenInfo(id: id, licenseID: "fuzz-license", subject: "fuzz", scopes: ["*"], issuedAt: 1, notBefore: 0, expiresAt: 0, environment: .test)
        state.apply(.tokenIssued(TokenRecord(hash: TokenHash(UInt64(i), 1, 2, 3), info: info)))
    }
    state.apply(change)
    checkSnapshotRoundTrip(state)
}

func checkSnapshot(_ bytes: [UInt8]) {
    let state: LicensingState
    do {
        state = try LicensingState.decodeSnapshot(bytes)
    } catch is WireError {
        return
    } catch {
        fuzzCheck(false, "decodeSnapshot threw a non-WireError: \(error)")
        return
    }
    checkSnapshotRoundTrip(state)
}

/// A snapshot the engine wrote must read back: the daemon would otherwise write a snapshot it cannot start from.
func checkSnapshotRoundTrip(_ state: LicensingState) {
    let bytes: [UInt8]
    do {
        bytes = try state.encodeSnapshot(now: now)
    } catch {
        fuzzCheck(false, "encodeSnapshot failed: \(error)")
        return
    }
    let back: LicensingState
    do {
        back = try LicensingState.decodeSnapshot(bytes)
    } catch {
        fuzzCheck(false, "decodeSnapshot of encodeSnapshot's output failed: \(error)")
        return
    }
    fuzzCheck(back.plans == state.plans, "plans differ after a snapshot round trip")
    fuzzCheck(back.licenses == state.licenses, "licenses differ after a snapshot round trip")
    fuzzCheck(back.orgs == state.orgs, "organisations differ after a snapshot round trip")
    // The usage book is stored whole; only idempotency keys past their retention are left out.
    var book = state.book
    book.idempotencyKeys = book.idempotencyKeys.filter { $0.value >= now - 86_400_000 }
    fuzzCheck(back.book == book, "the usage book differs after a snapshot round trip")
    // Tokens: the store's indexes and lists stay consistent whatever the records say (a fuzzed journal can reuse ids
    // or secret hashes, which the daemon never writes), and the snapshot keeps every token, in issue order.
    if let violation = state.tokens.invariantViolation() { fuzzCheck(false, "token store: \(violation)") }
    if let violation = back.tokens.invariantViolation() { fuzzCheck(false, "token store after a snapshot round trip: \(violation)") }
    fuzzCheck(back.tokens == state.tokens, "tokens differ after a snapshot round trip")
}

@main
struct FuzzMain {
    static func main() { runLibFuzzer(fuzzTestOneInput) }
}
