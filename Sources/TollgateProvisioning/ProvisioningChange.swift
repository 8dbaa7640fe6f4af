/// One line of an apply plan: what `tollgate apply` will do to one object, or that it will leave it alone.
public enum ProvisioningChange: Sendable, Hashable {
    /// The object does not exist yet; it is put as the file declares it.
    case create(Kind, id: String)
    /// The object exists and differs in these fields (never empty); it is put as the file declares it.
    case update(Kind, id: String, fieldChanges: [FieldChange])
    /// The object exists exactly as the file declares it; nothing is sent.
    case unchanged(Kind, id: String)
    /// `apply --prune` only: the object exists on the daemon and the file does not name it; it is deleted (and the
    /// daemon refuses, `in_use`, while something the file does not remove still uses it).
    case delete(Kind, id: String)

    /// The kinds of object a provisioning file declares, in the order they are applied: a license names a plan and
    /// an organisation, so those must exist first; a role maps claims to licenses and organisations, so it comes last.
    public enum Kind: String, Sendable, Hashable, CaseIterable, Comparable {
        case org
        case plan
        case license
        case role

        public static func < (l: Kind, r: Kind) -> Bool {
            allCases.firstIndex(of: l)! < allCases.firstIndex(of: r)!
        }
    }

    /// One field that differs, with both values shown as they would be written in the file (names, RFC 3339
    /// timestamps, `none` for an unset optional value), so the operator reads the diff in the file's own terms.
    public struct FieldChange: Sendable, Hashable, CustomStringConvertible {
        /// The field's key in the file, e.g. `status`, `billing_anchor_day`.
        public var field: String
        public var old: String
        public var new: String

        public init(field: String, old: String, new: String) {
            self.field = field
            self.old = old
            self.new = new
        }

        public var description: String { "\(field) \(old) -> \(new)" }
    }

    public var kind: Kind {
        switch self {
        case .create(let kind, _), .update(let kind, _, _), .unchanged(let kind, _), .delete(let kind, _): return kind
        }
    }

    public var id: String {
        switch self {
        case .create(_, let id), .update(_, let id, _), .unchanged(_, let id), .delete(_, let id): return id
        }
    }

    /// Whether applying this change sends anything to the daemon.
    public var isChange: Bool {
        if case .unchanged = self { return false }
        return true
    }
}
