import CFuzzerDriver
import ChannelsProtocol

/// Any bytes a client sends: parsing either fails with a ProtocolError or yields a value whose serialisation
/// parses back to the same value.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let limits = JSON.Limits(maxSize: 64 * 1024, maxDepth: 32)
    guard let value = try? JSON.parse(bytes: bytes, limits: limits) else { return 0 }
    guard let text = try? JSON.serialize(value) else { return 0 }
    let again = try? JSON.parse(text, limits: JSON.Limits(maxSize: 1 << 20, maxDepth: 32))
    precondition(again == value, "JSON round trip changed \(value): \(text)")
    return 0
}

@_cdecl("FuzzJSON_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, { data, size in fuzzJSON(data, size) })
}
