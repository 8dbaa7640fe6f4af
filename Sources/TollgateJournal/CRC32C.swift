/// CRC-32C (Castagnoli): reflected polynomial 0x82F63B78, initial value 0xFFFFFFFF, final XOR 0xFFFFFFFF.
///
/// The same checksum as iSCSI, ext4, LevelDB and etcd's WAL; `CRC32C.checksum("123456789")` is `0xE3069283`.
/// Implemented with slicing-by-8 so that checksumming a 16 MiB record costs milliseconds, not tens of them.
public enum CRC32C {
    /// The checksum of `bytes`.
    public static func checksum<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        Self.update(0, bytes)
    }

    /// Extends `crc` (a finished CRC-32C of earlier bytes, or 0 for none) with `bytes`.
    public static func update<Bytes: Sequence>(_ crc: UInt32, _ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        if let result = bytes.withContiguousStorageIfAvailable({ Self.update(crc, UnsafeRawBufferPointer($0)) }) {
            return result
        }
        return Self.update(crc, Array(bytes))
    }

    /// Extends `crc` (a finished CRC-32C of earlier bytes, or 0 for none) with the bytes in `buffer`.
    public static func update(_ crc: UInt32, _ buffer: UnsafeRawBufferPointer) -> UInt32 {
        var c = ~crc
        var index = 0
        let count = buffer.count
        let t = Self.tables
        t.withUnsafeBufferPointer { table in
            while count - index >= 8 {
                let lo = UInt32(buffer[index]) | UInt32(buffer[index + 1]) << 8
                    | UInt32(buffer[index + 2]) << 16 | UInt32(buffer[index + 3]) << 24
                let hi = UInt32(buffer[index + 4]) | UInt32(buffer[index + 5]) << 8
                    | UInt32(buffer[index + 6]) << 16 | UInt32(buffer[index + 7]) << 24
                let x = c ^ lo
                c = table[7 * 256 + Int(x & 0xFF)] ^ table[6 * 256 + Int((x >> 8) & 0xFF)]
                    ^ table[5 * 256 + Int((x >> 16) & 0xFF)] ^ table[4 * 256 + Int(x >> 24)]
                    ^ table[3 * 256 + Int(hi & 0xFF)] ^ table[2 * 256 + Int((hi >> 8) & 0xFF)]
                    ^ table[1 * 256 + Int((hi >> 16) & 0xFF)] ^ table[Int(hi >> 24)]
                index += 8
            }
            while index < count {
                c = table[Int((c ^ UInt32(buffer[index])) & 0xFF)] ^ (c >> 8)
                index += 1
            }
        }
        return ~c
    }

    /// Eight 256-entry tables, flattened: table k maps a byte to its CRC contribution k bytes further on.
    private static let tables: [UInt32] = {
        var tables = [UInt32](repeating: 0, count: 8 * 256)
        for n in 0..<256 {
            var c = UInt32(n)
            for _ in 0..<8 {
                c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1
            }
            tables[n] = c
        }
        for n in 0..<256 {
            var c = tables[n]
            for k in 1..<8 {
                c = tables[Int(c & 0xFF)] ^ (c >> 8)
                tables[k * 256 + n] = c
            }
        }
        return tables
    }()
}
