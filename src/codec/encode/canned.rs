//! Turbo's canned code: one dynamic Huffman code for every page, trained
//! once on memory pages (`canned_lengths.rs`). Each page still carries the
//! code in its block header, so the stream is ordinary raw DEFLATE that any
//! decoder reads; but the encoder counts nothing and builds nothing per page,
//! and a decoder that recognises the header it saw last (ours does) skips
//! building its tables.

use super::super::huffman::build_codes;
use super::super::tables::{DIST_SYMS, LITLEN_SYMS};
use super::canned_lengths::{DIST, LITLEN};
use super::header::DynHeader;
use super::symbols::pack_codes;
use super::writer::Writer;
use super::LL_MAX_LEN;

/// The bytes of the longest block header (as in the decoder's cache).
const PREFIX_BYTES: usize = 576;

/// The canned code, packed for the writer, with the start of every stream
/// that uses it: the block type and the header that sends the code.
pub(super) struct CannedCode {
    pub(super) ll_packed: [u32; LITLEN_SYMS],
    pub(super) d_packed: [u32; DIST_SYMS],
    pub(super) prefix: [u8; PREFIX_BYTES],
    pub(super) prefix_bits: usize,
}

impl CannedCode {
    pub(super) fn new() -> CannedCode {
        let mut ll_lens = [0u8; LITLEN_SYMS];
        ll_lens[..LITLEN.len()].copy_from_slice(&LITLEN);
        let mut d_lens = [0u8; DIST_SYMS];
        d_lens[..DIST.len()].copy_from_slice(&DIST);
        let mut code = CannedCode {
            ll_packed: [0; LITLEN_SYMS],
            d_packed: [0; DIST_SYMS],
            prefix: [0; PREFIX_BYTES],
            prefix_bits: 0,
        };
        // A final block of dynamic codes, then the header; written once.
        let header = DynHeader::new(&ll_lens, &d_lens);
        let mut w = Writer::new(&mut code.prefix);
        w.put(1 | (2 << 1), 3);
        header.write(&mut w);
        code.prefix_bits = 3 + header.bits as usize;
        let written = w.finish();
        debug_assert_eq!(written, code.prefix_bits.div_ceil(8));
        let mut codes = [0u16; LITLEN_SYMS];
        build_codes(&ll_lens, &length_counts(&ll_lens), &mut codes);
        pack_codes(&codes, &ll_lens, &mut code.ll_packed);
        build_codes(&d_lens, &length_counts(&d_lens), &mut codes[..DIST_SYMS]);
        pack_codes(&codes[..DIST_SYMS], &d_lens, &mut code.d_packed);
        code
    }
}

fn length_counts(lens: &[u8]) -> [u16; 16] {
    let mut counts = [0u16; 16];
    for &l in lens.iter().filter(|&&l| l > 0) {
        counts[l as usize] += 1;
    }
    counts
}

// Every literal/length codeword fits the writer's four literals per flush.
const _: () = {
    let mut i = 0;
    while i < LITLEN.len() {
        assert!(LITLEN[i] as u32 <= LL_MAX_LEN && LITLEN[i] > 0);
        i += 1;
    }
    let mut i = 0;
    while i < DIST.len() {
        assert!(DIST[i] as u32 <= LL_MAX_LEN && DIST[i] > 0);
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Kraft's sum of a code, in units of 2^-15: 2^15 for a complete code.
    fn kraft(lens: &[u8]) -> u32 {
        lens.iter().map(|&l| 1u32 << (15 - l)).sum()
    }

    #[test]
    fn the_canned_codes_are_complete_and_cover_every_symbol() {
        // zlib refuses incomplete literal/length codes: ours must be complete.
        assert_eq!(kraft(&LITLEN), 1 << 15);
        assert_eq!(kraft(&DIST), 1 << 15);
    }
}
