import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Where an issuer's JWKS comes from. `fetch` returns the JWKS document's bytes or throws; it runs off the event
/// loops (in a task of the issuer's key cache) and is bounded by its own timeout.
public protocol KeySetSource: Sendable {
    func fetch() async throws -> [UInt8]
}

/// A JWKS file (read again on the same schedule a URL is fetched, so replacing the file rotates keys).
public struct FileKeySetSource: KeySetSource {
    public let path: String
    public init(path: String) { self.path = path }
    public func fetch() async throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else { throw KeySetFetchError("cannot read the JWKS file \(path)") }
        return [UInt8](data)
    }
}

/// A JWKS URL, or an issuer's discovery document (`/.well-known/openid-configuration`), whose `jwks_uri` is then
/// fetched. The HTTP client is Foundation's URLSession (libcurl on Linux): it comes with the toolchain, so it adds
/// no package to build, and it verifies TLS against the system's trust store, as operators expect of an IdP's CA.
public struct URLKeySetSource: KeySetSource {
    public let url: URL
    /// The URL is a discovery document, not a JWKS.
    public let discovery: Bool
    public let timeoutSeconds: Double
    public let maxBytes: Int

    public init(url: URL, discovery: Bool, timeoutSeconds: Double = 5, maxBytes: Int = 1 << 20) {
        self.url = url
        self.discovery = discovery
        self.timeoutSeconds = timeoutSeconds
        self.maxBytes = maxBytes
    }

    public func fetch() async throws -> [UInt8] {
        var target = url
        if discovery {
            let document = try await get(url)
            guard let object = (try? JSONSerialization.jsonObject(with: Data(document))) as? [String: Any],
                let uri = object["jwks_uri"] as? String, let jwks = URL(string: uri), ["https", "http"].contains(jwks.scheme ?? "")
            else { throw KeySetFetchError("the discovery document at \(url) has no usable jwks_uri") }
            target = jwks
        }
        return try await get(target)
    }

    func get(_ url: URL) async throws -> [UInt8] {
        var request = URLRequest(url: url, cachePolicy: .reloadIgnoringLocalCacheData, timeoutInterval: timeoutSeconds)
        request.setValue("application/json", forHTTPHeaderField: "Accept")
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeoutSeconds
        configuration.timeoutIntervalForResource = timeoutSeconds
        let session = URLSession(configuration: configuration)
        defer { session.finishTasksAndInvalidate() }
        let (data, response) = try await session.data(for: request)
        guard let http = response as? HTTPURLResponse, http.statusCode == 200 else {
            throw KeySetFetchError("\(url) answered \((response as? HTTPURLResponse)?.statusCode ?? 0)")
        }
        guard data.count <= maxBytes else { throw KeySetFetchError("\(url) answered more than \(maxBytes) bytes") }
        return [UInt8](data)
    }
}

public struct KeySetFetchError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
