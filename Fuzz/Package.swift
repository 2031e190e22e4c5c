// swift-tools-version:6.1
// libFuzzer targets for the decoders that read bytes from outside: msgpack from Redis, JSON and client
// frames from WebSocket clients, channel and group names from both, WebSocket frame headers from sockets. Built with `-sanitize=fuzzer,address`
// by `scripts/fuzz`; not part of the main package's build. SwiftPM links an executable's entry as
// `<Module>_main`, so each target defines that and hands over to libFuzzer's `LLVMFuzzerRunDriver`.
import PackageDescription

let targets = ["FuzzMessagePack", "FuzzJSON", "FuzzClientFrame", "FuzzNames", "FuzzWebSocketFrames"]

let package = Package(
    name: "swift-channels-fuzz",
    platforms: [.macOS(.v15)],
    products: targets.map { .executable(name: $0, targets: [$0]) },
    dependencies: [.package(name: "swift-channels", path: "..")],
    targets: [.target(name: "CFuzzerDriver")] + targets.map { name in
        .executableTarget(
            name: name,
            dependencies: ["CFuzzerDriver", .product(name: "ChannelsProtocol", package: "swift-channels")],
            swiftSettings: [.swiftLanguageMode(.v6), .unsafeFlags(["-parse-as-library"])]
        )
    }
)
