// swift-tools-version:5.7
// GrpcCore for Swift: the generated UniFFI bindings over libgrpc_core_uniffi.
// Build the library first: `cargo build --release -p grpc-core-uniffi` (from the repo root).
import PackageDescription

let package = Package(
    name: "GrpcCore",
    platforms: [.macOS(.v10_15), .iOS(.v13)],
    products: [.library(name: "GrpcCore", targets: ["GrpcCore"])],
    targets: [
        .target(name: "GrpcCoreFFI", path: "Sources/GrpcCoreFFI"),
        .target(
            name: "GrpcCore",
            dependencies: ["GrpcCoreFFI"],
            path: "Sources/GrpcCore",
            linkerSettings: [.linkedLibrary("grpc_core_uniffi"), .unsafeFlags(["-L../../target/release"])]
        ),
    ]
)
