// swift-tools-version:5.7
// A greeter client: `cargo build --release -p grpc-core-uniffi` at the repo root, start the
// Rust greeter server, then `swift run Greeter 127.0.0.1:50051` here (macOS). Not compiled in CI.
import PackageDescription

let package = Package(
    name: "GreeterExample",
    platforms: [.macOS(.v10_15)],
    dependencies: [.package(path: "../../bindings/uniffi/swift")],
    targets: [
        .executableTarget(
            name: "Greeter",
            dependencies: [.product(name: "GrpcCore", package: "swift")],
            linkerSettings: [.unsafeFlags(["-L../../target/release"])]
        ),
    ]
)
