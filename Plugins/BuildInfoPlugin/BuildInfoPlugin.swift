import Foundation
import PackagePlugin

/// Records the git commit the binaries are built from, for `tollgate --version` and `tollgated --version`.
///
/// Before every build it writes `BuildCommit.swift` into the plugin's work directory, rewriting it only when the
/// commit changed (so an unchanged tree recompiles nothing). The commit is `$TOLLGATE_COMMIT` when set (a package
/// build from a tarball), else `git rev-parse --short=12 HEAD` with `-dirty` when tracked files are modified, else
/// `unknown` (no git, not a checkout): a build never fails for want of version information.
@main
struct BuildInfoPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "generated")
        let script = #"""
            package_dir=$1 out=$2
            commit=${TOLLGATE_COMMIT:-}
            if [ -z "$commit" ] && command -v git >/dev/null 2>&1; then
                commit=$(git -C "$package_dir" rev-parse --short=12 HEAD 2>/dev/null) || commit=""
                if [ -n "$commit" ] && [ -n "$(git -C "$package_dir" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
                    commit="$commit-dirty"
                fi
            fi
            commit=$(printf '%s' "${commit:-unknown}" | tr -cd 'A-Za-z0-9._-')
            mkdir -p "$out"
            line="let buildCommit = \"${commit:-unknown}\""
            [ "$(cat "$out/BuildCommit.swift" 2>/dev/null)" = "$line" ] || printf '%s\n' "$line" >"$out/BuildCommit.swift"
            """#
        var environment: [String: String] = [:]
        if let commit = ProcessInfo.processInfo.environment["TOLLGATE_COMMIT"] { environment["TOLLGATE_COMMIT"] = commit }
        return [
            .prebuildCommand(
                displayName: "Recording the git commit for --version",
                executable: URL(fileURLWithPath: "/bin/sh"),
                arguments: ["-c", script, "sh", context.package.directoryURL.path, output.path],
                environment: environment,
                outputFilesDirectory: output)
        ]
    }
}
