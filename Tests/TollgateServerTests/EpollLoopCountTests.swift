import XCTest

@testable import TollgateServer

/// The api socket's default number of epoll loops leaves half the host to the callers (`api_io_threads: 0`).
final class EpollLoopCountTests: XCTestCase {
    func testHalfTheAllowedCPUsAndNeverNone() {
        XCTAssertEqual(EpollAPIListener.defaultLoopCount(allowedCPUs: 1), 1)
        XCTAssertEqual(EpollAPIListener.defaultLoopCount(allowedCPUs: 2), 1)
        XCTAssertEqual(EpollAPIListener.defaultLoopCount(allowedCPUs: 3), 1)
        XCTAssertEqual(EpollAPIListener.defaultLoopCount(allowedCPUs: 8), 4)
        XCTAssertEqual(EpollAPIListener.defaultLoopCount(allowedCPUs: 0), 1)
    }
}
