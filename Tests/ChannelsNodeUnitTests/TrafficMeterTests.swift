import Testing

@testable import ChannelsNode

/// The rates the API's reports and the admin page show, from the meter's own samples on a made-up clock.
@Suite struct TrafficMeterTests {
    @Test func ratesAreCountsOverTheWindow() {
        let meter = TrafficMeter(window: 5)
        let start = ContinuousClock.now
        meter.sample(now: start)
        #expect(meter.current.messagesIn == 0 && meter.current.groups.isEmpty)
        for second in 1...5 {
            for _ in 0..<10 { meter.countIn() }
            meter.countOut(20)
            for _ in 0..<4 { meter.countGroupMessage("chat_a") }
            if second <= 2 { meter.countGroupMessage("chat_b") }
            meter.sample(now: start + .seconds(second))
        }
        let rates = meter.current
        #expect(rates.messagesIn == 10 && rates.messagesOut == 20)
        #expect(rates.groups["chat_a"] == 4 && rates.groups["chat_b"] == 0.4)
        // Going quiet: the window still holds the last busy second, then nothing.
        for second in 6...9 { meter.sample(now: start + .seconds(second)) }
        #expect(meter.current.messagesIn == 2 && meter.current.groups["chat_a"] == 0.8 && meter.current.groups["chat_b"] == nil)
        meter.sample(now: start + .seconds(10))
        #expect(meter.current.messagesIn == 0 && meter.current.messagesOut == 0 && meter.current.groups.isEmpty)
    }
}
