//! Replays the committed seeds and every input that ever made a target fail
//! (fuzz/regressions/<target>/) through the targets' checks, without
//! libFuzzer: `cargo test --manifest-path fuzz/Cargo.toml`.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut inputs = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).unwrap();
            eprintln!("{target}: {}", path.display());
            check(&data);
            inputs += 1;
        }
    }
    assert!(inputs > 0, "no seeds for {target}");
}

#[test]
fn decode_page_inputs() {
    replay("decode_page", qemu_qpl_fuzz::decode_page);
}

#[test]
fn receive_abi_inputs() {
    replay("receive_abi", qemu_qpl_fuzz::receive_abi);
}

#[test]
fn send_roundtrip_inputs() {
    replay("send_roundtrip", qemu_qpl_fuzz::send_roundtrip);
}
