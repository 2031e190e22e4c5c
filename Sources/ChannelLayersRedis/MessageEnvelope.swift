import ChannelLayers
import ChannelsProtocol
import OrderedCollections

/// A message's bytes in Redis as channels_redis' serializer makes them: `randomPrefixLength` random bytes
/// (the core layer's 12, so equal messages stay distinct members of a sorted set; none on pub/sub), then
/// msgpack, Fernet-encrypted when `symmetric_encryption_keys` are set.
package struct MessageEnvelope: Sendable {
    package let randomPrefixLength: Int
    package let crypter: MultiFernet?
    /// Seconds an encrypted body stays readable (core layer: expiry + 10; pub/sub: no limit).
    package let ttl: Int64?

    package init(randomPrefixLength: Int, encryptionKeys: [String], ttl: Int64?) {
        self.randomPrefixLength = randomPrefixLength
        self.crypter = encryptionKeys.isEmpty ? nil : MultiFernet(channelsKeys: encryptionKeys)
        self.ttl = ttl
    }

    package func seal(_ message: Message) -> [UInt8] {
        var body: [UInt8] = []
        // Only distinct, as channels_redis' own (Python's `random`): the system generator made a system call per
        // byte, twelve per message.
        UniqueBits.append(randomPrefixLength, to: &body)
        if let crypter {
            body.append(contentsOf: crypter.encrypt(MessagePack.encode(message)))
        } else {
            MessagePack.encode(message, into: &body)
        }
        return body
    }

    /// ``seal(_:)`` of `message` with `key` added, whose value is msgpack already (see
    /// `MessagePack.encode(_:adding:encodedValue:into:)`).
    package func seal(_ message: Message, adding key: String, encodedValue: [UInt8]) -> [UInt8] {
        var body: [UInt8] = []
        body.reserveCapacity(randomPrefixLength + encodedValue.count + 64)
        UniqueBits.append(randomPrefixLength, to: &body)
        if let crypter {
            var plain: [UInt8] = []
            MessagePack.encode(message, adding: key, encodedValue: encodedValue, into: &plain)
            body.append(contentsOf: crypter.encrypt(plain))
        } else {
            MessagePack.encode(message, adding: key, encodedValue: encodedValue, into: &body)
        }
        return body
    }

    /// The message, and the raw msgpack of the local channels it names (the core layer's `__asgi_channel__`,
    /// removed from it; nil when it names none). ``channels(in:)`` reads that list.
    package func open(_ body: [UInt8]) throws(MessageEnvelopeError) -> (message: Message, target: [UInt8]?) {
        guard body.count > randomPrefixLength || randomPrefixLength == 0 else { throw .undecodable("a body of \(body.count) bytes is shorter than its random prefix") }
        let payload = body[randomPrefixLength...]
        do {
            let decoded =
                if let crypter {
                    try MessagePack.decodeMessage(try crypter.decrypt(payload, ttl: ttl), settingAside: CoreWire.channelField)
                } else {
                    try MessagePack.decodeMessage(payload, settingAside: CoreWire.channelField)
                }
            return (decoded.message, decoded.setAside)
        } catch let error as FernetError {
            throw .undecryptable(error.reason)
        } catch {
            throw .undecodable("\(error)")
        }
    }

    /// The channels a message's `__asgi_channel__` names, as listed (a channel may be named more than once):
    /// one name, or a list of them; entries that are not strings name nothing.
    package static func channels(in target: [UInt8]) throws(MessageEnvelopeError) -> [String] {
        let value: MessageValue
        do {
            value = try MessagePack.decode(target)
        } catch {
            throw .undecodable("its \(CoreWire.channelField): \(error)")
        }
        switch value {
        case .string(let channel): return [channel]
        case .array(let list): return list.compactMap(\.string)
        default: return []
        }
    }
}

/// Why bytes from Redis were not delivered.
package enum MessageEnvelopeError: Error, Sendable {
    /// It is not a msgpack map after its random prefix.
    case undecodable(String)
    /// None of the layer's keys decrypts it (another key, or no encryption on the sender), or it is too old.
    case undecryptable(String)
}
