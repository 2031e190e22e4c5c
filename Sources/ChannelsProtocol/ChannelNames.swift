/// Django Channels' rules for channel and group names, checked strictly as ASCII.
///
/// - Channel: `[a-zA-Z0-9-_.]+` optionally followed by `!` and `[a-zA-Z0-9-_.]*`; group: `[a-zA-Z0-9-_.]+`.
/// - Fewer than 100 characters.
///
/// Python's regular expressions also let through a trailing newline and non-ASCII digits; these checks do
/// not, so a name accepted here is accepted by every Django process too.
public enum ChannelNames {
    /// Names must be shorter than this.
    public static let maxLength = 100

    /// Throws Django Channels' `TypeError` text when `name` is not a valid group name.
    public static func validateGroup(_ name: String) throws(ProtocolError) {
        guard isValidGroup(name) else { throw invalid("Group") }
    }

    /// Throws Django Channels' `TypeError` text when `name` is not a valid channel name.
    /// - Parameter receive: names passed to `receive` must end at the `!` when they have one.
    public static func validateChannel(_ name: String, receive: Bool = false) throws(ProtocolError) {
        guard isValidChannel(name) else { throw invalid("Channel") }
        if receive, let bang = name.utf8.firstIndex(of: UInt8(ascii: "!")), name.utf8.index(after: bang) != name.utf8.endIndex {
            throw ProtocolError(.invalidName, "Specific channel names in receive() must end at the !")
        }
    }

    public static func isValidGroup(_ name: String) -> Bool {
        let bytes = name.utf8
        return !bytes.isEmpty && bytes.count < maxLength && bytes.allSatisfy(isNameByte)
    }

    public static func isValidChannel(_ name: String) -> Bool {
        let bytes = name.utf8
        guard !bytes.isEmpty, bytes.count < maxLength else { return false }
        guard let bang = bytes.firstIndex(of: UInt8(ascii: "!")) else { return bytes.allSatisfy(isNameByte) }
        let prefix = bytes[..<bang]
        let suffix = bytes[bytes.index(after: bang)...]
        return !prefix.isEmpty && prefix.allSatisfy(isNameByte) && suffix.allSatisfy(isNameByte)
    }

    /// Django Channels' error text for an invalid name of `kind` ("Group" or "Channel").
    public static func errorText(_ kind: String) -> String {
        "\(kind) name must be a valid unicode string with length < \(maxLength) containing only ASCII alphanumerics, hyphens, underscores, or periods."
    }

    private static func invalid(_ kind: String) -> ProtocolError {
        ProtocolError(.invalidName, errorText(kind))
    }

    @inline(__always)
    private static func isNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."):
            true
        default:
            false
        }
    }
}
