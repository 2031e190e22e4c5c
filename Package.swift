// swift-tools-version:6.1
import PackageDescription

// Linux only: the node uses Glibc, /proc, Linux socket options and errno values, and Debian's libhiredis-dev.
// On macOS, build and run it in its Docker image or a Linux VM.
#if !os(Linux)
#error("swift-channels builds on Linux only (Debian or Ubuntu with libhiredis-dev); see the README")
#endif

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "swift-channels",
    products: [
        .library(name: "HiredisClient", targets: ["HiredisClient"]),
        .library(name: "ChannelsProtocol", targets: ["ChannelsProtocol"]),
        .library(name: "ChannelLayers", targets: ["ChannelLayers"]),
        .library(name: "ChannelLayersRedis", targets: ["ChannelLayersRedis"]),
        .library(name: "ChannelsNode", targets: ["ChannelsNode"]),
        .library(name: "ChannelsNodeRunner", targets: ["ChannelsNodeRunner"]),
        .library(name: "ChannelsWebSocketClient", targets: ["ChannelsWebSocketClient"]),
        .library(name: "PerMessageDeflate", targets: ["PerMessageDeflate"]),
        .executable(name: "channels-node", targets: ["ChannelsNodeMain"]),
        .executable(name: "channels-ctl", targets: ["ChannelsCtl"]),
        .executable(name: "channels-bench", targets: ["ChannelsBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        // SHA-1 for the WebSocket handshake; the tests make RSA keys with it.
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        // TLS to Redis (rediss://): BoringSSL through NIO, so no system OpenSSL and no TLS in hiredis.
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        // The server certificate's DNS names, for a strict servername= check (already resolved through jwt-kit).
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
    ],
    targets: [
        // hiredis 0.14.1 from Debian's libhiredis-dev; only HiredisClient imports it.
        .systemLibrary(
            name: "CHiredis",
            pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        // glibc's malloc_trim, for the node to give memory back after a flood; only ChannelsNode imports it.
        .systemLibrary(name: "CMalloc"),
        .target(
            name: "HiredisClient",
            dependencies: [
                "CHiredis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
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
        // The channel layer API, local delivery (inboxes, the dispatcher) and the in-memory layer; no Redis.
        .target(
            name: "ChannelLayers",
            dependencies: [
                "ChannelsProtocol",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        // The Redis layers on channels_redis' wires (pub/sub and core), their sharding and the membership registry.
        .target(
            name: "ChannelLayersRedis",
            dependencies: [
                "ChannelLayers",
                "ChannelsProtocol",
                "HiredisClient",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "OrderedCollections", package: "swift-collections"),
                // Fernet (AES-CBC + HMAC-SHA256) for channels_redis' symmetric_encryption_keys.
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // Consumers, routing and WebSocket serving on SwiftNIO.
        .target(
            name: "ChannelsNode",
            dependencies: [
                "ChannelLayers",
                "CMalloc",
                "ChannelsProtocol",
                "PerMessageDeflate",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            // The browser client (/channels.js), the admin page (/admin, its script and styles) and the API's OpenAPI
            // document (/api/openapi.json), each kept as one readable file.
            resources: [
                .embedInCode("Client/channels.js"), .embedInCode("Admin/admin.html"), .embedInCode("Admin/admin.js"), .embedInCode("Admin/admin.css"),
                .embedInCode("API/openapi.json"),
            ],
            swiftSettings: swiftSettings
        ),
        // The seed articles' apps, served by channels-node: the chat consumer and demo page (004), live model updates (002).
        .target(
            name: "ChannelsChat",
            dependencies: [
                "ChannelsNode",
                "ChannelLayers",
                "ChannelsProtocol",
                .product(name: "OrderedCollections", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        // Django's consumers stay in Python: bridged paths go to swift-channels-worker processes (docs/django-bridge.md).
        .target(
            name: "ChannelsDjangoBridge",
            dependencies: [
                "ChannelsNode",
                "ChannelLayers",
                "ChannelsProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        // Signed webhooks: the cluster's events (group occupied/vacated, members, users online/offline) POSTed to one URL.
        .target(
            name: "ChannelsWebhooks",
            dependencies: [
                "ChannelLayers",
                "ChannelsProtocol",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "OrderedCollections", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        // permessage-deflate (RFC 7692): negotiation and one message's compression, on zlib through compress-nio.
        .target(
            name: "PerMessageDeflate",
            dependencies: [
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // A small WebSocket client on SwiftNIO for tests and the load generator.
        .target(
            name: "ChannelsWebSocketClient",
            dependencies: [
                "ChannelsProtocol",
                "PerMessageDeflate",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // A node from channels-node's flags and environment: the layer, Redis, JWT, API, limits, drain; your routes.
        .target(
            name: "ChannelsNodeRunner",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                "ChannelsNode",
                "ChannelsDjangoBridge",
                "ChannelsWebhooks",
                "ChannelLayers",
                "ChannelLayersRedis",
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // channels-node: the seed apps on a NodeApplication.
        .executableTarget(
            name: "ChannelsNodeMain",
            dependencies: [
                "ChannelsNodeRunner",
                "ChannelsNode",
                "ChannelsChat",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ChannelsCtl",
            dependencies: [
                "HiredisClient",
                "ChannelLayers",
                "ChannelLayersRedis",
                "ChannelsProtocol",
                .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ChannelsBench",
            dependencies: [
                "HiredisClient",
                "ChannelLayers",
                "ChannelLayersRedis",
                "ChannelsProtocol",
                "ChannelsWebSocketClient",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // Starts real redis-server processes for tests; every Redis test goes through it.
        .target(
            name: "ChannelsTestSupport",
            dependencies: [
                "HiredisClient", "ChannelsWebSocketClient",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Tests/ChannelsTestSupport",
            swiftSettings: swiftSettings
        ),
        // Unit tests (no process, no network): `scripts/test --fast` runs these alone.
        .testTarget(
            name: "PerMessageDeflateTests",
            dependencies: ["PerMessageDeflate", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "HiredisClientUnitTests",
            dependencies: ["HiredisClient"],
            swiftSettings: swiftSettings
        ),
        // Real redis-server processes (single, Cluster, Sentinel, TLS).
        .testTarget(
            name: "HiredisClientRedisTests",
            dependencies: ["HiredisClient", "ChannelsTestSupport"],
            swiftSettings: swiftSettings
        ),
        // The README's and the guide's Swift snippets, compiled.
        .testTarget(
            name: "DocumentationTests",
            dependencies: [
                "ChannelsNode", "ChannelsNodeRunner", "ChannelsProtocol", "HiredisClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "OrderedCollections", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ChannelLayersTests",
            dependencies: [
                "ChannelLayers", "ChannelsProtocol",
                .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ChannelLayersRedisUnitTests",
            dependencies: ["ChannelLayers", "ChannelLayersRedis", "ChannelsProtocol", "HiredisClient"],
            swiftSettings: swiftSettings
        ),
        // Real redis-server processes and the real Python channels_redis.
        .testTarget(
            name: "ChannelLayersRedisTests",
            dependencies: [
                "ChannelLayers", "ChannelLayersRedis", "ChannelsProtocol", "HiredisClient", "ChannelsTestSupport",
                .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            exclude: ["Interop"],
            swiftSettings: swiftSettings
        ),
        // The connection's state machines, and WebSocketConnection on NIO's testing channel with an in-memory layer.
        .testTarget(
            name: "ChannelsNodeUnitTests",
            dependencies: [
                "ChannelsNode", "ChannelLayers", "ChannelsProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "OrderedCollections", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        // Real channels-node processes on loopback, with redis-server and Python where a test needs them.
        .testTarget(
            name: "NodeTests",
            dependencies: [
                "ChannelsNode", "ChannelLayers", "ChannelLayersRedis", "ChannelsProtocol", "HiredisClient", "ChannelsTestSupport",
                "ChannelsWebSocketClient",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ],
            exclude: ["Wire"],
            swiftSettings: swiftSettings
        ),
        // Nodes on Redis Cluster, Sentinel and TLS topologies, and the scripted cluster behind haproxy.
        .testTarget(
            name: "NodeClusterTests",
            dependencies: [
                "ChannelsTestSupport", "ChannelsWebSocketClient", "HiredisClient", "ChannelLayers", "ChannelLayersRedis", "ChannelsProtocol",
            ],
            swiftSettings: swiftSettings
        ),
        // Pages in headless Chromium: the demo chat, the admin page, live updates, a page recovering across nodes.
        .testTarget(
            name: "NodeBrowserTests",
            dependencies: ["ChannelsTestSupport", "ChannelsWebSocketClient", "HiredisClient", "ChannelsProtocol"],
            exclude: ["Browser"],
            swiftSettings: swiftSettings
        ),
        // The bridge's node-side state alone: worker pool, scope, wire, a connection's window and reordering.
        .testTarget(
            name: "ChannelsDjangoBridgeUnitTests",
            dependencies: ["ChannelsDjangoBridge", "ChannelsNode", "ChannelsProtocol"],
            swiftSettings: swiftSettings
        ),
        // The Django bridge end to end: examples/django-chat's workers behind real nodes on real Redis (and Chromium).
        .testTarget(
            name: "DjangoBridgeTests",
            dependencies: [
                "ChannelsDjangoBridge", "ChannelsNode", "ChannelsProtocol", "ChannelsTestSupport", "ChannelsWebSocketClient",
                .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            exclude: ["Browser", "Scripts"],
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
