#if canImport(Glibc)
import Glibc
#endif
import TollgateModel

/// Every stored token, found by the hash of its secret (the check path) or by its id (the control plane), in a
/// layout sized for millions of tokens.
///
/// Why not two dictionaries: a `[TokenHash: TokenRecord]` slot is ~264 bytes and the table keeps about two slots per
/// token (power-of-two capacity, 75 % load), plus a `[String: TokenHash]` for ids — about 700 bytes a token before a
/// single string. Here each token is one fixed-size entry in a dense array (the fields a check reads and the token's
/// identity, its id's bytes inline and its license as a number: 112 bytes, no allocation of its own); the fields
/// most tokens leave empty (not-before, revocation, metadata, rotation, parent) live in a side table only for tokens
/// that have them; and the two lookups are open-addressing tables of 4-byte entry numbers kept at most half full
/// (8 bytes a token each).
///
/// A value type like the rest of the state (copy-on-write arrays), so a snapshot's copy is as cheap as before.
/// Entry numbers are internal: freed entries are reused, and nothing outside the store sees them, so two stores
/// holding the same tokens compare equal whatever order built them (`==` compares tokens, and issue order per
/// license).
public struct TokenStore: Sendable {
    /// A stored token's place in the store: valid while the token is stored (a forgotten token's place is reused,
    /// so holders must check what they find there). Internal to the engine's indexes; never journaled.
    struct Handle: Hashable, Comparable, Sendable {
        fileprivate(set) var number: UInt32
        static func < (l: Handle, r: Handle) -> Bool { l.number < r.number }
    }

    /// The fields of a token that every token has: 112 bytes.
    struct Entry: Sendable {
        var hash: TokenHash
        /// The id's bytes (ids of 1 to 31 bytes; others, the empty id included, which only a damaged or fuzzed
        /// journal could hold, are in `longIDs`).
        var id: InlineID
        var subject: String
        var scopes: [String]
        var issuedAt: UnixMillis
        var expiresAt: UnixMillis
        /// Index into `licenseTable`.
        var license: UInt32
        var environment: TokenEnvironment
        var flags: Flags

        struct Flags: OptionSet, Sendable {
            var rawValue: UInt8
            /// The token has an entry in `extras`.
            static let extras = Flags(rawValue: 1)
            /// The id is in `longIDs`.
            static let longID = Flags(rawValue: 2)
            /// The entry holds no token.
            static let free = Flags(rawValue: 4)
        }

        static let empty = Entry(
            hash: TokenHash(0, 0, 0, 0), id: InlineID(), subject: "", scopes: [], issuedAt: 0, expiresAt: 0, license: 0,
            environment: .live, flags: .free)
    }

    /// The fields most tokens leave empty (a check reads the first two: they are here because most tokens are
    /// valid from issue and not revoked).
    struct Extras: Sendable, Hashable {
        var notBefore: UnixMillis = 0
        var revokedAt: UnixMillis = 0
        var revokeReason = ""
        var revokedBy = ""
        var parentID = ""
        var metadata: [KeyValue] = []
        var rotatedAt: UnixMillis = 0
        var previousSecretValidUntil: UnixMillis = 0
        var boundUIDs: [UInt32]?

        init(_ record: TokenRecord) {
            notBefore = record.info.notBefore
            revokedAt = record.info.revokedAt
            revokeReason = record.info.revokeReason
            revokedBy = record.info.revokedBy
            parentID = record.info.parentID
            metadata = record.info.metadata
            rotatedAt = record.info.rotatedAt
            previousSecretValidUntil = record.info.previousSecretValidUntil
            boundUIDs = record.boundUIDs
        }

        var isEmpty: Bool {
            notBefore == 0 && revokedAt == 0 && revokeReason.isEmpty && revokedBy.isEmpty && parentID.isEmpty && metadata.isEmpty && rotatedAt == 0 && previousSecretValidUntil == 0 && boundUIDs == nil
        }
    }

    /// A license's id and its tokens' entry numbers in issue order. Licenses keep their number once they had a token.
    struct LicenseTokens: Sendable {
        var id: String
        var tokens: [UInt32]
    }

    private var entries: [Entry] = []
    /// Free entry numbers, reused before the array grows.
    private var free: [UInt32] = []
    private var extras: [UInt32: Extras] = [:]
    private var longIDs: [UInt32: String] = [:]
    private var byHash = EntryIndex()
    private var byID = EntryIndex()
    private var licenseTable: [LicenseTokens] = []
    private var licenseNumbers: [String: UInt32] = [:]

    public init() {}

    /// How many tokens are stored.
    public var count: Int { entries.count - free.count }
    public var isEmpty: Bool { count == 0 }

    // MARK: - Reads

    /// The token whose current secret hashes to `hash`.
    public subscript(hash: TokenHash) -> TokenRecord? {
        entryNumber(hash: hash).map(record(at:))
    }

    /// What a check reads of the token whose current secret hashes to `hash`, and where it is stored.
    func view(hash: TokenHash) -> (handle: Handle, view: TokenView)? {
        guard let number = entryNumber(hash: hash) else { return nil }
        return (Handle(number: number), view(at: number))
    }

    /// What a check reads of the token with this id.
    func view(id: String) -> TokenView? {
        entryNumber(id: id).map(view(at:))
    }

    /// The token with this id.
    public func record(id: String) -> TokenRecord? {
        entryNumber(id: id).map(record(at:))
    }

    /// The hash of the current secret of the token with this id.
    public func hash(id: String) -> TokenHash? {
        entryNumber(id: id).map { entries[Int($0)].hash }
    }

    public func contains(id: String) -> Bool { entryNumber(id: id) != nil }

    /// The license of the token with this id, without building its record (which allocates its id string).
    func licenseID(id: String) -> String? {
        entryNumber(id: id).map { licenseTable[Int(entries[Int($0)].license)].id }
    }

    /// When the token with this id was revoked (0: not revoked), without building its record.
    func revokedAt(id: String) -> UnixMillis? {
        entryNumber(id: id).map { entries[Int($0)].flags.contains(.extras) ? extras[$0]!.revokedAt : 0 }
    }

    /// The ids of a license's tokens, in issue order.
    public func ids(license: String) -> [String] {
        tokenNumbers(license: license).map(id(at:))
    }

    /// A license's tokens, in issue order.
    public func records(license: String) -> [TokenRecord] {
        tokenNumbers(license: license).map(record(at:))
    }

    public func hasTokens(license: String) -> Bool { !tokenNumbers(license: license).isEmpty }

    /// The ids of the tokens issued to `subject`, by license id, then in issue order. One pass over the entries
    /// comparing subjects (no record is built): ~10 ms at a million tokens.
    public func ids(subject: String) -> [String] {
        var matching = Set<UInt32>()
        var licenses = Set<UInt32>()
        for number in entries.indices where entries[number].subject == subject && !entries[number].flags.contains(.free) {
            matching.insert(UInt32(number))
            licenses.insert(entries[number].license)
        }
        return licenses.map { licenseTable[Int($0)] }.sorted { $0.id < $1.id }.flatMap { license in
            license.tokens.filter(matching.contains).map(id(at:))
        }
    }

    /// The licenses that have tokens (in no order).
    public var licenseIDs: [String] { licenseTable.filter { !$0.tokens.isEmpty }.map(\.id) }

    /// Every token id (in no order).
    public var allIDs: [String] {
        var ids: [String] = []
        ids.reserveCapacity(count)
        for number in entries.indices where !entries[number].flags.contains(.free) { ids.append(id(at: UInt32(number))) }
        return ids
    }

    /// How many tokens (of `license`, or of all) satisfy `predicate`, reading only the always-present fields: no
    /// record is built.
    public func count(license: String? = nil, where predicate: (_ revokedAt: UnixMillis, _ expiresAt: UnixMillis) -> Bool) -> Int {
        func counts(_ number: UInt32) -> Bool {
            let entry = entries[Int(number)]
            return predicate(entry.flags.contains(.extras) ? extras[number]!.revokedAt : 0, entry.expiresAt)
        }
        guard let license else {
            return entries.indices.reduce(into: 0) { n, number in
                if !entries[number].flags.contains(.free), counts(UInt32(number)) { n += 1 }
            }
        }
        return tokenNumbers(license: license).reduce(into: 0) { n, number in
            if counts(number) { n += 1 }
        }
    }

    func handle(id: String) -> Handle? { entryNumber(id: id).map(Handle.init) }

    /// The token stored at `handle` now (nil: none; it may be another token than when the handle was taken).
    func record(_ handle: Handle) -> TokenRecord? {
        guard Int(handle.number) < entries.count, !entries[Int(handle.number)].flags.contains(.free) else { return nil }
        return record(at: handle.number)
    }

    private func tokenNumbers(license: String) -> [UInt32] {
        licenseNumbers[license].map { licenseTable[Int($0)].tokens } ?? []
    }

    private func id(at number: UInt32) -> String {
        let entry = entries[Int(number)]
        return entry.flags.contains(.longID) ? longIDs[number]! : entry.id.string
    }

    private func record(at number: UInt32) -> TokenRecord {
        let entry = entries[Int(number)]
        let more = entry.flags.contains(.extras) ? extras[number] : nil
        let info = TokenInfo(
            id: id(at: number), licenseID: licenseTable[Int(entry.license)].id, subject: entry.subject, scopes: entry.scopes, issuedAt: entry.issuedAt,
            notBefore: more?.notBefore ?? 0, expiresAt: entry.expiresAt, revokedAt: more?.revokedAt ?? 0, revokeReason: more?.revokeReason ?? "",
            metadata: more?.metadata ?? [], environment: entry.environment, parentID: more?.parentID ?? "", revokedBy: more?.revokedBy ?? "",
            rotatedAt: more?.rotatedAt ?? 0, previousSecretValidUntil: more?.previousSecretValidUntil ?? 0)
        return TokenRecord(hash: entry.hash, info: info, boundUIDs: more?.boundUIDs)
    }

    /// The entry's fields in place (no copy of the whole entry), the extras only when the token has them.
    private func view(at number: UInt32) -> TokenView {
        let index = Int(number)
        let license = Int(entries[index].license)
        guard entries[index].flags.contains(.extras), let more = extras[number] else {
            return TokenView(
                id: id(at: number), licenseID: licenseTable[license].id, subject: entries[index].subject, scopes: entries[index].scopes,
                notBefore: 0, expiresAt: entries[index].expiresAt, revokedAt: 0, parentID: "", boundUIDs: nil)
        }
        return TokenView(
            id: id(at: number), licenseID: licenseTable[license].id, subject: entries[index].subject, scopes: entries[index].scopes,
            notBefore: more.notBefore, expiresAt: entries[index].expiresAt, revokedAt: more.revokedAt, parentID: more.parentID, boundUIDs: more.boundUIDs)
    }

    private func entryNumber(hash: TokenHash) -> UInt32? {
        byHash.find(hashValue: Self.hashValue(hash)) { entries[Int($0)].hash == hash }
    }

    private func entryNumber(id: String) -> UInt32? {
        byID.find(hashValue: InlineID.hashValue(of: id)) { number in
            let entry = entries[Int(number)]
            // Bytes, not `String ==` (which equates canonically equivalent spellings): the index hashes bytes.
            return entry.flags.contains(.longID) ? longIDs[number]!.utf8.elementsEqual(id.utf8) : entry.id.equals(id)
        }
    }

    /// The id's hash, the same for the inline bytes and for the string.
    private func idHashValue(at number: UInt32) -> Int {
        let entry = entries[Int(number)]
        return entry.flags.contains(.longID) ? InlineID.hashValue(of: longIDs[number]!) : entry.id.bytesHash
    }

    /// The secret's hash is already uniformly distributed: its first word places it.
    @inline(__always)
    private static func hashValue(_ hash: TokenHash) -> Int { Int(truncatingIfNeeded: hash.bytes.0) }

    // MARK: - Changes

    /// Room for `capacity` tokens without growing (snapshot load knows how many are coming).
    public mutating func reserveCapacity(_ capacity: Int) {
        entries.reserveCapacity(capacity)
        growIndexes(toHold: capacity)
    }

    /// Stores a token, replacing the token with the same id if there is one (its entry is kept, and its place in
    /// its license's issue order unless the record names another license: then it moves to the end of that
    /// license's list). Returns where it is stored and whether the id was new.
    @discardableResult
    mutating func insert(_ record: TokenRecord) -> (handle: Handle, isNew: Bool) {
        if let number = entryNumber(id: record.info.id) {
            let current = entries[Int(number)].license
            if licenseTable[Int(current)].id != record.info.licenseID {
                licenseTable[Int(current)].tokens.removeAll { $0 == number }
                entries[Int(number)].license = addToLicense(record.info.licenseID, number)
            }
            replace(at: number, with: record)
            return (Handle(number: number), false)
        }
        growIndexes(toHold: count + 1)
        let number: UInt32
        if let reused = free.popLast() {
            number = reused
        } else {
            number = UInt32(entries.count)
            entries.append(.empty)
        }
        entries[Int(number)].license = addToLicense(record.info.licenseID, number)
        store(record, at: number)
        byHash.insert(number, hashValue: Self.hashValue(record.hash))
        byID.insert(number, hashValue: idHashValue(at: number))
        return (Handle(number: number), true)
    }

    /// Appends entry `number` to the issue-order list of `licenseID` (numbering the license if it is new); returns
    /// the license's number.
    private mutating func addToLicense(_ licenseID: String, _ number: UInt32) -> UInt32 {
        if let known = licenseNumbers[licenseID] {
            licenseTable[Int(known)].tokens.append(number)
            return known
        }
        let license = UInt32(licenseTable.count)
        licenseTable.append(LicenseTokens(id: licenseID, tokens: [number]))
        licenseNumbers[licenseID] = license
        return license
    }

    /// Changes the token with this id in place (its secret hash included); returns where it is stored, or nil when
    /// there is none.
    @discardableResult
    mutating func update(id: String, _ body: (inout TokenRecord) -> Void) -> Handle? {
        guard let number = entryNumber(id: id) else { return nil }
        var record = record(at: number)
        body(&record)
        precondition(record.info.id == id && record.info.licenseID == licenseTable[Int(entries[Int(number)].license)].id, "a token's id and license never change")
        replace(at: number, with: record)
        return Handle(number: number)
    }

    /// Removes the token with this id and returns it.
    @discardableResult
    public mutating func remove(id: String) -> TokenRecord? {
        remove(ids: [id]).first
    }

    /// Removes the tokens with these ids (unknown ids are skipped) and returns them. Each license's issue-order
    /// list is filtered once, however many of its tokens go (the sweep may forget a large part of a license).
    @discardableResult
    public mutating func remove(ids: some Sequence<String>) -> [TokenRecord] {
        var removed: [TokenRecord] = []
        var numbers = Set<UInt32>()
        var licenses = Set<UInt32>()
        for id in ids {
            guard let number = entryNumber(id: id) else { continue }
            let record = record(at: number)
            removeFromHashIndex(number, hash: record.hash)
            var index = EntryIndex()
            swap(&index, &byID)
            index.remove(number, hashValue: idHashValue(at: number)) { idHashValue(at: $0) }
            swap(&index, &byID)
            licenses.insert(entries[Int(number)].license)
            extras[number] = nil
            longIDs[number] = nil
            entries[Int(number)] = .empty
            numbers.insert(number)
            removed.append(record)
        }
        for license in licenses { licenseTable[Int(license)].tokens.removeAll { numbers.contains($0) } }
        free.append(contentsOf: numbers.sorted(by: >))
        return removed
    }

    private mutating func replace(at number: UInt32, with record: TokenRecord) {
        let old = entries[Int(number)].hash
        if old != record.hash {
            removeFromHashIndex(number, hash: old)
            entries[Int(number)].hash = record.hash
            byHash.insert(number, hashValue: Self.hashValue(record.hash))
        }
        store(record, at: number)
    }

    /// Writes every field but the license (fixed at issue) into entry `number`.
    private mutating func store(_ record: TokenRecord, at number: UInt32) {
        let more = Extras(record)
        let info = record.info
        let inline = InlineID(info.id)
        var flags: Entry.Flags = []
        if !more.isEmpty { flags.insert(.extras) }
        if inline == nil { flags.insert(.longID) }
        entries[Int(number)] = Entry(
            hash: record.hash, id: inline ?? InlineID(), subject: info.subject, scopes: info.scopes, issuedAt: info.issuedAt,
            expiresAt: info.expiresAt, license: entries[Int(number)].license, environment: info.environment, flags: flags)
        extras[number] = more.isEmpty ? nil : more
        longIDs[number] = inline == nil ? info.id : nil
    }

    private mutating func growIndexes(toHold tokens: Int) {
        guard tokens * 2 > byHash.capacity else { return }
        var capacity = max(byHash.capacity, 16)
        while tokens * 2 > capacity { capacity *= 2 }
        let live = entries.indices.filter { !entries[$0].flags.contains(.free) }.map { UInt32($0) }
        var (hashes, ids) = (EntryIndex(), EntryIndex())
        hashes.rebuild(capacity: capacity, entries: live) { Self.hashValue(entries[Int($0)].hash) }
        ids.rebuild(capacity: capacity, entries: live) { idHashValue(at: $0) }
        (byHash, byID) = (hashes, ids)
    }

    /// The index is taken out of `self` while it changes, so that the closure reading the entries does not overlap
    /// a modification of `self` (and no copy of either array is made).
    private mutating func removeFromHashIndex(_ number: UInt32, hash: TokenHash) {
        var index = EntryIndex()
        swap(&index, &byHash)
        index.remove(number, hashValue: Self.hashValue(hash)) { Self.hashValue(entries[Int($0)].hash) }
        swap(&index, &byHash)
    }
}

extension TokenStore {
    /// Checks every internal invariant (for tests and the fuzzer): each live entry is found through both indexes, each index slot
    /// names a live entry, the license lists hold exactly the live entries under their license, the free list holds
    /// exactly the free entries. Returns the first violation found, or nil.
    public func invariantViolation() -> String? {
        var live = 0
        for number in entries.indices where !entries[number].flags.contains(.free) {
            live += 1
            let n = UInt32(number)
            let entry = entries[number]
            guard entryNumber(hash: entry.hash) == n else { return "entry \(n) is not found by its hash" }
            guard entryNumber(id: id(at: n)) == n else { return "entry \(n) is not found by its id \(id(at: n))" }
            guard licenseTable[Int(entry.license)].tokens.filter({ $0 == n }).count == 1 else { return "entry \(n) is not once in its license's list" }
            guard entry.flags.contains(.extras) == (extras[n] != nil), entry.flags.contains(.longID) == (longIDs[n] != nil) else { return "entry \(n): flags disagree with the side tables" }
        }
        guard live == count, Set(free).count == free.count, free.allSatisfy({ entries[Int($0)].flags.contains(.free) }) else { return "the free list is wrong" }
        guard byHash.occupied == live, byID.occupied == live else { return "an index holds \(byHash.occupied)/\(byID.occupied) entries for \(live) live ones" }
        guard licenseTable.reduce(0, { $0 + $1.tokens.count }) == live else { return "the license lists hold other entries" }
        for (index, license) in licenseTable.enumerated() where licenseNumbers[license.id] != UInt32(index) { return "license \(license.id) is misnumbered" }
        return nil
    }
}

extension TokenStore: Equatable {
    /// The same tokens (every field but the observations), in the same issue order per license.
    public static func == (l: TokenStore, r: TokenStore) -> Bool {
        guard l.count == r.count else { return false }
        for license in l.licenseTable where !license.tokens.isEmpty {
            let other = r.tokenNumbers(license: license.id)
            guard other.count == license.tokens.count else { return false }
            for (a, b) in zip(license.tokens, other) where l.record(at: a) != r.record(at: b) { return false }
        }
        return true
    }
}

/// What the gates (`LicensingState.usability`) and a CHECK or METER read of a token, built from its store entry
/// without the rest of its record. A `TokenRecord` carries a dozen strings and arrays, each retained and released
/// whenever the record is copied; the check path built one, copied and destroyed it (~30 reference-count operations
/// a CHECK; callgrind, issue 19, Benchmarks/SCALE.md).
struct TokenView: Equatable {
    var id: String
    var licenseID: String
    var subject: String
    var scopes: [String]
    var notBefore: UnixMillis
    var expiresAt: UnixMillis
    var revokedAt: UnixMillis
    var parentID: String
    var boundUIDs: [UInt32]?

    init(
        id: String, licenseID: String, subject: String, scopes: [String], notBefore: UnixMillis, expiresAt: UnixMillis, revokedAt: UnixMillis,
        parentID: String, boundUIDs: [UInt32]?
    ) {
        self.id = id
        self.licenseID = licenseID
        self.subject = subject
        self.scopes = scopes
        self.notBefore = notBefore
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
        self.parentID = parentID
        self.boundUIDs = boundUIDs
    }

    init(_ record: TokenRecord) {
        self.init(
            id: record.info.id, licenseID: record.info.licenseID, subject: record.info.subject, scopes: record.info.scopes,
            notBefore: record.info.notBefore, expiresAt: record.info.expiresAt, revokedAt: record.info.revokedAt, parentID: record.info.parentID,
            boundUIDs: record.boundUIDs)
    }
}

/// A token id of up to 31 UTF-8 bytes held in 32 bytes inline (the last byte is the length), instead of a string
/// with its own heap allocation (~80 bytes for the 26-byte ids Tollgate mints). All zero: no id.
///
/// The trade: a record built from the store makes its id `String` anew, one small allocation (a 26-byte id is too
/// long for Swift's inline small strings). A CHECK or METER builds one (the answer carries the id): measured +550
/// instructions per CHECK (callgrind, +1.7 %) for 80 bytes less per token (76 MiB at a million tokens). Paths that
/// need only a field of another token (its license, whether it is revoked) read it without building a record.
struct InlineID: Sendable {
    private var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    static let capacity = 31

    init() {}

    /// nil when `id` is empty or longer than 31 bytes.
    init?(_ id: String) {
        var id = id
        let stored: Bool = id.withUTF8 { utf8 in
            guard (1...Self.capacity).contains(utf8.count) else { return false }
            withUnsafeMutableBytes(of: &words) { raw in
                raw.copyMemory(from: UnsafeRawBufferPointer(utf8))
                raw[31] = UInt8(utf8.count)
            }
            return true
        }
        guard stored else { return nil }
    }

    var string: String {
        withUnsafeBytes(of: words) { raw in String(decoding: raw.prefix(Int(raw[31])), as: UTF8.self) }
    }

    func equals(_ id: String) -> Bool {
        var id = id
        return withUnsafeBytes(of: words) { raw in
            id.withUTF8 { utf8 in utf8.count == Int(raw[31]) && memcmp(raw.baseAddress!, utf8.baseAddress!, utf8.count) == 0 }
        }
    }

    /// The hash of the id's bytes: equal to `hashValue(of:)` of the same id as a string.
    var bytesHash: Int {
        withUnsafeBytes(of: words) { raw in Self.hash(UnsafeRawBufferPointer(rebasing: raw.prefix(Int(raw[31])))) }
    }

    /// The hash of an id's bytes (see `bytesHash`).
    static func hashValue(of id: String) -> Int {
        var id = id
        return id.withUTF8 { hash(UnsafeRawBufferPointer($0)) }
    }

    private static func hash(_ bytes: UnsafeRawBufferPointer) -> Int {
        var hasher = Hasher()
        hasher.combine(bytes: bytes)
        return hasher.finalize()
    }
}

/// An open-addressing table (linear probing, at most half full) of entry numbers, keyed by a hash the caller
/// computes from the entry. 4 bytes a slot; 0 marks an empty slot, so entry n is stored as n + 1. Removal shifts
/// the following run back instead of leaving tombstones, so lookups never slow down with churn.
struct EntryIndex: Sendable {
    private var slots: [UInt32] = []

    var capacity: Int { slots.count }

    /// How many slots are taken (for checks: O(capacity)).
    var occupied: Int { slots.reduce(0) { $0 + ($1 == 0 ? 0 : 1) } }

    /// The entry whose hash is `hashValue` and that `matches`.
    @inline(__always)
    func find(hashValue: Int, matches: (UInt32) -> Bool) -> UInt32? {
        guard !slots.isEmpty else { return nil }
        let mask = slots.count - 1
        var position = hashValue & mask
        while true {
            let slot = slots[position]
            if slot == 0 { return nil }
            if matches(slot - 1) { return slot - 1 }
            position = (position + 1) & mask
        }
    }

    /// Adds an entry known not to be present. The caller keeps the table at most half full (`rebuild`).
    mutating func insert(_ entry: UInt32, hashValue: Int) {
        let mask = slots.count - 1
        var position = hashValue & mask
        while slots[position] != 0 { position = (position + 1) & mask }
        slots[position] = entry + 1
    }

    /// Removes `entry`, whose hash is `hashValue`; `hashOf` gives the hash of other entries, to shift them back.
    mutating func remove(_ entry: UInt32, hashValue: Int, hashOf: (UInt32) -> Int) {
        let mask = slots.count - 1
        var hole = hashValue & mask
        while slots[hole] != entry + 1 {
            precondition(slots[hole] != 0, "removing an entry that is not in the index")
            hole = (hole + 1) & mask
        }
        // Backward-shift deletion: move up each later entry of the run whose home is not between the hole and it.
        var position = hole
        while true {
            position = (position + 1) & mask
            let slot = slots[position]
            if slot == 0 { break }
            let home = hashOf(slot - 1) & mask
            let stays = hole <= position ? (hole < home && home <= position) : (hole < home || home <= position)
            if !stays {
                slots[hole] = slot
                hole = position
            }
        }
        slots[hole] = 0
    }

    /// Empties the table to `capacity` slots (a power of two) and inserts `entries`.
    mutating func rebuild(capacity: Int, entries: some Sequence<UInt32>, hashOf: (UInt32) -> Int) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "the capacity is a power of two")
        slots = [UInt32](repeating: 0, count: capacity)
        for entry in entries { insert(entry, hashValue: hashOf(entry)) }
    }
}
