//! Regenerates include/tern.h from src/ffi with cbindgen on every build, so the
//! committed header can never drift from the code (CI checks `git diff include/`).

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    match cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            bindings.write_to_file(dir.join("include/tern.h"));
        }
        Err(e) => panic!("cbindgen failed: {e}"),
    }
    // The shared library's SONAME is libtern.so.<major of Cargo.toml's version>;
    // scripts/install.sh installs libtern.so.X.Y.Z with the libtern.so.X and libtern.so
    // links. Decided by the target (CARGO_CFG_TARGET_OS), not the host building it.
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if matches!(
        target_os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly"
    ) {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("CARGO_PKG_VERSION_MAJOR");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libtern.so.{major}");
    }
}
