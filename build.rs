//! Gives the shared library a SONAME, so that a QEMU linked against it
//! records `libqemu_qpl.so.<ABI major>` rather than the build path, and a
//! later compatible library replaces it without relinking QEMU.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libqemu_qpl.so.{major}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
