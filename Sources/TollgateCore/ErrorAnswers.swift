import Logging
import TollgateEngine
import TollgateJournal
import TollgateModel
import TollgateProtocol

extension ApplicationCore {
    /// The one place where an error becomes an answer. Only errors that opt in are sent with their message: the
    /// engine's (a value refused, a thing not found: written for the caller) and the core's own. A journal error
    /// becomes `unavailable` without its detail (paths, errno), anything else `internal`; both are logged here with
    /// their detail, so that the operator sees what the client is not told (fail closed).
    func answer(for error: any Error, opcode: Opcode) -> Response {
        switch error {
        case let error as EngineError:
            switch error.code {
            case .notFound: return .error(.notFound, error.message)
            case .invalidArgument: return .error(.invalidArgument, error.message)
            case .inUse: return .error(.inUse, error.message)
            }
        case let error as CoreError:
            return .error(error.status, error.message)
        case let refusal as ExchangeRefusal:
            // Its message is written for the caller and never holds the JWT (TollgateModel.ExchangeRefusal).
            return .error(refusal.code == .keysUnavailable ? .identityUnavailable : .exchangeRefused, refusal.description)
        case let error as JournalError:
            logger.error("journal refused a request", metadata: ["tollgate.opcode": "\(opcode.name)", "tollgate.error": "\(error)"])
            return .error(.unavailable, "the journal cannot write (disk full or I/O error); the change was not made. Retry later")
        default:
            logger.error("request failed", metadata: ["tollgate.opcode": "\(opcode.name)", "tollgate.error": "\(error)"])
            return .error(.internal, "the request failed inside the server")
        }
    }
}
