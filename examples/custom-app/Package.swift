// swift-tools-version:6.1
import PackageDescription

// An app of its own on swift-channels: live cursor sharing with binary frames. It depends on the framework
// by path here; from another repository, depend on it by URL and version the same way.
let package = Package(
    name: "custom-app",
    platforms: [.macOS(.v15)],
    products: [.executable(name: "cursor-node", targets: ["CursorNode"])],
    dependencies: [
        .package(name: "swift-channels", path: "../.."),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        // The consumer and its page: the app.
        .target(
            name: "CursorSharing",
            dependencies: [.product(name: "ChannelsNode", package: "swift-channels"), .product(name: "ChannelsProtocol", package: "swift-channels")]
        ),
        // The node: channels-node's flags and environment, this app's route.
        .executableTarget(
            name: "CursorNode",
            dependencies: [
                "CursorSharing",
                .product(name: "ChannelsNodeRunner", package: "swift-channels"),
                .product(name: "ChannelsNode", package: "swift-channels"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "CursorSharingTests",
            dependencies: ["CursorSharing", .product(name: "ChannelsWebSocketClient", package: "swift-channels")]
        ),
    ]
)
