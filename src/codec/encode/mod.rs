//! The page encoder: one page into one raw DEFLATE stream of a single block.
//!
//! The matcher (greedy on a one-entry hash table for `Fast`, lazy on short
//! hash chains for `Strong`; both on tables cleared per page, of 16-bit
//! positions for pages below 64 KiB) turns the page into matches, each with
//! the number of literals before it, while counting symbol frequencies. Then
//! the exact size of the block is computed for a dynamic code, the fixed
//! code and a stored block, and the smallest is written, if it fits; the
//! writer takes the literals straight from the page.

mod canned;
mod canned_lengths;
mod header;
mod matchers;
mod symbols;
mod turbo;
mod writer;

use super::huffman::{build_codes, build_lengths};
use super::tables::{DIST_SYMS, EOB, LITLEN_SYMS, MAX_CODE_LEN};
use super::{try_filled, AllocFailed, Level};
use canned::CannedCode;
use header::DynHeader;
use matchers::{
    is_uniform, match_fast, match_strong, match_uniform, Sink, FAST_HASH_BITS, STRONG_HASH_BITS,
};
use symbols::{
    dist_sym, match_entry, match_item, pack_codes, D_EXTRA, D_USED, FIXED_D_PACKED, FIXED_LL_LENS,
    FIXED_LL_PACKED, LEN_SYM, LL_EXTRA, LL_USED,
};
use turbo::Emit;
use writer::{write_items, write_stored, Writer};

/// The longest literal/length codeword the encoder makes. DEFLATE allows
/// 15 bits, but 10 costs no ratio on real pages (the header that sends a
/// shallower code is a little shorter, which about pays for the longer
/// rare codewords), lets the writer put four literals per flush, and keeps
/// every codeword inside a decoder's first-level table of 10 bits, ours
/// included, so that no subtable is built or visited.
pub(super) const LL_MAX_LEN: u32 = 10;

/// The fast matcher's stride through stretches without matches grows by two
/// bytes per 2^SKIP_SHIFT bytes of the stretch (`matchers::match_fast`).
const FAST_SKIP_SHIFT: u32 = 6;
const TURBO_SKIP_SHIFT: u32 = 4;

/// The smallest page that turbo codes under its canned code.
const TURBO_MIN_PAGE: usize = 1024;

/// Compresses single pages into raw DEFLATE, reusing its state between pages.
pub struct PageEncoder {
    level: Level,
    /// The one-entry tables of the fast and turbo matcher.
    one_entry: Tables,
    /// The hash chains of the strong matcher.
    chains: Tables,
    tally: Tally,
    /// The page's dynamic code.
    code: DynCode,
    /// Turbo's code, the same for every page.
    canned: CannedCode,
    /// Whether the CPU has BMI2, for the encoder compiled to use it.
    #[cfg(target_arch = "x86_64")]
    bmi2: bool,
}

/// What the matcher makes of a page.
pub(super) struct Tally {
    /// Matches: a match item (low half) | literals before it << 32.
    items: Vec<u64>,
    ll_freq: [u32; LITLEN_SYMS],
    d_freq: [u32; DIST_SYMS],
}

impl Sink for Tally {
    /// Counts a run of literals, kept out of the matchers' inner loops.
    #[inline(always)]
    fn literals(&mut self, literals: &[u8]) {
        for &b in literals {
            self.ll_freq[b as usize] += 1;
        }
    }

    /// Counts the literals page[start..end] that precede a match at `end`,
    /// four per step, then the last zero to three without a branch: the
    /// dummy symbol 287, which no code uses, takes the counts of the bytes
    /// past `end` (inside the match, so inside the page).
    #[inline(always)]
    fn literals_before_match(&mut self, page: &[u8], start: usize, end: usize) {
        const DUMMY: usize = LITLEN_SYMS - 1;
        let mut quads = page[start..end].chunks_exact(4);
        for c in &mut quads {
            for &b in c {
                self.ll_freq[b as usize] += 1;
            }
        }
        let tail = quads.remainder().len();
        let at = end - tail;
        for k in 0..3 {
            let b = page[at + k] as usize;
            self.ll_freq[if k < tail { b } else { DUMMY }] += 1;
        }
    }

    /// Records the `k`th match of the page, after `literals` literals.
    #[inline(always)]
    fn push_match(&mut self, k: usize, len: usize, dist: usize, literals: usize) {
        let ds = dist_sym(dist);
        self.items[k] = match_entry(match_item(len, dist, ds), literals);
        self.ll_freq[257 + LEN_SYM[len] as usize] += 1;
        self.d_freq[ds] += 1;
    }
}

/// One matcher's tables: of 16-bit positions for pages below 64 KiB, of
/// 32-bit positions for larger pages.
struct Tables {
    narrow: HashTables<u16>,
    wide: HashTables<u32>,
}

impl Tables {
    const fn new() -> Self {
        Tables {
            narrow: HashTables::new(),
            wide: HashTables::new(),
        }
    }
}

/// A page position as the hash tables hold it: 16 bits while the page fits
/// in 64 KiB, which halves the tables that are cleared for every page.
pub(super) trait Position: Copy {
    const ZERO: Self;
    /// Positions (or positions plus one) must be below this.
    const LIMIT: usize;
    fn from_index(x: usize) -> Self;
    fn index(self) -> usize;
}

/// Position for an unsigned type; `$limit` bounds what it holds.
macro_rules! position_type {
    ($t:ty, $limit:expr) => {
        impl Position for $t {
            const ZERO: $t = 0;
            const LIMIT: usize = $limit;
            #[inline(always)]
            fn from_index(x: usize) -> $t {
                debug_assert!(x < Self::LIMIT);
                x as $t
            }
            #[inline(always)]
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

position_type!(u16, 1 << 16);
position_type!(u32, u32::MAX as usize);

/// One level's hash heads and (for `Strong`) chain links, allocated at
/// setup by `PageEncoder::for_pages` or else on first use.
struct HashTables<P> {
    head: Vec<P>,
    prev: Vec<P>,
}

impl<P: Position> HashTables<P> {
    const fn new() -> Self {
        HashTables {
            head: Vec::new(),
            prev: Vec::new(),
        }
    }

    /// Allocates `N` heads and `links` chain links.
    fn reserve<const N: usize>(&mut self, links: usize) -> Result<(), AllocFailed> {
        self.head = try_filled(N, P::ZERO)?;
        self.prev = try_filled(links, P::ZERO)?;
        Ok(())
    }

    /// The heads, cleared, and at least `links` chain links.
    fn for_page<const N: usize>(&mut self, links: usize) -> (&mut [P; N], &mut [P]) {
        if self.head.len() == N {
            self.head.fill(P::ZERO);
        } else {
            self.head = vec![P::ZERO; N];
        }
        if self.prev.len() < links {
            self.prev.resize(links, P::ZERO);
        }
        let head = (&mut self.head[..N])
            .try_into()
            .unwrap_or_else(|_| unreachable!());
        (head, &mut self.prev[..])
    }
}

/// A dynamic code: lengths, packed codewords and the header that sends it.
struct DynCode {
    ll_lens: [u8; LITLEN_SYMS],
    d_lens: [u8; DIST_SYMS],
    /// Codeword | length << 16, the writer's one load per symbol.
    ll_packed: [u32; LITLEN_SYMS],
    d_packed: [u32; DIST_SYMS],
    header: DynHeader,
}

impl PageEncoder {
    pub fn new(level: Level) -> Self {
        PageEncoder {
            level,
            one_entry: Tables::new(),
            chains: Tables::new(),
            tally: Tally {
                items: Vec::new(),
                ll_freq: [0; LITLEN_SYMS],
                d_freq: [0; DIST_SYMS],
            },
            code: DynCode {
                ll_lens: [0; LITLEN_SYMS],
                d_lens: [0; DIST_SYMS],
                ll_packed: [0; LITLEN_SYMS],
                d_packed: [0; DIST_SYMS],
                header: DynHeader::EMPTY,
            },
            canned: CannedCode::new(),
            #[cfg(target_arch = "x86_64")]
            bmi2: std::arch::is_x86_feature_detected!("bmi2"),
        }
    }

    /// An encoder with every table allocated for pages of up to `page_size`
    /// bytes, so that encoding such pages allocates nothing.
    pub fn for_pages(level: Level, page_size: usize) -> Result<Self, AllocFailed> {
        let mut encoder = PageEncoder::new(level);
        encoder.reserve(level, page_size)?;
        Ok(encoder)
    }

    /// Allocates the tables that `level` needs for pages of up to
    /// `page_size` bytes, so that `set_level(level)` and encoding such pages
    /// allocate nothing.
    pub fn reserve(&mut self, level: Level, page_size: usize) -> Result<(), AllocFailed> {
        if self.tally.items.len() < page_size + 1 {
            self.tally.items = try_filled(page_size + 1, 0)?;
        }
        // The same choice of table as tally_page makes.
        let narrow = page_size < u16::LIMIT;
        let (fast, strong) = (&mut self.one_entry, &mut self.chains);
        match (level, narrow) {
            (Level::Fast | Level::Turbo, true) => fast.narrow.reserve::<{ 1 << FAST_HASH_BITS }>(0),
            (Level::Fast | Level::Turbo, false) => fast.wide.reserve::<{ 1 << FAST_HASH_BITS }>(0),
            (Level::Strong, true) => strong
                .narrow
                .reserve::<{ 1 << STRONG_HASH_BITS }>(page_size),
            (Level::Strong, false) => strong.wide.reserve::<{ 1 << STRONG_HASH_BITS }>(page_size),
        }
    }

    /// The level of the next pages.
    pub fn set_level(&mut self, level: Level) {
        self.level = level;
    }

    pub fn level(&self) -> Level {
        self.level
    }

    /// Compresses `page` into `out`. Returns the stream's length, or `None` when
    /// the whole stream does not fit in `out` (the caller then sends the page raw).
    pub fn encode(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        if self.bmi2 {
            // SAFETY: new() found that this CPU has BMI2.
            return unsafe { self.encode_bmi2(page, out) };
        }
        self.encode_portable(page, out)
    }

    /// encode() compiled for BMI2: the bit writer and the hash shift by
    /// variable amounts, one uop each with BMI2 and three without.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "bmi2")]
    unsafe fn encode_bmi2(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize> {
        self.encode_inner(page, out)
    }

    #[inline(never)]
    fn encode_portable(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize> {
        self.encode_inner(page, out)
    }

    #[inline(always)]
    fn encode_inner(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize> {
        // Turbo's canned header costs about 90 bytes: pages below 1 KiB
        // and pages of one repeated byte (a few bytes with a code of their
        // own) get a code of their own, as at the fast level.
        if self.level == Level::Turbo && page.len() >= TURBO_MIN_PAGE && !is_uniform(page) {
            return self.encode_turbo(page, out);
        }
        let count = self.tally_page(page);
        self.write_block(page, count, out)
    }

    /// One pass under the canned code: the matcher writes as it goes; None
    /// when the stream does not fit in `out`.
    #[inline(always)]
    fn encode_turbo(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize> {
        let limit = out.len();
        let canned = &self.canned;
        let mut emit = Emit {
            w: Writer::after_prefix(out, &canned.prefix, canned.prefix_bits)?,
            ll: &canned.ll_packed,
            d: &canned.d_packed,
        };
        if page.len() < u16::LIMIT {
            let (head, _) = self.one_entry.narrow.for_page(0);
            match_fast::<_, _, TURBO_SKIP_SHIFT>(head, page, &mut emit);
        } else {
            let (head, _) = self.one_entry.wide.for_page(0);
            match_fast::<_, _, TURBO_SKIP_SHIFT>(head, page, &mut emit);
        }
        let len = emit.finish();
        if len <= limit {
            return Some(len);
        }
        // Noise: a stored block, when the caller leaves room for one (the
        // sender does not: its pages then go raw).
        let stored = page.len() + 5 * page.len().div_ceil(65535).max(1);
        (stored <= limit).then(|| write_stored(page, out))
    }

    /// The literal/length and distance symbol counts of `page` as this
    /// encoder's matcher sees it (without the end of block). For the tool
    /// that trains turbo's canned code (`src/bin/train-canned.rs`).
    #[doc(hidden)]
    pub fn symbol_counts(&mut self, page: &[u8]) -> (&[u32], &[u32]) {
        self.tally_page(page);
        self.tally.ll_freq[EOB] -= 1;
        (&self.tally.ll_freq[..LL_USED], &self.tally.d_freq[..D_USED])
    }

    /// Matches `page` into `self.tally`; returns the match count.
    #[inline(always)]
    fn tally_page(&mut self, page: &[u8]) -> usize {
        let n = page.len();
        let tally = &mut self.tally;
        if tally.items.len() < n + 1 {
            tally.items.resize(n + 1, 0);
        }
        tally.ll_freq = [0; LITLEN_SYMS];
        tally.d_freq = [0; DIST_SYMS];
        // Positions below n (fast) or n + 1 (strong's links) must fit.
        let narrow = n < u16::LIMIT;
        let count = if is_uniform(page) {
            match_uniform(page, tally)
        } else {
            match self.level {
                Level::Fast | Level::Turbo if narrow => {
                    let (head, _) = self.one_entry.narrow.for_page(0);
                    match_fast::<_, _, FAST_SKIP_SHIFT>(head, page, tally)
                }
                Level::Fast | Level::Turbo => {
                    let (head, _) = self.one_entry.wide.for_page(0);
                    match_fast::<_, _, FAST_SKIP_SHIFT>(head, page, tally)
                }
                Level::Strong if narrow => {
                    let (head, prev) = self.chains.narrow.for_page(n);
                    match_strong(head, prev, page, tally)
                }
                Level::Strong => {
                    let (head, prev) = self.chains.wide.for_page(n);
                    match_strong(head, prev, page, tally)
                }
            }
        };
        tally.ll_freq[EOB] += 1;
        count
    }

    /// Builds a dynamic code for the page's frequencies into `self.code`.
    fn build_code(&mut self) {
        let code = &mut self.code;
        let ll_counts = build_lengths(
            &self.tally.ll_freq[..LL_USED],
            LL_MAX_LEN,
            &mut code.ll_lens[..LL_USED],
        );
        let d_counts = build_lengths(
            &self.tally.d_freq[..D_USED],
            MAX_CODE_LEN as u32,
            &mut code.d_lens[..D_USED],
        );
        code.header = DynHeader::new(&code.ll_lens, &code.d_lens);
        let mut codes = [0u16; LITLEN_SYMS];
        build_codes(&code.ll_lens, &ll_counts, &mut codes);
        pack_codes(&codes, &code.ll_lens, &mut code.ll_packed);
        build_codes(&code.d_lens, &d_counts, &mut codes[..DIST_SYMS]);
        pack_codes(&codes[..DIST_SYMS], &code.d_lens, &mut code.d_packed);
    }

    #[inline(always)]
    fn write_block(&mut self, page: &[u8], count: usize, out: &mut [u8]) -> Option<usize> {
        let n = page.len();
        // Extra bits are the same under any code.
        let mut extra = 0u64;
        let mut fixed = 3u64;
        for ((&f, &e), &l) in self.tally.ll_freq[..LL_USED]
            .iter()
            .zip(&LL_EXTRA)
            .zip(&FIXED_LL_LENS)
        {
            extra += f as u64 * e as u64;
            fixed += f as u64 * l as u64;
        }
        for (&f, &e) in self.tally.d_freq[..D_USED].iter().zip(&D_EXTRA) {
            extra += f as u64 * e as u64;
            fixed += f as u64 * 5;
        }
        fixed += extra;
        self.build_code();
        let code = &self.code;
        let header = &code.header;
        let mut dynamic = 3 + header.bits + extra;
        for (&f, &l) in self.tally.ll_freq[..LL_USED].iter().zip(&code.ll_lens) {
            dynamic += f as u64 * l as u64;
        }
        for (&f, &l) in self.tally.d_freq[..D_USED].iter().zip(&code.d_lens) {
            dynamic += f as u64 * l as u64;
        }
        let fixed_bytes = fixed.div_ceil(8) as usize;
        let dynamic_bytes = dynamic.div_ceil(8) as usize;
        let stored_bytes = n + 5 * n.div_ceil(65535).max(1);
        let best = fixed_bytes.min(dynamic_bytes).min(stored_bytes);
        if best > out.len() {
            return None;
        }
        let items = &self.tally.items[..count];
        let written = if stored_bytes == best {
            write_stored(page, out)
        } else if dynamic_bytes == best {
            let mut w = Writer::new(out);
            w.put(1 | (2 << 1), 3);
            header.write(&mut w);
            write_items(w, page, items, &code.ll_packed, &code.d_packed)
        } else {
            let mut w = Writer::new(out);
            w.put(1 | (1 << 1), 3);
            write_items(w, page, items, &FIXED_LL_PACKED, &FIXED_D_PACKED)
        };
        debug_assert_eq!(written, best);
        Some(written)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// xorshift64: deterministic test bytes.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// A page of many literals, a few common and a long tail of rare ones:
    /// a code limited to 15 bits gives the rarest 12.
    fn skewed_page() -> Vec<u8> {
        let mut page = Vec::with_capacity(4096);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        while page.len() < 4096 {
            let state = next(&mut state);
            // The product of two uniform bytes: small values common, large
            // ones rare.
            page.push((((state >> 56) * ((state >> 48) & 0xff)) >> 8) as u8);
        }
        page
    }

    #[test]
    fn literal_length_codes_stay_within_ll_max_len() {
        let page = skewed_page();
        for level in [Level::Fast, Level::Strong] {
            let mut encoder = PageEncoder::new(level);
            let mut out = vec![0u8; 4096];
            encoder
                .encode(&page, &mut out)
                .expect("a skewed page compresses");
            let lens = &encoder.code.ll_lens;
            let used = lens.iter().filter(|&&l| l != 0).count();
            assert!(used > 100, "the page should use many symbols, used {used}");
            assert!(lens.iter().all(|&l| l as u32 <= LL_MAX_LEN), "{lens:?}");
        }
        // The fixed code, which the same writer writes, is within it too.
        assert!(FIXED_LL_LENS.iter().all(|&l| l as u32 <= LL_MAX_LEN));
    }

    /// Real text (this crate's codec sources), a skewed page, random bytes,
    /// zeros, and a few sizes: pages for comparing the two builds.
    pub(crate) fn varied_pages() -> Vec<Vec<u8>> {
        let text = [
            include_str!("mod.rs"),
            include_str!("matchers.rs"),
            include_str!("../decode.rs"),
            include_str!("../huffman.rs"),
        ]
        .concat()
        .into_bytes();
        let mut pages: Vec<Vec<u8>> = text.chunks(4096).map(<[u8]>::to_vec).collect();
        pages.push(skewed_page());
        pages.push(vec![0; 4096]);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        pages.push((0..4096).map(|_| next(&mut state) as u8).collect());
        pages.push(text.iter().copied().cycle().take(65536).collect());
        pages.push(text[..1000].to_vec());
        pages
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn bmi2_and_portable_builds_write_the_same_streams() {
        if !std::arch::is_x86_feature_detected!("bmi2") {
            eprintln!("no BMI2 on this CPU: only the portable build runs here");
            return;
        }
        for level in [Level::Turbo, Level::Fast, Level::Strong] {
            let mut encoder = PageEncoder::new(level);
            for page in varied_pages() {
                let mut portable = vec![0u8; page.len()];
                let mut bmi2 = vec![0u8; page.len()];
                let a = encoder.encode_portable(&page, &mut portable);
                // SAFETY: this CPU has BMI2 (checked above).
                let b = unsafe { encoder.encode_bmi2(&page, &mut bmi2) };
                assert_eq!(a, b);
                let len = a.unwrap_or(0);
                assert_eq!(portable[..len], bmi2[..len]);
            }
        }
    }
}
