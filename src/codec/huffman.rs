//! Length-limited Huffman code construction for the encoder.

/// The most symbols a code has (the literal/length alphabet).
const MAX_SYMS: usize = 288;

/// How many symbols have each codeword length (index 0 unused).
pub(super) type LengthCounts = [u16; 16];

/// Computes codeword lengths for the symbols with frequencies `freqs`,
/// none longer than `max_len`, into `lens` (0 for unused symbols). The code
/// is always complete: when fewer than two symbols are used, one or two get
/// a length of 1, which every decoder accepts. Returns how many symbols
/// got each length, which `build_codes` needs.
pub(super) fn build_lengths(freqs: &[u32], max_len: u32, lens: &mut [u8]) -> LengthCounts {
    debug_assert!((1..16).contains(&max_len));
    // A frequency and its symbol share one u32 (frequency << 9).
    debug_assert!(freqs.iter().all(|&f| f < 1 << 23));
    debug_assert!(freqs.len() <= MAX_SYMS && lens.len() == freqs.len());
    let mut sorted = [0u32; MAX_SYMS];
    let n = sort_used(freqs, &mut sorted);
    lens.fill(0);
    if n < 2 {
        // A complete code needs two codewords: pair the used symbol (if
        // any) with another one.
        let used = if n == 1 {
            (sorted[0] & 511) as usize
        } else {
            0
        };
        let other = if used == 0 { 1 } else { 0 };
        let mut counts = [0; 16];
        lens[used] = 1;
        counts[1] = 1;
        if other < lens.len() {
            lens[other] = 1;
            counts[1] += 1;
        }
        return counts;
    }
    let sorted = &sorted[..n];

    // Moffat & Katajainen, in place, down to the number of leaves at each
    // depth; leaves deeper than the limit are counted at the limit.
    let mut a = [0u32; MAX_SYMS + 1];
    for (w, &s) in a.iter_mut().zip(sorted.iter()) {
        *w = s >> 9;
    }
    let mut count: LengthCounts = [0; 16];
    let overflow = minimum_redundancy(&mut a[..n + 1], max_len, &mut count);

    // Limit the lengths the way zlib does: clamp, then repay the Kraft debt
    // by lengthening the deepest leaves that are shorter than the limit.
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
    count
}

/// Frequencies below this are sorted by counting; the few above it (on a
/// 4 KiB page, the handful of most common symbols) by comparison.
const COUNTED: usize = 128;

/// Writes the used symbols of `freqs` into `sorted` as frequency << 9 |
/// symbol, ascending (ties by symbol), and returns how many there are.
///
/// A comparison sort of a page's 100 to 250 used symbols was a third of
/// the length builder's time. Most frequencies on a page are small, so a
/// stable counting sort on min(frequency, COUNTED - 1) puts all but the
/// last bucket in final order, and only that short bucket is compared.
fn sort_used(freqs: &[u32], sorted: &mut [u32; MAX_SYMS]) -> usize {
    // Gather the used symbols first, without a branch on `f != 0` (it
    // would mispredict on the page's scattered unused symbols): the passes
    // below then only see used ones.
    let mut used = [0u32; MAX_SYMS];
    let mut n = 0;
    for (sym, &f) in freqs.iter().enumerate() {
        used[n] = (f << 9) | sym as u32;
        n += (f != 0) as usize;
    }
    let used = &used[..n];
    let bucket = |key: u32| ((key >> 9) as usize).min(COUNTED - 1);
    let mut start = [0u16; COUNTED + 1];
    for &key in used {
        start[bucket(key) + 1] += 1;
    }
    for b in 2..=COUNTED {
        start[b] += start[b - 1];
    }
    for &key in used {
        let slot = &mut start[bucket(key)];
        sorted[*slot as usize] = key;
        *slot += 1;
    }
    let common = start[COUNTED - 2] as usize;
    sorted[common..n].sort_unstable();
    n
}

/// `a` if `take`, else `b`, by masks rather than a branch.
#[inline(always)]
fn pick(take: bool, a: u32, b: u32) -> u32 {
    let mask = (take as u32).wrapping_neg();
    (a & mask) | (b & !mask)
}

/// Minimum-redundancy code lengths (Moffat & Katajainen 1995), computed in
/// place in `a`, which holds at least two weights in ascending order and
/// one spare slot. Returns the leaves per depth in `count` rather than a
/// length per leaf: in ascending weight order the lengths only fall, so the
/// counts are all the caller needs to hand them out, and a count per depth
/// costs one addition where a pass over the leaves cost one per leaf.
/// Leaves deeper than `max_len` are counted at `max_len`; the return value
/// is how many there were.
///
/// Which of the two queues (leaves, internal nodes) gives the next child
/// is a coin toss the branch predictor loses half the time, so the choice
/// is made with selects; the spare slot holds a sentinel weight that stands
/// for "no leaves left".
fn minimum_redundancy(a: &mut [u32], max_len: u32, count: &mut LengthCounts) -> u32 {
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
    // Phase 3: internal depths to the number of leaves at each depth.
    let mut avail: i64 = 1;
    let mut used: i64 = 0;
    let mut depth = 0u32;
    let mut root = n as i64 - 2;
    let mut overflow = 0u32;
    while avail > 0 {
        while root >= 0 && a[root as usize] == depth {
            used += 1;
            root -= 1;
        }
        let leaves = (avail - used) as u32;
        count[depth.min(max_len) as usize] += leaves as u16;
        if depth > max_len {
            overflow += leaves;
        }
        avail = 2 * used;
        depth += 1;
        used = 0;
    }
    overflow
}

/// Canonical codewords for `lens`, bit-reversed for LSB-first output;
/// `counts` is what `build_lengths` returned for them. (Counting the
/// lengths again here cost a chain of dependent increments per symbol.)
pub(super) fn build_codes(lens: &[u8], counts: &LengthCounts, codes: &mut [u16]) {
    debug_assert!(
        (1..16).all(|l| counts[l] as usize == lens.iter().filter(|&&x| x as usize == l).count())
    );
    let mut count = *counts;
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

    /// xorshift64: deterministic test frequencies.
    fn next(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

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
                let seed = next(&mut seed);
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
                let seed = next(&mut seed);
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

    #[test]
    fn used_symbols_sort_like_a_comparison_sort() {
        let mut seed = 0x5eed_0f5e_ed0f_5eedu64;
        for round in 0..3000 {
            let n = [2, 19, 30, 286, 288][round % 5];
            let freqs: Vec<u32> = (0..n)
                .map(|_| {
                    let r = next(&mut seed);
                    // Zeros, ties either side of the counted buckets' end,
                    // and large counts.
                    match r % 4 {
                        0 => 0,
                        1 => (r >> 8) as u32 % 4,
                        2 => COUNTED as u32 - 3 + (r >> 8) as u32 % 6,
                        _ => (r >> 8) as u32 % 70_000,
                    }
                })
                .collect();
            let mut expected: Vec<u32> = freqs
                .iter()
                .enumerate()
                .filter(|(_, &f)| f != 0)
                .map(|(sym, &f)| (f << 9) | sym as u32)
                .collect();
            expected.sort_unstable();
            let mut sorted = [0u32; MAX_SYMS];
            let used = sort_used(&freqs, &mut sorted);
            assert_eq!(&sorted[..used], &expected[..], "{freqs:?}");
        }
    }

    #[test]
    fn returned_counts_match_the_lengths() {
        let mut seed = 0xc0de_c0de_c0de_c0deu64;
        for round in 0..2000 {
            let (n, max) = [(19, 7), (30, 15), (286, 10), (286, 15)][round % 4];
            let freqs: Vec<u32> = (0..n)
                .map(|_| {
                    let r = next(&mut seed);
                    if r % 3 == 0 {
                        0
                    } else {
                        (r >> 16) as u32 % 5000
                    }
                })
                .collect();
            let mut lens = vec![0u8; n];
            let counts = build_lengths(&freqs, max, &mut lens);
            for (l, &count) in counts.iter().enumerate().skip(1) {
                let actual = lens.iter().filter(|&&x| x as usize == l).count();
                assert_eq!(count as usize, actual, "length {l} of {lens:?}");
            }
        }
    }
}
