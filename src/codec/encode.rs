//! The page encoder: one page into one raw DEFLATE stream of a single block.
//!
//! The matcher (greedy on a one-entry hash table for `Fast`, lazy on short
//! hash chains for `Strong`; both on tables cleared per page, of 16-bit
//! positions for pages below 64 KiB) turns the page into matches, each with
//! the number of literals before it, while counting symbol frequencies. Then
//! the exact size of the block is computed for a dynamic code, the fixed
//! code and a stored block, and the smallest is written, if it fits; the
//! writer takes the literals straight from the page.

use super::huffman::{build_codes, build_lengths};
use super::tables::{
    fixed_litlen_lengths, DIST_BASE, DIST_EXTRA, DIST_SYMS, EOB, LEN_BASE, LEN_EXTRA, LITLEN_SYMS,
    MAX_CODE_LEN, MAX_PRECODE_LEN, PRECODE_ORDER, WINDOW,
};
use super::{try_filled, AllocFailed, Level};

const MIN_MATCH: usize = 4;
const MAX_MATCH: usize = 258;
/// Litlen symbols an encoder may use (286 and 287 are reserved).
const LL_USED: usize = 286;
/// Distance symbols an encoder may use.
const D_USED: usize = 30;

/// The longest literal/length codeword the encoder makes. DEFLATE allows
/// 15 bits, but 10 costs no ratio on real pages (the header that sends a
/// shallower code is a little shorter, which about pays for the longer
/// rare codewords), lets the writer put four literals per flush, and keeps
/// every codeword inside a decoder's first-level table of 10 bits, ours
/// included, so that no subtable is built or visited.
const LL_MAX_LEN: u32 = 10;
/// Literals written per flush: the writer keeps at most 7 bits after a
/// flush and the buffer holds 64.
const LITERALS_PER_FLUSH: usize = 4;
const _: () = assert!(7 + LITERALS_PER_FLUSH as u32 * LL_MAX_LEN <= 64);
// The fast matcher reads the keys of four positions from one u64.
const _: () = assert!(FAST_MIN + 3 <= 8);

const FAST_HASH_BITS: u32 = 12;
/// Bytes the fast level's hash key covers: its shortest match.
const FAST_MIN: usize = 5;
const STRONG_HASH_BITS: u32 = 13;

/// Match items: MATCH | distance symbol << 25 | len << 16 | dist
/// (dist < 65536). The literals between matches are not items: the writer
/// takes them from the page.
const MATCH: u32 = 1 << 31;

/// A match item with the number of literals that precede it.
#[inline(always)]
fn match_entry(item: u32, literals: usize) -> u64 {
    item as u64 | (literals as u64) << 32
}

#[inline(always)]
fn match_item(len: usize, dist: usize, dist_sym: usize) -> u32 {
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

const fn fixed_codes<const N: usize>(lens: [u8; N]) -> [u16; N] {
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

static LEN_SYM: [u8; MAX_MATCH + 1] = len_sym_table();
static DIST_SYM: [u8; 512] = dist_sym_table();
static LL_EXTRA: [u8; LITLEN_SYMS] = ll_extra_table();
static D_EXTRA: [u8; DIST_SYMS] = d_extra_table();
static FIXED_LL_LENS: [u8; LITLEN_SYMS] = fixed_litlen_lengths();

#[inline(always)]
fn dist_sym(dist: usize) -> usize {
    let d1 = dist - 1;
    if d1 < 256 {
        DIST_SYM[d1] as usize
    } else {
        DIST_SYM[256 + ((d1 >> 7) & 255)] as usize
    }
}

#[inline(always)]
fn read32(p: &[u8], i: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&p[i..i + 4]);
    u32::from_le_bytes(w)
}

#[inline(always)]
fn read64(p: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&p[i..i + 8]);
    u64::from_le_bytes(w)
}

#[inline(always)]
fn hash(word: u32, bits: u32) -> usize {
    (word.wrapping_mul(0x9E37_79B1) >> (32 - bits)) as usize
}

/// How many bytes at `a` and `b` (a < b) agree, up to `max`.
#[inline(always)]
fn extend(p: &[u8], a: usize, b: usize, max: usize) -> usize {
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

/// LSB-first bit writer into the caller's buffer.
struct Writer<'a> {
    out: &'a mut [u8],
    pos: usize,
    buf: u64,
    count: u32,
}

impl<'a> Writer<'a> {
    fn new(out: &'a mut [u8]) -> Self {
        Writer {
            out,
            pos: 0,
            buf: 0,
            count: 0,
        }
    }

    /// Adds `n` bits; the caller flushes before the buffer could exceed 64.
    #[inline(always)]
    fn put(&mut self, bits: u32, n: u32) {
        self.buf |= (bits as u64) << self.count;
        self.count += n;
    }

    /// Writes out the whole bytes; leaves at most 7 bits buffered.
    #[inline(always)]
    fn flush(&mut self) {
        let bytes = (self.count >> 3) as usize;
        if let Some(dst) = self.out.get_mut(self.pos..self.pos + 8) {
            dst.copy_from_slice(&self.buf.to_le_bytes());
        } else {
            let tail = self.buf.to_le_bytes();
            for (k, &b) in tail.iter().enumerate().take(bytes) {
                if let Some(d) = self.out.get_mut(self.pos + k) {
                    *d = b;
                }
            }
        }
        self.pos += bytes;
        // Callers flush before 56 bits are buffered: bytes <= 6.
        debug_assert!(bytes < 8);
        self.buf >>= (bytes * 8) & 63;
        self.count &= 7;
    }

    fn finish(mut self) -> usize {
        self.flush();
        if self.count > 0 {
            if let Some(d) = self.out.get_mut(self.pos) {
                *d = self.buf as u8;
            }
            self.pos += 1;
        }
        self.pos
    }
}

/// Compresses single pages into raw DEFLATE, reusing its state between pages.
pub struct PageEncoder {
    level: Level,
    /// Hash tables of 16-bit positions, for pages below 64 KiB.
    narrow: HashTables<u16>,
    /// Hash tables of 32-bit positions, for larger pages.
    wide: HashTables<u32>,
    tally: Tally,
    /// The page's dynamic code.
    code: DynCode,
    /// Whether the CPU has BMI2, for the encoder compiled to use it.
    #[cfg(target_arch = "x86_64")]
    bmi2: bool,
}

/// What the matcher makes of a page.
struct Tally {
    /// Matches: a match item (low half) | literals before it << 32.
    items: Vec<u64>,
    ll_freq: [u32; LITLEN_SYMS],
    d_freq: [u32; DIST_SYMS],
}

impl Tally {
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

/// A page position as the hash tables hold it: 16 bits while the page fits
/// in 64 KiB, which halves the tables that are cleared for every page.
trait Position: Copy {
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

/// A dynamic block's header, ready to write.
struct DynHeader {
    hlit: usize,
    hdist: usize,
    hclen: usize,
    pre_lens: [u8; 19],
    pre_codes: [u16; 19],
    /// Code-length symbols: symbol | extra value << 8.
    rle: [u16; LITLEN_SYMS + DIST_SYMS],
    rle_len: usize,
    bits: u64,
}

impl PageEncoder {
    pub fn new(level: Level) -> Self {
        PageEncoder {
            level,
            narrow: HashTables::new(),
            wide: HashTables::new(),
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
            #[cfg(target_arch = "x86_64")]
            bmi2: std::arch::is_x86_feature_detected!("bmi2"),
        }
    }

    /// An encoder with every table allocated for pages of up to `page_size`
    /// bytes, so that encoding such pages allocates nothing.
    pub fn for_pages(level: Level, page_size: usize) -> Result<Self, AllocFailed> {
        let mut encoder = PageEncoder::new(level);
        encoder.tally.items = try_filled(page_size + 1, 0)?;
        // The same choice of table as tally_page makes.
        let narrow = page_size < u16::LIMIT;
        match (level, narrow) {
            (Level::Fast, true) => encoder.narrow.reserve::<{ 1 << FAST_HASH_BITS }>(0)?,
            (Level::Fast, false) => encoder.wide.reserve::<{ 1 << FAST_HASH_BITS }>(0)?,
            (Level::Strong, true) => encoder
                .narrow
                .reserve::<{ 1 << STRONG_HASH_BITS }>(page_size)?,
            (Level::Strong, false) => encoder
                .wide
                .reserve::<{ 1 << STRONG_HASH_BITS }>(page_size)?,
        }
        Ok(encoder)
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
        let count = self.tally_page(page);
        self.write_block(page, count, out)
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
                Level::Fast if narrow => {
                    let (head, _) = self.narrow.for_page(0);
                    match_fast(head, page, tally)
                }
                Level::Fast => {
                    let (head, _) = self.wide.for_page(0);
                    match_fast(head, page, tally)
                }
                Level::Strong if narrow => {
                    let (head, prev) = self.narrow.for_page(n);
                    match_strong(head, prev, page, tally)
                }
                Level::Strong => {
                    let (head, prev) = self.wide.for_page(n);
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

/// Codeword | length << 16 per symbol.
fn pack_codes(codes: &[u16], lens: &[u8], packed: &mut [u32]) {
    for ((e, &c), &l) in packed.iter_mut().zip(codes).zip(lens) {
        *e = c as u32 | (l as u32) << 16;
    }
}

const fn pack_fixed<const N: usize>(codes: [u16; N], lens: [u8; N]) -> [u32; N] {
    let mut t = [0u32; N];
    let mut i = 0;
    while i < N {
        t[i] = codes[i] as u32 | (lens[i] as u32) << 16;
        i += 1;
    }
    t
}

static FIXED_LL_PACKED: [u32; LITLEN_SYMS] =
    pack_fixed(fixed_codes(fixed_litlen_lengths()), fixed_litlen_lengths());
static FIXED_D_PACKED: [u32; DIST_SYMS] =
    pack_fixed(fixed_codes([5u8; DIST_SYMS]), [5u8; DIST_SYMS]);

impl DynHeader {
    const EMPTY: DynHeader = DynHeader {
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
    fn new(ll_lens: &[u8; LITLEN_SYMS], d_lens: &[u8; DIST_SYMS]) -> DynHeader {
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
    fn write(&self, w: &mut Writer) {
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

/// A page of one repeated byte: a literal, then distance-1 matches.
#[inline(always)]
fn match_uniform(page: &[u8], tally: &mut Tally) -> usize {
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
fn match_fast<P: Position>(
    head: &mut [P; 1 << FAST_HASH_BITS],
    page: &[u8],
    tally: &mut Tally,
) -> usize {
    const SKIP_SHIFT: u32 = 6;
    const KEY_MASK: u64 = (1 << (8 * FAST_MIN)) - 1;
    let n = page.len();
    assert!(n <= P::LIMIT && tally.items.len() > n);
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
fn match_strong<P: Position>(
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
fn is_uniform(page: &[u8]) -> bool {
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

fn write_stored(page: &[u8], out: &mut [u8]) -> usize {
    let mut pos = 0;
    let mut chunks = page.chunks(65535).peekable();
    if page.is_empty() {
        out[..5].copy_from_slice(&[1, 0, 0, 0xff, 0xff]);
        return 5;
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let len = chunk.len() as u16;
        out[pos] = last as u8;
        out[pos + 1..pos + 3].copy_from_slice(&len.to_le_bytes());
        out[pos + 3..pos + 5].copy_from_slice(&(!len).to_le_bytes());
        out[pos + 5..pos + 5 + chunk.len()].copy_from_slice(chunk);
        pos += 5 + chunk.len();
    }
    pos
}

/// Writes the literals `lits`, LITERALS_PER_FLUSH codewords per flush, in a
/// loop whose only data-dependent branch is its end.
#[inline(always)]
fn write_literals(w: &mut Writer, lits: &[u8], ll: &[u32; LITLEN_SYMS]) {
    for group in lits.chunks(LITERALS_PER_FLUSH) {
        for &b in group {
            let e = ll[b as usize];
            w.put(e & 0xffff, e >> 16);
        }
        w.flush();
    }
}

/// Writes the page's symbols, the literals from `page` between the match
/// items, and the end of block, under the packed codes `ll` and `d`.
#[inline(always)]
fn write_items(
    mut w: Writer,
    page: &[u8],
    items: &[u64],
    ll: &[u32; LITLEN_SYMS],
    d: &[u32; DIST_SYMS],
) -> usize {
    let mut pos = 0;
    for &entry in items {
        let run = (entry >> 32) as usize;
        // Literals four per flush, then the last zero to three without a
        // branch: the shortest literal runs, the commonest, would otherwise
        // cost a mispredicted branch each.
        let mut quads = page[pos..pos + run].chunks_exact(LITERALS_PER_FLUSH);
        for quad in &mut quads {
            for &b in quad {
                let e = ll[b as usize];
                w.put(e & 0xffff, e >> 16);
            }
            w.flush();
        }
        let tail = quads.remainder().len();
        pos += run - tail;
        // The match after the run covers at least 3 bytes, so the bytes
        // read here are inside the page; those past the run weigh 0 bits.
        let (mut codes, mut bits) = (0u32, 0u32);
        for k in 0..LITERALS_PER_FLUSH - 1 {
            let e = ll[page[pos + k] as usize];
            let len = (e >> 16) * (k < tail) as u32;
            codes |= (e & 0xffff & ((1 << len) - 1)) << bits;
            bits += len;
        }
        w.put(codes, bits);
        w.flush();
        pos += tail;
        let item = entry as u32;
        let len = ((item >> 16) & 511) as usize;
        let dist = item & 0xffff;
        let ls = LEN_SYM[len] as usize;
        let e = ll[257 + ls];
        w.put(e & 0xffff, e >> 16);
        w.put((len - LEN_BASE[ls] as usize) as u32, LEN_EXTRA[ls] as u32);
        let ds = ((item >> 25) & 31) as usize;
        let e = d[ds];
        w.put(e & 0xffff, e >> 16);
        w.put(dist - DIST_BASE[ds] as u32, DIST_EXTRA[ds] as u32);
        w.flush();
        pos += len;
    }
    write_literals(&mut w, &page[pos..], ll);
    let e = ll[EOB];
    w.put(e & 0xffff, e >> 16);
    w.finish()
}

/// The longest match at `i` better than `best`, following the chain from
/// `cand` (a position plus one, 0 ending the chain) for at most `depth`
/// candidates. Returns (length, distance), or (0, 0).
#[inline(always)]
fn longest<P: Position>(
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
fn longest_in_chain(
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
            include_str!("encode.rs"),
            include_str!("decode.rs"),
            include_str!("huffman.rs"),
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
        for level in [Level::Fast, Level::Strong] {
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
