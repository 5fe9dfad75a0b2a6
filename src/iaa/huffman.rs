//! Dynamic Huffman codes for one page from the device's statistics pass:
//! code lengths limited to 15 bits (7 for the code-length code), canonical
//! codes (RFC 1951 section 3.2.2), and the block header (section 3.2.7)
//! that goes into the AECS accumulator ahead of the page's tokens.
//!
//! Everything works in fixed-size arrays: building a page's codes allocates
//! nothing.

use super::aecs::{self, ACC_BITS, D_CODES, LL_CODES};

/// The statistics pass's output: 286 literal/length counts, 2 reserved, 30
/// distance counts, 2 reserved, each a little-endian u32 (Intel QPL's
/// `hw_iaa_histogram`).
pub const HISTOGRAM_SIZE: usize = 320 * 4;
const D_OFFSET: usize = 288;
const END_OF_BLOCK: usize = 256;
const MAX_BITS: usize = 15;
const MAX_CL_BITS: usize = 7;
/// The order in which the code-length code's lengths are sent.
const CL_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// Code lengths for `freqs` (at most 286 symbols), none above `limit`: a
/// complete prefix code over the used symbols; at least two symbols get a
/// code (unused ones are added when fewer are used, as zlib does, so that
/// every decoder accepts the code).
fn code_lengths<const N: usize>(freqs: &[u64; N], limit: usize, lengths: &mut [u8; N]) {
    *lengths = [0; N];
    let mut order = [(0u64, 0u16); N];
    let mut used = 0;
    for (symbol, &freq) in freqs.iter().enumerate() {
        if freq > 0 {
            order[used] = (freq, symbol as u16);
            used += 1;
        }
    }
    for (symbol, &freq) in freqs.iter().enumerate() {
        if used >= 2 {
            break;
        }
        if freq == 0 {
            order[used] = (1, symbol as u16);
            used += 1;
        }
    }
    let order = &mut order[..used];
    order.sort_unstable();
    let mut depth = [0u64; N];
    for (slot, &(freq, _)) in depth.iter_mut().zip(order.iter()) {
        *slot = freq;
    }
    minimum_redundancy(&mut depth[..used]);
    // How many codes of each length, then capped at `limit` with the code
    // kept complete (the Kraft sum back to exactly 1).
    let mut per_length = [0u32; 64];
    for &d in &depth[..used] {
        per_length[(d as usize).min(63)] += 1;
    }
    for length in limit + 1..64 {
        per_length[limit] += per_length[length];
        per_length[length] = 0;
    }
    let mut kraft: u64 = (1..=limit)
        .map(|l| u64::from(per_length[l]) << (limit - l))
        .sum();
    while kraft > 1 << limit {
        per_length[limit] -= 1;
        if let Some(l) = (1..limit).rev().find(|&l| per_length[l] != 0) {
            per_length[l] -= 1;
            per_length[l + 1] += 2;
        }
        kraft -= 1;
    }
    // The most frequent symbols (the end of `order`) get the shortest codes.
    let mut next = used;
    for (length, &count) in per_length.iter().enumerate().take(limit + 1).skip(1) {
        for _ in 0..count {
            next -= 1;
            lengths[order[next].1 as usize] = length as u8;
        }
    }
}

/// Moffat and Katajainen's in-place minimum-redundancy code: `a` holds
/// frequencies in ascending order and receives code lengths (a[0] longest).
fn minimum_redundancy(a: &mut [u64]) {
    let n = a.len();
    if n == 0 {
        return;
    }
    if n == 1 {
        a[0] = 1;
        return;
    }
    a[0] += a[1];
    let (mut root, mut leaf) = (0usize, 2usize);
    for next in 1..n - 1 {
        if leaf >= n || a[root] < a[leaf] {
            a[next] = a[root];
            a[root] = next as u64;
            root += 1;
        } else {
            a[next] = a[leaf];
            leaf += 1;
        }
        if leaf >= n || (root < next && a[root] < a[leaf]) {
            a[next] += a[root];
            a[root] = next as u64;
            root += 1;
        } else {
            a[next] += a[leaf];
            leaf += 1;
        }
    }
    a[n - 2] = 0;
    for next in (0..n - 2).rev() {
        a[next] = a[a[next] as usize] + 1;
    }
    let (mut avail, mut used, mut depth) = (1i64, 0i64, 0u64);
    let (mut root, mut next) = (n as i64 - 2, n as i64 - 1);
    while avail > 0 {
        while root >= 0 && a[root as usize] == depth {
            used += 1;
            root -= 1;
        }
        while avail > used {
            a[next as usize] = depth;
            next -= 1;
            avail -= 1;
        }
        avail = 2 * used;
        depth += 1;
        used = 0;
    }
}

/// Canonical codes (most significant bit first) for `lengths`.
fn canonical<const N: usize>(lengths: &[u8; N]) -> [(u16, u8); N] {
    let mut count = [0u16; MAX_BITS + 1];
    for &l in lengths.iter() {
        count[l as usize] += 1;
    }
    count[0] = 0;
    let mut next = [0u16; MAX_BITS + 2];
    let mut code = 0u16;
    for bits in 1..=MAX_BITS {
        code = (code + count[bits - 1]) << 1;
        next[bits] = code;
    }
    let mut codes = [(0u16, 0u8); N];
    for (symbol, &l) in lengths.iter().enumerate() {
        if l > 0 {
            codes[symbol] = (next[l as usize], l);
            next[l as usize] += 1;
        }
    }
    codes
}

/// Bits LSB first into the accumulator's bytes.
struct Bits {
    bytes: [u8; ACC_BITS / 8 + 8],
    len: usize,
}

impl Bits {
    fn put(&mut self, value: u32, count: usize) {
        for k in 0..count {
            if self.len < ACC_BITS + 64 {
                let bit = ((value >> k) & 1) as u8;
                self.bytes[self.len / 8] |= bit << (self.len % 8);
            }
            self.len += 1;
        }
    }

    /// A Huffman code: sent most significant bit first.
    fn code(&mut self, (code, length): (u16, u8)) {
        for k in (0..length).rev() {
            self.put(u32::from(code >> k) & 1, 1);
        }
    }
}

/// Builds the AECS for one page from its histogram: a final dynamic block
/// header in the accumulator and its codes. `None` when the header does not
/// fit the accumulator (the caller then uses the fixed codes).
pub fn build_aecs(histogram: &[u8], out: &mut [u8]) -> Option<()> {
    if histogram.len() < HISTOGRAM_SIZE {
        return None;
    }
    let count = |i: usize| {
        u64::from(u32::from_le_bytes(
            histogram[4 * i..4 * i + 4].try_into().unwrap_or_default(),
        ))
    };
    let mut ll_freq = [0u64; LL_CODES];
    for (symbol, freq) in ll_freq.iter_mut().enumerate() {
        *freq = count(symbol);
    }
    // The statistics do not count the end-of-block the device appends.
    ll_freq[END_OF_BLOCK] = ll_freq[END_OF_BLOCK].max(1);
    let mut d_freq = [0u64; D_CODES];
    for (symbol, freq) in d_freq.iter_mut().enumerate() {
        *freq = count(D_OFFSET + symbol);
    }
    let mut ll_len = [0u8; LL_CODES];
    let mut d_len = [0u8; D_CODES];
    code_lengths(&ll_freq, MAX_BITS, &mut ll_len);
    code_lengths(&d_freq, MAX_BITS, &mut d_len);
    let hlit = 257.max(LL_CODES - ll_len.iter().rev().take_while(|&&l| l == 0).count());
    let hdist = 1.max(D_CODES - d_len.iter().rev().take_while(|&&l| l == 0).count());

    // The lengths, run-length coded with the code-length alphabet.
    let mut all = [0u8; LL_CODES + D_CODES];
    all[..hlit].copy_from_slice(&ll_len[..hlit]);
    all[hlit..hlit + hdist].copy_from_slice(&d_len[..hdist]);
    let all = &all[..hlit + hdist];
    let mut runs = [(0u8, 0u8); LL_CODES + D_CODES];
    let mut n_runs = 0;
    let mut push = |symbol: u8, extra: u8| {
        runs[n_runs] = (symbol, extra);
        n_runs += 1;
    };
    let mut i = 0;
    while i < all.len() {
        let length = all[i];
        let run = all[i..].iter().take_while(|&&l| l == length).count();
        let mut left = run;
        if length == 0 {
            while left >= 11 {
                let r = left.min(138);
                push(18, (r - 11) as u8);
                left -= r;
            }
            if left >= 3 {
                push(17, (left - 3) as u8);
                left = 0;
            }
        } else {
            push(length, 0);
            left -= 1;
            while left >= 3 {
                let r = left.min(6);
                push(16, (r - 3) as u8);
                left -= r;
            }
        }
        for _ in 0..left {
            push(length, 0);
        }
        i += run;
    }
    let runs = &runs[..n_runs];
    let mut cl_freq = [0u64; 19];
    for &(symbol, _) in runs {
        cl_freq[symbol as usize] += 1;
    }
    let mut cl_len = [0u8; 19];
    code_lengths(&cl_freq, MAX_CL_BITS, &mut cl_len);
    let cl_codes = canonical(&cl_len);
    let hclen = 4.max(
        19 - CL_ORDER
            .iter()
            .rev()
            .take_while(|&&s| cl_len[s] == 0)
            .count(),
    );

    let mut bits = Bits {
        bytes: [0; ACC_BITS / 8 + 8],
        len: 0,
    };
    bits.put(1, 1); // BFINAL
    bits.put(2, 2); // BTYPE = 10: dynamic codes
    bits.put((hlit - 257) as u32, 5);
    bits.put((hdist - 1) as u32, 5);
    bits.put((hclen - 4) as u32, 4);
    for &symbol in &CL_ORDER[..hclen] {
        bits.put(u32::from(cl_len[symbol]), 3);
    }
    for &(symbol, extra) in runs {
        bits.code(cl_codes[symbol as usize]);
        match symbol {
            16 => bits.put(u32::from(extra), 2),
            17 => bits.put(u32::from(extra), 3),
            18 => bits.put(u32::from(extra), 7),
            _ => {}
        }
    }
    if bits.len > ACC_BITS {
        return None;
    }
    aecs::fill(
        out,
        &bits.bytes,
        bits.len,
        &canonical(&ll_len),
        &canonical(&d_len),
    );
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kraft(lengths: &[u8]) -> f64 {
        lengths
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| 2f64.powi(-i32::from(l)))
            .sum()
    }

    #[test]
    fn lengths_are_complete_and_limited() {
        // Fibonacci frequencies force a deep tree without a limit.
        let mut freqs = [0u64; LL_CODES];
        let (mut a, mut b) = (1u64, 1u64);
        for f in freqs.iter_mut().take(40) {
            *f = a;
            (a, b) = (b, a + b);
        }
        let mut lengths = [0u8; LL_CODES];
        code_lengths(&freqs, MAX_BITS, &mut lengths);
        assert!(lengths.iter().all(|&l| usize::from(l) <= MAX_BITS));
        assert_eq!(kraft(&lengths), 1.0);
        assert!(lengths[..40].iter().all(|&l| l > 0));
        assert!(
            lengths[39] <= lengths[0],
            "frequent symbols get short codes"
        );
        // One used symbol still gives a complete two-code tree.
        let mut one = [0u64; D_CODES];
        one[7] = 100;
        let mut lengths = [0u8; D_CODES];
        code_lengths(&one, MAX_BITS, &mut lengths);
        assert_eq!(lengths.iter().filter(|&&l| l == 1).count(), 2);
        assert_eq!(lengths[7], 1);
    }

    #[test]
    fn canonical_codes_follow_rfc1951() {
        // The example of RFC 1951 section 3.2.2: lengths (3, 3, 3, 3, 3, 2, 4, 4).
        let lengths = [3u8, 3, 3, 3, 3, 2, 4, 4];
        let codes = canonical(&lengths);
        let values: Vec<u16> = codes.iter().map(|c| c.0).collect();
        assert_eq!(values, [2, 3, 4, 5, 6, 0, 14, 15]);
    }
}
