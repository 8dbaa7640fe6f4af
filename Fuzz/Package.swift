// swift-tools-version:6.0
import PackageDescription

/// libFuzzer targets for Tollgate. Built only for fuzzing, by `scripts/fuzz.sh`:
///
///     swift build -c release --package-path Fuzz --scratch-path .build-fuzz \
///         -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
///
/// Each executable defines `LLVMFuzzerTestOneInput` and a `main` that runs libFuzzer's driver on it (SwiftPM renames
/// an executable's entry point on Linux, so libFuzzer's own `main` cannot be used).
/// - `fuzz-frames`:   a byte stream through `FrameDecoder`, every frame through `decodeRequest`/`decodeResponse`.
/// - `fuzz-messages`: first byte = opcode, rest = body, through every request and response decoder.
/// - `fuzz-journal`:  journal directories built from the input, through `Journal.open` (recovery), reopen, append.
/// - `fuzz-payloads`: journal record payloads and snapshot payloads through `StateChange.decode` / `decodeSnapshot`.
let package = Package(
    name: "tollgate-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "tollgate", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .target(name: "CLibFuzzer", path: "Sources/CLibFuzzer"),
        .target(name: "FuzzSupport", dependencies: ["CLibFuzzer"], path: "Sources/FuzzSupport"),
        .target(
            name: "CodecChecks",
            dependencies: [
                "FuzzSupport",
                .product(name: "TollgateProtocol", package: "tollgate"),
                .product(name: "TollgateModel", package: "tollgate"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Sources/CodecChecks"
        ),
        .executableTarget(
            name: "fuzz-frames",
            dependencies: [
                "FuzzSupport", "CodecChecks",
                .product(name: "TollgateProtocol", package: "tollgate"),
                .product(name: "TollgateModel", package: "tollgate"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "fuzz-messages",
            dependencies: [
                "FuzzSupport", "CodecChecks",
                .product(name: "TollgateProtocol", package: "tollgate"),
                .product(name: "TollgateModel", package: "tollgate"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "fuzz-journal",
            dependencies: ["FuzzSupport", .product(name: "TollgateJournal", package: "tollgate")]
        ),
        .executableTarget(
            name: "fuzz-payloads",
            dependencies: [
                "FuzzSupport",
                .product(name: "TollgateEngine", package: "tollgate"),
                .product(name: "TollgateModel", package: "tollgate"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v5]
)
