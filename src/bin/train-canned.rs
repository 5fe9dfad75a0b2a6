//! Trains turbo's canned Huffman code: the fast matcher (which turbo shares)
//! runs over every 4 KiB page of the given files, its symbol counts are
//! summed, every symbol gets at least one count (so that every page can be
//! coded), and length-limited codes are built from the sums. Prints the Rust
//! source of `src/codec/encode/canned_lengths.rs`.
//!
//! `cargo run --release --bin train-canned -- FILE... > src/codec/encode/canned_lengths.rs`

use qemu_qpl::codec::{code_lengths, Level, PageEncoder};

/// The longest codeword, as for the levels that build a code per page.
const MAX_LEN: u32 = 10;
const PAGE: usize = 4096;

fn main() {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: train-canned FILE...");
        std::process::exit(2);
    }
    let mut encoder = PageEncoder::new(Level::Fast);
    let mut ll = vec![0u64; 286];
    let mut d = vec![0u64; 30];
    let mut pages = 0u64;
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        for page in data.chunks_exact(PAGE) {
            // Zero pages never reach the method (QEMU sends them apart).
            if page.iter().all(|&b| b == 0) {
                continue;
            }
            let (page_ll, page_d) = encoder.symbol_counts(page);
            for (sum, &count) in ll.iter_mut().zip(page_ll) {
                *sum += u64::from(count);
            }
            for (sum, &count) in d.iter_mut().zip(page_d) {
                *sum += u64::from(count);
            }
            pages += 1;
        }
    }
    // The end of block, once per page; then scale to the range of a page's
    // counts (the code builder takes counts below 2^23), with a floor of 1
    // so that every symbol gets a codeword.
    ll[256] += pages;
    let scale = |sums: &[u64]| -> Vec<u32> {
        let max = *sums.iter().max().unwrap_or(&1) as f64;
        sums.iter()
            .map(|&s| ((s as f64 / max * f64::from(1u32 << 20)) as u32).max(1))
            .collect()
    };
    let ll_lens = code_lengths(&scale(&ll), MAX_LEN);
    let d_lens = code_lengths(&scale(&d), MAX_LEN);
    println!("//! Turbo's canned code: codeword lengths trained by `src/bin/train-canned.rs`");
    println!("//! on {pages} non-zero pages (docs/codec.md says which files). Generated; do");
    println!("//! not edit by hand.");
    println!();
    println!("/// Literal/length codeword lengths, symbols 0 to 285.");
    println!("#[rustfmt::skip]");
    println!("pub(super) const LITLEN: [u8; 286] = {:?};", ll_lens);
    println!();
    println!("/// Distance codeword lengths, symbols 0 to 29.");
    println!("#[rustfmt::skip]");
    println!("pub(super) const DIST: [u8; 30] = {:?};", d_lens);
}
