//! Generates the benchmark messages (prost) and the tonic peer's service code
//! from `proto/` with the protoc that `protoc-bin-vendored` ships.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".bench.Payload.data")
        .compile_protos(&["proto/helloworld.proto", "proto/echo.proto"], &["proto"])?;
    Ok(())
}
