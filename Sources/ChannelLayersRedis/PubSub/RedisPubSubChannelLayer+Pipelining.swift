import ChannelLayers
import ChannelsProtocol
import HiredisClient
import Synchronization

extension RedisPubSubChannelLayer: PipelinedGroupSendLayer {
    /// Queues the group's `PUBLISH`, or its history script, on the shard's live connection in call order.
    /// Nil (send it with ``groupSend(_:to:)``) while the shard is reconnecting, and on Redis Cluster, whose
    /// client picks a node per call.
    public func startGroupSend(_ message: Message, to group: String) throws(ChannelLayerError) -> GroupSendReceipt? {
        try LayerValidation.group(group)
        try LayerValidation.message(message)
        let channel = groupChannel(group)
        guard let connection = (shard(for: channel).client as? RedisClient)?.liveConnection else { return nil }
        // Offsets and epochs come from the history script only: a sender's own are never passed on.
        let message = Self.stripHistoryKeys(message).message
        let receipt = GroupSendReceipt()
        let failure: RedisError?
        if configuration.history.keepsHistory(group) {
            let payload = MessagePack.encode(message)
            failure = HistoryScript.publishScript.enqueue(historyPublishArguments(group: group, payload: payload), on: connection) { [self] result in
                guard receipt.failUnlessTaken(result, command: "EVALSHA", doing: "publishing to \(channel) with history") != nil else { return }
                state.withLock {
                    $0.historyBytesWritten += payload.count + 30
                    $0.groupSends += 1
                }
                receipt.complete(nil)
            }
        } else {
            failure = connection.enqueue(RedisCommand(publishCommand, .string(channel), .bytes(envelope.seal(message)))) { [self, publishCommand] result in
                guard receipt.failUnlessTaken(result, command: publishCommand, doing: "publishing to \(channel)") != nil else { return }
                state.withLock { $0.groupSends += 1 }
                receipt.complete(nil)
            }
        }
        // Not queued (the connection closed just now): nothing was sent, so the caller's own send is no repeat.
        if failure != nil { return nil }
        return receipt
    }
}
