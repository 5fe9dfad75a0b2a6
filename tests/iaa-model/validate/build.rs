//! Compiles `csrc/qpl_path.c` against Intel QPL 1.9.0's headers, taken from
//! Debian's `libqpl-dev` package in `../shared/cache` (SHA-256 checked). The
//! library itself (static `libqpl.a`, libstdc++, the glibc shim) is linked by
//! the `reference-codecs` dependency.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const DEB: &str = "libqpl-dev_1.9.0-1_amd64.deb";
const SHA256: &str = "8a09b9106ef7aace666528e43de8b2d4da6ed1010b3edd0113dd230200dd1bfd";

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-env-changed=QEMU_QPL_DEB_DIR");
    let deb_dir = env::var_os("QEMU_QPL_DEB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../../../shared/cache"));
    let deb = deb_dir.join(DEB);
    let root = out.join("libqpl-dev");
    if !root.join("usr/include/qpl/qpl.h").is_file() {
        let sum = Command::new("sha256sum")
            .arg(&deb)
            .output()
            .expect("iaa-validate: running sha256sum");
        let text = String::from_utf8_lossy(&sum.stdout);
        if !sum.status.success() || text.split_whitespace().next() != Some(SHA256) {
            panic!(
                "iaa-validate: {} is missing or has the wrong SHA-256 (expected {SHA256})",
                deb.display()
            );
        }
        let status = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&root)
            .status()
            .expect("iaa-validate: running dpkg-deb");
        assert!(
            status.success(),
            "iaa-validate: dpkg-deb -x {} failed",
            deb.display()
        );
    }
    cc::Build::new()
        .file("csrc/qpl_path.c")
        .include(root.join("usr/include"))
        .warnings(true)
        .extra_warnings(true)
        .flag_if_supported("-std=c11")
        .opt_level(2)
        .compile("iaa_qpl_path");
}
