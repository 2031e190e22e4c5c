import ChannelsProtocol

/// The argument checks every layer makes, with Django's error text, as ``ChannelLayerError``s.
package enum LayerValidation {
    package static func channel(_ name: String, receive: Bool = false) throws(ChannelLayerError) {
        do { try ChannelNames.validateChannel(name, receive: receive) } catch { throw ChannelLayerError(error) }
    }

    package static func group(_ name: String) throws(ChannelLayerError) {
        do { try ChannelNames.validateGroup(name) } catch { throw ChannelLayerError(error) }
    }

    package static func membership(_ group: String, _ channel: String) throws(ChannelLayerError) {
        try self.group(group)
        try self.channel(channel)
    }

    package static func message(_ message: Message) throws(ChannelLayerError) {
        guard message.type != nil else {
            throw ChannelLayerError(.invalidMessage, "a message needs a string 'type' field, like [\"type\": \"chat.message\"]")
        }
    }
}
