import NIOCore
import TollgateModel

/// The payload encoding of journal records and snapshots (`Protocol/JOURNAL.md`, "Record payloads"). It uses the
/// wire protocol's primitive types (big-endian integers, `u16`-prefixed strings, `u16`-counted lists) so one set
/// of readers serves both; long lists (revocations, usage batches, snapshot counters) use a `u32` count.
extension StateChange {
    public func encodePayload(into buffer: inout ByteBuffer) throws {
        switch self {
        case .planPut(let plan, let at):
            buffer.writeInteger(at)
            try buffer.writePlan(plan)
        case .licensePut(let spec, let at, let pastDueSince):
            buffer.writeInteger(at)
            buffer.writeInteger(pastDueSince)
            try buffer.writeLicenseSpec(spec)
        case .tokenIssued(let record):
            buffer.writeTokenHash(record.hash)
            try buffer.writeTokenInfo(record.info)
        case .tokensRevoked(let ids, let reason, let actor, let at):
            buffer.writeInteger(at)
            try buffer.writeWireString(reason)
            try buffer.writeWireString(actor)
            buffer.writeInteger(UInt32(ids.count))
            for id in ids { try buffer.writeWireString(id) }
        case .metered(let entry, let key):
            try buffer.writeUsage(entry)
            try buffer.writeWireString(key)
        case .consumed(let entries):
            buffer.writeInteger(UInt32(entries.count))
            for entry in entries { try buffer.writeUsage(entry) }
        case .countersRestored(let book):
            try buffer.writeUsageBook(book)
        case .orgPut(let spec, let at):
            buffer.writeInteger(at)
            try buffer.writeOrgSpec(spec)
        case .tokenRotated(let id, let newHash, let previousHash, let previousValidUntil, let at):
            buffer.writeInteger(at)
            try buffer.writeWireString(id)
            buffer.writeTokenHash(newHash)
            buffer.writeTokenHash(previousHash)
            buffer.writeInteger(previousValidUntil)
        case .rotationEnded(let id, let at):
            buffer.writeInteger(at)
            try buffer.writeWireString(id)
        case .creditsGranted(let pool, let owner, let amount, let reason, let at):
            buffer.writeInteger(at)
            buffer.writeInteger(pool.rawValue)
            try buffer.writeWireString(owner)
            buffer.writeInteger(amount)
            try buffer.writeWireString(reason)
        case .swept(let at, let tokenRetention, let keyRetention, let expiryWarning, let ledgerRetention):
            buffer.writeInteger(at)
            buffer.writeInteger(tokenRetention)
            buffer.writeInteger(keyRetention)
            buffer.writeInteger(expiryWarning)
            buffer.writeInteger(ledgerRetention)
        case .eventsRecorded(let events):
            buffer.writeInteger(UInt32(events.count))
            for event in events { try buffer.writeEvent(event) }
        case .fleetPosition(let sequence):
            buffer.writeInteger(sequence)
        case .fleetUsageSent:
            break
        case .fleetApplied(let sequence, let inner):
            buffer.writeInteger(sequence)
            buffer.writeInteger(inner.typeCode)
            let lengthIndex = buffer.writerIndex
            buffer.writeInteger(UInt32(0))
            try inner.encodePayload(into: &buffer)
            buffer.setInteger(UInt32(buffer.writerIndex - lengthIndex - 4), at: lengthIndex)
        case .objectDeleted(let kind, let id, let actor, let at):
            buffer.writeInteger(at)
            buffer.writeInteger(kind.rawValue)
            try buffer.writeWireString(id)
            try buffer.writeWireString(actor)
        case .billingApplied(let record):
            buffer.writeInteger(record.at)
            try buffer.writeWireString(record.eventID)
            try buffer.writeWireString(record.subscription)
            buffer.writeInteger(record.eventCreated)
            buffer.writeInteger(record.retention)
            buffer.writeInteger(record.pastDueSince)
            try buffer.writeLicenseSpec(record.license)
        case .subjectStatus(let subject, let active, let ids, let actor, let at):
            buffer.writeInteger(at)
            buffer.writeInteger(UInt8(active ? 1 : 0))
            try buffer.writeWireString(subject)
            try buffer.writeWireString(actor)
            buffer.writeInteger(UInt32(ids.count))
            for id in ids { try buffer.writeWireString(id) }
        case .rolePut(let role, let at):
            buffer.writeInteger(at)
            try buffer.writeIdentityRole(role)
        case .roleDeleted(let name, let actor, let at):
            buffer.writeInteger(at)
            try buffer.writeWireString(name)
            try buffer.writeWireString(actor)
        case .billingRestored(let seen, let subscriptions):
            buffer.writeInteger(UInt32(seen.count))
            for event in seen {
                try buffer.writeWireString(event.eventID)
                buffer.writeInteger(event.at)
            }
            buffer.writeInteger(UInt32(subscriptions.count))
            for subscription in subscriptions {
                try buffer.writeWireString(subscription.subscription)
                try buffer.writeWireString(subscription.licenseID)
                buffer.writeInteger(subscription.lastEventCreated)
            }
        }
    }

    public func encodedPayload() throws -> [UInt8] {
        // Metering's two records skip the generic encoder (the same bytes; see `UsagePayload`).
        switch self {
        case .metered(let entry, let key): return try UsagePayload.metered(entry, key: key)
        case .consumed(let entries): return try UsagePayload.consumed(entries)
        default: break
        }
        var buffer = ByteBufferAllocator().buffer(capacity: 128)
        try encodePayload(into: &buffer)
        return Array(buffer.readableBytesView)
    }

    /// Decodes a payload of record type `type`. Unknown types and malformed payloads throw: a record that passed
    /// the journal's checksum but does not decode means a bug or a newer format, and must not be skipped.
    public static func decode(type: UInt8, payload: ByteBuffer) throws -> StateChange {
        var r = WireReader(payload, context: "journal record type \(type)")
        let change: StateChange
        switch type {
        case 1:
            let at = try r.i64("at")
            change = .planPut(try r.plan(), at: at)
        case 2:
            let at = try r.i64("at")
            let pastDueSince = try r.i64("past_due_since")
            change = .licensePut(try r.licenseSpec(), at: at, pastDueSince: pastDueSince)
        case 3:
            let hash = try r.tokenHash()
            change = .tokenIssued(TokenRecord(hash: hash, info: try r.tokenInfo()))
        case 4:
            let at = try r.i64("at")
            let reason = try r.string("reason")
            let actor = try r.string("actor")
            let n = try r.longCount("token_ids", minimumElementSize: 2)
            var ids: [String] = []
            ids.reserveCapacity(n)
            for _ in 0..<n { ids.append(try r.string("token_id")) }
            change = .tokensRevoked(tokenIDs: ids, reason: reason, actor: actor, at: at)
        case 5:
            change = .metered(try r.usage(), idempotencyKey: try r.string("idempotency_key"))
        case 6:
            let n = try r.longCount("entries", minimumElementSize: UsageEntry.minimumEncodedSize)
            var entries: [UsageEntry] = []
            entries.reserveCapacity(n)
            for _ in 0..<n { entries.append(try r.usage()) }
            change = .consumed(entries)
        case 7:
            change = .countersRestored(try r.usageBook())
        case 8:
            let at = try r.i64("at")
            change = .orgPut(try r.orgSpec(), at: at)
        case 9:
            let at = try r.i64("at")
            change = .tokenRotated(tokenID: try r.string("token_id"), newHash: try r.tokenHash(), previousHash: try r.tokenHash(), previousValidUntil: try r.i64("previous_valid_until"), at: at)
        case 10:
            let at = try r.i64("at")
            change = .rotationEnded(tokenID: try r.string("token_id"), at: at)
        case 11:
            let at = try r.i64("at")
            change = .creditsGranted(pool: try r.code("pool", as: PoolLevel.self), owner: try r.string("owner"), amount: try r.u64("amount"), reason: try r.string("reason"), at: at)
        case 12:
            change = .swept(
                at: try r.i64("at"), tokenRetention: try r.i64("token_retention"), keyRetention: try r.i64("key_retention"),
                expiryWarning: try r.i64("expiry_warning"), ledgerRetention: try r.i64("ledger_retention"))
        case 13:
            var events: [LicensingEvent] = []
            for _ in 0..<(try r.longCount("events", minimumElementSize: 21)) { events.append(try r.event()) }
            change = .eventsRecorded(events)
        case 14:
            let at = try r.i64("at")
            change = .objectDeleted(try r.code("kind", as: PolicyObjectKind.self), id: try r.string("id"), actor: try r.string("actor"), at: at)
        case 15:
            let at = try r.i64("at")
            let eventID = try r.string("event_id")
            let subscription = try r.string("subscription")
            let created = try r.i64("event_created")
            let retention = try r.i64("retention")
            let pastDueSince = try r.i64("past_due_since")
            change = .billingApplied(
                BillingRecord(eventID: eventID, subscription: subscription, eventCreated: created, retention: retention, license: try r.licenseSpec(), pastDueSince: pastDueSince, at: at))
        case 16:
            var seen: [BillingSeenEvent] = []
            for _ in 0..<(try r.longCount("seen", minimumElementSize: 10)) { seen.append(BillingSeenEvent(eventID: try r.string("event_id"), at: try r.i64("at"))) }
            var subscriptions: [BillingSubscription] = []
            for _ in 0..<(try r.longCount("subscriptions", minimumElementSize: 12)) {
                subscriptions.append(BillingSubscription(subscription: try r.string("subscription"), licenseID: try r.string("license_id"), lastEventCreated: try r.i64("last_event_created")))
            }
            change = .billingRestored(seen: seen, subscriptions: subscriptions)
        case 17:
            let at = try r.i64("at")
            let active = try r.u8("active")
            guard active <= 1 else { throw WireError(.malformed, "journal record type 17: active must be 0 or 1") }
            let subject = try r.string("subject")
            let actor = try r.string("actor")
            var ids: [String] = []
            for _ in 0..<(try r.longCount("token_ids", minimumElementSize: 2)) { ids.append(try r.string("token_id")) }
            change = .subjectStatus(subject: subject, active: active == 1, tokenIDs: ids, actor: actor, at: at)
        case 18:
            let at = try r.i64("at")
            change = .rolePut(try r.identityRole(), at: at)
        case 19:
            let at = try r.i64("at")
            change = .roleDeleted(name: try r.string("name"), actor: try r.string("actor"), at: at)
        case 20:
            change = .fleetPosition(sequence: try r.u64("sequence"))
        case 21:
            let sequence = try r.u64("sequence")
            let innerType = try r.u8("type")
            // Only a change another host can have made: never a fleet record inside a fleet record, nor a
            // snapshot-only or host-local one (FLEET.md 3).
            guard StateChange.replicatedTypes.contains(innerType) else {
                throw WireError(.malformed, "journal record type 21 carries record type \(innerType), which the fleet log never holds")
            }
            let length = Int(try r.u32("length"))
            guard let inner = r.buffer.readSlice(length: length) else {
                throw WireError(.malformed, "journal record type 21: the inner record declares \(length) bytes but \(r.buffer.readableBytes) remain")
            }
            change = .fleetApplied(sequence: sequence, try StateChange.decode(type: innerType, payload: inner))
        case 22:
            change = .fleetUsageSent
        default:
            throw WireError(.malformed, "unknown journal record type \(type)")
        }
        try r.expectEnd()
        return change
    }
}

extension UsageEntry {
    /// Two empty strings (2 + 2), five 8-byte integers and a byte.
    static let minimumEncodedSize = 45
}

extension ByteBuffer {
    mutating func writeTokenHash(_ hash: TokenHash) {
        writeInteger(hash.bytes.0)
        writeInteger(hash.bytes.1)
        writeInteger(hash.bytes.2)
        writeInteger(hash.bytes.3)
    }

    mutating func writeUsage(_ entry: UsageEntry) throws {
        try writeWireString(entry.tokenID)
        try writeWireString(entry.meter)
        writeInteger(entry.quantity)
        writeInteger(entry.at)
        writeInteger(entry.overage)
        writeInteger(entry.includedCredits)
        writeInteger(entry.prepaidCredits)
        writeInteger(entry.creditPool.rawValue)
    }

    mutating func writePool(_ pool: PoolKey) throws {
        writeInteger(pool.level.rawValue)
        try writeWireString(pool.owner)
    }

    /// The sections of a usage book, each a `u32` count and its entries, in a fixed order (`Protocol/JOURNAL.md`).
    mutating func writeUsageBook(_ book: UsageBook) throws {
        let counters = book.allCounters
        writeInteger(UInt32(counters.count))
        for (key, value) in counters {
            try writePool(key.pool)
            try writeWireString(key.meter)
            writeInteger(key.period.rawValue)
            writeInteger(key.start)
            writeInteger(value)
        }
        writeInteger(UInt32(book.rolling.count))
        for (key, counter) in book.rolling {
            try writePool(key.pool)
            try writeWireString(key.meter)
            writeInteger(key.seconds)
            try writeWireCount(counter.slices.count)
            for slice in counter.slices {
                writeInteger(slice.index)
                writeInteger(slice.value)
            }
        }
        let ledger = book.allLedgerRows
        writeInteger(UInt32(ledger.count))
        for (key, value) in ledger {
            try writeWireString(key.licenseID)
            try writeWireString(key.tokenID)
            try writeWireString(key.meter)
            writeInteger(key.hourStart)
            writeInteger(value.quantity)
            writeInteger(value.overage)
        }
        writeInteger(UInt32(book.prepaid.count))
        for (pool, credits) in book.prepaid {
            try writePool(pool)
            writeInteger(credits.granted)
            writeInteger(credits.spent)
        }
        writeInteger(UInt32(book.includedSpent.count))
        for (key, value) in book.includedSpent {
            try writePool(key.pool)
            writeInteger(key.start)
            writeInteger(value)
        }
        writeInteger(UInt32(book.idempotencyKeys.count))
        for (key, at) in book.idempotencyKeys {
            try writeWireString(key)
            writeInteger(at)
        }
        writeInteger(UInt32(book.retiredSecrets.count))
        for (hash, retired) in book.retiredSecrets {
            writeTokenHash(hash)
            try writeWireString(retired.tokenID)
            writeInteger(retired.validUntil)
        }
        writeInteger(UInt32(book.events.count))
        for event in book.events { try writeEvent(event) }
        writeInteger(book.nextEventSequence)
    }
}

extension WireReader {
    mutating func tokenHash() throws -> TokenHash {
        TokenHash(try u64("hash"), try u64("hash"), try u64("hash"), try u64("hash"))
    }

    mutating func usage() throws -> UsageEntry {
        UsageEntry(
            tokenID: try string("token_id"), meter: try string("meter"), quantity: try u64("quantity"), at: try i64("at"),
            overage: try u64("overage"), includedCredits: try u64("included_credits"), prepaidCredits: try u64("prepaid_credits"),
            creditPool: try code("credit_pool", as: PoolLevel.self))
    }

    mutating func pool() throws -> PoolKey {
        let level = try code("pool", as: PoolLevel.self)
        return PoolKey(level, try string("owner"))
    }

    mutating func usageBook() throws -> UsageBook {
        var book = UsageBook()
        for _ in 0..<(try longCount("counters", minimumElementSize: 30)) {
            let key = CounterKey(pool: try pool(), meter: try string("meter"), period: try code("period", as: Period.self), start: try i64("start"))
            book.counters[WindowKey(key.period, key.start), default: [:]][key] = try u64("value")
        }
        for _ in 0..<(try longCount("rolling", minimumElementSize: 11)) {
            let key = RollingKey(pool: try pool(), meter: try string("meter"), seconds: try u32("seconds"))
            var counter = RollingCounter()
            for _ in 0..<(try count("slices", minimumElementSize: 16)) { counter.slices.append((try i64("index"), try u64("value"))) }
            book.rolling[key] = counter
        }
        for _ in 0..<(try longCount("ledger", minimumElementSize: 30)) {
            let key = LedgerKey(licenseID: try string("license_id"), tokenID: try string("token_id"), meter: try string("meter"), hourStart: try i64("hour_start"))
            book.ledger[key.hourStart, default: [:]][key] = LedgerValue(quantity: try u64("quantity"), overage: try u64("overage"))
        }
        for _ in 0..<(try longCount("prepaid", minimumElementSize: 19)) {
            book.prepaid[try pool()] = PrepaidCredits(granted: try u64("granted"), spent: try u64("spent"))
        }
        for _ in 0..<(try longCount("included_spent", minimumElementSize: 19)) {
            book.includedSpent[IncludedCreditsKey(pool: try pool(), start: try i64("start"))] = try u64("value")
        }
        for _ in 0..<(try longCount("idempotency_keys", minimumElementSize: 10)) {
            let key = try string("key")
            book.idempotencyKeys[key] = try i64("at")
        }
        for _ in 0..<(try longCount("retired_secrets", minimumElementSize: 42)) {
            let hash = try tokenHash()
            book.retiredSecrets[hash] = RetiredSecret(tokenID: try string("token_id"), validUntil: try i64("valid_until"))
        }
        for _ in 0..<(try longCount("events", minimumElementSize: 21)) { book.events.append(try event()) }
        book.nextEventSequence = try u64("next_event_sequence")
        return book
    }

    /// A `u32` element count, checked against the bytes left before anything is reserved.
    mutating func longCount(_ field: StaticString, minimumElementSize: Int) throws -> Int {
        let n = Int(try u32(field))
        guard n <= buffer.readableBytes / minimumElementSize else {
            throw WireError(.malformed, "\(context): field \(field) declares \(n) elements but \(buffer.readableBytes) bytes remain")
        }
        return n
    }
}

// MARK: - Snapshots

extension LicensingState {
    /// The snapshot of this state: a stream of changes that rebuild it through `apply(_:)`, each as
    /// `u8 type, u32 length, payload`. Idempotency keys older than `idempotencyRetention` are left out
    /// (pruned); counters of ended periods are pruned by the sweep, which is journaled.
    public func encodeSnapshot(now: UnixMillis, idempotencyRetention: Int64 = 86_400_000) throws -> [UInt8] {
        var buffer = ByteBufferAllocator().buffer(capacity: 1 << 16)
        func write(_ change: StateChange) throws {
            buffer.writeInteger(change.typeCode)
            let lengthIndex = buffer.writerIndex
            buffer.writeInteger(UInt32(0))
            try change.encodePayload(into: &buffer)
            buffer.setInteger(UInt32(buffer.writerIndex - lengthIndex - 4), at: lengthIndex)
        }
        for plan in plans.values.sorted(by: { $0.id < $1.id }) { try write(.planPut(plan, at: 0)) }
        for org in orgs.values.sorted(by: { $0.spec.id < $1.spec.id }) { try write(.orgPut(org.spec, at: org.updatedAt)) }
        for license in licenses.values.sorted(by: { $0.spec.id < $1.spec.id }) {
            try write(.licensePut(license.spec, at: license.updatedAt, pastDueSince: license.pastDueSince))
        }
        // Issue order per license is kept so that listings and counts match the live state; parents come before the
        // tokens derived from them because a child is always issued after its parent.
        for licenseID in tokens.licenseIDs.sorted() {
            for record in tokens.records(license: licenseID) { try write(.tokenIssued(record)) }
        }
        // Identity roles, then the names deleted through ROLE_DELETE (which the configuration must not seed again).
        for role in roles.values.sorted(by: { $0.name < $1.name }) { try write(.rolePut(role, at: 0)) }
        for name in deletedRoles.sorted() { try write(.roleDeleted(name: name, actor: "", at: 0)) }
        // Deprovisioned subjects after their tokens (whose revocations the token records carry already).
        for (subject, at) in deprovisioned.sorted(by: { $0.key < $1.key }) {
            try write(.subjectStatus(subject: subject, active: false, tokenIDs: [], actor: "", at: at))
        }
        // Housekeeping first, so that the snapshot holds only what is still needed.
        var book = self.book
        book.idempotencyKeys = book.idempotencyKeys.filter { $0.value >= now - idempotencyRetention }
        try write(.countersRestored(book))
        // Fleet mode: where this host is in the fleet log (FLEET.md 5.2); a single host's snapshot never holds it.
        if fleetPosition > 0 { try write(.fleetPosition(sequence: fleetPosition)) }
        // Only when there is something: a state that never saw a billing event writes the snapshot it always did.
        if !billing.seen.isEmpty || !billing.subscriptions.isEmpty {
            try write(.billingRestored(
                seen: billing.seen.map { BillingSeenEvent(eventID: $0.key, at: $0.value) }.sorted { ($0.at, $0.eventID) < ($1.at, $1.eventID) },
                subscriptions: billing.subscriptions.values.sorted { $0.subscription < $1.subscription }))
        }
        return Array(buffer.readableBytesView)
    }

    /// Rebuilds a state from `encodeSnapshot`'s bytes.
    public static func decodeSnapshot(_ bytes: [UInt8]) throws -> LicensingState {
        var buffer = ByteBufferAllocator().buffer(bytes: bytes)
        var state = LicensingState()
        // A first pass counts the tokens (type and length of each entry only), so that the token store is allocated
        // once at its final size instead of being regrown ~20 times while a million tokens load.
        var scan = buffer, tokenCount = 0
        let tokenType: UInt8 = 3  // StateChange.tokenIssued's type code (Protocol/JOURNAL.md)
        while let type = scan.readInteger(as: UInt8.self), let length = scan.readInteger(as: UInt32.self), scan.readableBytes >= Int(length) {
            if type == tokenType { tokenCount += 1 }
            scan.moveReaderIndex(forwardBy: Int(length))
        }
        state.tokens.reserveCapacity(tokenCount)
        while buffer.readableBytes > 0 {
            guard let type = buffer.readInteger(as: UInt8.self), let length = buffer.readInteger(as: UInt32.self),
                let payload = buffer.readSlice(length: Int(length))
            else { throw WireError(.malformed, "snapshot ends inside an entry") }
            state.apply(try StateChange.decode(type: type, payload: payload))
        }
        return state
    }
}
