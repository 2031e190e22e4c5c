import CFuzzerDriver
import ChannelsProtocol

/// Any bytes from a client's socket, read as frame after frame: each header either is refused, is not there yet,
/// or describes a frame within the limit whose header is 2-14 bytes and is not there one byte earlier.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWebSocketFrames(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let limit = 4096
    var offset = 0
    while offset < bytes.count {
        let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
        guard let header = try? WebSocketFrameHeader.parse(rest, maxPayload: limit) else { return 0 }
        precondition((2...14).contains(header.headerLength) && header.headerLength <= rest.count)
        precondition(header.payloadLength <= limit)
        precondition(!header.isControl || (header.fin && header.payloadLength <= 125))
        let shorter = UnsafeRawBufferPointer(rebasing: rest[..<(header.headerLength - 1)])
        precondition((try? WebSocketFrameHeader.parse(shorter, maxPayload: limit)) == .some(nil), "a header before its last byte")
        offset += header.headerLength + header.payloadLength
    }
    return 0
}

@_cdecl("FuzzWebSocketFrames_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, { data, size in fuzzWebSocketFrames(data, size) })
}
