import ChannelLayers
import ChannelsProtocol

/// What both Redis layers check of their settings before they start, with the same words.
enum RedisLayerChecks {
    /// A node id is a registry key part: letters, digits, `-`, `_`, `.`.
    static func nodeID(_ id: String) throws(ChannelLayerError) {
        guard ChannelNames.isValidGroup(id) else {
            throw ChannelLayerError(.invalidName, "node id '\(id)' may only hold ASCII letters, digits, '-', '_' and '.'")
        }
    }

    /// Django's `symmetric_encryption_keys`: none may be empty.
    static func encryptionKeys(_ keys: [String]) throws(ChannelLayerError) {
        if keys.contains(where: \.isEmpty) {
            throw ChannelLayerError(.invalidMessage, "an encryption key is empty; give each key on a line or between commas")
        }
    }

    /// Whether a group is listed in the registry: not one of the nodes' own (`unlisted` prefixes).
    static func isListed(_ group: String, unlisted: [String]) -> Bool {
        !unlisted.contains { group.hasPrefix($0) }
    }
}
