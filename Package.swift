// swift-tools-version:6.0
import PackageDescription

/// Hot numeric code (quant dot products, the CPU backend) is built optimized even in debug builds,
/// so that `swift test` runs real models in reasonable time on a 2-core machine. On x86-64 it targets
/// Haswell-level CPUs (AVX2, FMA, F16C: every x86 server since 2013), which the int8 dot products need.
#if arch(x86_64)
let cpuFlags = ["-target-cpu", "haswell", "-Xcc", "-mavx2", "-Xcc", "-mfma", "-Xcc", "-mf16c"]
#else
let cpuFlags: [String] = []
#endif
let optimizedAlways: [SwiftSetting] = [
    .unsafeFlags(["-O", "-enforce-exclusivity=unchecked"] + cpuFlags),
]

let package = Package(
    name: "Shard",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "shardctl", targets: ["shardctl"]),
        .executable(name: "shard-worker", targets: ["shard-worker"]),
        .library(name: "ShardCore", targets: ["GGUF", "Quant", "Tokenizer", "Model", "Compute", "ShardRuntime", "Coordinator"]),
        .library(name: "ShardWire", targets: ["Wire"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.70.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
    ],
    targets: [
        .target(name: "GGUF", swiftSettings: optimizedAlways),
        .target(name: "Quant", dependencies: ["GGUF"], swiftSettings: optimizedAlways),
        .target(name: "Tokenizer", dependencies: ["GGUF"], swiftSettings: optimizedAlways),
        .target(name: "Model", dependencies: ["GGUF", "Quant"]),
        .target(name: "Compute", dependencies: ["GGUF", "Quant"], swiftSettings: optimizedAlways),
        .systemLibrary(name: "CVulkan", path: "Sources/CVulkan", pkgConfig: "vulkan", providers: [.apt(["libvulkan-dev"])]),
        .target(name: "VulkanBackend", dependencies: ["Compute", "GGUF", "Quant", "CVulkan"], swiftSettings: optimizedAlways),
        .target(name: "ShardRuntime", dependencies: ["GGUF", "Quant", "Model", "Compute", "VulkanBackend", "Wire"], swiftSettings: optimizedAlways),
        .target(name: "Coordinator", dependencies: ["GGUF", "Tokenizer", "Model", "Compute", "VulkanBackend", "ShardRuntime", "Wire", .product(name: "Logging", package: "swift-log")], swiftSettings: optimizedAlways),
        // Wire protocol: protoc-c output (scripts/gen-proto.sh) compiled as C over libprotobuf-c, libzmq through
        // a module map (no pkgConfig: libzmq.pc adds -isystem flags SwiftPM rejects), and the Swift frames +
        // sockets. Wire is a leaf: no dependency on the numeric modules.
        .systemLibrary(name: "CZmq", providers: [.apt(["libzmq3-dev"])]),
        .target(name: "CShardProto", linkerSettings: [.linkedLibrary("protobuf-c")]),
        .target(name: "Wire", dependencies: ["CShardProto", "CZmq"], swiftSettings: optimizedAlways),
        // The OpenAI-compatible HTTP server over an InferenceEngine: Hummingbird, SSE, Prometheus metrics.
        .target(name: "Server", dependencies: [
            "Tokenizer", "Coordinator", "Wire",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .target(name: "ShardCLI", dependencies: [
            "GGUF", "Quant", "Tokenizer", "Model", "Compute", "ShardRuntime", "Coordinator", "VulkanBackend", "Wire", "Server",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "shardctl", dependencies: ["ShardCLI"]),
        .executableTarget(name: "shard-worker", dependencies: ["ShardCLI"]),
        .testTarget(name: "GGUFTests", dependencies: ["GGUF"]),
        .testTarget(name: "QuantTests", dependencies: ["GGUF", "Quant"], resources: [.copy("Golden")]),
        .testTarget(name: "TokenizerTests", dependencies: ["GGUF", "Tokenizer"]),
        .testTarget(name: "ModelTests", dependencies: ["GGUF", "Quant", "Model", "Compute", "ShardRuntime", "Coordinator", "Tokenizer"]),
        .testTarget(name: "VulkanBackendTests", dependencies: ["VulkanBackend", "Compute", "GGUF", "Quant", "Model", "ShardRuntime", "Coordinator"]),
        .testTarget(name: "CLITests", dependencies: ["ShardCLI", "Wire", "Coordinator", "ShardRuntime", "Compute"]),
        .testTarget(name: "ServerTests", dependencies: ["Server", "Coordinator", "Tokenizer"]),
        .testTarget(name: "WireTests", dependencies: ["Wire", "CShardProto", "CZmq"]),
    ],
    // Swift 5 mode: the numeric core passes raw pointers into worker threads, which Swift 6's
    // strict Sendable checking rejects without adding any safety here.
    swiftLanguageModes: [.v5]
)
