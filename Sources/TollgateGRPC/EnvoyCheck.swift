import Foundation
import NIOHTTP1
import TollgateAuthorization
import TollgateModel

/// Envoy's `ext_authz` messages in and out of the shared translation (`Authorization`), pure: a `CheckRequest`'s
/// HTTP attributes (method, path, headers) are the original request, decided by the same route rules and token
/// sources as the HTTP listener's; the answer becomes a `CheckResponse` as Envoy's API defines it. Nothing is
/// decided here.
///
/// - Allow (HTTP 200): `status.code` 0 (OK) and an `OkHttpResponse`: the identity headers set on the upstream
///   request (overwriting any copy the client sent), the identity headers Tollgate did not set removed from it (a
///   client's `X-Tollgate-Plan` must not reach the upstream when the token has no plan), and `RateLimit-*` added to
///   the response to the client.
/// - Deny: `status.code` a gRPC code other than OK (Envoy denies on any) and a `DeniedHttpResponse` with the HTTP
///   status (401, 403, 429, 400, 500), the headers (`Retry-After`, `RateLimit-*`, `X-Tollgate-Reason`,
///   `Cache-Control: no-store`, `Content-Type`) and the JSON body Envoy sends to the client.
public enum EnvoyCheck {
    /// A CheckRequest that carries no HTTP request to decide (no `attributes.request.http`, or no method): Envoy
    /// never sends one, so it is answered as a gRPC error (`INVALID_ARGUMENT`), not as a denial.
    public struct MalformedRequest: Error, Sendable, Hashable, CustomStringConvertible {
        public var description: String
    }

    /// The header map of a CheckRequest: the `headers` map (lower-case names), or, when Envoy encodes raw headers,
    /// the `header_map` list (values in `value` or `raw_value`).
    struct Headers: AuthorizationHeaders {
        let map: [String: String]
        let list: [Envoy_Config_Core_V3_HeaderValue]

        func firstValue(name: String) -> String? {
            let lower = name.lowercased()
            if let value = map[lower] { return value }
            for header in list where header.key.lowercased() == lower {
                return header.value.isEmpty && !header.rawValue.isEmpty ? String(decoding: header.rawValue, as: UTF8.self) : header.value
            }
            return nil
        }
    }

    /// The decision for `request` under `policy`, or why the request is malformed.
    public static func decide(_ request: Envoy_Service_Auth_V3_CheckRequest, policy: AuthorizationPolicy) -> Result<Authorization.Decision, MalformedRequest> {
        guard request.hasAttributes, request.attributes.hasRequest, request.attributes.request.hasHTTP else {
            return .failure(MalformedRequest(description: "the CheckRequest has no attributes.request.http"))
        }
        let http = request.attributes.request.http
        guard !http.method.isEmpty else { return .failure(MalformedRequest(description: "the CheckRequest has no HTTP method")) }
        guard !http.path.isEmpty else { return .failure(MalformedRequest(description: "the CheckRequest has no HTTP path")) }
        let headers = Headers(map: http.headers, list: http.hasHeaderMap ? http.headerMap.headers : [])
        return .success(Authorization.decide(method: http.method, target: http.path, headers: headers, policy: policy))
    }

    /// The gRPC status code Envoy reads for an HTTP status: OK allows, anything else denies. The codes name the
    /// cause the way gRPC does: 16 UNAUTHENTICATED (401), 7 PERMISSION_DENIED (403), 8 RESOURCE_EXHAUSTED (429),
    /// 3 INVALID_ARGUMENT (400), 14 UNAVAILABLE (503), 13 INTERNAL (500 and anything else).
    public static func grpcCode(for status: HTTPResponseStatus) -> Int32 {
        switch status.code {
        case 200: return 0
        case 401: return 16
        case 403: return 7
        case 429: return 8
        case 400: return 3
        case 503: return 14
        default: return 13
        }
    }

    /// `answer` as Envoy's CheckResponse.
    public static func response(_ answer: ForwardAuthAnswer) -> Envoy_Service_Auth_V3_CheckResponse {
        var response = Envoy_Service_Auth_V3_CheckResponse()
        response.status.code = grpcCode(for: answer.status)
        if answer.status == .ok {
            var ok = Envoy_Service_Auth_V3_OkHttpResponse()
            var set: Set<String> = []
            for header in answer.headers {
                if ForwardAuthHeaders.upstream.contains(header.name) {
                    ok.headers.append(option(header.name, header.value))
                    set.insert(header.name)
                } else {
                    ok.responseHeadersToAdd.append(option(header.name, header.value))
                }
            }
            ok.headersToRemove = ForwardAuthHeaders.upstream.filter { !set.contains($0) }.map { $0.lowercased() }
            response.okResponse = ok
        } else {
            response.status.message = reason(of: answer)
            var denied = Envoy_Service_Auth_V3_DeniedHttpResponse()
            denied.status.code = Envoy_Type_V3_StatusCode(rawValue: Int(answer.status.code)) ?? .internalServerError
            denied.headers = answer.headers.map { option($0.name, $0.value) }
            denied.headers.append(option("Cache-Control", "no-store"))
            denied.headers.append(option("Content-Type", "application/json"))
            denied.body = answer.body
            response.deniedResponse = denied
        }
        return response
    }

    /// The reason's name, from `X-Tollgate-Reason` (every denial carries it), for the gRPC status message.
    static func reason(of answer: ForwardAuthAnswer) -> String {
        answer.headers.first { $0.name == ForwardAuthHeaders.reason }?.value ?? "denied"
    }

    static func option(_ name: String, _ value: String) -> Envoy_Config_Core_V3_HeaderValueOption {
        var option = Envoy_Config_Core_V3_HeaderValueOption()
        option.header.key = name.lowercased()
        option.header.value = value
        option.appendAction = .overwriteIfExistsOrAdd
        return option
    }
}
