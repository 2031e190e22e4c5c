import DequeModule
import Logging
import NIOCore
import NIOPosix
import Synchronization

extension RedisSubscriber {
    /// A change of the subscriber's connection state.
    public enum Event: Sendable, Hashable {
        /// The first connection is up and every requested subscription is active.
        case connected
        /// The connection dropped; messages published until ``resubscribed(channels:patterns:)`` are lost.
        case connectionLost(RedisError)
        /// A connection attempt failed; the next one starts after `retryIn`.
        case connectFailed(RedisError, attempt: Int, retryIn: Duration)
        /// A new connection is up after a loss and every subscription is active again.
        case resubscribed(channels: Int, patterns: Int)
        /// ``run()`` ended: `nil` when cancelled, or the error that cannot be fixed by retrying (bad credentials).
        case stopped(RedisError?)
        /// Redis ended a shard channel subscription by itself (its slot moved to another node, or this node
        /// stopped being a primary); the channel is dropped from the set, to be subscribed where it now lives.
        case unsubscribedByServer(channel: String)
    }

    /// Counters since the subscriber was created.
    public struct Statistics: Sendable, Hashable {
        /// How many times an established connection was lost.
        public var connectionsLost = 0
        /// How many times subscriptions were restored on a new connection.
        public var resubscriptions = 0
        /// Messages received from Redis.
        public var messagesReceived = 0
        /// Failed connection attempts.
        public var connectFailures = 0
    }

    /// The messages received on every subscribed channel and pattern. Iterate it from one task only.
    public struct Messages: AsyncSequence, Sendable {
        public typealias Element = RedisPubSubMessage
        typealias Base = NIOAsyncSequenceProducer<
            RedisPubSubMessage, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, ReadDemand
        >
        let base: Base

        public struct AsyncIterator: AsyncIteratorProtocol {
            var base: Base.AsyncIterator
            public mutating func next() async -> RedisPubSubMessage? { await base.next() }
        }

        public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: base.makeAsyncIterator()) }
    }
}
