import ChannelLayers
import HiredisClient

extension ChannelLayerError {
    /// A Redis failure while doing `what`.
    package init(_ error: RedisError, doing what: String) {
        self.init(.unavailable, "\(what) failed: \(error.message)", underlying: error, mayHaveTakenEffect: error.mayHaveRun)
    }
}

extension RedisConfiguration {
    /// Redis URLs parsed, failing with the first one that is not a valid URL.
    package static func hosts(_ urls: [String]) throws(ChannelLayerError) -> [RedisConfiguration] {
        var hosts: [RedisConfiguration] = []
        for url in urls {
            do { hosts.append(try RedisConfiguration(url: url)) } catch { throw ChannelLayerError(error, doing: "reading the Redis URL") }
        }
        return hosts
    }
}
