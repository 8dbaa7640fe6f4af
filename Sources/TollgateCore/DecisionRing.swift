import Atomics
import TollgateModel

/// The decisions the core made lately, for whoever watches (WATCH, the sampled journald decision log): a bounded
/// broadcast ring of fixed-size slots, written by the core while it holds its lock and read by any number of
/// readers that never hold it.
///
/// Why this shape: a decision must cost its CHECK no allocation, no lock and no wait, however slow a reader is. So
/// the writer never looks at the readers: it overwrites the oldest slot, and a reader that fell more than
/// `capacity` decisions behind finds its events gone and counts them as dropped. Each slot is a seqlock over plain
/// words, every word an atomic (relaxed) access, so that a reader can copy a slot while the writer may be
/// overwriting it and tell afterwards (the slot's tag changed) without a data race in the memory model's sense.
///
/// Slot layout, in 64-bit words: 0 tag (2·sequence when written, 2·sequence − 1 while being written, 0 never),
/// 1 time (ms), 2 latency ns | source << 32 | reason << 40, 3 byte lengths (token, license, subject, route), then
/// the four strings at fixed word offsets, each at most its field's size (identifiers and subjects are bounded by
/// `Limits`; the route is cut to `DecisionEvent.maxRouteBytes`).
public final class DecisionRing: @unchecked Sendable {
    static let tokenOffset = 4, tokenBytes = 32
    static let licenseOffset = 8, licenseBytes = Limits.maxIdentifier
    static let subjectOffset = 24, subjectBytes = Limits.maxSubject
    static let routeOffset = 56, routeBytes = DecisionEvent.maxRouteBytes
    static let slotWords = 72

    /// Slots; a power of two.
    public let capacity: Int
    private let mask: UInt64
    /// swift-atomics' storage of one atomic word (the name `AtomicRepresentation` is ambiguous beside Synchronization).
    typealias Word = UnsafeAtomic<UInt64>.Storage
    private let words: UnsafeMutablePointer<Word>
    /// The sequence of the last decision written (0: none yet); stored with release once its slot is complete.
    private let published: UnsafeAtomic<UInt64>
    /// The writer's own copy of `published`; touched only under the core's lock.
    private var written: UInt64 = 0

    public init(capacity: Int) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "the ring's capacity is a power of two")
        self.capacity = capacity
        self.mask = UInt64(capacity - 1)
        let count = capacity * Self.slotWords
        words = UnsafeMutablePointer<Word>.allocate(capacity: count)
        words.initialize(repeating: Word(0), count: count)
        published = .create(0)
    }

    deinit {
        words.deinitialize(count: capacity * Self.slotWords)
        words.deallocate()
        _ = published.destroy()
    }

    @inline(__always)
    private func word(_ index: Int) -> UnsafeAtomic<UInt64> { UnsafeAtomic(at: words + index) }

    /// The sequence of the newest decision in the ring (0: none).
    public var newest: UInt64 { published.load(ordering: .acquiring) }

    // MARK: - Writing (the core, under its lock)

    /// Writes one decision. `scopes` are joined by spaces when `route` is nil. No allocation: the strings' bytes
    /// are copied word by word straight into the slot.
    func record(
        at: Int64, latencyNanoseconds: UInt32, source: DecisionEvent.Source, result: borrowing CheckResult,
        route: String?, scopes: [String]
    ) {
        let sequence = written &+ 1
        let base = Int(sequence & mask) * Self.slotWords
        let tag = word(base)
        tag.store(sequence &* 2 &- 1, ordering: .relaxed)
        atomicMemoryFence(ordering: .releasing)
        word(base + 1).store(UInt64(bitPattern: at), ordering: .relaxed)
        word(base + 2).store(UInt64(latencyNanoseconds) | UInt64(source.rawValue) << 32 | UInt64(result.reason.rawValue) << 40, ordering: .relaxed)
        let token = store(result.tokenID, at: base + Self.tokenOffset, limit: Self.tokenBytes)
        let license = store(result.licenseID, at: base + Self.licenseOffset, limit: Self.licenseBytes)
        let subject = store(result.subject, at: base + Self.subjectOffset, limit: Self.subjectBytes)
        let routeLength: Int
        if let route {
            routeLength = store(route, at: base + Self.routeOffset, limit: Self.routeBytes)
        } else {
            routeLength = storeJoined(scopes, at: base + Self.routeOffset, limit: Self.routeBytes)
        }
        word(base + 3).store(UInt64(token) | UInt64(license) << 8 | UInt64(subject) << 16 | UInt64(routeLength) << 32, ordering: .relaxed)
        tag.store(sequence &* 2, ordering: .releasing)
        written = sequence
        published.store(sequence, ordering: .releasing)
    }

    /// Copies at most `limit` bytes of `text` (cut at a character boundary) into the words from `first`; returns
    /// the bytes copied.
    private func store(_ text: String, at first: Int, limit: Int) -> Int {
        let copied = text.utf8.withContiguousStorageIfAvailable { bytes in
            storeBytes(UnsafeRawBufferPointer(bytes), at: first, limit: limit)
        }
        if let copied { return copied }
        // Not reached on Linux (every String is native UTF-8); a foreign string is copied first.
        return Array(text.utf8).withUnsafeBytes { storeBytes($0, at: first, limit: limit) }
    }

    private func storeBytes(_ bytes: UnsafeRawBufferPointer, at first: Int, limit: Int) -> Int {
        let length = Self.cut(bytes, limit: limit)
        var offset = 0
        var index = first
        while offset < length {
            var value: UInt64 = 0
            let count = min(8, length - offset)
            withUnsafeMutableBytes(of: &value) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count])) }
            word(index).store(value, ordering: .relaxed)
            offset += 8
            index += 1
        }
        return length
    }

    /// The scopes separated by spaces, through an 8-byte staging word (no joined string is built).
    private func storeJoined(_ scopes: [String], at first: Int, limit: Int) -> Int {
        var staged: UInt64 = 0
        var stagedCount = 0
        var total = 0
        var index = first
        func push(_ byte: UInt8) {
            withUnsafeMutableBytes(of: &staged) { $0[stagedCount] = byte }
            stagedCount += 1
            total += 1
            if stagedCount == 8 {
                word(index).store(staged, ordering: .relaxed)
                index += 1
                staged = 0
                stagedCount = 0
            }
        }
        outer: for (position, scope) in scopes.enumerated() {
            let length = scope.utf8.count + (position > 0 ? 1 : 0)
            // Whole scopes only: one that does not fit ends the text.
            guard total + length <= limit else { break outer }
            if position > 0 { push(UInt8(ascii: " ")) }
            for byte in scope.utf8 { push(byte) }
        }
        if stagedCount > 0 { word(index).store(staged, ordering: .relaxed) }
        return total
    }

    /// The length of the longest prefix of `bytes` of at most `limit` bytes that ends at a character boundary.
    static func cut(_ bytes: UnsafeRawBufferPointer, limit: Int) -> Int {
        guard bytes.count > limit else { return bytes.count }
        var length = limit
        while length > 0, bytes[length] & 0xC0 == 0x80 { length -= 1 }
        return length
    }

    // MARK: - Reading (any thread)

    /// The decision of `sequence`, or nil when its slot no longer holds it (overwritten before or while it was
    /// read). `scratch` is the reader's copy of one slot, reused from call to call.
    func read(_ sequence: UInt64, scratch: inout [UInt64]) -> DecisionEvent? {
        let base = Int(sequence & mask) * Self.slotWords
        let expected = sequence &* 2
        guard word(base).load(ordering: .acquiring) == expected else { return nil }
        let lengths = word(base + 3).load(ordering: .relaxed)
        let token = Int(lengths & 0xFF), license = Int(lengths >> 8 & 0xFF), subject = Int(lengths >> 16 & 0xFFFF)
        let route = Int(lengths >> 32 & 0xFF)
        // Lengths out of bounds: a slot torn by the writer (the tag check below would refuse it too).
        guard token <= Self.tokenBytes, license <= Self.licenseBytes, subject <= Self.subjectBytes, route <= Self.routeBytes else { return nil }
        scratch[1] = word(base + 1).load(ordering: .relaxed)
        scratch[2] = word(base + 2).load(ordering: .relaxed)
        copy(base, Self.tokenOffset, token, into: &scratch)
        copy(base, Self.licenseOffset, license, into: &scratch)
        copy(base, Self.subjectOffset, subject, into: &scratch)
        copy(base, Self.routeOffset, route, into: &scratch)
        atomicMemoryFence(ordering: .acquiring)
        guard word(base).load(ordering: .relaxed) == expected else { return nil }
        return scratch.withUnsafeBytes { raw in
            func text(_ offset: Int, _ count: Int) -> String {
                String(decoding: UnsafeRawBufferPointer(rebasing: raw[offset * 8..<offset * 8 + count]), as: UTF8.self)
            }
            let packed = scratch[2]
            return DecisionEvent(
                sequence: sequence, at: Int64(bitPattern: scratch[1]), latencyNanoseconds: UInt32(truncatingIfNeeded: packed),
                source: DecisionEvent.Source(rawValue: UInt8(truncatingIfNeeded: packed >> 32)) ?? .socket,
                reason: DenyReason(rawValue: UInt8(truncatingIfNeeded: packed >> 40)) ?? .none,
                tokenID: text(Self.tokenOffset, token), licenseID: text(Self.licenseOffset, license),
                subject: text(Self.subjectOffset, subject), route: text(Self.routeOffset, route))
        }
    }

    private func copy(_ base: Int, _ offset: Int, _ bytes: Int, into scratch: inout [UInt64]) {
        for index in offset..<offset + (bytes + 7) / 8 { scratch[index] = word(base + index).load(ordering: .relaxed) }
    }

    /// A reader starting after the newest decision. `onCancel` runs once, when it is cancelled or released.
    public func subscribe(licenseID: String = "", onCancel: @escaping @Sendable () -> Void = {}) -> DecisionSubscription {
        DecisionSubscription(ring: self, licenseID: licenseID, onCancel: onCancel)
    }

    /// A reader's scratch slot.
    static func makeScratch() -> [UInt64] { [UInt64](repeating: 0, count: slotWords) }
}

/// One reader of the ring: where it is, what it lost, and which license it wants. Used by one thread at a time
/// (a connection's event loop, the decision log's timer).
public final class DecisionSubscription: @unchecked Sendable {
    let ring: DecisionRing
    /// Empty: every license.
    public let licenseID: String
    /// The next sequence to read.
    private var next: UInt64
    /// Decisions lost because the ring overtook this reader (whatever their license).
    public private(set) var dropped: UInt64 = 0
    private var scratch = DecisionRing.makeScratch()
    private var onCancel: (@Sendable () -> Void)?

    init(ring: DecisionRing, licenseID: String, onCancel: @escaping @Sendable () -> Void) {
        self.ring = ring
        self.licenseID = licenseID
        self.next = ring.newest &+ 1
        self.onCancel = onCancel
    }

    deinit { cancel() }

    /// Up to `limit` of the decisions made since the last poll that match the filter, oldest first; the ones the
    /// ring overwrote before they were read are added to `dropped`.
    public func poll(limit: Int) -> [DecisionEvent] {
        let newest = ring.newest
        let capacity = UInt64(ring.capacity)
        if newest >= next, newest - next + 1 > capacity {
            // Overtaken: everything older than the ring's oldest slot is gone.
            let oldest = newest - capacity + 1
            dropped &+= oldest - next
            next = oldest
        }
        var events: [DecisionEvent] = []
        while next <= newest, events.count < limit {
            if let event = ring.read(next, scratch: &scratch) {
                if licenseID.isEmpty || event.licenseID == licenseID { events.append(event) }
            } else {
                dropped &+= 1
            }
            next &+= 1
        }
        return events
    }

    /// Stops watching: the core stops writing decisions once no subscription is left. Idempotent.
    public func cancel() {
        onCancel?()
        onCancel = nil
    }
}
