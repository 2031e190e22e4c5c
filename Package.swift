// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "swift-channels",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "HiredisClient", targets: ["HiredisClient"]),
        .library(name: "ChannelsProtocol", targets: ["ChannelsProtocol"]),
        .library(name: "ChannelLayers", targets: ["ChannelLayers"]),
        .executable(name: "channels-ctl", targets: ["ChannelsCtl"]),
        .executable(name: "channels-bench", targets: ["ChannelsBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        // hiredis 0.14.1 from Debian's libhiredis-dev; only HiredisClient imports it.
        .systemLibrary(
            name: "CHiredis",
            pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        .target(
            name: "HiredisClient",
            dependencies: [
                "CHiredis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        // Messages, msgpack, names and the client frame format: shared by the layer, node, ctl and bench.
        .target(
            name: "ChannelsProtocol",
            dependencies: [.product(name: "OrderedCollections", package: "swift-collections")],
            swiftSettings: swiftSettings
        ),
        // The channel layer API, the in-memory layer and the Redis pub/sub layer.
        .target(
            name: "ChannelLayers",
            dependencies: [
                "ChannelsProtocol",
                "HiredisClient",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ChannelsCtl",
            dependencies: [
                "HiredisClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ChannelsBench",
            dependencies: [
                "HiredisClient",
                "ChannelLayers",
                "ChannelsProtocol",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // Starts real redis-server processes for tests; every Redis test goes through it.
        .target(
            name: "ChannelsTestSupport",
            dependencies: ["HiredisClient"],
            path: "Tests/ChannelsTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "HiredisClientTests",
            dependencies: ["HiredisClient", "ChannelsTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ChannelLayersTests",
            dependencies: [
                "ChannelLayers", "ChannelsProtocol", "HiredisClient", "ChannelsTestSupport",
                .product(name: "OrderedCollections", package: "swift-collections"),
            ],
            exclude: ["Interop"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ChannelsProtocolTests",
            dependencies: ["ChannelsProtocol", .product(name: "OrderedCollections", package: "swift-collections")],
            swiftSettings: swiftSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
