//! The model library answers Intel QPL's `dlopen("libaccel-config.so.1")`:
//! glibc hands back an already loaded object whose SONAME matches the name,
//! so the preloaded model is also the accel-config library QPL asks for.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libaccel-config.so.1");
}
