//! Builds the C side of the reference codecs.
//!
//! * Intel QPL 1.9.0 comes from Debian's `libqpl-dev`/`libqpl1` packages, pinned
//!   in `scripts/inputs.lock` (set `intel-qpl`) and fetched by
//!   `scripts/fetch-inputs.py` into `$QEMU_QPL_CACHE/dl` (this script runs it
//!   when they are not there yet). Checked against the lock's SHA-256 sums and
//!   unpacked with `dpkg-deb -x` into `OUT_DIR` — never installed system-wide.
//!   Its static `libqpl.a` is linked (the shared object needs glibc 2.38), with
//!   `libstdc++` and `csrc/glibc_compat.c`, which supplies the two glibc 2.38
//!   symbols it uses. The headers' directory goes to dependents' build scripts
//!   as `DEP_QPL_INCLUDE` (`links = "qpl"`).
//! * ISA-L, zlib, libdeflate, zstd and lz4 are Debian 12's system libraries
//!   (linked by name; the Rust modules of the last three name them).
//! * `csrc/*_shim.c` wrap the libraries whose state lives in structs (QPL's
//!   job, zlib's `z_stream`, ISA-L's streams), so Rust only sees opaque handles.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The lock file's set of Intel QPL's packages.
const QPL_SET: &str = "intel-qpl";

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
    let repo = manifest_dir.join("..");
    let debs = pinned_debs(&repo);
    let deb_dir = deb_dir(&repo, &debs);
    let qpl_root = unpack_qpl(&debs, &deb_dir, &out_dir);
    println!("cargo:include={}", qpl_root.join("usr/include").display());

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

/// (file, SHA-256) of every package of the `intel-qpl` set in scripts/inputs.lock.
fn pinned_debs(repo: &Path) -> Vec<(String, String)> {
    let lock = repo.join("scripts/inputs.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = fs::read_to_string(&lock)
        .unwrap_or_else(|error| panic!("reference-codecs: {}: {error}", lock.display()));
    let debs: Vec<(String, String)> = text
        .lines()
        .map(|line| {
            line.split('#')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
        })
        .filter(|fields| fields.len() == 9 && fields[0] == QPL_SET)
        .map(|fields| (fields[8].to_string(), fields[7].to_string()))
        .collect();
    if debs.is_empty() {
        panic!(
            "reference-codecs: {} pins no package of the set {QPL_SET}",
            lock.display()
        );
    }
    debs
}

/// The directory holding the verified packages: `QEMU_QPL_DEB_DIR` when set,
/// else `$QEMU_QPL_CACHE/dl` (default `/var/tmp/qemu-qpl/dl`), after
/// `scripts/fetch-inputs.py intel-qpl` has put them there if they were not.
fn deb_dir(repo: &Path, debs: &[(String, String)]) -> PathBuf {
    println!("cargo:rerun-if-env-changed=QEMU_QPL_DEB_DIR");
    println!("cargo:rerun-if-env-changed=QEMU_QPL_CACHE");
    if let Some(dir) = env::var_os("QEMU_QPL_DEB_DIR") {
        return PathBuf::from(dir);
    }
    let cache = env::var_os("QEMU_QPL_CACHE")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/qemu-qpl"));
    let dl = cache.join("dl");
    if debs
        .iter()
        .any(|(name, sum)| !verified(&dl.join(name), sum))
    {
        // The script fetches with apt (or copies from the offline mirror) and
        // verifies; its messages name any file it cannot supply.
        let script = repo.join("scripts/fetch-inputs.py");
        let status = Command::new("python3")
            .arg(&script)
            .arg("--quiet")
            .arg(QPL_SET)
            .env("QEMU_QPL_CACHE", &cache)
            .status();
        if !matches!(status, Ok(status) if status.success()) {
            panic!(
                "reference-codecs: Intel QPL 1.9.0's packages are not in {} and `{} {QPL_SET}` \
                 could not fetch them ({status:?}; its messages above say which file and what to \
                 do). Run `make deps`, or put the packages in a directory named by QEMU_QPL_DEB_DIR.",
                dl.display(),
                script.display()
            );
        }
    }
    dl
}

fn verified(file: &Path, expected: &str) -> bool {
    file.is_file() && sha256(file) == expected
}

/// Checks the packages and unpacks them into `OUT_DIR/intel-qpl-1.9.0-1`
/// (once). Returns the unpacked root.
fn unpack_qpl(debs: &[(String, String)], deb_dir: &Path, out_dir: &Path) -> PathBuf {
    let root = out_dir.join("intel-qpl-1.9.0-1");
    let stamp = root.join(".unpacked");
    let stamp_text: String = debs
        .iter()
        .map(|(name, sum)| format!("{sum}  {name}\n"))
        .collect();

    for (name, _) in debs {
        println!("cargo:rerun-if-changed={}", deb_dir.join(name).display());
    }
    if fs::read_to_string(&stamp).ok().as_deref() == Some(stamp_text.as_str())
        && root.join(QPL_LIBDIR).join("libqpl.a").is_file()
    {
        return root;
    }

    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).unwrap();
    for (name, expected) in debs {
        let deb = deb_dir.join(name);
        if !deb.is_file() {
            panic!(
                "reference-codecs: {} is missing; `scripts/fetch-inputs.py {QPL_SET}` fetches it",
                deb.display()
            );
        }
        let actual = sha256(&deb);
        if actual != *expected {
            panic!(
                "reference-codecs: {} has SHA-256 {actual}, scripts/inputs.lock pins {expected}",
                deb.display()
            );
        }
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    }
    fs::write(&stamp, stamp_text).unwrap();
    root
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
