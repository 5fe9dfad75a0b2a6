//! Builds the C side of the reference codecs.
//!
//! * Intel QPL 1.9.0 comes from Debian's `libqpl-dev`/`libqpl1` packages kept
//!   in `../shared/cache` (checked against pinned SHA-256 sums), unpacked with
//!   `dpkg-deb -x` into `OUT_DIR` — never installed system-wide. Its static
//!   `libqpl.a` is linked (the shared object needs glibc 2.38), with `libstdc++`
//!   and `csrc/glibc_compat.c`, which supplies the two glibc 2.38 symbols it uses.
//! * ISA-L, zlib, libdeflate, zstd and lz4 are Debian 12's system libraries
//!   (linked by name; the Rust modules of the last three name them).
//! * `csrc/*_shim.c` wrap the libraries whose state lives in structs (QPL's
//!   job, zlib's `z_stream`, ISA-L's streams), so Rust only sees opaque handles.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Debian packages of Intel QPL 1.9.0 and their SHA-256 sums.
const QPL_DEBS: [(&str, &str); 2] = [
    (
        "libqpl-dev_1.9.0-1_amd64.deb",
        "8a09b9106ef7aace666528e43de8b2d4da6ed1010b3edd0113dd230200dd1bfd",
    ),
    (
        "libqpl1_1.9.0-1_amd64.deb",
        "a0e91a9e277e93d5d357f4409612ac5f46c8df0c95a6597eda555f64da7a1559",
    ),
];

/// Where the packages put the library, relative to the unpacked root.
const QPL_LIBDIR: &str = "usr/lib/x86_64-linux-gnu";

fn main() {
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if target_os != "linux" || target_arch != "x86_64" {
        panic!(
            "reference-codecs: Intel QPL 1.9.0 is only available here for x86_64 Linux, not {target_arch}-{target_os}"
        );
    }

    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-env-changed=QEMU_QPL_DEB_DIR");

    let deb_dir = match env::var_os("QEMU_QPL_DEB_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => manifest_dir.join("../../shared/cache"),
    };
    let qpl_root = unpack_qpl(&deb_dir, &out_dir);

    // The static library alone in its own directory, so that the linker
    // cannot pick the shared object that sits next to it in the package.
    let static_dir = out_dir.join("qpl-static");
    fs::create_dir_all(&static_dir).unwrap();
    fs::copy(
        qpl_root.join(QPL_LIBDIR).join("libqpl.a"),
        static_dir.join("libqpl.a"),
    )
    .expect("reference-codecs: copying libqpl.a");

    let warnings = |build: &mut cc::Build| {
        build
            .warnings(true)
            .extra_warnings(true)
            .flag_if_supported("-std=c11")
            .opt_level(2)
            .cargo_metadata(false);
    };

    let mut shims = cc::Build::new();
    warnings(&mut shims);
    shims
        .include(qpl_root.join("usr/include"))
        .file("csrc/qpl_shim.c")
        .file("csrc/zlib_shim.c")
        .file("csrc/isal_shim.c")
        .compile("refcodec_shims");

    let mut compat = cc::Build::new();
    warnings(&mut compat);
    compat
        .file("csrc/glibc_compat.c")
        .compile("refcodec_glibc_compat");

    // Order matters to the linker: shims, then libqpl.a (which needs the
    // compat symbols and libstdc++), then the system libraries.
    println!("cargo:rustc-link-search=native={}", out_dir.display());
    println!("cargo:rustc-link-search=native={}", static_dir.display());
    println!("cargo:rustc-link-lib=static=refcodec_shims");
    println!("cargo:rustc-link-lib=static=qpl");
    println!("cargo:rustc-link-lib=static=refcodec_glibc_compat");
    println!("cargo:rustc-link-lib=dylib=stdc++");
    // The shims' libraries; libdeflate, zstd and lz4 are named by their
    // modules' `#[link]` attributes.
    for lib in ["isal", "z", "dl", "pthread"] {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
}

/// Checks both packages and unpacks them into `OUT_DIR/intel-qpl` (once).
/// Returns the unpacked root.
fn unpack_qpl(deb_dir: &Path, out_dir: &Path) -> PathBuf {
    let root = out_dir.join("intel-qpl-1.9.0-1");
    let stamp = root.join(".unpacked");
    let stamp_text: String = QPL_DEBS
        .iter()
        .map(|(name, sum)| format!("{sum}  {name}\n"))
        .collect();

    for (name, _) in QPL_DEBS {
        println!("cargo:rerun-if-changed={}", deb_dir.join(name).display());
    }
    if fs::read_to_string(&stamp).ok().as_deref() == Some(stamp_text.as_str())
        && root.join(QPL_LIBDIR).join("libqpl.a").is_file()
    {
        return root;
    }

    check_sums_file(deb_dir);
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).unwrap();
    for (name, expected) in QPL_DEBS {
        let deb = deb_dir.join(name);
        if !deb.is_file() {
            panic!(
                "reference-codecs: {} is missing; Intel QPL 1.9.0 is taken from ../shared/cache \
                 (or the directory named by QEMU_QPL_DEB_DIR)",
                deb.display()
            );
        }
        let actual = sha256(&deb);
        if actual != expected {
            panic!(
                "reference-codecs: {} has SHA-256 {actual}, expected {expected}",
                deb.display()
            );
        }
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    }
    fs::write(&stamp, stamp_text).unwrap();
    root
}

/// When the cache directory lists its own sums, they must agree with ours.
fn check_sums_file(deb_dir: &Path) {
    let Ok(sums) = fs::read_to_string(deb_dir.join("SHA256SUMS")) else {
        return;
    };
    for (name, expected) in QPL_DEBS {
        let listed = sums.lines().find_map(|line| {
            let mut fields = line.split_whitespace();
            let sum = fields.next()?;
            let file = fields.next()?.trim_start_matches('*');
            (file == name).then(|| sum.to_string())
        });
        if let Some(listed) = listed {
            if listed != expected {
                panic!(
                    "reference-codecs: {}/SHA256SUMS lists {listed} for {name}, but the pinned sum is {expected}",
                    deb_dir.display()
                );
            }
        }
    }
}

fn sha256(file: &Path) -> String {
    let output = Command::new("sha256sum")
        .arg(file)
        .output()
        .expect("reference-codecs: running sha256sum");
    if !output.status.success() {
        panic!("reference-codecs: sha256sum {} failed", file.display());
    }
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn run(command: &mut Command) {
    let status = command
        .status()
        .unwrap_or_else(|error| panic!("reference-codecs: cannot run {command:?}: {error}"));
    if !status.success() {
        panic!("reference-codecs: {command:?} failed with {status}");
    }
}
