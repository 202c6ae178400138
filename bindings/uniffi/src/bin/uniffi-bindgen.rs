//! The pinned UniFFI bindgen: generates the Kotlin and Swift bindings from
//! the built cdylib (library mode), at exactly the uniffi version the crate uses.

fn main() {
    uniffi::uniffi_bindgen_main()
}
