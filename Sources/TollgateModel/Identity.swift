/// The vocabulary of identity-provider token exchange (issue 17): a caller proves who it is with a JWT its identity
/// provider signed, a configured role decides what that identity may have, and the daemon mints a short-lived token
/// for it. Plain values: the verification lives in `TollgateIdentity`, the minting in the engine.

/// EXCHANGE: a JWT from an identity provider in exchange for a short-lived Tollgate token.
public struct ExchangeRequest: Sendable, Hashable {
    /// The JWT (compact serialisation). A secret: never logged, journaled or put in an error.
    public var subjectToken: String
    /// The role to use; empty: the one role whose issuer and audiences admit the token.
    public var role: String
    /// Scopes asked for, within what the role grants; empty: everything the role grants.
    public var scopes: [String]
    /// The lifetime asked for; 0: the longest the role allows. Always capped (`ExchangeGrant`).
    public var ttlSeconds: UInt32

    public init(subjectToken: String, role: String = "", scopes: [String] = [], ttlSeconds: UInt32 = 0) {
        self.subjectToken = subjectToken
        self.role = role
        self.scopes = scopes
        self.ttlSeconds = ttlSeconds
    }
}

/// What a verified JWT earned under a role: who, for which license (or organisation, whose license the engine
/// resolves), which scopes, and the bounds on the token's life. The engine applies the plan's bounds on top.
public struct ExchangeGrant: Sendable, Hashable {
    public var role: String
    public var issuer: String
    /// The token's subject: the role's `user_claim` value.
    public var subject: String
    /// Either a license id, or empty and `org` set: the organisation's one license.
    public var licenseID: String
    public var org: String
    public var scopes: [String]
    /// The role's maximum lifetime, in milliseconds.
    public var maxLifetimeMillis: Int64
    /// The JWT's own `exp`, in Unix milliseconds: the issued token never outlives it.
    public var subjectTokenExpiresAt: UnixMillis

    public init(role: String, issuer: String, subject: String, licenseID: String, org: String, scopes: [String], maxLifetimeMillis: Int64, subjectTokenExpiresAt: UnixMillis) {
        self.role = role
        self.issuer = issuer
        self.subject = subject
        self.licenseID = licenseID
        self.org = org
        self.scopes = scopes
        self.maxLifetimeMillis = maxLifetimeMillis
        self.subjectTokenExpiresAt = subjectTokenExpiresAt
    }

    /// The metadata key an exchanged token carries its role under (reserved: `tollgate.`); it also marks the token
    /// as derived, so it cannot derive further (`DERIVE`).
    public static let roleMetadataKey = "tollgate.exchange.role"
}

/// Why an exchange was refused. The code is stable and sent on the wire (status `exchange_refused`, the message
/// starting with `code:`), mapped to RFC 8693/6749 error codes by the HTTP front end. The message never holds the
/// JWT or any part of it but claim names, the issuer and the key id.
public struct ExchangeRefusal: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// Not three base64url parts of JSON.
        public static let malformedToken = Code(rawValue: "malformed_token")
        /// Longer than `identity.max_token_bytes`: refused before it is decoded.
        public static let tokenTooLarge = Code(rawValue: "token_too_large")
        /// `alg: none`: an unsigned token.
        public static let unsignedToken = Code(rawValue: "unsigned_token")
        /// An algorithm outside the asymmetric ones accepted (HS256 signed with a public key: algorithm confusion),
        /// or one that does not fit the key's type or the key's own `alg`.
        public static let algorithmNotAllowed = Code(rawValue: "algorithm_not_allowed")
        /// The `kid` is not in the issuer's key set, also after one refresh.
        public static let unknownKey = Code(rawValue: "unknown_key")
        public static let badSignature = Code(rawValue: "bad_signature")
        /// No role has the token's issuer (or the role asked for has another).
        public static let wrongIssuer = Code(rawValue: "wrong_issuer")
        public static let wrongAudience = Code(rawValue: "wrong_audience")
        public static let expired = Code(rawValue: "expired")
        public static let notYetValid = Code(rawValue: "not_yet_valid")
        /// `iat` later than now plus the leeway.
        public static let issuedInFuture = Code(rawValue: "issued_in_future")
        /// A claim the role needs (`exp`, `iat`, the user claim, the license claim, a bound claim) is absent or not
        /// of the type needed.
        public static let missingClaim = Code(rawValue: "missing_claim")
        /// A bound claim's value matches none of the role's values or patterns.
        public static let claimMismatch = Code(rawValue: "claim_mismatch")
        /// The license (or organisation) claim's value is not in the role's mapping.
        public static let unmappedClaim = Code(rawValue: "unmapped_claim")
        /// Several roles admit the token and none was named, or the named role does not exist.
        public static let ambiguousRole = Code(rawValue: "ambiguous_role")
        /// A scope asked for that the role (or the scope claim) does not grant.
        public static let invalidScope = Code(rawValue: "invalid_scope")
        /// The subject was deprovisioned (SCIM) and not reactivated.
        public static let subjectDeprovisioned = Code(rawValue: "subject_deprovisioned")
        /// The mapped license or organisation cannot have a token now (missing, inactive, full).
        public static let licenseUnavailable = Code(rawValue: "license_unavailable")
        /// The issuer's keys could not be had in time (status `identity_unavailable`; retry).
        public static let keysUnavailable = Code(rawValue: "keys_unavailable")
        /// The role the JWT was verified under was changed or deleted (ROLE_PUT, ROLE_DELETE, `tollgate apply`)
        /// before the token was minted; retrying verifies it under the role as it is now.
        public static let roleChanged = Code(rawValue: "role_changed")
        /// Exchange is not configured (no `identity` section).
        public static let notConfigured = Code(rawValue: "not_configured")
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// `code: message`: the form sent on the wire, so a client can read the code back (`init(wire:)`).
    public var description: String { "\(code.rawValue): \(message)" }

    /// Reads a refusal back from its wire message; nil when the message does not start with a code.
    public init?(wire: String) {
        guard let colon = wire.firstIndex(of: ":") else { return nil }
        let code = String(wire[..<colon])
        guard !code.isEmpty, code.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F }) else { return nil }
        self.init(Code(rawValue: code), String(wire[wire.index(after: colon)...]).drop { $0 == " " }.description)
    }

    public static func == (l: ExchangeRefusal, r: ExchangeRefusal) -> Bool { l.code == r.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

/// SUBJECT_STATUS: deprovision a subject (revoke every token issued to it and refuse its exchanges) or reactivate
/// it (exchanges allowed again; tokens revoked stay revoked). SCIM's `active` flag and DELETE map onto it.
public struct SubjectStatusRequest: Sendable, Hashable {
    public var subject: String
    public var active: Bool
    /// Who asks (`scim` for the SCIM endpoint); the daemon adds the caller's uid, as for REVOKE.
    public var actor: String

    public init(subject: String, active: Bool, actor: String = "") {
        self.subject = subject
        self.active = active
        self.actor = actor
    }
}

/// A role: which identity provider's tokens it admits and what it gives them (after Vault's JWT auth roles).
public struct IdentityRole: Sendable, Hashable {
    /// How a claim's value is compared with a bound: exactly, or as a glob (`*` any run, `?` one character).
    public enum Match: String, Sendable, Hashable {
        case exact
        case glob
    }

    /// A claim that must be present and match one of `values`.
    public struct BoundClaim: Sendable, Hashable {
        public var claim: String
        public var values: [String]
        public init(claim: String, values: [String]) {
            self.claim = claim
            self.values = values
        }
    }

    public var name: String
    /// The `iss` the token must carry, exactly.
    public var issuer: String
    /// At least one of these must be in the token's `aud` (mandatory: a token minted for another service must not
    /// be accepted here).
    public var audiences: [String]
    public var boundClaims: [BoundClaim] = []
    public var boundClaimsMatch: Match = .exact
    /// The claim whose value becomes the token's subject (`sub` by default).
    public var userClaim: String = "sub"
    /// A fixed license for every token of the role; or empty and `licenseClaim` / `orgClaim` with a mapping.
    public var license: String = ""
    /// A claim whose value maps to a license id (`licenseMapping`).
    public var licenseClaim: String = ""
    public var licenseMapping: [String: String] = [:]
    /// A claim whose value maps to an organisation id (`orgMapping`); the token goes to the organisation's license.
    public var orgClaim: String = ""
    public var orgMapping: [String: String] = [:]
    /// What the role grants; the token gets these ∩ the scope claim (if set) ∩ the scopes asked for.
    public var scopes: [String]
    /// A claim holding space-separated scopes (`scope`) or a list of them (`scp`); empty: none consulted.
    public var scopeClaim: String = ""
    public var maxTTLSeconds: UInt32 = 900
    public var leewaySeconds = Leeways()

    public struct Leeways: Sendable, Hashable {
        public var exp: UInt32 = 0
        public var nbf: UInt32 = 0
        public var iat: UInt32 = 0
        public init(exp: UInt32 = 0, nbf: UInt32 = 0, iat: UInt32 = 0) {
            self.exp = exp
            self.nbf = nbf
            self.iat = iat
        }
    }

    public init(name: String, issuer: String, audiences: [String], scopes: [String]) {
        self.name = name
        self.issuer = issuer
        self.audiences = audiences
        self.scopes = scopes
    }
}
