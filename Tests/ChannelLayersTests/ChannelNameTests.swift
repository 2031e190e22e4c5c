@testable import ChannelLayers
import Testing

struct ChannelNameTests {
    @Test func randomNamesAreThePrefixAndAVersion4UUIDsHexDigits() {
        let names = (0..<1000).map { _ in ChannelName.random(prefix: "asgispecific.") }
        #expect(Set(names).count == names.count)
        for name in names {
            #expect(name.hasPrefix("asgispecific."))
            let hex = Array(name.dropFirst("asgispecific.".count))
            #expect(hex.count == 32 && hex.allSatisfy { $0.isHexDigit && !$0.isUppercase })
            #expect(hex[12] == "4", "the version nibble")
            #expect("89ab".contains(hex[16]), "the variant bits")
        }
    }

    @Test func epochCandidatesAreEightHexDigitsThatDoNotRepeat() {
        let candidates = (0..<100_000).map { _ in ChannelName.epochCandidate() }
        #expect(candidates.allSatisfy { $0.count == 8 && $0.allSatisfy { $0.isHexDigit && !$0.isUppercase } })
        #expect(Set(candidates).count == candidates.count)
    }

    @Test func uniqueBitsDoNotRepeatAndFillWhatIsAsked() {
        let draws = (0..<100_000).map { _ in UniqueBits.next() }
        #expect(Set(draws).count == draws.count)
        var bytes: [UInt8] = [7]
        UniqueBits.append(12, to: &bytes)
        #expect(bytes.count == 13 && bytes[0] == 7)
        var none: [UInt8] = []
        UniqueBits.append(0, to: &none)
        #expect(none.isEmpty)
    }
}
