import OrderedCollections

/// A value inside a channel layer message: what Django Channels can put in one and msgpack can carry.
public enum MessageValue: Sendable, Hashable {
    case string(String)
    case bytes([UInt8])
    case int(Int64)
    case double(Double)
    case bool(Bool)
    case null
    case array([MessageValue])
    /// A map with string keys, in insertion order.
    case map(OrderedDictionary<String, MessageValue>)
}

extension MessageValue {
    public var string: String? { if case .string(let value) = self { value } else { nil } }
    public var bytes: [UInt8]? { if case .bytes(let value) = self { value } else { nil } }
    public var int: Int64? { if case .int(let value) = self { value } else { nil } }
    /// A double, or an integer widened to one.
    public var double: Double? {
        switch self {
        case .double(let value): value
        case .int(let value): Double(value)
        default: nil
        }
    }
    public var bool: Bool? { if case .bool(let value) = self { value } else { nil } }
    public var array: [MessageValue]? { if case .array(let value) = self { value } else { nil } }
    public var map: OrderedDictionary<String, MessageValue>? { if case .map(let value) = self { value } else { nil } }
    public var isNull: Bool { if case .null = self { true } else { false } }

    /// The value under `key` when this is a map.
    public subscript(key: String) -> MessageValue? { map?[key] }
}

extension MessageValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByNilLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(nilLiteral: ()) { self = .null }
    public init(arrayLiteral elements: MessageValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, MessageValue)...) {
        self = .map(OrderedDictionary(uniqueKeysWithValues: elements))
    }
}
