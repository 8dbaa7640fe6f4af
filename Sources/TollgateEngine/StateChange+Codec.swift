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
        case .licensePut(let spec, let at):
            buffer.writeInteger(at)
            try buffer.writeLicenseSpec(spec)
        case .tokenIssued(let record):
            buffer.writeInteger(record.hash.bytes.0)
            buffer.writeInteger(record.hash.bytes.1)
            buffer.writeInteger(record.hash.bytes.2)
            buffer.writeInteger(record.hash.bytes.3)
            try buffer.writeTokenInfo(record.info)
        case .tokensRevoked(let ids, let reason, let at):
            buffer.writeInteger(at)
            try buffer.writeWireString(reason)
            buffer.writeInteger(UInt32(ids.count))
            for id in ids { try buffer.writeWireString(id) }
        case .metered(let entry, let key):
            try buffer.writeUsage(entry)
            try buffer.writeWireString(key)
        case .consumed(let entries):
            buffer.writeInteger(UInt32(entries.count))
            for entry in entries { try buffer.writeUsage(entry) }
        case .countersRestored(let counters):
            buffer.writeInteger(UInt32(counters.licenseUsage.count))
            for (key, value) in counters.licenseUsage {
                try buffer.writeWireString(key.licenseID)
                try buffer.writeWireString(key.meter)
                buffer.writeInteger(key.period.rawValue)
                buffer.writeInteger(key.periodStart)
                buffer.writeInteger(value)
            }
            buffer.writeInteger(UInt32(counters.tokenUsage.count))
            for (key, value) in counters.tokenUsage {
                try buffer.writeWireString(key.tokenID)
                try buffer.writeWireString(key.meter)
                buffer.writeInteger(key.monthStart)
                buffer.writeInteger(value)
            }
            buffer.writeInteger(UInt32(counters.idempotencyKeys.count))
            for (key, at) in counters.idempotencyKeys {
                try buffer.writeWireString(key)
                buffer.writeInteger(at)
            }
        }
    }

    public func encodedPayload() throws -> [UInt8] {
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
            change = .licensePut(try r.licenseSpec(), at: at)
        case 3:
            let hash = TokenHash(try r.u64("hash"), try r.u64("hash"), try r.u64("hash"), try r.u64("hash"))
            change = .tokenIssued(TokenRecord(hash: hash, info: try r.tokenInfo()))
        case 4:
            let at = try r.i64("at")
            let reason = try r.string("reason")
            let n = try r.longCount("token_ids", minimumElementSize: 2)
            var ids: [String] = []
            ids.reserveCapacity(n)
            for _ in 0..<n { ids.append(try r.string("token_id")) }
            change = .tokensRevoked(tokenIDs: ids, reason: reason, at: at)
        case 5:
            change = .metered(try r.usage(), idempotencyKey: try r.string("idempotency_key"))
        case 6:
            // The smallest entry: two empty strings (2 + 2) and two 8-byte integers.
            let n = try r.longCount("entries", minimumElementSize: 20)
            var entries: [UsageEntry] = []
            entries.reserveCapacity(n)
            for _ in 0..<n { entries.append(try r.usage()) }
            change = .consumed(entries)
        case 7:
            var licenseUsage: [(key: LicenseUsageKey, value: UInt64)] = []
            for _ in 0..<(try r.longCount("license_usage", minimumElementSize: 21)) {
                let key = LicenseUsageKey(licenseID: try r.string("license_id"), meter: try r.string("meter"),
                    period: try r.code("period", as: Period.self), periodStart: try r.i64("period_start"))
                licenseUsage.append((key, try r.u64("value")))
            }
            var tokenUsage: [(key: TokenUsageKey, value: UInt64)] = []
            for _ in 0..<(try r.longCount("token_usage", minimumElementSize: 20)) {
                let key = TokenUsageKey(tokenID: try r.string("token_id"), meter: try r.string("meter"), monthStart: try r.i64("month_start"))
                tokenUsage.append((key, try r.u64("value")))
            }
            var keys: [(key: String, at: UnixMillis)] = []
            for _ in 0..<(try r.longCount("idempotency_keys", minimumElementSize: 10)) {
                keys.append((try r.string("key"), try r.i64("at")))
            }
            change = .countersRestored(CounterSnapshot(licenseUsage: licenseUsage, tokenUsage: tokenUsage, idempotencyKeys: keys))
        default:
            throw WireError(.malformed, "unknown journal record type \(type)")
        }
        try r.expectEnd()
        return change
    }
}

extension ByteBuffer {
    mutating func writeUsage(_ entry: UsageEntry) throws {
        try writeWireString(entry.tokenID)
        try writeWireString(entry.meter)
        writeInteger(entry.quantity)
        writeInteger(entry.at)
    }
}

extension WireReader {
    mutating func usage() throws -> UsageEntry {
        UsageEntry(tokenID: try string("token_id"), meter: try string("meter"), quantity: try u64("quantity"), at: try i64("at"))
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
    /// `u8 type, u32 length, payload`. Hourly and daily usage counters of periods that ended before
    /// `now - retention`, and idempotency keys older than `idempotencyRetention`, are left out (pruned).
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
        for license in licenses.values.sorted(by: { $0.spec.id < $1.spec.id }) { try write(.licensePut(license.spec, at: license.updatedAt)) }
        // Issue order per license is kept so that listings and counts match the live state.
        for licenseID in licenseTokens.keys.sorted() {
            for id in licenseTokens[licenseID]! {
                if let record = token(id: id) { try write(.tokenIssued(record)) }
            }
        }
        let cutoff = now - 2 * UTCCalendar.millisPerDay
        let licenseUsage = self.licenseUsage.filter { $0.key.period == .month || $0.key.periodStart >= cutoff }.map { (key: $0.key, value: $0.value) }
        let tokenUsage = self.tokenUsage.map { (key: $0.key, value: $0.value) }
        let keys = idempotencyKeys.filter { $0.value >= now - idempotencyRetention }.map { (key: $0.key, at: $0.value) }
        try write(.countersRestored(CounterSnapshot(licenseUsage: licenseUsage, tokenUsage: tokenUsage, idempotencyKeys: keys)))
        return Array(buffer.readableBytesView)
    }

    /// Rebuilds a state from `encodeSnapshot`'s bytes.
    public static func decodeSnapshot(_ bytes: [UInt8]) throws -> LicensingState {
        var buffer = ByteBufferAllocator().buffer(bytes: bytes)
        var state = LicensingState()
        while buffer.readableBytes > 0 {
            guard let type = buffer.readInteger(as: UInt8.self), let length = buffer.readInteger(as: UInt32.self),
                let payload = buffer.readSlice(length: Int(length))
            else { throw WireError(.malformed, "snapshot ends inside an entry") }
            state.apply(try StateChange.decode(type: type, payload: payload))
        }
        return state
    }
}
