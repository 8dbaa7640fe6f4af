import Foundation
import Logging
import TollgateIdentity
import TollgateModel

/// The `identity` section (issue 17): identity providers whose JWTs EXCHANGE accepts, and the roles that say what
/// such a token earns.
///
/// ```json
/// "identity": {
///   "max_token_bytes": 16384, "fetch_timeout_ms": 5000,
///   "providers": [
///     { "issuer": "https://token.actions.githubusercontent.com", "discovery": true },
///     { "issuer": "https://kubernetes.default.svc.cluster.local", "jwks_file": "/etc/tollgate/k8s-jwks.json" },
///     { "issuer": "https://idp.example.com", "jwks_url": "https://idp.example.com/keys",
///       "refresh_s": 3600, "min_refresh_interval_s": 60, "max_age_s": 86400 } ],
///   "roles": [ { "name": "ci", "issuer": "https://token.actions.githubusercontent.com", "bound_audiences": ["tollgate"],
///                "bound_claims": { "repository": "acme/*" }, "bound_claims_type": "glob", "user_claim": "sub",
///                "license_claim": "repository_owner", "license_mapping": { "acme": "lic_acme" },
///                "scopes": ["read"], "scope_claim": "", "max_ttl_s": 900, "leeway_s": { "exp": 30, "nbf": 30, "iat": 30 } } ]
/// }
/// ```
///
/// Every role is read by `RoleDocument` (as `tollgate apply` reads a file's `roles:`) and goes through
/// `Validation.identityRole`; every role's issuer must have a provider. The roles here only seed the state's
/// (`Daemon+RoleSeeding`): once a role is journaled, `tollgate apply` changes it, not this file. A reload applies new
/// providers (the key caches start empty and fetch again) and seeds roles the state has never held.
public struct IdentityConfiguration: Sendable, Equatable {
    public struct Provider: Sendable, Equatable {
        public enum Source: Sendable, Equatable {
            case file(String)
            case url(String)
            /// `<issuer>/.well-known/openid-configuration`, then its `jwks_uri`.
            case discovery
        }
        public var issuer: String
        public var source: Source
        public var policy = KeySetPolicy()
    }

    public var maxTokenBytes = 16_384
    public var fetchTimeoutMilliseconds = 5_000
    public var providers: [Provider] = []
    public var roles: [IdentityRole] = []

    public init() {}

    /// The verifier for this configuration, its key caches empty.
    public func verifier(clock: @escaping @Sendable () -> Int64, logger: Logger) -> IdentityVerifier {
        let issuers = providers.map { provider -> IssuerKeys in
            let source: any KeySetSource
            switch provider.source {
            case .file(let path): source = FileKeySetSource(path: path)
            case .url(let url): source = URLKeySetSource(url: URL(string: url)!, discovery: false, timeoutSeconds: Double(fetchTimeoutMilliseconds) / 1000)
            case .discovery:
                let base = provider.issuer.hasSuffix("/") ? String(provider.issuer.dropLast()) : provider.issuer
                source = URLKeySetSource(url: URL(string: base + "/.well-known/openid-configuration")!, discovery: true, timeoutSeconds: Double(fetchTimeoutMilliseconds) / 1000)
            }
            return IssuerKeys(issuer: provider.issuer, source: source, policy: provider.policy, clock: clock, logger: logger)
        }
        return IdentityVerifier(roles: roles, issuers: issuers, maxTokenBytes: maxTokenBytes, clock: clock)
    }

    static func read(_ object: ObjectReader) throws -> IdentityConfiguration {
        var reader = object
        var identity = IdentityConfiguration()
        identity.maxTokenBytes = try reader.int("max_token_bytes", range: 1024...65_000) ?? identity.maxTokenBytes
        identity.fetchTimeoutMilliseconds = try reader.int("fetch_timeout_ms", range: 100...60_000) ?? identity.fetchTimeoutMilliseconds
        // Lists read by index (as `plans` is), each entry an object read strictly.
        for (index, value) in try reader.list("providers").enumerated() {
            var entry = try ObjectReader(value, path: "identity.providers[\(index)]")
            guard let issuer = try entry.string("issuer") else { throw ConfigurationError(.missingKey, "\(entry.path).issuer is required") }
            guard URL(string: issuer)?.scheme != nil else { throw ConfigurationError("\(entry.path).issuer must be a URL (the iss claim, exactly)") }
            let file = try entry.string("jwks_file"), url = try entry.string("jwks_url"), discovery = try entry.bool("discovery") ?? false
            guard [file != nil, url != nil, discovery].filter({ $0 }).count == 1 else {
                throw ConfigurationError("\(entry.path) needs exactly one of jwks_file, jwks_url or discovery: true")
            }
            var provider = Provider(issuer: issuer, source: .discovery)
            if let file {
                guard file.hasPrefix("/") else { throw ConfigurationError("\(entry.path).jwks_file must be an absolute path") }
                provider.source = .file(file)
            }
            if let url {
                guard let parsed = URL(string: url), ["https", "http"].contains(parsed.scheme ?? ""), parsed.host != nil else {
                    throw ConfigurationError("\(entry.path).jwks_url must be an http(s) URL")
                }
                provider.source = .url(url)
            }
            if discovery, !["https", "http"].contains(URL(string: issuer)?.scheme ?? "") {
                throw ConfigurationError("\(entry.path): discovery needs an http(s) issuer")
            }
            provider.policy.refreshAfterMillis = Int64(try entry.int("refresh_s", range: 60...604_800) ?? 3600) * 1000
            provider.policy.minRefreshIntervalMillis = Int64(try entry.int("min_refresh_interval_s", range: 1...86_400) ?? 60) * 1000
            provider.policy.maxAgeMillis = Int64(try entry.int("max_age_s", range: 60...(30 * 86_400)) ?? 86_400) * 1000
            try entry.finish()
            guard !identity.providers.contains(where: { $0.issuer == issuer }) else { throw ConfigurationError("\(entry.path): issuer \(issuer) is listed twice") }
            identity.providers.append(provider)
        }
        // Each role by the one role document model (`RoleDocument`) that `tollgate apply` uses too.
        for (index, value) in try reader.list("roles").enumerated() {
            do throws(ValidationError) {
                var document = try DocumentReader(JSONDocument.node(value), path: "identity.roles[\(index)]")
                identity.roles.append(try RoleDocument.read(&document))
            } catch {
                throw ConfigurationError(error)
            }
        }
        do throws(ValidationError) {
            try Validation.identityRoles(identity.roles, field: "identity.roles")
        } catch {
            throw ConfigurationError(error)
        }
        for (index, role) in identity.roles.enumerated() where !identity.providers.contains(where: { $0.issuer == role.issuer }) {
            throw ConfigurationError("identity.roles[\(index)].issuer: no provider in identity.providers has issuer \(role.issuer)")
        }
        try reader.finish()
        return identity
    }
}
