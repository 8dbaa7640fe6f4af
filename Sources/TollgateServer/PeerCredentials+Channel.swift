import NIOCore

#if canImport(Glibc)
import Glibc
#endif

extension PeerCredentials {
    /// The kernel's word on who is at the other end of `channel` (`SO_PEERCRED`, then `SO_PEERGROUPS`), for front
    /// ends other than the binary socket (the HTTP listener), so that every front end reads credentials one way. Nil
    /// when the channel is not a socket that has them (TCP, an embedded test channel). More than 64 groups leaves the
    /// primary group only: an allow-list may then refuse, never admit wrongly.
    public static func read(from channel: Channel) -> EventLoopFuture<PeerCredentials?> {
        guard let provider = channel as? SocketOptionProvider, case .unixDomainSocket = channel.localAddress else {
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        let credentials: EventLoopFuture<KernelPeerCredentials> = provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        let groups: EventLoopFuture<KernelPeerGroups> = provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: KernelPeerGroups.option)
        return credentials.flatMap { credentials in
            let peer = PeerCredentials(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid)
            return groups.map { groups -> PeerCredentials? in
                var withGroups = peer
                withGroups.groups = groups.list
                return withGroups
            }.recover { _ in peer }
        }.recover { _ in nil }
    }
}
