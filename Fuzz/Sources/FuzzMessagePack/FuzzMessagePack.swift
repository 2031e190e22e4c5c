import CFuzzerDriver
import ChannelsProtocol

/// Any bytes from Redis: decoding either fails with a ProtocolError or yields a value that encodes back to
/// bytes decoding to the same value (msgpack has several encodings of one value, so bytes may differ).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMessagePack(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let limits = MessagePack.Limits(maxSize: 1 << 20, maxDepth: 32)
    guard let value = try? MessagePack.decode(bytes, limits: limits) else { return 0 }
    let again = try? MessagePack.decode(MessagePack.encode(value), limits: limits)
    precondition(again == value || value.containsNaN, "msgpack round trip changed \(value)")
    if case .map = value, !value.containsNaN, let message = try? MessagePack.decodeMessage(bytes, limits: limits) {
        precondition((try? MessagePack.decodeMessage(MessagePack.encode(message), limits: limits)) == message)
    }
    return 0
}

extension MessageValue {
    /// NaN is never equal to itself; such values cannot be compared after a round trip.
    var containsNaN: Bool {
        switch self {
        case .double(let double): double.isNaN
        case .array(let elements): elements.contains { $0.containsNaN }
        case .map(let map): map.values.contains { $0.containsNaN }
        default: false
        }
    }
}

@_cdecl("FuzzMessagePack_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, { data, size in fuzzMessagePack(data, size) })
}
