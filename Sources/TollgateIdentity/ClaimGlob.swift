/// Glob matching for bound claims (`repo:acme/*:ref:refs/heads/main`): `*` matches any run of characters (also
/// none, also `/` and `:`), `?` exactly one; everything else matches itself. No character classes, no escapes: a
/// claim value is compared as text, and a pattern that needs a literal `*` uses `exact` matching instead.
///
/// Linear in practice (the classic two-pointer algorithm with one backtrack point), so a hostile value cannot make
/// matching exponential.
public enum ClaimGlob {
    public static func matches(_ pattern: String, _ value: String) -> Bool {
        let p = Array(pattern.unicodeScalars), v = Array(value.unicodeScalars)
        var pi = 0, vi = 0
        var star: Int? = nil, mark = 0
        while vi < v.count {
            if pi < p.count, p[pi] == "?" || (p[pi] != "*" && p[pi] == v[vi]) {
                pi += 1
                vi += 1
            } else if pi < p.count, p[pi] == "*" {
                star = pi
                mark = vi
                pi += 1
            } else if let s = star {
                pi = s + 1
                mark += 1
                vi = mark
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == "*" { pi += 1 }
        return pi == p.count
    }
}
