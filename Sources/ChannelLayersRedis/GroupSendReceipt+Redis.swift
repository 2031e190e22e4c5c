import ChannelLayers
import HiredisClient

extension GroupSendReceipt {
    /// Fails the receipt with a reply's error (an error reply, or no reply) and returns nil; returns the reply
    /// when Redis took the command, leaving the receipt to the caller.
    func failUnlessTaken(_ result: Result<RedisReply, RedisError>, command: String, doing what: String) -> RedisReply? {
        switch result {
        case .success(.error(let text)):
            complete(ChannelLayerError(RedisError.fromErrorReply(text, command: command), doing: what))
            return nil
        case .success(let reply):
            return reply
        case .failure(let error):
            complete(ChannelLayerError(error, doing: what))
            return nil
        }
    }
}
