import TollgateJournal

/// Encodes `count` records of a METER-sized payload one after another into one buffer, as the journal's writer
/// does for a group commit, without reserving the total first (the writer does; this measures the encoder's own
/// growth, which was quadratic). `@inline(never)` so that callgrind can count this function alone.
@inline(never)
func encodeBatch(_ count: Int, payload: [UInt8]) -> Int {
    var buffer: [UInt8] = []
    for sequence in 0..<count {
        JournalFormat.encodeRecord(sequence: UInt64(sequence), type: 5, payload: payload, into: &buffer)
    }
    return buffer.count
}

let count = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 1000 : 1000
let payload = [UInt8](repeating: 0x5A, count: 96)
print(encodeBatch(count, payload: payload))
