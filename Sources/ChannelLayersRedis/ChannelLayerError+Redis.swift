import ChannelLayers
import HiredisClient

extension ChannelLayerError {
    /// A Redis failure while doing `what`.
    package init(_ error: RedisError, doing what: String) {
        self.init(.redis, "\(what) failed: \(error.message)", underlying: error)
    }
}
