import ChannelsProtocol
import OrderedCollections
import Testing

@Suite struct ChannelNamesTests {
    @Test(arguments: ["chat_lobby", "a", "A-b_c.d", String(repeating: "g", count: 99)])
    func validGroups(name: String) throws {
        try ChannelNames.validateGroup(name)
    }

    @Test(arguments: ["", "chat lobby", "chat/lobby", "chat!", "grüße", "chat\n", "١٢٣", String(repeating: "g", count: 100)])
    func invalidGroupsGetDjangosText(name: String) {
        #expect {
            try ChannelNames.validateGroup(name)
        } throws: { error in
            (error as? ProtocolError)?.message
                == "Group name must be a valid unicode string with length < 100 containing only ASCII alphanumerics, hyphens, underscores, or periods."
        }
    }

    @Test(arguments: ["asgispecific.56cd0123456789abcdef0123456789ab", "specific.abc!def", "specific.abc!", "x"])
    func validChannels(name: String) throws {
        try ChannelNames.validateChannel(name)
    }

    @Test(arguments: ["!abc", "a!b!c", "a b", "a!é", ""])
    func invalidChannels(name: String) {
        #expect {
            try ChannelNames.validateChannel(name)
        } throws: { error in
            (error as? ProtocolError)?.message.hasPrefix("Channel name must be a valid unicode string") == true
        }
    }

    @Test func receiveNamesMustEndAtTheBang() throws {
        try ChannelNames.validateChannel("specific.abc!", receive: true)
        #expect {
            try ChannelNames.validateChannel("specific.abc!def", receive: true)
        } throws: { error in
            (error as? ProtocolError)?.message == "Specific channel names in receive() must end at the !"
        }
    }

    @Test func handlerNames() throws {
        #expect(try Message.handlerName(forType: "chat.message") == "chat_message")
        #expect(try Message.handlerName(forType: "websocket.receive") == "websocket_receive")
        #expect(throws: ProtocolError.self) { try Message.handlerName(forType: ".hidden") }
        #expect(throws: ProtocolError.self) { try Message.handlerName(forType: "_private") }
        let untyped: Message = ["message": "hi"]
        #expect {
            try untyped.handlerName()
        } throws: { error in
            (error as? ProtocolError)?.message == "Incoming message has no 'type' attribute"
        }
    }
}

@Suite struct JSONTests {
    @Test func parsesAndKeepsOrder() throws {
        let value = try JSON.parse(#" {"message": "hi \"there\" \u00e9\ud83d\ude00", "n": -12, "f": 2.5e1, "ok": true, "z": null, "l": [1, {"a": []}]} "#)
        #expect(value.map.map { Array($0.keys) } == ["message", "n", "f", "ok", "z", "l"])
        #expect(value["message"] == "hi \"there\" é😀")
        #expect(value["n"] == -12)
        #expect(value["f"] == 25.0)
        #expect(value["ok"] == true)
        #expect(value["z"] == .null)
        #expect(value["l"] == [1, ["a": []]])
    }

    @Test func serializesCompactly() throws {
        let text = try JSON.serialize(["message": "line\nbreak \"q\" \u{01}", "n": 3, "f": 1.0, "a": [true, nil]])
        #expect(text == #"{"message":"line\nbreak \"q\" \u0001","n":3,"f":1.0,"a":[true,null]}"#)
        #expect(try JSON.parse(text) == ["message": "line\nbreak \"q\" \u{01}", "n": 3, "f": 1.0, "a": [true, nil]])
    }

    /// Strings that need no escaping are copied whole; the rest go scalar by scalar. Both paths, one result.
    @Test(arguments: [
        ("plain ascii", #""plain ascii""#), ("한국어 채팅 ✓", #""한국어 채팅 ✓""#), ("", #""""#),
        ("tab\there", #""tab\there""#), ("back\\slash", #""back\\slash""#), ("sep\u{2028}", #""sep\u2028""#),
        ("\u{2000}\u{2029}", "\"\u{2000}\\u2029\""), ("\u{1F}", #""\u001f""#),
    ])
    func stringsEscapeOnlyWhatJSONNeeds(text: String, json: String) throws {
        #expect(try JSON.serialize(.string(text)) == json)
        #expect(try JSON.parse(json) == .string(text))
    }

    @Test(arguments: [
        ("", "unexpected end"), ("{", "an object key must be a string"), ("{\"a\" 1}", "expected ':'"),
        ("[1,]", "unexpected character"), ("01", "unexpected text after"), ("\"\\x\"", "an invalid escape"),
        ("\"\u{01}\"", "a control character"), ("nul", "unexpected end"), ("\"\\ud800\"", "high surrogate"),
        ("1e999", "out of range"), ("{\"a\":1} x", "unexpected text after"),
    ])
    func malformedTextFailsWithAReason(text: String, reason: String) {
        #expect {
            try JSON.parse(text)
        } throws: { error in
            guard let error = error as? ProtocolError else { return false }
            return error.code == .invalidJSON && error.message.contains(reason)
        }
    }

    @Test func depthAndSizeAreBounded() {
        #expect(throws: ProtocolError.self) { try JSON.parse(String(repeating: "[", count: 10_000)) }
        #expect(throws: ProtocolError.self) { try JSON.parse("\"" + String(repeating: "a", count: 100) + "\"", limits: .init(maxSize: 50)) }
    }

    @Test func bytesAndNaNAreUnrepresentable() {
        #expect(throws: ProtocolError.self) { try JSON.serialize(.bytes([1])) }
        #expect(throws: ProtocolError.self) { try JSON.serialize(.double(.nan)) }
    }

    @Test func clientFramesAreObjects() throws {
        #expect(try ClientFrame.decode(#"{"message":"hi"}"#) == ["message": "hi"])
        #expect {
            try ClientFrame.decode("[1]")
        } throws: { error in
            (error as? ProtocolError)?.code == .invalidMessage
        }
        #expect {
            try ClientFrame.decode("not json")
        } throws: { error in
            (error as? ProtocolError)?.code == .invalidJSON
        }
        #expect(ClientFrame.error(.invalidJSON, detail: "bad") == #"{"type":"error","error":"invalid_json","detail":"bad"}"#)
        #expect(try ClientFrame.encode(["message": "hi"]) == #"{"message":"hi"}"#)
    }
}
