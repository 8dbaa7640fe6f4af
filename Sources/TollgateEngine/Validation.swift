import TollgateModel

/// The engine's side of the validation source (`TollgateModel.Validation`): a refused value becomes an
/// `invalid_argument` answer whose message is the rule's own sentence (with the field when the rule names one), so
/// the wire says what `apply`, the configuration and the CLI say about the same value.
enum Validate {
    static func run(_ body: () throws(ValidationError) -> Void) throws(EngineError) {
        do {
            try body()
        } catch {
            throw EngineError(error)
        }
    }
}

extension EngineError {
    /// `invalid_argument` with the rule's sentence (and field); the rule's error is kept in `validation`.
    init(_ error: ValidationError) {
        self.init(error.code == .inUse ? .inUse : .invalidArgument, error.description)
        validation = error
    }
}
