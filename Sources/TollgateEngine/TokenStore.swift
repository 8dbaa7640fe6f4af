import TollgateModel

/// Every stored token, found by the hash of its secret (the check path) or by its id (the control plane), in a
/// layout sized for millions of tokens.
///
/// Why not two dictionaries: a `[TokenHash: TokenRecord]` slot is ~264 bytes and the table keeps about two slots per
/// token (power-of-two capacity, 75 % load), plus a `[String: TokenHash]` for ids — about 700 bytes a token before a
/// single string. Here each token is one fixed-size entry in a dense array (the fields a check reads and the token's
/// identity, 128 bytes); the fields most tokens leave empty (revocation details, metadata, rotation, parent) live in
/// a side table only for tokens that have them; and the two lookups are open-addressing tables of 4-byte entry
/// numbers kept at most half full (8 bytes a token each).
///
/// A value type like the rest of the state (copy-on-write arrays), so a snapshot's copy is as cheap as before.
/// Entry numbers are internal: freed entries are reused, and nothing outside the store sees them, so two stores
/// holding the same tokens compare equal whatever order built them (`==` compares tokens, and issue order per
/// license).
public struct TokenStore: Sendable {
    /// The fields of a token that every token has. An entry with an empty id is free.
    struct Entry: Sendable {
        var hash: TokenHash
        var id: String
        var licenseID: String
        var subject: String
        var scopes: [String]
        var issuedAt: UnixMillis
        var notBefore: UnixMillis
        var expiresAt: UnixMillis
        var revokedAt: UnixMillis
        var environment: TokenEnvironment
        /// The token has an entry in `extras`.
        var hasExtras: Bool
    }

    /// The fields most tokens leave empty.
    struct Extras: Sendable, Hashable {
        var revokeReason = ""
        var revokedBy = ""
        var parentID = ""
        var metadata: [KeyValue] = []
        var rotatedAt: UnixMillis = 0
        var previousSecretValidUntil: UnixMillis = 0
        var boundUIDs: [UInt32]?

        init(_ record: TokenRecord) {
            revokeReason = record.info.revokeReason
            revokedBy = record.info.revokedBy
            parentID = record.info.parentID
            metadata = record.info.metadata
            rotatedAt = record.info.rotatedAt
            previousSecretValidUntil = record.info.previousSecretValidUntil
            boundUIDs = record.boundUIDs
        }

        var isEmpty: Bool {
            revokeReason.isEmpty && revokedBy.isEmpty && parentID.isEmpty && metadata.isEmpty && rotatedAt == 0 && previousSecretValidUntil == 0 && boundUIDs == nil
        }
    }

    private var entries: [Entry] = []
    /// Free entry numbers, reused before the array grows.
    private var free: [UInt32] = []
    private var extras: [UInt32: Extras] = [:]
    private var byHash = EntryIndex()
    private var byID = EntryIndex()
    /// License id → its tokens' entry numbers, in issue order. The key's string is shared with the entries.
    private var byLicense: [String: [UInt32]] = [:]

    public init() {}

    /// How many tokens are stored.
    public var count: Int { entries.count - free.count }
    public var isEmpty: Bool { count == 0 }

    // MARK: - Reads

    /// The token whose current secret hashes to `hash`.
    public subscript(hash: TokenHash) -> TokenRecord? {
        entryNumber(hash: hash).map(record(at:))
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

    /// The ids of a license's tokens, in issue order.
    public func ids(license: String) -> [String] {
        (byLicense[license] ?? []).map { entries[Int($0)].id }
    }

    /// A license's tokens, in issue order.
    public func records(license: String) -> [TokenRecord] {
        (byLicense[license] ?? []).map { record(at: $0) }
    }

    public func hasTokens(license: String) -> Bool { byLicense[license] != nil }

    /// The licenses that have tokens (in no order).
    public var licenseIDs: [String] { Array(byLicense.keys) }

    /// Every token id (in no order).
    public var allIDs: [String] {
        var ids: [String] = []
        ids.reserveCapacity(count)
        for entry in entries where !entry.id.isEmpty { ids.append(entry.id) }
        return ids
    }

    /// How many tokens (of `license`, or of all) satisfy `predicate`, reading only the always-present fields: no
    /// record is built.
    public func count(license: String? = nil, where predicate: (_ revokedAt: UnixMillis, _ expiresAt: UnixMillis) -> Bool) -> Int {
        guard let license else {
            return entries.reduce(into: 0) { n, entry in
                if !entry.id.isEmpty, predicate(entry.revokedAt, entry.expiresAt) { n += 1 }
            }
        }
        return (byLicense[license] ?? []).reduce(into: 0) { n, number in
            let entry = entries[Int(number)]
            if predicate(entry.revokedAt, entry.expiresAt) { n += 1 }
        }
    }

    private func record(at number: UInt32) -> TokenRecord {
        let entry = entries[Int(number)]
        let more = entry.hasExtras ? extras[number] : nil
        let info = TokenInfo(
            id: entry.id, licenseID: entry.licenseID, subject: entry.subject, scopes: entry.scopes, issuedAt: entry.issuedAt,
            notBefore: entry.notBefore, expiresAt: entry.expiresAt, revokedAt: entry.revokedAt, revokeReason: more?.revokeReason ?? "",
            metadata: more?.metadata ?? [], environment: entry.environment, parentID: more?.parentID ?? "", revokedBy: more?.revokedBy ?? "",
            rotatedAt: more?.rotatedAt ?? 0, previousSecretValidUntil: more?.previousSecretValidUntil ?? 0)
        return TokenRecord(hash: entry.hash, info: info, boundUIDs: more?.boundUIDs)
    }

    private func entryNumber(hash: TokenHash) -> UInt32? {
        byHash.find(hashValue: Self.hashValue(hash)) { entries[Int($0)].hash == hash }
    }

    private func entryNumber(id: String) -> UInt32? {
        guard !id.isEmpty else { return nil }
        return byID.find(hashValue: id.hashValue) { entries[Int($0)].id == id }
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

    /// Stores a token, replacing the token with the same id if there is one (its entry, secret hash and place in
    /// its license's issue order are kept; the license is the one it was issued under). Returns true when the id
    /// was new.
    @discardableResult
    public mutating func insert(_ record: TokenRecord) -> Bool {
        if let number = entryNumber(id: record.info.id) {
            replace(at: number, with: record)
            return false
        }
        growIndexes(toHold: count + 1)
        let number: UInt32
        if let reused = free.popLast() {
            number = reused
        } else {
            number = UInt32(entries.count)
            entries.append(Entry(hash: record.hash, id: "", licenseID: "", subject: "", scopes: [], issuedAt: 0, notBefore: 0, expiresAt: 0, revokedAt: 0, environment: .live, hasExtras: false))
        }
        // Tokens of one license share the license id's storage (the key of their license's list).
        let licenseID: String
        if let index = byLicense.index(forKey: record.info.licenseID) {
            licenseID = byLicense.keys[index]
            byLicense.values[index].append(number)
        } else {
            licenseID = record.info.licenseID
            byLicense[licenseID] = [number]
        }
        store(record, licenseID: licenseID, at: number)
        byHash.insert(number, hashValue: Self.hashValue(record.hash))
        byID.insert(number, hashValue: record.info.id.hashValue)
        return true
    }

    /// Changes the token with this id in place (its secret hash included); returns false when there is none.
    @discardableResult
    public mutating func update(id: String, _ body: (inout TokenRecord) -> Void) -> Bool {
        guard let number = entryNumber(id: id) else { return false }
        var record = record(at: number)
        body(&record)
        precondition(record.info.id == id, "a token's id never changes")
        replace(at: number, with: record)
        return true
    }

    /// Removes the token with this id and returns it.
    @discardableResult
    public mutating func remove(id: String) -> TokenRecord? {
        guard let number = entryNumber(id: id) else { return nil }
        let removed = record(at: number)
        removeFromHashIndex(number, hash: removed.hash)
        var index = EntryIndex()
        swap(&index, &byID)
        index.remove(number, hashValue: id.hashValue) { entries[Int($0)].id.hashValue }
        swap(&index, &byID)
        let licenseID = entries[Int(number)].licenseID
        byLicense[licenseID]?.removeAll { $0 == number }
        if byLicense[licenseID]?.isEmpty == true { byLicense[licenseID] = nil }
        extras[number] = nil
        entries[Int(number)] = Entry(hash: TokenHash(0, 0, 0, 0), id: "", licenseID: "", subject: "", scopes: [], issuedAt: 0, notBefore: 0, expiresAt: 0, revokedAt: 0, environment: .live, hasExtras: false)
        free.append(number)
        return removed
    }

    private mutating func replace(at number: UInt32, with record: TokenRecord) {
        let old = entries[Int(number)]
        if old.hash != record.hash {
            removeFromHashIndex(number, hash: old.hash)
            entries[Int(number)].hash = record.hash
            byHash.insert(number, hashValue: Self.hashValue(record.hash))
        }
        store(record, licenseID: old.licenseID, at: number)
    }

    private mutating func store(_ record: TokenRecord, licenseID: String, at number: UInt32) {
        let more = Extras(record)
        let info = record.info
        entries[Int(number)] = Entry(
            hash: record.hash, id: info.id, licenseID: licenseID, subject: info.subject, scopes: info.scopes, issuedAt: info.issuedAt,
            notBefore: info.notBefore, expiresAt: info.expiresAt, revokedAt: info.revokedAt, environment: info.environment, hasExtras: !more.isEmpty)
        extras[number] = more.isEmpty ? nil : more
    }

    private mutating func growIndexes(toHold tokens: Int) {
        guard tokens * 2 > byHash.capacity else { return }
        var capacity = max(byHash.capacity, 16)
        while tokens * 2 > capacity { capacity *= 2 }
        let live = entries.indices.filter { !entries[$0].id.isEmpty }.map { UInt32($0) }
        var (hashes, ids) = (EntryIndex(), EntryIndex())
        hashes.rebuild(capacity: capacity, entries: live) { Self.hashValue(entries[Int($0)].hash) }
        ids.rebuild(capacity: capacity, entries: live) { entries[Int($0)].id.hashValue }
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

extension TokenStore: Equatable {
    /// The same tokens (every field but the observations), in the same issue order per license.
    public static func == (l: TokenStore, r: TokenStore) -> Bool {
        guard l.count == r.count, l.byLicense.count == r.byLicense.count else { return false }
        for (license, numbers) in l.byLicense {
            guard let other = r.byLicense[license], other.count == numbers.count else { return false }
            for (a, b) in zip(numbers, other) where l.record(at: a) != r.record(at: b) { return false }
        }
        return true
    }
}

/// An open-addressing table (linear probing, at most half full) of entry numbers, keyed by a hash the caller
/// computes from the entry. 4 bytes a slot; 0 marks an empty slot, so entry n is stored as n + 1. Removal shifts
/// the following run back instead of leaving tombstones, so lookups never slow down with churn.
struct EntryIndex: Sendable {
    private var slots: [UInt32] = []

    var capacity: Int { slots.count }

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
