import TollgateModel

/// The payloads of the two records metering writes all the time — `.metered` (one per durable METER) and
/// `.consumed` (a batch of CHECK usage per flush) — encoded straight into the payload's array: the size is
/// computed first, the bytes stored through a pointer, one allocation, no `ByteBuffer` and no copy out of one.
/// The bytes are exactly `encodePayload(into:)`'s (`Protocol/JOURNAL.md`, record types 6 and 7; the codec tests
/// compare the two encoders on every field).
///
/// Why it is not the generic encoder: through `ByteBuffer` a `.metered` payload cost ~5.0 k instructions (each
/// integer write checks capacity and uniqueness, then the bytes were copied into an array) and each entry of a
/// `.consumed` batch ~2.8 k; measured with callgrind (`bash scripts/scale.sh --callgrind`, Benchmarks/SCALE.md,
/// issue 19).
enum UsagePayload {
    /// The payload of `.metered(entry, idempotencyKey: key)`.
    static func metered(_ entry: UsageEntry, key: String) throws -> [UInt8] {
        let size = try entrySize(entry) + stringSize(key)
        return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            var writer = Writer(buffer.baseAddress!)
            writer.entry(entry)
            writer.string(key)
            // Every byte written, none past the end: a wrong size would journal uninitialised bytes.
            precondition(writer.pointer == buffer.baseAddress! + size, "a .metered payload's size was miscounted")
            count = size
        }
    }

    /// The payload of `.consumed(entries)`: a `u32` count, then the entries.
    static func consumed(_ entries: [UsageEntry]) throws -> [UInt8] {
        var size = 4
        for entry in entries { size += try entrySize(entry) }
        return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            var writer = Writer(buffer.baseAddress!)
            writer.integer(UInt32(truncatingIfNeeded: entries.count))
            for entry in entries { writer.entry(entry) }
            precondition(writer.pointer == buffer.baseAddress! + size, "a .consumed payload's size was miscounted")
            count = size
        }
    }

    /// Two strings, five 64-bit integers and the credit pool's level.
    private static func entrySize(_ entry: UsageEntry) throws -> Int {
        try stringSize(entry.tokenID) + stringSize(entry.meter) + 5 * 8 + 1
    }

    /// A `u16` length and the UTF-8 bytes; longer than 65535 bytes throws, as `writeWireString` does.
    private static func stringSize(_ string: String) throws -> Int {
        let count = string.utf8.count
        guard count <= Int(UInt16.max) else { throw WireError(.valueTooLong, "a string of \(count) bytes exceeds 65535") }
        return 2 + count
    }

    /// Stores big-endian integers and wire strings at a moving pointer into memory sized for them beforehand.
    private struct Writer {
        var pointer: UnsafeMutablePointer<UInt8>

        init(_ pointer: UnsafeMutablePointer<UInt8>) { self.pointer = pointer }

        @inline(__always)
        mutating func integer<T: FixedWidthInteger>(_ value: T) {
            UnsafeMutableRawPointer(pointer).storeBytes(of: value.bigEndian, as: T.self)
            pointer += MemoryLayout<T>.size
        }

        @inline(__always)
        mutating func string(_ string: String) {
            var string = string
            string.withUTF8 { utf8 in
                integer(UInt16(truncatingIfNeeded: utf8.count))
                if let base = utf8.baseAddress { pointer.initialize(from: base, count: utf8.count) }
                pointer += utf8.count
            }
        }

        /// The fields in `writeUsage`'s order.
        @inline(__always)
        mutating func entry(_ entry: UsageEntry) {
            string(entry.tokenID)
            string(entry.meter)
            integer(entry.quantity)
            integer(entry.at)
            integer(entry.overage)
            integer(entry.includedCredits)
            integer(entry.prepaidCredits)
            integer(entry.creditPool.rawValue)
        }
    }
}
