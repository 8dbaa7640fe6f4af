import TollgateModel
import TollgateTestSupport
import XCTest

@testable import TollgateEngine

/// The compact token store against the obvious model (dictionaries by hash and by id, a list per license), under
/// random insertions, replacements, rotations and removals, with hashes chosen to collide in the open-addressing
/// index (clusters that wrap around the table's end), which is where backward-shift deletion can go wrong.
final class TokenStoreTests: XCTestCase {
    private struct Model {
        var byID: [String: TokenRecord] = [:]
        var byLicense: [String: [String]] = [:]
        /// The ids, to pick from in a seeded order.
        var ids: [String] = []
    }

    private func record(_ n: Int, license: String, hash: TokenHash, rng: inout SplitMix64) -> TokenRecord {
        var info = TokenInfo(
            // Half the ids fit inline (up to 31 bytes), half are kept as strings beside the entry.
            id: n % 2 == 0 ? "tok_\(n)_fits_inline" : "tok_\(n)_longer_than_thirty_one_bytes", licenseID: license, subject: "svc-\(n % 7)", scopes: n % 3 == 0 ? [] : ["read", "write:\(n % 4)"],
            issuedAt: 1_000 + Int64(n), notBefore: n % 5 == 0 ? 2_000 : 0, expiresAt: n % 2 == 0 ? 9_000_000 + Int64(n) : 0, environment: n % 4 == 0 ? .test : .live)
        // A third of the tokens carry the fields kept outside the fixed entry.
        switch rng.next() % 6 {
        case 0: info.metadata = [KeyValue("team", "blue"), KeyValue(TokenBinding.metadataKey, "1000,1001")]
        case 1: info.parentID = "tok_parent_\(n % 3)"
        default: break
        }
        return TokenRecord(hash: hash, info: info)
    }

    /// First words from two small ranges: the first slots of the table, and its last 8 slots whatever its size (so
    /// runs of colliding entries wrap around the end): most tokens share a home slot with others.
    private func collidingHash(_ rng: inout SplitMix64) -> TokenHash {
        TokenHash(rng.next() % 2 == 0 ? rng.next() % 48 : ~(rng.next() % 8), rng.next(), rng.next(), rng.next())
    }

    func testMatchesADictionaryModelUnderChurn() {
        for seed in [1, 2, 3] as [UInt64] {
            var rng = SplitMix64(seed: seed)
            var store = TokenStore()
            // One run never regrows (a regrow rebuilds the indexes from the entries, which would hide a damaged one).
            if seed == 3 { store.reserveCapacity(4_096) }
            var model = Model()
            var next = 0
            for step in 0..<6_000 {
                let roll = rng.next() % 10
                if roll < 5 || model.byID.isEmpty {
                    let license = "lic_\(rng.next() % 9)_with_a_long_identifier"
                    let new = record(next, license: license, hash: collidingHash(&rng), rng: &rng)
                    next += 1
                    store.insert(new)
                    model.byID[new.info.id] = new
                    model.byLicense[license, default: []].append(new.info.id)
                    model.ids.append(new.info.id)
                } else {
                    let pick = Int(rng.next() % UInt64(model.ids.count))
                    let id = model.ids[pick]
                    func forgetInModel(_ id: String) {
                        let license = model.byID[id]!.info.licenseID
                        model.byID[id] = nil
                        model.ids.removeAll { $0 == id }
                        model.byLicense[license]!.removeAll { $0 == id }
                        if model.byLicense[license]!.isEmpty { model.byLicense[license] = nil }
                    }
                    switch roll {
                    case 5:
                        XCTAssertEqual(store.remove(id: id), model.byID[id])
                        forgetInModel(id)
                    case 6:
                        // Several at once (as the sweep forgets them), with a repeat and an unknown id.
                        let batch = [id, model.ids[Int(rng.next() % UInt64(model.ids.count))], id, "tok_never_issued"]
                        let expected = Set(batch.compactMap { model.byID[$0]?.info.id })
                        XCTAssertEqual(Set(store.remove(ids: batch).map(\.info.id)), expected)
                        for gone in expected { forgetInModel(gone) }
                    case 7:
                        // A rotation: the same token under a new hash; the old hash finds nothing.
                        let newHash = collidingHash(&rng)
                        XCTAssertNotNil(store.update(id: id) { $0.hash = newHash })
                        model.byID[id]!.hash = newHash
                    case 8:
                        XCTAssertNotNil(store.update(id: id) { $0.info.revokedAt = 5_000; $0.info.revokeReason = "leaked"; $0.info.revokedBy = "ops" })
                        model.byID[id]!.info.revokedAt = 5_000
                        model.byID[id]!.info.revokeReason = "leaked"
                        model.byID[id]!.info.revokedBy = "ops"
                    default:
                        // Inserting a known id replaces it and keeps its place in its license's order; with another
                        // license (journals never hold that, but the record says so), it moves to that license's end.
                        var replacement = model.byID[id]!
                        replacement.info.subject = "replaced-\(step)"
                        if rng.next() % 2 == 0 { replacement.hash = collidingHash(&rng) }
                        if rng.next() % 4 == 0 {
                            let old = replacement.info.licenseID
                            replacement.info.licenseID = "lic_\(rng.next() % 9)_with_a_long_identifier"
                            if replacement.info.licenseID != old {
                                model.byLicense[old]!.removeAll { $0 == id }
                                if model.byLicense[old]!.isEmpty { model.byLicense[old] = nil }
                                model.byLicense[replacement.info.licenseID, default: []].append(id)
                            }
                        }
                        XCTAssertFalse(store.insert(replacement).isNew)
                        model.byID[id] = replacement
                    }
                }
                if step % 40 == 0, let violation = store.invariantViolation() { XCTFail("seed \(seed), step \(step): \(violation)"); return }
                if step % 500 == 0 || step == 5_999 { assertSame(store, model, "seed \(seed), step \(step)") }
            }
        }
    }

    private func assertSame(_ store: TokenStore, _ model: Model, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(store.count, model.byID.count, what, file: file, line: line)
        XCTAssertNil(store.invariantViolation(), what, file: file, line: line)
        XCTAssertEqual(store.count { revokedAt, _ in revokedAt == 0 }, model.byID.values.filter { $0.info.revokedAt == 0 }.count, what, file: file, line: line)
        XCTAssertEqual(Set(store.allIDs), Set(model.byID.keys), what, file: file, line: line)
        for (id, expected) in model.byID {
            XCTAssertEqual(store.record(id: id), expected, "\(what): by id", file: file, line: line)
            XCTAssertEqual(store[expected.hash], expected, "\(what): by hash", file: file, line: line)
            XCTAssertEqual(store.hash(id: id), expected.hash, what, file: file, line: line)
            // What the check path reads, built from the entry without the record, is the record's.
            XCTAssertEqual(store.view(hash: expected.hash)?.view, TokenView(expected), "\(what): view by hash", file: file, line: line)
            XCTAssertEqual(store.view(id: id), TokenView(expected), "\(what): view by id", file: file, line: line)
        }
        XCTAssertEqual(Set(store.licenseIDs), Set(model.byLicense.keys), what, file: file, line: line)
        for subject in (0..<7).map({ "svc-\($0)" }) + ["nobody"] {
            let expected = model.byLicense.keys.sorted().flatMap { model.byLicense[$0]!.filter { model.byID[$0]!.info.subject == subject } }
            XCTAssertEqual(store.ids(subject: subject), expected, "\(what): tokens of \(subject)", file: file, line: line)
        }
        for (license, ids) in model.byLicense {
            XCTAssertEqual(store.ids(license: license), ids, "\(what): issue order of \(license)", file: file, line: line)
            XCTAssertEqual(store.count(license: license) { revokedAt, _ in revokedAt == 0 }, ids.filter { model.byID[$0]!.info.revokedAt == 0 }.count, what, file: file, line: line)
        }
        // Hashes no token has find nothing, even inside a cluster.
        for first in 0..<48 as Range<UInt64> { XCTAssertNil(store[TokenHash(first, 0, 0, 0)], what, file: file, line: line) }
    }

    func testBindingAndExtrasSurviveTheRoundTrip() {
        var rng = SplitMix64(seed: 9)
        var bound = record(0, license: "lic", hash: TokenHash(1, 2, 3, 4), rng: &rng)
        bound.info.metadata = [KeyValue(TokenBinding.metadataKey, "1000,1001")]
        bound = TokenRecord(hash: bound.hash, info: bound.info)
        var store = TokenStore()
        store.insert(bound)
        XCTAssertEqual(store[bound.hash]?.boundUIDs, [1000, 1001])
        XCTAssertNotNil(store.update(id: bound.info.id) { $0.info.metadata = []; $0.boundUIDs = nil })
        XCTAssertNil(store[bound.hash]?.boundUIDs, "extras emptied are dropped")
        XCTAssertEqual(store[bound.hash]?.info.metadata, [])
    }

    func testEqualityIgnoresBuildOrderButNotIssueOrder() {
        var rng = SplitMix64(seed: 4)
        let a = record(1, license: "lic-a", hash: TokenHash(1, 0, 0, 0), rng: &rng)
        let b = record(2, license: "lic-a", hash: TokenHash(2, 0, 0, 0), rng: &rng)
        let c = record(3, license: "lic-b", hash: TokenHash(3, 0, 0, 0), rng: &rng)
        // One store reuses a freed entry, the other does not: different entry numbers, same tokens.
        var first = TokenStore()
        first.insert(c)
        first.insert(a)
        first.insert(b)
        var second = TokenStore()
        second.insert(record(4, license: "lic-z", hash: TokenHash(4, 0, 0, 0), rng: &rng))
        second.insert(a)
        second.remove(id: "tok_4_fits_inline")
        second.insert(b)
        second.insert(c)
        XCTAssertEqual(first, second)
        var reordered = TokenStore()
        reordered.insert(b)
        reordered.insert(a)
        reordered.insert(c)
        XCTAssertNotEqual(first, reordered, "issue order within a license is part of the state (listings, snapshots)")
        var changed = second
        changed.update(id: a.info.id) { $0.info.subject = "other" }
        XCTAssertNotEqual(first, changed)
        XCTAssertEqual(second, first, "the copy changed, not the original")
    }

    func testInlineIDsHashAndCompareLikeTheirStrings() {
        // The last: a two-byte character ending exactly at byte 31.
        for id in ["t", "tok_0123456789abcdefghijkl", String(repeating: "x", count: 31), "tok_é_ü", "tok_日本", String(repeating: "x", count: 29) + "é"] {
            let inline = InlineID(id)
            XCTAssertNotNil(inline, id)
            XCTAssertEqual(inline?.string, id)
            XCTAssertEqual(inline?.bytesHash, InlineID.hashValue(of: id), "an id is found by its string: \(id)")
            XCTAssertTrue(inline?.equals(id) ?? false)
            XCTAssertFalse(inline?.equals(id + "x") ?? true)
            XCTAssertFalse(inline?.equals(String(id.dropLast())) ?? true)
        }
        XCTAssertNil(InlineID(""), "empty: no id")
        XCTAssertNil(InlineID(String(repeating: "x", count: 32)), "32 bytes do not fit beside the length byte")
        XCTAssertNil(InlineID(String(repeating: "é", count: 16)), "the limit is in bytes, not characters")
    }

    /// The memory budget of issue 6 (a million tokens in 300 MB) rests on this size: a field added to the entry
    /// instead of to the extras shows up here first.
    func testEntryStaysSmall() {
        XCTAssertLessThanOrEqual(MemoryLayout<TokenStore.Entry>.stride, 112)
        XCTAssertEqual(MemoryLayout<InlineID>.stride, 32)
    }

    /// Ids are compared by their bytes, inline or not: canonically equivalent spellings are different ids (the
    /// indexes hash bytes, so anything else would find or miss a token depending on the process's hash seed).
    func testIdsAreMatchedByTheirBytes() {
        var rng = SplitMix64(seed: 5)
        for prefix in ["tok_", "tok_long_enough_to_be_kept_beside_the_entry_"] {
            var store = TokenStore()
            var composed = record(0, license: "lic", hash: TokenHash(1, 0, 0, 0), rng: &rng)
            composed.info.id = prefix + "\u{E9}"
            store.insert(composed)
            let decomposed = prefix + "e\u{301}"
            XCTAssertEqual(decomposed, composed.info.id, "Swift's == equates them")
            XCTAssertNil(store.record(id: decomposed), prefix)
            XCTAssertNil(store.remove(id: decomposed), prefix)
            XCTAssertEqual(store.record(id: composed.info.id)?.info.id, composed.info.id, prefix)
            XCTAssertNil(store.invariantViolation())
        }
    }

    /// Any id works, even the empty one (never minted; a fuzzed journal found it).
    func testTheEmptyIdIsAnId() {
        var rng = SplitMix64(seed: 8)
        var store = TokenStore()
        var token = record(1, license: "lic", hash: TokenHash(1, 0, 0, 0), rng: &rng)
        token.info.id = ""
        store.insert(token)
        XCTAssertEqual(store.record(id: "")?.hash, token.hash)
        XCTAssertNil(store.invariantViolation())
        XCTAssertEqual(store.remove(id: "")?.hash, token.hash)
        XCTAssertTrue(store.isEmpty)
    }

    /// A handle names a place: once its token is removed it finds nothing, and once the place is reused it finds
    /// the new token (the sweep checks what it finds against the deadline it holds).
    func testHandlesFindWhatIsStoredNow() {
        var rng = SplitMix64(seed: 6)
        var store = TokenStore()
        let first = record(1, license: "lic", hash: TokenHash(1, 0, 0, 0), rng: &rng)
        let handle = store.insert(first).handle
        XCTAssertEqual(store.record(handle), first)
        store.remove(id: first.info.id)
        XCTAssertNil(store.record(handle))
        let second = record(2, license: "lic", hash: TokenHash(2, 0, 0, 0), rng: &rng)
        XCTAssertEqual(store.insert(second).handle, handle, "the freed place is reused")
        XCTAssertEqual(store.record(handle), second)
        XCTAssertNil(store[first.hash])
    }
}
