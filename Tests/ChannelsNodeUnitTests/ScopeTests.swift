import Testing

@testable import ChannelsNode

@Suite struct ScopeTests {
    @Test func headersComeBackAsTheyWereGivenInOrder() {
        let long = String(repeating: "v", count: 300)  // a length past one varint byte
        let given: [(name: String, value: String)] = [
            ("host", "127.0.0.1:8000"), ("cookie", "sessionid=abc; csrftoken=d\u{e9}f"), ("x-long", long), ("x-empty", ""), ("cookie", "second"),
        ]
        let scope = Scope(path: "/ws/", headers: given)
        #expect(scope.headers.map(\.name) == given.map(\.name))
        #expect(scope.headers.map(\.value) == given.map(\.value))
        #expect(scope.header("Cookie") == "sessionid=abc; csrftoken=d\u{e9}f", "the first of a repeated name, any case")
        #expect(scope.header("x-long") == long)
        #expect(scope.header("x-empty") == "")
        #expect(scope.header("origin") == nil)
    }

    @Test func headersCanBeReplacedAndAScopeWithoutHeadersHasNone() {
        var scope = Scope(path: "/ws/")
        #expect(scope.headers.isEmpty)
        #expect(scope.header("host") == nil)
        scope.headers.append((name: "authorization", value: "Bearer token"))
        #expect(scope.header("authorization") == "Bearer token")
        #expect(scope.headers.count == 1)
    }
}
