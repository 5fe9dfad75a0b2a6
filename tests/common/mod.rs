//! Test data shared by the integration tests: real pages, never synthetic
//! noise alone, so round trips see what guest RAM holds.

#![allow(dead_code)]

use std::path::PathBuf;

/// Real bytes to cut into pages: corpus A when `QEMU_QPL_CORPUS` names it
/// (as `make test` does), else a deterministic sample of system files.
pub fn real_data(max_bytes: usize) -> Vec<u8> {
    if let Some(path) = std::env::var_os("QEMU_QPL_CORPUS") {
        let mut data = std::fs::read(&path).expect("QEMU_QPL_CORPUS is not readable");
        data.truncate(max_bytes);
        return data;
    }
    let mut files: Vec<PathBuf> = ["/usr/bin", "/usr/share/common-licenses", "/etc"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let mut data = Vec::new();
    for file in files {
        if data.len() >= max_bytes {
            break;
        }
        if let Ok(bytes) = std::fs::read(&file) {
            data.extend_from_slice(&bytes[..bytes.len().min(1 << 20)]);
        }
    }
    data.truncate(max_bytes);
    data
}

/// Splits `data` into whole pages of `page_size`.
pub fn pages(data: &[u8], page_size: usize) -> Vec<&[u8]> {
    data.chunks_exact(page_size).collect()
}

/// Deterministic incompressible bytes (xorshift), for pages that must go raw.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
