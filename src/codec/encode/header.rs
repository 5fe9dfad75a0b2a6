//! A dynamic block's header: the run-length coded code lengths under their
//! own Huffman code, ready to write.

use super::super::huffman::{build_codes, build_lengths};
use super::super::tables::{DIST_SYMS, LITLEN_SYMS, MAX_PRECODE_LEN, PRECODE_ORDER};
use super::symbols::{D_USED, LL_USED};
use super::writer::Writer;

/// A dynamic block's header, ready to write.
pub(super) struct DynHeader {
    pub(super) hlit: usize,
    pub(super) hdist: usize,
    pub(super) hclen: usize,
    pub(super) pre_lens: [u8; 19],
    pub(super) pre_codes: [u16; 19],
    /// Code-length symbols: symbol | extra value << 8.
    pub(super) rle: [u16; LITLEN_SYMS + DIST_SYMS],
    pub(super) rle_len: usize,
    pub(super) bits: u64,
}

impl DynHeader {
    pub(super) const EMPTY: DynHeader = DynHeader {
        hlit: 257,
        hdist: 1,
        hclen: 4,
        pre_lens: [0; 19],
        pre_codes: [0; 19],
        rle: [0; LITLEN_SYMS + DIST_SYMS],
        rle_len: 0,
        bits: 0,
    };

    /// The header describing the code `ll_lens`, `d_lens`.
    pub(super) fn new(ll_lens: &[u8; LITLEN_SYMS], d_lens: &[u8; DIST_SYMS]) -> DynHeader {
        let hlit = 257.max(
            LL_USED
                - ll_lens[..LL_USED]
                    .iter()
                    .rev()
                    .take_while(|&&l| l == 0)
                    .count(),
        );
        let hdist = 1.max(
            D_USED
                - d_lens[..D_USED]
                    .iter()
                    .rev()
                    .take_while(|&&l| l == 0)
                    .count(),
        );
        let mut all = [0u8; LITLEN_SYMS + DIST_SYMS];
        all[..hlit].copy_from_slice(&ll_lens[..hlit]);
        all[hlit..hlit + hdist].copy_from_slice(&d_lens[..hdist]);
        let lens = &all[..hlit + hdist];

        let mut h = DynHeader {
            hlit,
            hdist,
            ..DynHeader::EMPTY
        };
        let mut freq = [0u32; 19];
        let mut k = 0;
        let mut push = |sym: u16, extra: u16, freq: &mut [u32; 19]| {
            h.rle[k] = sym | (extra << 8);
            k += 1;
            freq[sym as usize] += 1;
        };
        let mut i = 0;
        while i < lens.len() {
            let l = lens[i];
            let mut run = 1;
            while i + run < lens.len() && lens[i + run] == l {
                run += 1;
            }
            i += run;
            if l == 0 {
                let mut r = run;
                while r >= 11 {
                    let t = r.min(138);
                    push(18, (t - 11) as u16, &mut freq);
                    r -= t;
                }
                if r >= 3 {
                    push(17, (r - 3) as u16, &mut freq);
                    r = 0;
                }
                for _ in 0..r {
                    push(0, 0, &mut freq);
                }
            } else {
                push(l as u16, 0, &mut freq);
                let mut r = run - 1;
                while r >= 3 {
                    let t = r.min(6);
                    push(16, (t - 3) as u16, &mut freq);
                    r -= t;
                }
                for _ in 0..r {
                    push(l as u16, 0, &mut freq);
                }
            }
        }
        h.rle_len = k;
        let counts = build_lengths(&freq, MAX_PRECODE_LEN as u32, &mut h.pre_lens);
        build_codes(&h.pre_lens, &counts, &mut h.pre_codes);
        let mut hclen = 19;
        while hclen > 4 && h.pre_lens[PRECODE_ORDER[hclen - 1]] == 0 {
            hclen -= 1;
        }
        h.hclen = hclen;
        let mut bits = 5 + 5 + 4 + 3 * hclen as u64;
        for (s, &f) in freq.iter().enumerate() {
            let extra = if s >= 16 { PRECODE_EXTRA[s - 16] } else { 0 };
            bits += f as u64 * (h.pre_lens[s] as u64 + extra as u64);
        }
        h.bits = bits;
        h
    }

    /// Writes the header after the block type.
    pub(super) fn write(&self, w: &mut Writer) {
        w.put((self.hlit - 257) as u32, 5);
        w.put((self.hdist - 1) as u32, 5);
        w.put((self.hclen - 4) as u32, 4);
        for &s in &PRECODE_ORDER[..self.hclen] {
            w.put(self.pre_lens[s] as u32, 3);
            w.flush();
        }
        for &item in &self.rle[..self.rle_len] {
            let sym = (item & 0xff) as usize;
            w.put(self.pre_codes[sym] as u32, self.pre_lens[sym] as u32);
            if sym >= 16 {
                w.put((item >> 8) as u32, PRECODE_EXTRA[sym - 16]);
            }
            w.flush();
        }
    }
}

/// Extra bits of the code-length symbols 16, 17 and 18.
const PRECODE_EXTRA: [u32; 3] = [2, 3, 7];
