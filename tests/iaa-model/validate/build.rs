//! Compiles `csrc/qpl_path.c` against Intel QPL 1.9.0's headers. The
//! `reference-codecs` dependency fetches, verifies and unpacks Debian's
//! `libqpl-dev` (pinned in `scripts/inputs.lock`) and hands its include
//! directory to this script as `DEP_QPL_INCLUDE`; it also links the library
//! itself (static `libqpl.a`, libstdc++, the glibc shim).

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc");
    let include = env::var_os("DEP_QPL_INCLUDE").map(PathBuf::from).expect(
        "iaa-validate: DEP_QPL_INCLUDE is not set (the reference-codecs dependency, links = \"qpl\", sets it)",
    );
    assert!(
        include.join("qpl/qpl.h").is_file(),
        "iaa-validate: {} has no qpl/qpl.h",
        include.display()
    );
    cc::Build::new()
        .file("csrc/qpl_path.c")
        .include(&include)
        .warnings(true)
        .extra_warnings(true)
        .flag_if_supported("-std=c11")
        .opt_level(2)
        .compile("iaa_qpl_path");
}
