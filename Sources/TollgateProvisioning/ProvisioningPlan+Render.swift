extension ProvisioningPlan {
    /// The diff for a person, one line per object (one per changed field for an update), then a count:
    ///
    /// ```
    /// + plan pro
    /// ~ license lic_1: status active -> past_due
    /// = org acme                      (only when verbose)
    /// - license lic_old               (apply --prune)
    /// 1 to create, 1 to update, 1 unchanged, 1 to delete
    /// ```
    ///
    /// An update repeats its `~ kind id:` prefix on every field so that each line stands alone under `grep`.
    public static func render(_ changes: [ProvisioningChange], verbose: Bool = false) -> String {
        var lines: [String] = []
        var created = 0, updated = 0, unchanged = 0, deleted = 0
        for change in changes {
            let subject = "\(change.kind.rawValue) \(change.id)"
            switch change {
            case .create:
                created += 1
                lines.append("+ \(subject)")
            case .update(_, _, let fieldChanges):
                updated += 1
                for field in fieldChanges { lines.append("~ \(subject): \(field)") }
            case .unchanged:
                unchanged += 1
                if verbose { lines.append("= \(subject)") }
            case .delete:
                deleted += 1
                lines.append("- \(subject)")
            }
        }
        // The deletion count only where deletions were asked for, so that the summary of a plain apply is unchanged.
        lines.append("\(created) to create, \(updated) to update, \(unchanged) unchanged" + (deleted > 0 ? ", \(deleted) to delete" : ""))
        return lines.joined(separator: "\n") + "\n"
    }
}
