// swift-tools-version:6.0
import PackageDescription

/// Tollgate: a local enforcement point for API tokens and licenses.
///
/// Module map (one job each):
/// - `TollgateModel`: the shared vocabulary (plain values) and the binary primitives both codecs use.
/// - `TollgateProtocol`: the wire codec (frames, messages). No I/O, no clocks.
/// - `TollgateEngine`: the licensing engine. Pure values, injected time, every change applied by `apply(_:)`.
/// - `TollgateJournal`: the write-ahead file: record codec, segments, fsync, snapshots, replay, repair.
/// - `TollgateSystemd`: systemd glue (notify, socket activation, journald log handler, watchdog) over libsystemd.
/// - `TollgateCore`: the application core. The `Operation` table (who may call, answered at once or after the
///   journal, handler) and `ApplicationCore`, which every front end calls with a request and its `Caller`.
/// - `TollgateServer`: the binary protocol's front end: SwiftNIO over AF_UNIX, frames in, the core's answers out,
///   in request order, with backpressure, peer credentials and timeouts. It decides no policy.
/// - `TollgateHTTP`: the HTTP front end (forward auth for reverse proxies): NIOHTTP1 over AF_UNIX and loopback TCP,
///   an HTTP request into the core's CHECK and the result back into a status and headers. It decides no policy.
///   Swift 6 language mode.
/// - `TollgateMetrics`: Prometheus metrics (swift-metrics over swift-prometheus) folded from the counters the core,
///   the journal and the front ends keep, and the readiness verdict; served by the HTTP listener.
/// - `TollgateBilling`: the billing system's side, pure: Stripe's webhook signature and its events mapped to the
///   engine's `BillingUpdate`. No I/O, no clock (the time is an argument).
/// - `CMemory`: glibc's `malloc_trim`, to give a burst's freed heap back.
/// - `TollgateFleet`: fleet mode (issue 18): the change log in PostgreSQL (postgres-nio), the pure rules it follows
///   (sequence gaps, the revocation horizon) and the replicator the core commits through. Off by default.
/// - `TollgateClient`: the client library used by the CLI, the tests and the benchmark.
/// - `TollgateDaemon`: the composition root shared by `tollgated` and the tests.
/// The request path (model, codec, engine, core, server) is built without dynamic exclusivity checks in release builds: they cost
/// about 8 k instructions per CHECK (`swift_beginAccess` on every class property and global touched), measured with
/// `scripts/scale.sh --callgrind` (Benchmarks/SCALE.md). Debug builds, and so the tests, keep them, and so do the
/// sanitizer runs: an overlapping access is still caught there.
///
/// The flag is an unsafe flag, and SwiftPM refuses a product whose targets carry one to a package that depends on
/// this one by version. So it is set only when the environment asks for it (`TOLLGATE_UNCHECKED_EXCLUSIVITY=1`):
/// the Makefile and the scripts that build the daemon (`make run`, `make release`, `make deb`, benchmarks,
/// `scripts/install.sh`) do; a package that depends on TollgateClient does not, and gets a manifest without unsafe
/// flags (Tests/consumer/check.sh builds one). A plain `swift build -c release` without it builds a correct daemon
/// that spends ~1.8 k more instructions per CHECK (Benchmarks/RESULTS.md).
let uncheckedExclusivity = Context.environment["TOLLGATE_UNCHECKED_EXCLUSIVITY"] == "1"
let hotPathSettings: [SwiftSetting] =
    uncheckedExclusivity ? [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))] : []

let package = Package(
    name: "tollgate",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tollgated", targets: ["tollgated"]),
        .executable(name: "tollgate", targets: ["tollgate"]),
        .library(name: "TollgateClient", targets: ["TollgateClient"]),
        // Libraries exposed for the fuzz package in Fuzz/ (it depends on this package by path).
        .library(name: "TollgateModel", targets: ["TollgateModel"]),
        .library(name: "TollgateProtocol", targets: ["TollgateProtocol"]),
        .library(name: "TollgateEngine", targets: ["TollgateEngine"]),
        .library(name: "TollgateJournal", targets: ["TollgateJournal"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        // Prometheus metrics (issue 15): the swift-metrics API and swift-prometheus as its backend.
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // Fleet mode (issue 18): PostgreSQL's wire protocol, so that no PostgreSQL code of ours speaks it.
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        // The codec keeps the hot-path flag: without it a CHECK costs 7 % more instructions (29 831 -> 31 631,
        // callgrind, Benchmarks/RESULTS.md), most of it ByteBuffer accesses in frame cutting and CHECK decoding; marking
        // those @inlinable did not move them into the server's module (31 893). The flag comes from the environment
        // (see hotPathSettings), so that a package depending on this one by version may use TollgateClient.
        .target(
            name: "TollgateModel",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: hotPathSettings
        ),
        .target(
            name: "TollgateProtocol",
            dependencies: ["TollgateModel", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: hotPathSettings
        ),
        .target(
            name: "TollgateEngine",
            dependencies: [
                "TollgateModel",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: hotPathSettings
        ),
        .target(name: "TollgateJournal"),
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        .target(
            name: "TollgateSystemd",
            dependencies: [
                "CSystemd",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        // The application core: the operation table and `ApplicationCore`, which every front end calls.
        .target(
            name: "TollgateCore",
            dependencies: [
                "TollgateModel", "TollgateProtocol", "TollgateEngine", "TollgateJournal",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: hotPathSettings
        ),
        // glibc's malloc_trim: heap given back after a burst (see `MemoryTrimPolicy`).
        .target(name: "CMemory"),
        // The binary protocol's front end: SwiftNIO over AF_UNIX, translating frames into the core's requests.
        .target(
            name: "TollgateServer",
            dependencies: [
                "TollgateCore", "CMemory", "TollgateModel", "TollgateProtocol", "TollgateEngine", "TollgateJournal",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: hotPathSettings
        ),
        // Stripe webhooks as values: the signature (swift-crypto's HMAC) and the event → license mapping.
        .target(
            name: "TollgateBilling",
            dependencies: ["TollgateModel", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // The HTTP front end: NIOHTTP1 comes with swift-nio (no new package, no extra build time).
        .target(
            name: "TollgateHTTP",
            dependencies: [
                "TollgateCore", "TollgateServer", "TollgateModel", "TollgateProtocol", "TollgateEngine", "TollgateBilling",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // A request path like the binary one: no dynamic exclusivity checks in release builds (see hotPathSettings).
            swiftSettings: [.swiftLanguageMode(.v6)] + hotPathSettings
        ),
        // Prometheus metrics and health: the core's, the journal's and the front ends' counters folded into
        // swift-metrics instruments at scrape time, swift-prometheus's exposition, readiness. No socket of its own:
        // the HTTP listener serves it.
        .target(
            name: "TollgateMetrics",
            dependencies: [
                "TollgateCore", "TollgateJournal", "TollgateModel", "TollgateBuildInfo",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // Fleet mode: the only target that links postgres-nio; the pure rules in it are tested without PostgreSQL.
        .target(
            name: "TollgateFleet",
            dependencies: [
                "TollgateCore", "TollgateEngine", "TollgateJournal", "TollgateModel",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .target(
            name: "TollgateClient",
            dependencies: [
                "TollgateModel", "TollgateProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .target(
            name: "TollgateDaemon",
            dependencies: [
                "TollgateCore", "TollgateServer", "TollgateHTTP", "TollgateMetrics", "TollgateBilling", "TollgateSystemd", "TollgateFleet", "TollgateEngine", "TollgateJournal", "TollgateProtocol", "TollgateModel",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        // `--version` of both binaries: the version, and the git commit recorded by the plugin before each build.
        .plugin(name: "BuildInfoPlugin", capability: .buildTool(), path: "Plugins/BuildInfoPlugin"),
        .target(name: "TollgateBuildInfo", plugins: ["BuildInfoPlugin"]),
        .executableTarget(
            name: "tollgated",
            dependencies: [
                "TollgateDaemon", "TollgateHTTP", "TollgateSystemd", "TollgateBuildInfo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "tollgate",
            dependencies: [
                // TollgateEngine: `usage show` computes quota windows with the engine's own calendar.
                "TollgateClient", "TollgateProtocol", "TollgateModel", "TollgateProvisioning", "TollgateBuildInfo", "TollgateEngine",
                // TollgateBilling: `usage export --format stripe-meter-events`.
                "TollgateBilling",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(
            name: "TollgateProvisioning",
            dependencies: ["TollgateModel", .product(name: "Yams", package: "Yams")],
            path: "Sources/TollgateProvisioning"
        ),
        .target(name: "TollgateTestSupport", path: "Tests/TollgateTestSupport"),
        .testTarget(
            name: "TollgateProvisioningTests",
            dependencies: ["TollgateProvisioning", "TollgateModel"],
            path: "Tests/TollgateProvisioningTests"
        ),
        // The engine's TokenFormat verifies the checksum of every token secret a vector carries.
        .testTarget(name: "TollgateProtocolTests", dependencies: ["TollgateProtocol", "TollgateModel", "TollgateEngine"]),
        .testTarget(name: "TollgateEngineTests", dependencies: ["TollgateEngine", "TollgateModel", "TollgateTestSupport"]),
        .testTarget(name: "TollgateJournalTests", dependencies: ["TollgateJournal"]),
        // The connection handler on an EmbeddedChannel: its timeouts driven by the embedded loop's clock.
        .testTarget(
            name: "TollgateServerTests",
            dependencies: [
                "TollgateServer", "TollgateCore", "TollgateEngine", "TollgateJournal", "TollgateModel", "TollgateProtocol",
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // The HTTP front end on an EmbeddedChannel (limits, keep-alive, idle timeout on the embedded clock), the route
        // rules and the answer mapping.
        .testTarget(
            name: "TollgateHTTPTests",
            dependencies: [
                "TollgateHTTP", "TollgateCore", "TollgateEngine", "TollgateJournal", "TollgateModel", "TollgateProtocol", "TollgateServer",
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // The Stripe signature and mapping, pure.
        .testTarget(name: "TollgateBillingTests", dependencies: ["TollgateBilling", "TollgateModel", "TollgateEngine"]),
        // The application core without sockets: a real journal in a temporary directory, an injected clock.
        .testTarget(
            name: "TollgateCoreTests",
            dependencies: ["TollgateCore", "TollgateEngine", "TollgateJournal", "TollgateModel", "TollgateProtocol", "TollgateTestSupport"]
        ),
        // One validation source (issue 12 item 4): each bad value through every entry point, one verdict.
        .testTarget(
            name: "TollgateValidationTests",
            dependencies: ["TollgateModel", "TollgateEngine", "TollgateProvisioning", "TollgateDaemon", "TollgateHTTP", "TollgateTestSupport"]
        ),
        .testTarget(
            name: "TollgateSystemdTests",
            dependencies: [
                "TollgateSystemd", "TollgateTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Metric names, labels and the exposition, against a real core in a temporary directory.
        .testTarget(
            name: "TollgateMetricsTests",
            dependencies: [
                "TollgateMetrics", "TollgateBuildInfo", "TollgateCore", "TollgateEngine", "TollgateJournal", "TollgateModel", "TollgateProtocol",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Fleet mode's pure rules (sequence gaps, the horizon on an injected clock) without PostgreSQL, and the
        // change log against a throwaway PostgreSQL cluster when Debian's server is installed.
        .testTarget(
            name: "TollgateFleetTests",
            dependencies: [
                "TollgateFleet", "TollgateCore", "TollgateEngine", "TollgateJournal", "TollgateModel", "TollgateProtocol", "TollgateTestSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "TollgateDaemonTests",
            dependencies: [
                "TollgateDaemon", "TollgateClient", "TollgateProtocol", "TollgateEngine", "TollgateModel", "TollgateJournal",
                "TollgateServer", "TollgateHTTP", "TollgateTestSupport",
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
