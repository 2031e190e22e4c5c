import CFuzzerDriver
import ChannelsProtocol

/// Any text frame: decoding either fails with a ProtocolError or yields an object that encodes and decodes
/// back to itself.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzClientFrame(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let limits = ClientFrame.Limits(maxBytes: 64 * 1024, maxDepth: 32)
    guard let object = try? ClientFrame.decode(text, limits: limits) else { return 0 }
    guard let encoded = try? ClientFrame.encode(object) else { return 0 }
    precondition((try? ClientFrame.decode(encoded, limits: ClientFrame.Limits(maxBytes: 1 << 20, maxDepth: 32))) == object)
    return 0
}

@_cdecl("FuzzClientFrame_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, { data, size in fuzzClientFrame(data, size) })
}
