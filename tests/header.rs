//! The committed C header must be exactly what cbindgen makes of the current
//! source: a stale header would let C callers compile against an ABI the
//! library no longer has. `make header` (QEMU_QPL_BLESS_HEADER=1) rewrites it.

use std::path::Path;

#[test]
fn committed_header_matches_the_source() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen failed on src/")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let header_path = crate_dir.join("include/qemu_qpl.h");
    if std::env::var_os("QEMU_QPL_BLESS_HEADER").is_some() {
        std::fs::write(&header_path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&header_path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/qemu_qpl.h is stale: run `make header` and commit the result"
    );
}
