//! Gives libgrpc_core.so the SONAME `libgrpc_core.so.<MAJOR>` so that
//! programs record the ABI major version they were linked against (the
//! library is installed as libgrpc_core.so.<MAJOR> with a libgrpc_core.so
//! link for the linker; `ffi-c/scripts/c.sh` makes the same link next to
//! the build output).

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libgrpc_core.so.{major}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
