//! DEFLATE's symbol arithmetic for the encoder: match items, the tables
//! from lengths and distances to symbols and extra bits, and packed codes.

use super::super::tables::{
    fixed_litlen_lengths, DIST_BASE, DIST_EXTRA, DIST_SYMS, LEN_BASE, LEN_EXTRA, LITLEN_SYMS,
};

pub(super) const MIN_MATCH: usize = 4;
pub(super) const MAX_MATCH: usize = 258;
/// Litlen symbols an encoder may use (286 and 287 are reserved).
pub(super) const LL_USED: usize = 286;
/// Distance symbols an encoder may use.
pub(super) const D_USED: usize = 30;

/// Match items: MATCH | distance symbol << 25 | len << 16 | dist
/// (dist < 65536). The literals between matches are not items: the writer
/// takes them from the page.
pub(super) const MATCH: u32 = 1 << 31;

/// A match item with the number of literals that precede it.
#[inline(always)]
pub(super) fn match_entry(item: u32, literals: usize) -> u64 {
    item as u64 | (literals as u64) << 32
}

#[inline(always)]
pub(super) fn match_item(len: usize, dist: usize, dist_sym: usize) -> u32 {
    MATCH | ((dist_sym as u32) << 25) | ((len as u32) << 16) | dist as u32
}

const fn len_sym_table() -> [u8; MAX_MATCH + 1] {
    let mut t = [0u8; MAX_MATCH + 1];
    let mut code = 0;
    while code < 29 {
        let base = LEN_BASE[code] as usize;
        let mut k = 0;
        while k < (1 << LEN_EXTRA[code]) && base + k <= MAX_MATCH {
            t[base + k] = code as u8;
            k += 1;
        }
        code += 1;
    }
    // 258 has its own code, not 284 with extra bits 31.
    t[MAX_MATCH] = 28;
    t
}

const fn dist_sym_table() -> [u8; 512] {
    let mut t = [0u8; 512];
    let mut code = 0;
    while code < 30 {
        let base = DIST_BASE[code] as usize;
        let mut k = 0;
        while k < (1 << DIST_EXTRA[code]) {
            let d1 = base + k - 1;
            if d1 < 256 {
                t[d1] = code as u8;
            } else {
                t[256 + (d1 >> 7)] = code as u8;
            }
            k += 1;
        }
        code += 1;
    }
    t
}

const fn ll_extra_table() -> [u8; LITLEN_SYMS] {
    let mut t = [0u8; LITLEN_SYMS];
    let mut i = 0;
    while i < 29 {
        t[257 + i] = LEN_EXTRA[i];
        i += 1;
    }
    t
}

const fn d_extra_table() -> [u8; DIST_SYMS] {
    let mut t = [0u8; DIST_SYMS];
    let mut i = 0;
    while i < 30 {
        t[i] = DIST_EXTRA[i];
        i += 1;
    }
    t
}

pub(super) const fn fixed_codes<const N: usize>(lens: [u8; N]) -> [u16; N] {
    let mut count = [0u32; 16];
    let mut i = 0;
    while i < N {
        count[lens[i] as usize] += 1;
        i += 1;
    }
    count[0] = 0;
    let mut next = [0u32; 16];
    let mut code = 0u32;
    let mut l = 1;
    while l < 16 {
        code = (code + count[l - 1]) << 1;
        next[l] = code;
        l += 1;
    }
    let mut codes = [0u16; N];
    let mut s = 0;
    while s < N {
        let l = lens[s] as u32;
        let v = next[l as usize];
        next[l as usize] += 1;
        codes[s] = (v.reverse_bits() >> (32 - l)) as u16;
        s += 1;
    }
    codes
}

pub(super) static LEN_SYM: [u8; MAX_MATCH + 1] = len_sym_table();
pub(super) static DIST_SYM: [u8; 512] = dist_sym_table();
pub(super) static LL_EXTRA: [u8; LITLEN_SYMS] = ll_extra_table();
pub(super) static D_EXTRA: [u8; DIST_SYMS] = d_extra_table();
pub(super) static FIXED_LL_LENS: [u8; LITLEN_SYMS] = fixed_litlen_lengths();

#[inline(always)]
pub(super) fn dist_sym(dist: usize) -> usize {
    let d1 = dist - 1;
    if d1 < 256 {
        DIST_SYM[d1] as usize
    } else {
        DIST_SYM[256 + ((d1 >> 7) & 255)] as usize
    }
}

/// Codeword | length << 16 per symbol.
pub(super) fn pack_codes(codes: &[u16], lens: &[u8], packed: &mut [u32]) {
    for ((e, &c), &l) in packed.iter_mut().zip(codes).zip(lens) {
        *e = c as u32 | (l as u32) << 16;
    }
}

pub(super) const fn pack_fixed<const N: usize>(codes: [u16; N], lens: [u8; N]) -> [u32; N] {
    let mut t = [0u32; N];
    let mut i = 0;
    while i < N {
        t[i] = codes[i] as u32 | (lens[i] as u32) << 16;
        i += 1;
    }
    t
}

pub(super) static FIXED_LL_PACKED: [u32; LITLEN_SYMS] =
    pack_fixed(fixed_codes(fixed_litlen_lengths()), fixed_litlen_lengths());
pub(super) static FIXED_D_PACKED: [u32; DIST_SYMS] =
    pack_fixed(fixed_codes([5u8; DIST_SYMS]), [5u8; DIST_SYMS]);
