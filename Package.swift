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
/// - `TollgateServer`: the binary protocol's front end: SwiftNIO over AF_UNIX (the api socket optionally on its own
///   epoll loops), frames in, the core's answers out, in request order, with backpressure, peer credentials and
///   timeouts. It decides no policy.
/// - `TollgateAuthorization`: the translation both proxy front ends share, pure but for one call into the core: a
///   request's method, target and headers into the core's CHECK by the route rules, the answer back into a status,
///   headers and a JSON body.
/// - `TollgateHTTP`: the HTTP front end (forward auth for reverse proxies): NIOHTTP1 over AF_UNIX and loopback TCP,
///   an HTTP request into the core's CHECK and the result back into a status and headers. It decides no policy.
///   Swift 6 language mode.
/// - `TollgateGRPC`: Envoy's external authorization (ext_authz v3) over gRPC on a Unix socket: grpc-swift 2, our own
///   minimal .proto with its generated code committed; a CheckRequest through `TollgateAuthorization`, the answer
///   back as a CheckResponse. It decides no policy.
/// - `TollgateMetrics`: Prometheus metrics (swift-metrics over swift-prometheus) folded from the counters the core,
///   the journal and the front ends keep, and the readiness verdict; served by the HTTP listener.
/// - `TollgateIdentity`: identity providers: JWT verification (jwt-kit) against a JWKS, roles, claim mapping.
/// - `TollgateBilling`: the billing system's side, pure: Stripe's webhook signature and its events mapped to the
///   engine's `BillingUpdate`. No I/O, no clock (the time is an argument).
/// - `CMemory`: glibc's `malloc_trim`, to give a burst's freed heap back.
/// - `CSHA256`: SHA-256 of a token in one call into the BoringSSL swift-crypto links (no digest objects per hash).
/// - `CEpoll`: epoll, eventfd, accept4 and `SO_PEERCRED` for the api socket's epoll loops (Swift's Glibc module
///   does not export them).
/// - `TollgateFleet`: fleet mode (issue 18): the change log in PostgreSQL (postgres-nio), the pure rules it follows
///   (sequence gaps, the revocation horizon) and the replicator the core commits through. Off by default.
/// - `TollgateClient`: the client library used by the CLI, the tests and the benchmark.
/// - `TollgateTop`: `tollgate top`'s pure part: a WATCH stream's decisions added up and drawn as text.
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
        // 3.x or 4.x: jwt-kit 5.7 needs 4.1 or later, and 4.x keeps the API the billing and engine modules use.
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        // Already built as swift-nio's dependency: the decision ring's atomic words and fences (issue 15).
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.2.0"),
        // Prometheus metrics (issue 15): the swift-metrics API and swift-prometheus as its backend.
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // Identity-provider JWTs (issue 17): signatures against a JWKS (RSA, ECDSA, EdDSA).
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        // Envoy's ext_authz over gRPC (issue 14): grpc-swift 2, its SwiftNIO HTTP/2 transport, and protobuf. The
        // generated code is committed (Sources/TollgateGRPC/Generated, scripts/generate-grpc.sh): no build runs a
        // protobuf plugin.
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
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
        // SHA-256 of a token in one call into the BoringSSL that swift-crypto links (see Sources/CSHA256/CSHA256.c).
        .target(name: "CSHA256", dependencies: [.product(name: "Crypto", package: "swift-crypto")]),
        .target(
            name: "TollgateEngine",
            dependencies: [
                "TollgateModel", "CSHA256",
                .product(name: "NIOCore", package: "swift-nio"),
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
                .product(name: "Atomics", package: "swift-atomics"),
            ],
            swiftSettings: hotPathSettings
        ),
        // glibc's malloc_trim: heap given back after a burst (see `MemoryTrimPolicy`).
        .target(name: "CMemory"),
        // epoll, eventfd, accept4 and the peer-credential options for the api socket's epoll loops (`EpollLoop`).
        .target(name: "CEpoll"),
        // The binary protocol's front end: SwiftNIO (or, for the api socket, its own epoll loops) over AF_UNIX,
        // translating frames into the core's requests.
        .target(
            name: "TollgateServer",
            dependencies: [
                "TollgateCore", "CMemory", "CEpoll",
                .product(name: "HeapModule", package: "swift-collections"), "TollgateModel", "TollgateProtocol", "TollgateEngine", "TollgateJournal",
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
        // Identity providers (issue 17): JWT verification against an issuer's JWKS (jwt-kit), the key cache policy,
        // role matching and claim mapping. Knows nothing of sockets or the state; the core calls it through a closure.
        .target(
            name: "TollgateIdentity",
            dependencies: [
                "TollgateModel",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // The translation both proxy front ends share (HTTP forward auth, Envoy's gRPC ext_authz): route rules and
        // token sources into the core's CHECK, the answer back into a status, headers and a JSON body.
        .target(
            name: "TollgateAuthorization",
            dependencies: [
                "TollgateCore", "TollgateModel", "TollgateProtocol",
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)] + hotPathSettings
        ),
        // The HTTP front end: NIOHTTP1 comes with swift-nio (no new package, no extra build time).
        .target(
            name: "TollgateHTTP",
            dependencies: [
                // The SCIM bearer secret's constant-time comparison (HMAC).
                .product(name: "Crypto", package: "swift-crypto"),
                "TollgateAuthorization", "TollgateCore", "TollgateServer", "TollgateModel", "TollgateProtocol", "TollgateEngine", "TollgateBilling",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // A request path like the binary one: no dynamic exclusivity checks in release builds (see hotPathSettings).
            swiftSettings: [.swiftLanguageMode(.v6)] + hotPathSettings
        ),
        // Envoy's external authorization (ext_authz v3) over gRPC on a Unix socket: grpc-swift 2 over SwiftNIO HTTP/2,
        // our own minimal .proto (Protocol/grpc) compiled ahead of time. Only the daemon and its tests link it.
        .target(
            name: "TollgateGRPC",
            dependencies: [
                "TollgateAuthorization", "TollgateCore", "TollgateServer", "TollgateModel", "TollgateEngine",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["Generated/README.md"],
            swiftSettings: [.swiftLanguageMode(.v6)]
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
                "TollgateCore", "TollgateServer", "TollgateHTTP", "TollgateGRPC", "TollgateAuthorization", "TollgateMetrics", "TollgateBilling", "TollgateSystemd", "TollgateFleet", "TollgateEngine", "TollgateJournal", "TollgateProtocol", "TollgateModel",
                "TollgateIdentity",
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
                "TollgateDaemon", "TollgateHTTP", "TollgateServer", "TollgateSystemd", "TollgateBuildInfo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // `tollgate top`, pure: decisions of a WATCH stream added up over a window (rates, top-N, percentiles) and the
        // screen drawn from them as text. No I/O, no clock.
        .target(name: "TollgateTop", dependencies: ["TollgateModel"]),
        .executableTarget(
            name: "tollgate",
            dependencies: [
                // TollgateEngine: `usage show` computes quota windows with the engine's own calendar.
                "TollgateClient", "TollgateProtocol", "TollgateModel", "TollgateProvisioning", "TollgateBuildInfo", "TollgateEngine",
                // TollgateTop: `tollgate top`'s aggregation and screen.
                "TollgateTop",
                // TollgateBilling: `usage export --format stripe-meter-events`.
                "TollgateBilling",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The gRPC benchmark's limit (scripts/bench-grpc.sh): the same grpc-swift stack with a Check that always
        // answers OK.
        .executableTarget(
            name: "tollgate-grpc-empty",
            dependencies: [
                "TollgateGRPC",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
            ],
            path: "Benchmarks/GRPCEmptyServer"
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
        .testTarget(
            name: "TollgateEngineTests",
            dependencies: ["TollgateEngine", "TollgateModel", "TollgateTestSupport", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .testTarget(name: "TollgateJournalTests", dependencies: ["TollgateJournal"]),
        .testTarget(name: "TollgateTopTests", dependencies: ["TollgateTop", "TollgateModel"]),
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
                "TollgateHTTP", "TollgateAuthorization", "TollgateCore", "TollgateEngine", "TollgateJournal", "TollgateModel", "TollgateProtocol", "TollgateServer",
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // Role matching, claim globbing, the key cache policy, refusal reasons; JWTs signed in the test with swift-crypto.
        .testTarget(
            name: "TollgateIdentityTests",
            dependencies: [
                "TollgateIdentity", "TollgateModel",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Envoy's CheckRequest through the shared translation and the CheckResponse back, and the service over a real
        // Unix socket with grpc-swift's own client.
        .testTarget(
            name: "TollgateGRPCTests",
            dependencies: [
                "TollgateGRPC", "TollgateAuthorization", "TollgateCore", "TollgateEngine", "TollgateJournal", "TollgateModel", "TollgateProtocol",
                "TollgateServer", "TollgateTestSupport",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "NIOPosix", package: "swift-nio"),
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
