import ArgumentParser
import Dispatch
import Foundation
import TollgateClient
import TollgateModel
import TollgateProtocol
import TollgateTop

#if canImport(Glibc)
import Glibc
#endif

/// `tollgate top`: the daemon's decisions live, from a WATCH stream on the admin socket. The adding up and the
/// screen are `TollgateTop`'s (pure, tested); this is the terminal I/O around them.
struct Top: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Watch live decisions: requests per second, denials by reason, busiest licenses and tokens, latency, journal.",
        discussion: """
            Redraws the screen every second until interrupted (Ctrl-C). With --json, prints every decision as one JSON \
            object per line instead (allows too), and {"dropped": N} whenever the count of decisions this watcher lost \
            grows (a watcher that does not keep up loses the oldest decisions; the daemon never waits for it).
            """)
    @OptionGroup var global: GlobalOptions
    @Option(help: "Only this license's decisions.") var license: String = ""
    @Option(help: "Seconds of decisions the rates and percentiles cover.") var window: Int = 5
    @Option(help: "Rows shown in each of the license and token tables.") var rows: Int = 10
    @Option(help: "Stop after this many screens (or, with --json, decisions); 0: until interrupted.") var count: Int = 0

    func validate() throws {
        guard (1...300).contains(window) else { throw ValidationError("--window must be 1 to 300 seconds") }
        guard rows >= 1 else { throw ValidationError("--rows must be 1 or more") }
        guard count >= 0 else { throw ValidationError("--count must be 0 or more") }
    }

    func run() async throws {
        let watcher = try await wrap { try await global.connect(admin: true) }
        let stream = watcher.watch(licenseID: license)
        if global.json { return try await printLines(stream) }
        let stats = try await wrap { try await global.connect(admin: true) }
        let state = TopState(window: DecisionWindow(seconds: window))
        let reader = Task {
            do {
                for try await batch in stream { await state.add(batch, nowMillis: monotonicMillis()) }
                await state.fail("the daemon ended the stream")
            } catch {
                await state.fail("\(error)")
            }
        }
        defer { reader.cancel() }
        var shown = 0
        while count == 0 || shown < count {
            // Pacing a screen, not waiting for a condition: the screen is redrawn once a second whatever happens.
            try await Task.sleep(nanoseconds: 1_000_000_000)
            if let failure = await state.failure { throw CLIError(.server(.unavailable), "the decision stream stopped: \(failure)") }
            let journal = (try? await stats.stats()).flatMap(TopScreen.Journal.init(stats:))
            let summary = await state.summary(nowMillis: monotonicMillis(), top: rows)
            let size = terminalSize()
            let lines = TopScreen.render(summary, journal: journal, license: license, windowSeconds: window, rows: size.rows - 1, columns: size.columns)
            // Home, clear, draw.
            print("\u{1B}[H\u{1B}[2J" + lines.joined(separator: "\n"))
            fflush(nil)  // every stream: standard output is the one written
            shown += 1
        }
        try? await watcher.stopWatching()
        await watcher.close()
        await stats.close()
    }

    /// `--json`: every decision as a JSON line, and the drop count when it grows.
    private func printLines(_ stream: AsyncThrowingStream<WatchBatch, Error>) async throws {
        var dropped: UInt64 = 0
        var printed = 0
        try await wrap {
            for try await batch in stream {
                for event in batch.events {
                    print(event.jsonLine)
                    printed += 1
                    if count > 0, printed >= count { break }
                }
                if batch.dropped > dropped {
                    dropped = batch.dropped
                    print("{\"dropped\":\(dropped)}")
                }
                fflush(nil)  // every stream: standard output is the one written
                if count > 0, printed >= count { return }
            }
        }
    }

    private func monotonicMillis() -> Int64 { Int64(DispatchTime.now().uptimeNanoseconds / 1_000_000) }

    private func terminalSize() -> (rows: Int, columns: Int) {
        var size = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_row > 0, size.ws_col > 0 {
            return (Int(size.ws_row), Int(size.ws_col))
        }
        return (40, 100)
    }
}

/// The window, fed by the stream's reader and read by the screen's loop.
actor TopState {
    private var window: DecisionWindow
    private(set) var failure: String?

    init(window: DecisionWindow) { self.window = window }

    func add(_ batch: WatchBatch, nowMillis: Int64) { window.add(batch.events, dropped: batch.dropped, nowMillis: nowMillis) }
    func fail(_ reason: String) { if failure == nil { failure = reason } }
    func summary(nowMillis: Int64, top: Int) -> TopSummary { window.summary(nowMillis: nowMillis, top: top) }
}
