// swift-tools-version:6.1
// libFuzzer targets for the decoders that read bytes from outside: msgpack from Redis, JSON and client
// frames from WebSocket clients, channel and group names from both. Built with `-sanitize=fuzzer,address`
// by `scripts/fuzz`, which links libFuzzer's own `main`; not part of the main package's build.
import PackageDescription

let targets = ["FuzzMessagePack", "FuzzJSON", "FuzzClientFrame", "FuzzNames"]

let package = Package(
    name: "swift-channels-fuzz",
    platforms: [.macOS(.v15)],
    products: targets.map { .executable(name: $0, targets: [$0]) },
    dependencies: [.package(name: "swift-channels", path: "..")],
    targets: targets.map { name in
        .executableTarget(
            name: name,
            dependencies: [.product(name: "ChannelsProtocol", package: "swift-channels")],
            swiftSettings: [.swiftLanguageMode(.v6), .unsafeFlags(["-parse-as-library"])]
        )
    }
)
