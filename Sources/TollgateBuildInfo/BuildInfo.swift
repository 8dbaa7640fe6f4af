/// The version and commit both binaries report with `--version` (`buildCommit` is generated before each build by
/// `Plugins/BuildInfoPlugin`; `unknown` when the build had no git checkout).
public enum BuildInfo {
    /// The release version, kept here by hand.
    public static let version = "0.1.0"
    public static let commit = buildCommit
    /// `0.1.0 (commit 0b3fa28c1d2e)`.
    public static var description: String { "\(version) (commit \(commit))" }
}
