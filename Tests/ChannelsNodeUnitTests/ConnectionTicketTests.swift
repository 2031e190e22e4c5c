@testable import ChannelsNode
import NIOCore
import NIOEmbedded
import Testing

@Suite struct ConnectionTicketTests {
    @Test func whatATicketHoldsGoesBackOnceWhenTheSocketCloses() throws {
        let channel = EmbeddedChannel()
        let pending = ConnectionAdmission(limit: 0)
        let admission = ConnectionAdmission(limit: 2)
        let ticket = ConnectionTicket(pending: pending, closing: channel)
        #expect(pending.count == 1)
        #expect(ticket.admit(to: admission))
        #expect(admission.count == 1)
        ticket.releasePending()
        ticket.releasePending()
        #expect(pending.count == 0, "given back once however often it is released")
        _ = try channel.finish()
        #expect(admission.count == 0)
        #expect(pending.count == 0)
    }

    @Test func aPlaceTakenAfterTheSocketClosedGoesBackAtOnce() throws {
        let channel = EmbeddedChannel()
        let pending = ConnectionAdmission(limit: 0)
        let admission = ConnectionAdmission(limit: 1)
        let ticket = ConnectionTicket(pending: pending, closing: channel)
        _ = try channel.finish()
        #expect(pending.count == 0, "the handshake never finished: its place went back with the socket")
        #expect(ticket.admit(to: admission))
        #expect(admission.count == 0)
        // A full node refuses without taking a place.
        #expect(admission.admit())
        let other = ConnectionTicket(pending: pending, closing: EmbeddedChannel())
        #expect(!other.admit(to: admission))
        #expect(admission.count == 1)
    }
}
