import Testing

@testable import ChannelLayersRedis

/// How the core layer splits channel names into a process's queue (channels_redis' `non_local_name`).
struct CoreWireTests {
    @Test func aProcessChannelsNonLocalNameEndsAtItsFirstBang() {
        #expect(CoreWire.nonLocalName("specific.ab12!cd34") == "specific.ab12!")
        #expect(CoreWire.nonLocalName("specific.ab12!cd!34") == "specific.ab12!")
        #expect(CoreWire.nonLocalName("chat.room") == "chat.room", "a name without a bang is its own queue")
        #expect(CoreWire.nonLocalName("späcific.é!ü") == "späcific.é!")
        #expect(CoreWire.queueKey(prefix: "asgi", channel: "specific.ab12!cd34") == "asgispecific.ab12!")
    }

    @Test func aChannelIsLocalToTheProcessWhoseNameItStartsWith() {
        #expect(CoreWire.isLocal("specific.ab12!cd34", of: "specific.ab12!"))
        #expect(!CoreWire.isLocal("specific.ab13!cd34", of: "specific.ab12!"))
        #expect(!CoreWire.isLocal("specific.ab12!", of: "specific.ab12!"), "the process's own name has no local part")
        #expect(!CoreWire.isLocal("specific.ab12x", of: "specific.ab12"), "only a name ending in a bang names a process")
        #expect(!CoreWire.isLocal("chat", of: "specific.ab12!"))
        #expect(CoreWire.isLocal("späcific.é!ü", of: "späcific.é!"))
    }
}
