/// The part of recovery the writer needs to continue where the files end.
struct RecoveryOutcome {
    var state: RecoveredState
    /// Live segments, ordered by first sequence (empty for a new directory).
    var segments: [UInt64]
    /// Snapshot files kept (the loaded one and any invalid newer ones).
    var snapshots: [UInt64]
    /// End of the last valid record of the last segment.
    var lastSegmentEnd: Int
    /// Bytes in live segments (headers included).
    var liveBytes: Int
}

/// Recovery, as specified in JOURNAL.md ("Recovery"): clean up leftovers, load the newest valid snapshot,
/// replay the segments after it, cut a torn tail, refuse to start on corruption.
enum JournalRecovery {
    static func recover(directory: String, options: JournalOptions, fileSystem fs: any JournalFileSystem) throws -> RecoveryOutcome {
        func path(_ name: String) -> String { directory + "/" + name }
        var report = RecoveryReport()

        try fs.createDirectory(directory)
        var names = try fs.listDirectory(directory)

        // 1. Files ending in .tmp were being written when the process stopped; they were never renamed into
        //    place, so nothing acknowledged depends on them.
        for name in names where name.hasSuffix(JournalFormat.temporarySuffix) {
            try fs.unlink(path(name))
            report.removedFiles.append(name)
        }
        names.removeAll { $0.hasSuffix(JournalFormat.temporarySuffix) }

        var segments = names.compactMap(JournalFormat.parseSegmentFileName).sorted()
        let snapshotSequences = names.compactMap(JournalFormat.parseSnapshotFileName).sorted(by: >)

        // 2. The newest snapshot whose checksum is valid.
        var snapshot: SnapshotFile?
        for sequence in snapshotSequences {
            let name = JournalFormat.snapshotFileName(sequence: sequence)
            switch JournalFormat.decodeSnapshotChecked(try fs.readFile(path(name))) {
            case .success(let file) where file.sequence == sequence:
                snapshot = file
            case .success(let file):
                report.invalidSnapshots.append("\(name): header names sequence \(file.sequence)")
            case .failure(let problem):
                report.invalidSnapshots.append("\(name): \(problem)")
            }
            if snapshot != nil { break }
        }
        let base = snapshot?.sequence ?? 0
        report.snapshotSequence = snapshot?.sequence

        // 3. The segment holding base + 1, and every later one.
        guard let startIndex = segments.lastIndex(where: { $0 <= base + 1 }) else {
            if segments.isEmpty && snapshotSequences.isEmpty {
                return RecoveryOutcome(
                    state: RecoveredState(snapshot: nil, records: [], report: report),
                    segments: [], snapshots: [], lastSegmentEnd: 0, liveBytes: 0
                )
            }
            var message = "no segment file holds sequence \(base + 1)"
            message += snapshot.map { " (the one after snapshot \(JournalFormat.snapshotFileName(sequence: $0.sequence)))" } ?? " (no valid snapshot)"
            if !report.invalidSnapshots.isEmpty { message += "; invalid snapshots: \(report.invalidSnapshots.joined(separator: ", "))" }
            if let first = segments.first { message += "; the oldest segment is \(JournalFormat.segmentFileName(firstSequence: first))" }
            throw JournalError.corruption("\(directory): \(message)")
        }

        var records: [JournalRecord] = []
        var expected = segments[startIndex]
        var lastSegmentEnd = 0
        var liveBytes = 0
        var tornTail: (name: String, validEnd: Int, bytesCut: Int)?
        for index in startIndex..<segments.count {
            let first = segments[index]
            let name = JournalFormat.segmentFileName(firstSequence: first)
            let isLast = index == segments.count - 1
            let bytes = try fs.readFile(path(name))
            report.segmentsRead += 1
            let validEnd: Int = try bytes.withUnsafeBytes { raw in
                switch JournalFormat.decodeSegmentHeader(raw) {
                case .failure(let problem):
                    throw JournalError.corruption("\(path(name)) at offset 0: invalid segment header: \(problem)")
                case .success(let headerFirst) where headerFirst != first || first == 0:
                    throw JournalError.corruption("\(path(name)) at offset 0: segment header names first sequence \(headerFirst)")
                case .success:
                    break
                }
                if first != expected {
                    throw JournalError.corruption(
                        "\(path(name)) at offset 0: sequence gap: the segment starts at \(first), expected \(expected)")
                }
                var offset = JournalFormat.segmentHeaderSize
                while offset < raw.count {
                    guard let header = JournalFormat.validRecord(at: offset, in: raw, maxRecordSize: options.maxRecordSize) else {
                        break
                    }
                    guard header.sequence == expected else {
                        throw JournalError.corruption(
                            "\(path(name)) at offset \(offset): sequence gap: record \(header.sequence), expected \(expected)")
                    }
                    if header.sequence > base {
                        let payload = Array(raw[(offset + JournalFormat.recordHeaderSize)..<header.end])
                        records.append(JournalRecord(sequence: header.sequence, type: header.type, payload: payload))
                    }
                    expected += 1
                    offset = header.end
                }
                if offset < raw.count {
                    // An invalid record. Torn tail only if it is in the last segment and nothing valid follows.
                    guard isLast else {
                        throw JournalError.corruption(
                            "\(path(name)) at offset \(offset): invalid record in a segment that is not the last (expected sequence \(expected))")
                    }
                    if let later = findValidRecord(after: offset, in: raw, minimumSequence: expected, maxRecordSize: options.maxRecordSize) {
                        throw JournalError.corruption(
                            "\(path(name)) at offset \(offset): invalid record (expected sequence \(expected)) followed by valid record \(later.sequence) at offset \(later.offset)")
                    }
                }
                return offset
            }
            if validEnd < bytes.count {
                tornTail = (name, validEnd, bytes.count - validEnd)
            }
            lastSegmentEnd = validEnd
            liveBytes += validEnd
        }
        guard expected - 1 >= base else {
            throw JournalError.corruption(
                "\(directory): the segments end at sequence \(expected - 1), before snapshot sequence \(base)")
        }
        if let tornTail {
            // Only now that nothing is corrupt: cut the last segment back to its last valid record, durably.
            let file = try fs.open(path(tornTail.name), mode: .readWrite)
            do {
                try fs.truncate(file, to: Int64(tornTail.validEnd))
                if options.fsync { try fs.fsync(file) }
            } catch {
                try? fs.close(file)
                throw error
            }
            try fs.close(file)
            report.tornTailRepaired = true
            report.truncatedBytes = tornTail.bytesCut
            report.repairedFile = tornTail.name
            report.repairedOffset = tornTail.validEnd
        }

        // 4. Make what we saw durable (a rename seen here may not have reached the disk yet), then remove what
        //    the loaded snapshot made obsolete: its cleanup was interrupted.
        if options.fsync { try fs.fsyncDirectory(directory) }
        var obsolete = segments[..<startIndex].map { JournalFormat.segmentFileName(firstSequence: $0) }
        obsolete += snapshotSequences.filter { $0 < base }.map { JournalFormat.snapshotFileName(sequence: $0) }
        for name in obsolete {
            try fs.unlink(path(name))
            report.removedFiles.append(name)
        }
        segments.removeFirst(startIndex)

        report.recordsReplayed = records.count
        report.lastSequence = expected - 1
        let snapshotPair = snapshot.map { (sequence: $0.sequence, payload: $0.payload) }
        return RecoveryOutcome(
            state: RecoveredState(snapshot: snapshotPair, records: records, report: report),
            segments: segments,
            snapshots: snapshotSequences.filter { $0 >= base },
            lastSegmentEnd: lastSegmentEnd,
            liveBytes: liveBytes
        )
    }

    /// Scans byte by byte for a valid record with a sequence of at least `minimumSequence`: its presence turns
    /// an invalid record into corruption rather than a torn tail.
    static func findValidRecord(
        after offset: Int, in raw: UnsafeRawBufferPointer, minimumSequence: UInt64, maxRecordSize: Int
    ) -> (offset: Int, sequence: UInt64)? {
        var position = offset + 1
        while raw.count - position >= JournalFormat.recordHeaderSize {
            // Cheap filters first: the sequence and the length, before any checksum.
            let sequence = JournalFormat.loadLE(UInt64.self, at: position + 9, in: raw)
            if sequence >= minimumSequence,
                let header = JournalFormat.validRecord(at: position, in: raw, maxRecordSize: maxRecordSize)
            {
                return (position, header.sequence)
            }
            position += 1
        }
        return nil
    }
}
