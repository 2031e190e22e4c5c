/// A value kept out of line, behind one optional reference: for state most connections never have, whose inline
/// bytes (an optional struct of several words) every idle connection would otherwise carry.
final class OutOfLine<Value> {
    var value: Value

    init(_ value: Value) { self.value = value }

    /// Stores `value` in `storage`, reusing its box when there is one.
    static func assign(_ value: Value?, to storage: inout OutOfLine?) {
        guard let value else {
            storage = nil
            return
        }
        if let storage {
            storage.value = value
        } else {
            storage = OutOfLine(value)
        }
    }
}
