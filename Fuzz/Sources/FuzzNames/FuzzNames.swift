import CFuzzerDriver
import ChannelsProtocol

/// Any name: validation answers without crashing, the Bool and the throwing forms agree, and a valid name
/// is ASCII and under 100 characters, as Django requires.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNames(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let name = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let group = ChannelNames.isValidGroup(name)
    precondition(group == ((try? ChannelNames.validateGroup(name)) != nil))
    let channel = ChannelNames.isValidChannel(name)
    precondition(channel == ((try? ChannelNames.validateChannel(name)) != nil))
    if group || channel {
        precondition(name.utf8.count < 100 && name.utf8.allSatisfy { $0 < 0x80 }, "accepted \(name.debugDescription)")
    }
    _ = try? ChannelNames.validateChannel(name, receive: true)
    return 0
}

@_cdecl("FuzzNames_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, { data, size in fuzzNames(data, size) })
}
