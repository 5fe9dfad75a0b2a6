//! The matchers: a page into match items and symbol counts. Greedy on a
//! one-entry hash table (`Fast`), lazy on short hash chains (`Strong`), and
//! the shortcut for a page of one repeated byte.

use super::super::tables::WINDOW;
use super::symbols::{MAX_MATCH, MIN_MATCH};
use super::{Position, Tally};

/// Where a matcher's output goes: counted into a `Tally` for the levels that
/// build a code per page, or written out at once under a fixed code (turbo).
pub(super) trait Sink {
    /// The literals `page[start..end]` before a match at `end`; the three
    /// bytes after `end` are inside the page (the match covers them).
    fn literals_before_match(&mut self, page: &[u8], start: usize, end: usize);
    /// The `k`th match of the page, `literals` literals after the previous one.
    fn push_match(&mut self, k: usize, len: usize, dist: usize, literals: usize);
    /// The page's last literals, after its last match.
    fn literals(&mut self, literals: &[u8]);
}

// The fast matcher reads the keys of four positions from one u64.
const _: () = assert!(FAST_MIN + 3 <= 8);

pub(super) const FAST_HASH_BITS: u32 = 12;
/// Bytes the fast level's hash key covers: its shortest match.
pub(super) const FAST_MIN: usize = 5;
pub(super) const STRONG_HASH_BITS: u32 = 13;

#[inline(always)]
pub(super) fn read32(p: &[u8], i: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&p[i..i + 4]);
    u32::from_le_bytes(w)
}

#[inline(always)]
pub(super) fn read64(p: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&p[i..i + 8]);
    u64::from_le_bytes(w)
}

#[inline(always)]
pub(super) fn hash(word: u32, bits: u32) -> usize {
    (word.wrapping_mul(0x9E37_79B1) >> (32 - bits)) as usize
}

/// How many bytes at `a` and `b` (a < b) agree, up to `max`.
#[inline(always)]
pub(super) fn extend(p: &[u8], a: usize, b: usize, max: usize) -> usize {
    let mut l = 0;
    while l + 8 <= max {
        let x = read64(p, a + l) ^ read64(p, b + l);
        if x != 0 {
            return l + (x.trailing_zeros() / 8) as usize;
        }
        l += 8;
    }
    while l < max && p[a + l] == p[b + l] {
        l += 1;
    }
    l
}

/// A page of one repeated byte: a literal, then distance-1 matches.
#[inline(always)]
pub(super) fn match_uniform(page: &[u8], tally: &mut Tally) -> usize {
    let n = page.len();
    let mut k = 0;
    if n == 0 {
        return 0;
    }
    tally.literals(&page[..1]);
    let mut rem = n - 1;
    while rem >= 3 {
        let len = if rem <= MAX_MATCH {
            rem
        } else if rem - MAX_MATCH >= 3 {
            MAX_MATCH
        } else {
            rem - 3
        };
        tally.push_match(k, len, 1, (k == 0) as usize);
        k += 1;
        rem -= len;
    }
    tally.literals(&page[n - rem..]);
    k
}

/// Greedy matching on a one-entry hash table of positions, cleared per
/// page (an empty slot reads as position 0, an ordinary candidate);
/// returns the item count.
///
/// The table is keyed on FAST_MIN (5) bytes, not DEFLATE's 3 or the strong
/// level's 4: a 4-byte match saves only a few bits over its literals but
/// costs a whole match's work and its mispredicted branches, and the
/// rarer matches let the skip below cross incompressible stretches sooner.
/// Each match is also extended backwards over the literals before it,
/// which wins back more than the longer key misses. Against the 4-byte key
/// on corpus A (tools/pair-bench): about 4 % faster, our pages decode
/// about 5 % faster, 1 % better ratio (docs/codec.md).
///
/// Positions are probed four at a time: one 8-byte read holds all four
/// keys, the four table lookups overlap, and all four positions enter the
/// table even when the first one starts a match. Against one probe per
/// step (pair-bench, step by step in docs/codec.md): faster on corpus A
/// and `/usr`, ratio 2.5848 -> 2.6060 and 2.2800 -> 2.2927.
#[inline(always)]
pub(super) fn match_fast<P: Position, S: Sink, const SKIP_SHIFT: u32>(
    head: &mut [P; 1 << FAST_HASH_BITS],
    page: &[u8],
    tally: &mut S,
) -> usize {
    const KEY_MASK: u64 = (1 << (8 * FAST_MIN)) - 1;
    let n = page.len();
    assert!(n <= P::LIMIT);
    let far = n > WINDOW;
    let p = page.as_ptr();
    // SAFETY (for every use below): reads at x need x + 8 <= n, which
    // holds for x <= last and for every table position, all of which are
    // <= last (the table is cleared by the caller and only ever gets
    // positions <= last).
    let key = |x: usize| {
        debug_assert!(x + 8 <= n);
        unsafe { p.add(x).cast::<u64>().read_unaligned() }.to_le() & KEY_MASK
    };
    let slot = |key: u64| {
        ((key << (64 - 8 * FAST_MIN)).wrapping_mul(0x9E37_79B1_85EB_CA87) >> (64 - FAST_HASH_BITS))
            as usize
    };
    let mut k = 0;
    let mut lit_start = 0usize;
    if n > 8 {
        let last = n - 8;
        let mut anchor = 0;
        // Position 0 is in the table already; start matching at 1.
        let mut i = 1;
        'positions: while i <= last {
            // Four positions per step while their keys fit in the page.
            let (at, c) = 'probe: {
                if i + 3 <= last {
                    // SAFETY: i + 3 <= last, so i + 8 <= n.
                    let word = unsafe { p.add(i).cast::<u64>().read_unaligned() }.to_le();
                    let mut cand = [0usize; 4];
                    // Each key is in the same 8 bytes (FAST_MIN + 3 <= 8).
                    // A candidate is behind its position: it was stored
                    // before, possibly earlier in this step.
                    for (k, c) in cand.iter_mut().enumerate() {
                        let h = slot((word >> (8 * k)) & KEY_MASK);
                        *c = head[h].index();
                        head[h] = P::from_index(i + k);
                    }
                    for (k, &c) in cand.iter().enumerate() {
                        if key(c) == (word >> (8 * k)) & KEY_MASK && (!far || i + k - c <= WINDOW) {
                            break 'probe (i + k, c);
                        }
                    }
                    i += 4;
                    if i - anchor > 1 << SKIP_SHIFT {
                        // A long stretch without matches: skip ahead, two
                        // more bytes per 2^SKIP_SHIFT bytes of the stretch
                        // and step (four probed together need fewer than
                        // four single probes to keep incompressible pages
                        // cheap: random pages x1.047 against no scaling,
                        // for 0.06 % of corpus A's ratio).
                        i = (i + 2 * ((i - anchor) >> SKIP_SHIFT) - 2).min(n);
                    }
                } else {
                    let cur = key(i);
                    let h = slot(cur);
                    let c = head[h].index();
                    head[h] = P::from_index(i);
                    if key(c) == cur && (!far || i - c <= WINDOW) {
                        break 'probe (i, c);
                    }
                    i += 1;
                }
                continue 'positions;
            };
            // The match found at `at`; matching resumes after it.
            i = at;
            // Extend backwards while the match stays within MAX_MATCH.
            let (mut start, mut from) = (i, c);
            while start > lit_start
                && from > 0
                && page[start - 1] == page[from - 1]
                && i - start + FAST_MIN < MAX_MATCH
            {
                start -= 1;
                from -= 1;
            }
            let head_len = i - start + FAST_MIN;
            let max = (n - start).min(MAX_MATCH);
            let len = head_len + extend(page, c + FAST_MIN, i + FAST_MIN, max - head_len);
            tally.literals_before_match(page, lit_start, start);
            tally.push_match(k, len, i - c, start - lit_start);
            k += 1;
            let end = start + len;
            lit_start = end;
            // The match's last two positions enter the table.
            if end - 1 <= last {
                let q = end - 2;
                head[slot(key(q))] = P::from_index(q);
                head[slot(key(q + 1))] = P::from_index(q + 1);
            }
            i = end;
            anchor = end;
        }
    }
    tally.literals(&page[lit_start..]);
    k
}

/// Lazy matching on hash chains: heads and links are positions plus one
/// (0 ends a chain), the heads cleared per page; returns the item count.
#[inline(always)]
pub(super) fn match_strong<P: Position>(
    head: &mut [P; 1 << STRONG_HASH_BITS],
    prev: &mut [P],
    page: &[u8],
    tally: &mut Tally,
) -> usize {
    const DEPTH: u32 = 2;
    const NICE: usize = 16;
    const LAZY_DEPTH: u32 = 1;
    let n = page.len();
    assert!(n < P::LIMIT && prev.len() >= n);
    let mut k = 0;
    let mut lit_start = 0usize;
    let mut i = 0;
    if n > MIN_MATCH {
        let last = n - MIN_MATCH;
        let mut inserted;
        let insert = |head: &mut [P; 1 << STRONG_HASH_BITS], prev: &mut [P], p: usize| {
            let h = hash(read32(page, p), STRONG_HASH_BITS);
            let cand = head[h];
            prev[p] = cand;
            head[h] = P::from_index(p + 1);
            cand
        };
        while i <= last {
            let cand = insert(head, prev, i);
            inserted = i + 1;
            let (mut len, mut dist) = longest(page, prev, cand, i, DEPTH, NICE, MIN_MATCH - 1);
            if len < MIN_MATCH {
                i += 1;
                continue;
            }
            while len < NICE && i < last {
                let cand = insert(head, prev, i + 1);
                inserted = i + 2;
                let (l2, d2) = longest(page, prev, cand, i + 1, LAZY_DEPTH, NICE, len);
                if l2 > len {
                    i += 1;
                    len = l2;
                    dist = d2;
                } else {
                    break;
                }
            }
            tally.literals_before_match(page, lit_start, i);
            tally.push_match(k, len, dist, i - lit_start);
            k += 1;
            let end = i + len;
            lit_start = end;
            let stop = end.min(last + 1);
            while inserted < stop {
                insert(head, prev, inserted);
                inserted += 1;
            }
            i = end;
        }
    }
    tally.literals(&page[lit_start..]);
    k
}

/// Whether every byte of `page` is the same.
pub(super) fn is_uniform(page: &[u8]) -> bool {
    let Some(&first) = page.first() else {
        return true;
    };
    let word = u64::from_ne_bytes([first; 8]);
    let mut chunks = page.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        if u64::from_ne_bytes(w) != word {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| b == first)
}

/// The longest match at `i` better than `best`, following the chain from
/// `cand` (a position plus one, 0 ending the chain) for at most `depth`
/// candidates. Returns (length, distance), or (0, 0).
#[inline(always)]
pub(super) fn longest<P: Position>(
    page: &[u8],
    prev: &[P],
    cand: P,
    i: usize,
    depth: u32,
    nice: usize,
    best: usize,
) -> (usize, usize) {
    let position = |link: P| link.index().checked_sub(1);
    longest_in_chain(page, i, depth, nice, best, position(cand), |c| {
        position(prev[c])
    })
}

/// The chain walk: `first` is the newest earlier
/// position with the same hash, `next(c)` the one before `c` (None ends the
/// chain). Returns (length, distance), or (0, 0) when nothing beats `best`.
#[inline(always)]
pub(super) fn longest_in_chain(
    page: &[u8],
    i: usize,
    mut depth: u32,
    nice: usize,
    mut best: usize,
    first: Option<usize>,
    next: impl Fn(usize) -> Option<usize>,
) -> (usize, usize) {
    let max = (page.len() - i).min(MAX_MATCH);
    let mut best_dist = 0;
    if best >= max {
        return (0, 0);
    }
    let cur = read32(page, i);
    let mut candidate = first;
    while let Some(c) = candidate {
        if depth == 0 || i - c > WINDOW {
            break;
        }
        if page[c + best] == page[i + best] && read32(page, c) == cur {
            let len = MIN_MATCH + extend(page, c + 4, i + 4, max - MIN_MATCH);
            if len > best {
                best = len;
                best_dist = i - c;
                if len >= nice || len >= max {
                    break;
                }
            }
        }
        candidate = next(c);
        depth -= 1;
    }
    if best_dist == 0 {
        (0, 0)
    } else {
        (best, best_dist)
    }
}
