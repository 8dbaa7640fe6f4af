// swift-tools-version:5.9
// Instructions per record of the journal's batch encoder (issue 11): scripts/journal-encode-bench.sh builds this
// and counts, under callgrind, the instructions spent in `encodeBatch` for 10 to 10⁶ records.
import PackageDescription

let package = Package(
    name: "journal-encode-bench",
    dependencies: [.package(name: "tollgate", path: "../..")],
    targets: [
        .executableTarget(
            name: "journal-encode-bench",
            dependencies: [.product(name: "TollgateJournal", package: "tollgate")]
        )
    ]
)
