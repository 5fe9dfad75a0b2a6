//! Length-limited Huffman code construction for the encoder.

/// The most symbols a code has (the literal/length alphabet).
const MAX_SYMS: usize = 288;

/// Computes codeword lengths for the symbols with frequencies `freqs`,
/// none longer than `max_len`, into `lens` (0 for unused symbols). The code
/// is always complete: when fewer than two symbols are used, one or two get
/// a length of 1, which every decoder accepts.
pub(super) fn build_lengths(freqs: &[u32], max_len: u32, lens: &mut [u8]) {
    debug_assert!(freqs.len() <= MAX_SYMS && lens.len() == freqs.len());
    let mut sorted = [0u32; MAX_SYMS];
    let mut n = 0;
    lens.fill(0);
    for (sym, &f) in freqs.iter().enumerate() {
        // Frequency above, symbol below: ties resolve by symbol. Every
        // symbol is written, only used ones are kept: a branch per symbol
        // would mispredict on the page's scattered unused symbols.
        sorted[n] = (f << 9) | sym as u32;
        n += (f != 0) as usize;
    }
    if n < 2 {
        // A complete code needs two codewords: pair the used symbol (if
        // any) with another one.
        let used = if n == 1 {
            (sorted[0] & 511) as usize
        } else {
            0
        };
        let other = if used == 0 { 1 } else { 0 };
        lens[used] = 1;
        if other < lens.len() {
            lens[other] = 1;
        }
        return;
    }
    let sorted = &mut sorted[..n];
    sorted.sort_unstable();

    // Moffat & Katajainen, in place: weights ascending in, lengths out.
    let mut a = [0u32; MAX_SYMS + 1];
    for (w, &s) in a.iter_mut().zip(sorted.iter()) {
        *w = s >> 9;
    }
    minimum_redundancy(&mut a[..n + 1]);
    let a = &mut a[..n];

    // Limit the lengths the way zlib does: clamp, then repay the Kraft debt
    // by lengthening the deepest leaves that are shorter than the limit.
    let mut count = [0u32; 33];
    let mut overflow = 0u32;
    for &l in a.iter() {
        let l = if l > max_len {
            overflow += 1;
            max_len
        } else {
            l
        };
        count[l as usize] += 1;
    }
    if overflow > 0 {
        // The clamped leaves overspend the code space; count it in units of
        // 2^-max_len.
        let mut kraft: u64 = 0;
        for (l, &c) in count.iter().enumerate().take(max_len as usize + 1).skip(1) {
            kraft += (c as u64) << (max_len as usize - l);
        }
        let cap = 1u64 << max_len;
        while kraft > cap {
            let mut bits = max_len as usize - 1;
            while bits > 1 && count[bits] == 0 {
                bits -= 1;
            }
            if count[bits] == 0 {
                break; // unreachable: at most 2^max_len symbols
            }
            // A leaf at `bits` becomes two at `bits + 1`, the second being
            // a leaf taken from the deepest level: repays exactly one unit.
            count[bits] -= 1;
            count[bits + 1] += 2;
            count[max_len as usize] -= 1;
            kraft -= 1;
        }
    }
    // Hand out the lengths: the rarest symbols get the longest codewords.
    let mut idx = 0;
    for l in (1..=max_len as usize).rev() {
        for _ in 0..count[l] {
            let sym = (sorted[idx] & 511) as usize;
            lens[sym] = l as u8;
            idx += 1;
        }
    }
}

/// `a` if `take`, else `b`, by masks rather than a branch.
#[inline(always)]
fn pick(take: bool, a: u32, b: u32) -> u32 {
    let mask = (take as u32).wrapping_neg();
    (a & mask) | (b & !mask)
}

/// In-place minimum-redundancy code lengths (Moffat & Katajainen 1995).
/// `a` holds at least two weights in ascending order and one spare slot;
/// on return the weights' slots hold their codeword lengths, in the same
/// order.
///
/// Which of the two queues (leaves, internal nodes) gives the next child
/// is a coin toss the branch predictor loses half the time, so the choice
/// is made with selects; the spare slot holds a sentinel weight that stands
/// for "no leaves left".
fn minimum_redundancy(a: &mut [u32]) {
    let n = a.len() - 1;
    a[n] = u32::MAX;
    // Phase 1: build the tree, leaves and internal weights interleaved.
    a[0] += a[1];
    let mut root = 0usize;
    let mut leaf = 2usize;
    for next in 1..n - 1 {
        let r = a[root];
        let l = a[leaf];
        let take = r < l;
        a[next] = pick(take, r, l);
        a[root] = pick(take, next as u32, r);
        root += take as usize;
        leaf += !take as usize;
        let r = pick(root < next, a[root], u32::MAX);
        let l = a[leaf];
        let take = r < l;
        a[next] += pick(take, r, l);
        let r = a[root];
        a[root] = pick(take, next as u32, r);
        root += take as usize;
        leaf += !take as usize;
    }
    // Phase 2: parent pointers to internal node depths.
    let a = &mut a[..n];
    a[n - 2] = 0;
    for next in (0..n - 2).rev() {
        a[next] = a[a[next] as usize] + 1;
    }
    // Phase 3: internal depths to leaf depths.
    let mut avail: i64 = 1;
    let mut used: i64 = 0;
    let mut depth = 0u32;
    let mut root = n as i64 - 2;
    let mut next = n as i64 - 1;
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

/// Canonical codewords for `lens`, bit-reversed for LSB-first output.
pub(super) fn build_codes(lens: &[u8], codes: &mut [u16]) {
    let mut count = [0u16; 16];
    for &l in lens {
        count[l as usize & 15] += 1;
    }
    count[0] = 0;
    let mut next = [0u32; 16];
    let mut code = 0u32;
    for l in 1..16 {
        code = (code + count[l - 1] as u32) << 1;
        next[l] = code;
    }
    for (c, &l) in codes.iter_mut().zip(lens.iter()) {
        if l != 0 {
            let v = next[l as usize];
            next[l as usize] += 1;
            *c = (v.reverse_bits() >> (32 - l as u32)) as u16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kraft_ok(lens: &[u8], max: u8) {
        let mut sum = 0u64;
        for &l in lens {
            assert!(l <= max);
            if l != 0 {
                sum += 1 << (32 - l as u32);
            }
        }
        assert_eq!(sum, 1u64 << 32, "code must be complete: {lens:?}");
    }

    #[test]
    fn limits_and_completes() {
        // Fibonacci weights force deep trees.
        let mut freqs = vec![0u32; 288];
        let (mut x, mut y) = (1u32, 1u32);
        for f in freqs.iter_mut().take(30) {
            *f = x;
            let z = x + y;
            x = y;
            y = z.min(1 << 22);
        }
        let mut lens = vec![0u8; 288];
        build_lengths(&freqs, 15, &mut lens);
        kraft_ok(&lens, 15);
        build_lengths(&freqs[..19], 7, &mut lens[..19]);
        kraft_ok(&lens[..19], 7);
        // The encoder's literal/length limit, on 286 skewed frequencies.
        let mut skewed = vec![1u32; 286];
        skewed[..30].copy_from_slice(&freqs[..30]);
        build_lengths(&skewed, 10, &mut lens[..286]);
        kraft_ok(&lens[..286], 10);
        for used in 0..3 {
            let mut f = vec![0u32; 30];
            for s in 0..used {
                f[s * 7] = 5;
            }
            let mut l = vec![0u8; 30];
            build_lengths(&f, 15, &mut l);
            kraft_ok(&l, 15);
        }
    }

    /// Huffman's own construction, with a heap: the total cost of an
    /// optimal code, for comparing against when no length hits the limit.
    fn optimal_cost(freqs: &[u32]) -> u64 {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let mut heap: BinaryHeap<Reverse<u64>> = freqs
            .iter()
            .filter(|&&f| f != 0)
            .map(|&f| Reverse(f as u64))
            .collect();
        let mut cost = 0;
        while heap.len() > 1 {
            let (Reverse(a), Reverse(b)) = (heap.pop().unwrap(), heap.pop().unwrap());
            cost += a + b;
            heap.push(Reverse(a + b));
        }
        cost
    }

    #[test]
    fn unlimited_codes_are_optimal() {
        let mut seed = 0x0bad_cafe_1234_5678u64;
        for round in 0..3000 {
            let n = [2, 3, 19, 30, 286][round % 5];
            let mut freqs = vec![0u32; n];
            for f in freqs.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *f = if seed % 4 == 0 {
                    0
                } else {
                    (seed >> 32) as u32 % 5000
                };
            }
            let used = freqs.iter().filter(|&&f| f != 0).count();
            let mut lens = vec![0u8; n];
            build_lengths(&freqs, 15, &mut lens);
            if used < 2 || lens.contains(&15) {
                continue;
            }
            let cost: u64 = freqs
                .iter()
                .zip(&lens)
                .map(|(&f, &l)| f as u64 * l as u64)
                .sum();
            assert_eq!(cost, optimal_cost(&freqs), "{freqs:?}");
        }
    }

    #[test]
    fn random_frequencies() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        for round in 0..2000 {
            let n = [19, 30, 286][round % 3];
            let max = if n == 19 { 7 } else { 15 };
            let mut freqs = vec![0u32; n];
            for f in freqs.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let r = seed % 100;
                *f = if r < 40 {
                    0
                } else {
                    ((seed >> 20) % (1 + (seed >> 40) % 65536)) as u32
                };
            }
            let mut lens = vec![0u8; n];
            build_lengths(&freqs, max, &mut lens);
            kraft_ok(&lens, max as u8);
            for (f, l) in freqs.iter().zip(&lens) {
                if *f != 0 {
                    assert!(*l != 0);
                }
            }
        }
    }
}
