/// Why the node could not start or stopped, in words for an operator.
public struct NodeError: Error, CustomStringConvertible {
    public let message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}
