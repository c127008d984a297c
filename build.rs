//! Generates the C header from src/ffi with cbindgen into OUT_DIR. With
//! `MMPOOL_UPDATE_HEADER=1` it also writes include/mmpool.h; a test fails when
//! the checked-in header differs from the generated one.

use std::path::PathBuf;

const PREAMBLE: &str = "\
/*
 * mmpool: a byte budget for GPU memory with first-come-first-served waiting.
 *
 * Decoders acquire the bytes they are about to allocate on the device and
 * release them after freeing. Every fallible function returns mmpool_status,
 * writes its out-parameters only on success, and on failure leaves a message
 * for mmpool_last_error() on the calling thread. All functions are thread-safe.
 * No function ever unwinds into C.
 */";

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=MMPOOL_UPDATE_HEADER");

    // The shared library's SONAME carries the major version, as C libraries do.
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,-soname,libmmpool.so.{}",
        std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap()
    );

    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let mut config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let version = |key: &str| std::env::var(key).unwrap();
    config.header = Some(PREAMBLE.to_string());
    config.after_includes = Some(format!(
        "\n#define MMPOOL_VERSION_MAJOR {}\n#define MMPOOL_VERSION_MINOR {}\n#define MMPOOL_VERSION_PATCH {}\n\
         #define MMPOOL_VERSION_STRING \"{}\"\n",
        version("CARGO_PKG_VERSION_MAJOR"),
        version("CARGO_PKG_VERSION_MINOR"),
        version("CARGO_PKG_VERSION_PATCH"),
        version("CARGO_PKG_VERSION"),
    ));

    // Only the C boundary (src/ffi and the modules it declares) is parsed,
    // so that nothing the engine declares `pub` for Rust leaks into C.
    let builder = cbindgen::Builder::new().with_config(config).with_src(dir.join("src/ffi/mod.rs"));
    let generated = builder.generate().expect("cbindgen could not generate the header");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("mmpool.h");
    generated.write_to_file(&out);
    if std::env::var("MMPOOL_UPDATE_HEADER").is_ok_and(|v| v == "1") {
        generated.write_to_file(dir.join("include").join("mmpool.h"));
    }
}
