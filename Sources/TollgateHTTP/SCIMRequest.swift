import TollgateAuthorization
import Foundation
import TollgateModel

/// The SCIM 2.0 (RFC 7643, RFC 7644) Users requests an identity provider sends when it deactivates or deletes a
/// user, read into what the core does with them: deprovision or reactivate the subject named by the user's id.
/// Only `active` is interpreted; a request that changes nothing else here is answered as if applied. Pure.
public enum SCIMRequest: Sendable, Hashable {
    /// PATCH or PUT with `active`, or DELETE (`active` false).
    case setActive(subject: String, active: Bool)
    /// PATCH or PUT that does not touch `active`: acknowledged, nothing to do.
    case noChange(subject: String)

    public static let contentType = "application/scim+json"
    public static let userSchema = "urn:ietf:params:scim:schemas:core:2.0:User"
    public static let errorSchema = "urn:ietf:params:scim:api:messages:2.0:Error"
    public static let patchSchema = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

    /// A SCIM error answer (RFC 7644 §3.12): the HTTP status, an optional `scimType`, a detail safe to show.
    public struct Problem: Error, Sendable, Hashable {
        public var status: UInt
        public var scimType: String?
        public var detail: String
        public init(_ status: UInt, _ detail: String, scimType: String? = nil) {
            self.status = status
            self.detail = detail
            self.scimType = scimType
        }

        public var body: String {
            #"{"schemas":[""# + errorSchema + #""],"status":""# + String(status) + "\""
                + (scimType.map { #","scimType":"# + JSONText.quoted($0) } ?? "") + #","detail":"# + JSONText.quoted(detail) + "}"
        }
    }

    /// `method` on `path` (below the configured prefix: `/Users/{id}`) with `body`.
    public static func read(method: String, path: String, body: [UInt8]) -> Result<SCIMRequest, Problem> {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0] == "Users" else { return .failure(Problem(404, "only /Users/{id} is served")) }
        guard let subject = String(parts[1]).removingPercentEncoding, !subject.isEmpty, subject.utf8.count <= Limits.maxSubject else {
            return .failure(Problem(404, "the user id is not a subject this daemon can hold"))
        }
        switch method {
        case "DELETE":
            return .success(.setActive(subject: subject, active: false))
        case "PATCH":
            guard let object = json(body) else { return .failure(Problem(400, "the body is not a JSON object", scimType: "invalidSyntax")) }
            guard let operations = object["Operations"] as? [[String: Any]] else {
                return .failure(Problem(400, "a PatchOp needs Operations", scimType: "invalidSyntax"))
            }
            var active: Bool?
            for operation in operations {
                guard let op = (operation["op"] as? String)?.lowercased(), ["add", "replace", "remove"].contains(op) else {
                    return .failure(Problem(400, "op must be add, replace or remove", scimType: "invalidSyntax"))
                }
                let path = (operation["path"] as? String)?.lowercased()
                if op == "remove" {
                    if path == "active" { return .failure(Problem(400, "active cannot be removed", scimType: "mutability")) }
                    continue
                }
                if path == "active" {
                    guard let value = flag(operation["value"]) else { return .failure(Problem(400, "active must be true or false", scimType: "invalidValue")) }
                    active = value
                } else if path == nil, let value = operation["value"] as? [String: Any], let raw = value.first(where: { $0.key.lowercased() == "active" })?.value {
                    guard let flag = flag(raw) else { return .failure(Problem(400, "active must be true or false", scimType: "invalidValue")) }
                    active = flag
                }
            }
            return .success(active.map { .setActive(subject: subject, active: $0) } ?? .noChange(subject: subject))
        case "PUT":
            guard let object = json(body) else { return .failure(Problem(400, "the body is not a JSON object", scimType: "invalidSyntax")) }
            guard let raw = object["active"] else { return .success(.noChange(subject: subject)) }
            guard let active = flag(raw) else { return .failure(Problem(400, "active must be true or false", scimType: "invalidValue")) }
            return .success(.setActive(subject: subject, active: active))
        default:
            return .failure(Problem(405, "PATCH, PUT and DELETE are served on /Users/{id}"))
        }
    }

    /// The User resource answered to PATCH and PUT: its id and `active`.
    public static func userBody(subject: String, active: Bool) -> String {
        #"{"schemas":[""# + userSchema + #""],"id":"# + JSONText.quoted(subject) + #","userName":"# + JSONText.quoted(subject)
            + #","active":"# + (active ? "true" : "false") + "}"
    }

    static func json(_ body: [UInt8]) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
    }

    /// A boolean, or the strings Entra ID sends ("True", "False").
    static func flag(_ value: Any?) -> Bool? {
        switch value {
        case let string as String:
            switch string.lowercased() {
            case "true": return true
            case "false": return false
            default: return nil
            }
        case let number as NSNumber:
            let type = String(cString: number.objCType)
            return type == "c" || type == "B" ? number.boolValue : nil
        default: return nil
        }
    }
}
