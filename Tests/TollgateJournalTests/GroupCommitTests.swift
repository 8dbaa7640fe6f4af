import Foundation
import TollgateJournal
import XCTest

final class GroupCommitTests: JournalTestCase {
    /// While the writer is held inside an fdatasync, 200 durable appends from 4 threads queue up; once released,
    /// they are written with one write call and made durable with one more fdatasync.
    func testConcurrentDurableAppendsShareOneFsync() throws {
        let dir = self.makeDirectory()
        let fs = FaultInjectingFileSystem()
        let (journal, _) = try Journal.open(directory: dir, fileSystem: fs)
        let before = journal.statistics
        let entered = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        fs.gateNextFdatasync {
            entered.signal()
            release.wait()
        }
        let completed = LockedList<UInt64>()
        let done = DispatchGroup()
        done.enter()
        journal.append(type: 1, payload: [0], durability: .durable) {
            if case .success(let s) = $0 { completed.append(s) }
            done.leave()
        }
        XCTAssertEqual(entered.wait(timeout: .now() + 10), .success)

        DispatchQueue.concurrentPerform(iterations: 4) { thread in
            for i in 0..<50 {
                done.enter()
                journal.append(type: 1, payload: [UInt8(thread), UInt8(i)], durability: .durable) {
                    if case .success(let s) = $0 { completed.append(s) }
                    done.leave()
                }
            }
        }
        release.signal()
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)

        let stats = journal.statistics
        let records = 201
        XCTAssertEqual(completed.all.count, records)
        XCTAssertEqual(completed.all, (1...UInt64(records)).map { $0 }, "completions run in sequence order")
        XCTAssertEqual(stats.batches - before.batches, 2)
        XCTAssertEqual(stats.fsyncCount - before.fsyncCount, 2)
        XCTAssertLessThan(stats.batches, records)
        XCTAssertEqual(stats.durableSequence, UInt64(records))
        try journal.close()

        let (reopened, state) = try Journal.open(directory: dir)
        XCTAssertEqual(state.records.count, records)
        try reopened.close()
    }

    /// The batch observer samples group commits: the first, then one in `batchObserverEvery`, each with its fsync
    /// timed; the others pay no clock read.
    func testTheBatchObserverSeesTheFirstCommitThenOneInN() throws {
        let dir = self.makeDirectory()
        let seen = LockedList<JournalBatch>()
        var options = JournalOptions(fsync: true)
        options.batchObserverEvery = 4
        options.batchObserver = { seen.append($0) }
        let (journal, _) = try Journal.open(directory: dir, options: options)
        // One durable append at a time: nine group commits of one record each.
        for i in 0..<9 {
            let done = DispatchSemaphore(value: 0)
            journal.append(type: 1, payload: [UInt8(i)], durability: .durable) { _ in done.signal() }
            XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        }
        XCTAssertEqual(journal.statistics.batches, 9)
        XCTAssertEqual(seen.all.count, 3, "commits 1, 5 and 9")
        XCTAssertTrue(seen.all.allSatisfy { $0.records == 1 && $0.syncNanoseconds != nil })
        try journal.close()
    }
}
