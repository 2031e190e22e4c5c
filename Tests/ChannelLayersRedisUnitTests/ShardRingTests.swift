import ChannelLayers
import ChannelLayersRedis
import ChannelsProtocol
import HiredisClient
import Testing

@Suite struct ShardRingTests {
    @Test func matchesChannelsRedisVectors() {
        #expect(ShardRing.index(of: "key_one", hostCount: 2) == 1)
        #expect(ShardRing.index(of: "key_two", hostCount: 2) == 0)
        #expect(ShardRing.index(of: "key_one", hostCount: 10) == 6)
        #expect(ShardRing.index(of: "key_two", hostCount: 10) == 4)
        #expect(ShardRing.index(of: "anything", hostCount: 1) == 0)
        #expect(ShardRing.crc32(Array("123456789".utf8)) == 0xCBF4_3926)
    }
}
