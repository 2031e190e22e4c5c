import Foundation
import HiredisClient
import Synchronization
import Testing

@Suite struct RedisClusterSlotTests {
    @Test func slotsAreRedisClusters() {
        // The specification's check value, and slots redis-cli's CLUSTER KEYSLOT gives.
        #expect(RedisClusterSlot.crc16(Array("123456789".utf8)) == 0x31C3)
        #expect(RedisClusterSlot.of("foo") == 12182)
        #expect(RedisClusterSlot.of("bar") == 5061)
        #expect(RedisClusterSlot.of("{user1000}.following") == RedisClusterSlot.of("{user1000}.followers"))
        #expect(RedisClusterSlot.of("asgi__group__{chat_lobby}") == RedisClusterSlot.of("asgi:history:{chat_lobby}:meta"))
        // An empty tag does not count: the whole key is hashed.
        #expect(RedisClusterSlot.of("foo{}{bar}") != RedisClusterSlot.of("bar"))
        #expect(RedisClusterSlot.of("foo{{bar}}zap") == RedisClusterSlot.of("{bar"))
    }

    @Test func routingKeysComeFromTheEncodedCommand() {
        #expect(RedisCommand("SET", "k", "v").routingKey == Array("k".utf8))
        #expect(RedisCommand("EVAL", "return 1", 2, "a", "b", "x").routingKey == Array("a".utf8))
        #expect(RedisCommand("EVAL", "return 1", 0).routingKey == nil)
        #expect(RedisCommand("PING").routingKey == nil)
        #expect(RedisCommand("SPUBLISH", .string("ch"), .bytes([0, 1])).routingKey == Array("ch".utf8))
    }
}

/// Six real `redis-server --cluster-enabled yes` processes formed with `redis-cli --cluster create`.
