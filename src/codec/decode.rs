//! The page decoder: inflates one raw DEFLATE stream into exactly one page.
//!
//! Table-driven: one lookup in a 2^10-entry table resolves a literal, a
//! length with its extra bits, the end of block or a pointer into a
//! subtable for the rare longer codewords. A 64-bit bit buffer is refilled
//! branch-free once per match or up to five literals, which leaves enough
//! bits for a whole match (length, extra bits, distance, extra bits). The
//! fixed-Huffman tables (what Intel QPL sends with QEMU's flags) are built
//! once per decoder; dynamic ones are built per block by doubling the main
//! table.
//!
//! The fast loop runs while 8 input bytes can be read and five literals fit
//! in the page, without bounds checks (`unsafe`, each use argued in a
//! SAFETY comment); a match copies in 16- or 8-byte chunks when 16 bytes of
//! slack follow it in the page, else exactly. The stream's and the page's
//! last bytes go through a careful loop. On x86-64 the decoder is compiled a
//! second time for BMI2 and picked at run time.

use super::tables::{
    fixed_litlen_lengths, DIST_BASE, DIST_EXTRA, DIST_SYMS, EOB, FIXED_DIST_LENGTHS, LEN_BASE,
    LEN_EXTRA, LITLEN_SYMS, MAX_CODE_LEN, MAX_PRECODE_LEN, PRECODE_ORDER,
};
use super::{try_filled, AllocFailed, DecodeFault};

// Entry layout (u32):
//   bits 0..8    bits to consume: codeword length plus extra bits (for a
//                subtable pointer: the main table's index bits)
//   bits 8..12   codeword length (for a subtable pointer: the subtable's bits)
//   bit  12      end of block
//   bit  13      subtable pointer
//   bit  14      exceptional: end of block, subtable pointer or invalid
//   bit  15      literal
//   bits 16..32  literal byte, length base, distance base, precode symbol or
//                subtable start
const F_EOB: u32 = 1 << 12;
const F_SUB: u32 = 1 << 13;
const F_EXC: u32 = 1 << 14;
const F_LIT: u32 = 1 << 15;
/// An entry no valid codeword reaches (incomplete code, or symbols 286/287,
/// 30/31).
const INVALID: u32 = F_EXC;

const LITLEN_BITS: u32 = 10;
const DIST_BITS: u32 = 8;
const PRECODE_BITS: u32 = MAX_PRECODE_LEN as u32;

/// Room for the main table plus a subtable for every symbol, the most an
/// (even incomplete) code can need.
const LITLEN_TABLE_LEN: usize = (1 << LITLEN_BITS) + (LITLEN_SYMS << (15 - LITLEN_BITS));
const DIST_TABLE_LEN: usize = (1 << DIST_BITS) + (DIST_SYMS << (15 - DIST_BITS));
const PRECODE_TABLE_LEN: usize = 1 << PRECODE_BITS;
// Fixed-size so that masked main-table indexes need no bounds check.
type LitlenTable = [u32; LITLEN_TABLE_LEN];
type DistTable = [u32; DIST_TABLE_LEN];

/// Longest match DEFLATE can express.
const MAX_MATCH: usize = 258;

const fn litlen_info() -> [u32; LITLEN_SYMS] {
    let mut info = [INVALID; LITLEN_SYMS];
    let mut s = 0;
    while s < 256 {
        info[s] = F_LIT | ((s as u32) << 16);
        s += 1;
    }
    info[EOB] = F_EXC | F_EOB;
    let mut i = 0;
    while i < 29 {
        info[257 + i] = ((LEN_BASE[i] as u32) << 16) | LEN_EXTRA[i] as u32;
        i += 1;
    }
    info
}

const fn dist_info() -> [u32; DIST_SYMS] {
    let mut info = [INVALID; DIST_SYMS];
    let mut i = 0;
    while i < 30 {
        info[i] = ((DIST_BASE[i] as u32) << 16) | DIST_EXTRA[i] as u32;
        i += 1;
    }
    info
}

const fn precode_info() -> [u32; 19] {
    let mut info = [0u32; 19];
    let mut i = 0;
    while i < 19 {
        info[i] = (i as u32) << 16;
        i += 1;
    }
    info
}

/// The 10-bit reversal of every 10-bit number: a codeword of `len <= 10`
/// bits, reversed, is `REVERSED[code << (10 - len)]`.
static REVERSED: [u16; 1 << 10] = {
    let mut t = [0u16; 1 << 10];
    let mut i = 0;
    while i < t.len() {
        t[i] = ((i as u32).reverse_bits() >> 22) as u16;
        i += 1;
    }
    t
};

static LITLEN_INFO: [u32; LITLEN_SYMS] = litlen_info();
static DIST_INFO: [u32; DIST_SYMS] = dist_info();
static PRECODE_INFO: [u32; 19] = precode_info();

/// Builds a decode table for the code with codeword lengths `lens` (symbol i
/// has length lens[i], 0 = unused). Over-subscribed codes are rejected;
/// incomplete ones are accepted, the unreachable entries being INVALID.
fn build_table(
    lens: &[u8],
    info: &[u32],
    table: &mut [u32],
    table_bits: u32,
) -> Result<(), DecodeFault> {
    let mut count = [0u16; MAX_CODE_LEN + 1];
    for &l in lens {
        count[(l as usize) & 15] += 1;
    }
    count[0] = 0;
    let mut left: i32 = 1;
    for &c in &count[1..] {
        left = (left << 1) - c as i32;
        if left < 0 {
            return Err(DecodeFault::Corrupt("over-subscribed Huffman code"));
        }
    }
    let mut offs = [0u16; MAX_CODE_LEN + 2];
    for l in 1..=MAX_CODE_LEN {
        offs[l + 1] = offs[l] + count[l];
    }
    let mut sorted = [0u16; LITLEN_SYMS];
    for (s, &l) in lens.iter().enumerate() {
        if l != 0 {
            let l = (l as usize) & 15;
            sorted[offs[l] as usize] = s as u16;
            offs[l] += 1;
        }
    }
    let used = offs[MAX_CODE_LEN + 1] as usize;
    let main_len = 1usize << table_bits;
    // The main table grows by doubling: while it holds 2^filled entries,
    // every codeword up to `filled` bits sits at its (bit-reversed) index,
    // and doubling replicates each one into the slots where the next bit
    // is "don't care". Slots no codeword reaches stay INVALID.
    table[0] = INVALID;
    let mut filled = 0u32;
    let mut remaining = count;
    let mut code: u32 = 0;
    let mut cur_len: u32 = 1;
    let mut next_sub = main_len;
    let mut sub_prefix = usize::MAX;
    let mut sub_start = 0usize;
    let mut sub_bits = 0u32;
    for &sym in &sorted[..used] {
        let sym = sym as usize;
        let len = lens[sym] as u32;
        if len > cur_len {
            code <<= len - cur_len;
            cur_len = len;
        }
        let rev = if len <= 10 {
            REVERSED[(code << (10 - len)) as usize & 1023] as usize
        } else {
            (code.reverse_bits() >> (32 - len)) as usize
        };
        code += 1;
        remaining[len as usize] -= 1;
        if len <= table_bits {
            while filled < len {
                let half = 1usize << filled;
                table.copy_within(0..half, half);
                filled += 1;
            }
            table[rev] = info[sym] + (len << 8) + len;
        } else {
            while filled < table_bits {
                let half = 1usize << filled;
                table.copy_within(0..half, half);
                filled += 1;
            }
            let prefix = rev & (main_len - 1);
            if prefix != sub_prefix {
                // A new subtable: as deep as the longest codeword sharing
                // this prefix, found by filling the prefix's code space.
                sub_prefix = prefix;
                sub_bits = len - table_bits;
                let mut space = remaining[len as usize] as u32 + 1;
                while space < (1 << sub_bits) && table_bits + sub_bits < MAX_CODE_LEN as u32 {
                    sub_bits += 1;
                    space = (space << 1) + count[(table_bits + sub_bits) as usize] as u32;
                }
                sub_start = next_sub;
                next_sub += 1 << sub_bits;
                if next_sub > table.len() {
                    return Err(DecodeFault::Corrupt("Huffman table overflow"));
                }
                if left != 0 {
                    table[sub_start..next_sub].fill(INVALID);
                }
                table[prefix] =
                    F_EXC | F_SUB | ((sub_start as u32) << 16) | (sub_bits << 8) | table_bits;
            }
            let cl = len - table_bits;
            let entry = info[sym] + (cl << 8) + cl;
            let step = 1usize << cl;
            let size = 1usize << sub_bits;
            let mut j = rev >> table_bits;
            while j < size {
                table[sub_start + j] = entry;
                j += step;
            }
        }
    }
    while filled < table_bits {
        let half = 1usize << filled;
        table.copy_within(0..half, half);
        filled += 1;
    }
    Ok(())
}

/// Bit reader over the whole stream. Past the end it feeds zero bytes and
/// counts them, so that any use of them reports a truncated stream.
struct Bits<'a> {
    input: &'a [u8],
    pos: usize,
    overrun: usize,
    buf: u64,
    count: u32,
}

impl<'a> Bits<'a> {
    #[inline(always)]
    fn new(input: &'a [u8]) -> Self {
        Bits {
            input,
            pos: 0,
            overrun: 0,
            buf: 0,
            count: 0,
        }
    }

    /// Brings the buffer to at least 56 bits.
    #[inline(always)]
    fn refill(&mut self) -> Result<(), DecodeFault> {
        if let Some(chunk) = self.input.get(self.pos..self.pos + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            // The bits above `count` may already hold the next bytes, at the
            // very place this puts them again: or-ing is idempotent.
            self.buf |= word << self.count;
            self.pos += (63 - self.count as usize) >> 3;
            self.count |= 56;
            Ok(())
        } else {
            self.refill_slow()
        }
    }

    #[cold]
    #[inline(never)]
    fn refill_slow(&mut self) -> Result<(), DecodeFault> {
        if self.overrun * 8 > self.count as usize {
            // Bits past the end of the stream were consumed.
            return Err(DecodeFault::Truncated);
        }
        while self.count <= 56 {
            if let Some(&b) = self.input.get(self.pos) {
                self.buf |= (b as u64) << self.count;
                self.pos += 1;
            } else {
                self.overrun += 1;
            }
            self.count += 8;
        }
        Ok(())
    }

    #[inline(always)]
    fn peek(&self, n: u32) -> u32 {
        (self.buf & ((1u64 << n) - 1)) as u32
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.buf >>= n;
        self.count -= n;
    }

    #[inline(always)]
    fn take(&mut self, n: u32) -> u32 {
        let v = self.peek(n);
        self.consume(n);
        v
    }

    /// Bits consumed so far, counting any past the end of the stream.
    fn consumed_bits(&self) -> usize {
        (self.pos + self.overrun) * 8 - self.count as usize
    }

    fn over_consumed(&self) -> bool {
        self.consumed_bits() > self.input.len() * 8
    }

    /// Reports a fault, as truncation when the decoder ran past the input.
    fn fault(&self, fault: DecodeFault) -> DecodeFault {
        if self.over_consumed() {
            DecodeFault::Truncated
        } else {
            fault
        }
    }

    /// Continues reading at bit `bit` of the stream.
    fn restart_at(&mut self, bit: usize) -> Result<(), DecodeFault> {
        self.pos = bit / 8;
        self.overrun = 0;
        self.buf = 0;
        self.count = 0;
        self.refill()?;
        self.consume((bit % 8) as u32);
        Ok(())
    }

    /// Skips to the next byte boundary and empties the buffer, returning the
    /// byte position reached.
    fn align(&mut self) -> Result<usize, DecodeFault> {
        let bits = self.consumed_bits().div_ceil(8) * 8;
        if bits > self.input.len() * 8 {
            return Err(DecodeFault::Truncated);
        }
        self.pos = bits / 8;
        self.overrun = 0;
        self.buf = 0;
        self.count = 0;
        Ok(self.pos)
    }
}

/// The longest block header, in bytes: 3 + 14 + 19 x 3 bits, then up to 316
/// code lengths of at most 7 + 7 bits.
const HEADER_CACHE_BYTES: usize = 576;

/// The first bits of the last stream whose first block had a dynamic header,
/// up to the end of that header, while the dynamic tables still hold the
/// code it described. A stream that starts with the same bits has the same
/// code: its tables need not be built again. Senders that use one code for
/// every page (our turbo level; IAA with a canned table) hit every time.
struct HeaderCache {
    bytes: [u8; HEADER_CACHE_BYTES],
    /// Bits of `bytes` that count; 0 when the tables hold no cached code.
    bits: usize,
}

impl HeaderCache {
    fn matches(&self, stream: &[u8]) -> bool {
        let (whole, rest) = (self.bits / 8, self.bits % 8);
        let mask = (1u8 << rest).wrapping_sub(1);
        self.bits > 0
            && stream.len() * 8 >= self.bits
            && stream[..whole] == self.bytes[..whole]
            && (rest == 0 || (stream[whole] ^ self.bytes[whole]) & mask == 0)
    }

    fn store(&mut self, stream: &[u8], bits: usize) {
        let len = bits.div_ceil(8);
        if bits <= stream.len() * 8 && len <= HEADER_CACHE_BYTES {
            self.bytes[..len].copy_from_slice(&stream[..len]);
            self.bits = bits;
        }
    }
}

/// Inflates raw DEFLATE streams into exactly one page each.
pub struct PageDecoder {
    litlen: Box<LitlenTable>,
    dist: Box<DistTable>,
    fixed_litlen: Box<LitlenTable>,
    fixed_dist: Box<DistTable>,
    precode: [u32; PRECODE_TABLE_LEN],
    lens: [u8; LITLEN_SYMS + DIST_SYMS],
    header_cache: HeaderCache,
    /// The pair table of the cached code, once a second stream has used it.
    pairs: Box<PairTable>,
    pairs_ready: bool,
    /// Whether the CPU has BMI2, for the decoder compiled to use it.
    #[cfg(target_arch = "x86_64")]
    bmi2: bool,
}

impl Default for PageDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// A table on the heap, allocated without aborting when memory runs out.
fn boxed_table<const N: usize>() -> Result<Box<[u32; N]>, AllocFailed> {
    let table = try_filled(N, INVALID)?.into_boxed_slice();
    Ok(table.try_into().unwrap_or_else(|_| unreachable!()))
}

impl PageDecoder {
    /// A decoder; aborts if its tables cannot be allocated (see `try_new`).
    pub fn new() -> Self {
        Self::try_new().expect("out of memory for the decoder's tables")
    }

    /// A decoder with all its tables allocated: decoding allocates nothing.
    pub fn try_new() -> Result<Self, AllocFailed> {
        let mut fixed_litlen = boxed_table::<LITLEN_TABLE_LEN>()?;
        let mut fixed_dist = boxed_table::<DIST_TABLE_LEN>()?;
        let fixed_lens = fixed_litlen_lengths();
        // The fixed codes are complete and valid: building them cannot fail.
        let built = build_table(
            &fixed_lens,
            &LITLEN_INFO,
            &mut fixed_litlen[..],
            LITLEN_BITS,
        )
        .and_then(|()| {
            build_table(
                &FIXED_DIST_LENGTHS,
                &DIST_INFO,
                &mut fixed_dist[..],
                DIST_BITS,
            )
        });
        debug_assert!(built.is_ok());
        Ok(PageDecoder {
            litlen: boxed_table()?,
            dist: boxed_table()?,
            fixed_litlen,
            fixed_dist,
            precode: [INVALID; PRECODE_TABLE_LEN],
            lens: [0; LITLEN_SYMS + DIST_SYMS],
            header_cache: HeaderCache {
                bytes: [0; HEADER_CACHE_BYTES],
                bits: 0,
            },
            pairs: boxed_table()?,
            pairs_ready: false,
            #[cfg(target_arch = "x86_64")]
            bmi2: std::arch::is_x86_feature_detected!("bmi2"),
        })
    }

    /// Inflates `stream` into `page`, which it must fill exactly. Writes only
    /// inside `page`; on error the page's content is unspecified.
    pub fn decode(&mut self, stream: &[u8], page: &mut [u8]) -> Result<(), DecodeFault> {
        #[cfg(target_arch = "x86_64")]
        if self.bmi2 {
            // SAFETY: new() found that this CPU has BMI2.
            return unsafe { self.decode_bmi2(stream, page) };
        }
        self.decode_portable(stream, page)
    }

    /// decode() compiled for BMI2 (single-uop variable shifts).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "bmi2")]
    unsafe fn decode_bmi2(&mut self, stream: &[u8], page: &mut [u8]) -> Result<(), DecodeFault> {
        self.decode_inner(stream, page)
    }

    #[inline(never)]
    fn decode_portable(&mut self, stream: &[u8], page: &mut [u8]) -> Result<(), DecodeFault> {
        self.decode_inner(stream, page)
    }

    #[inline(always)]
    fn decode_inner(&mut self, stream: &[u8], page: &mut [u8]) -> Result<(), DecodeFault> {
        let mut bits = Bits::new(stream);
        let mut out = 0usize;
        let mut first = true;
        loop {
            bits.refill()?;
            let header = bits.take(3);
            let result = match header >> 1 {
                0 => stored_block(&mut bits, page, &mut out),
                1 => huffman_block(
                    &mut bits,
                    page,
                    &mut out,
                    &self.fixed_litlen,
                    &self.fixed_dist,
                ),
                2 => match self.dynamic_header(&mut bits, stream, first) {
                    // The code of the last stream again: worth a pair table.
                    Ok(true) => {
                        if !self.pairs_ready {
                            build_pairs(&self.litlen, &mut self.pairs);
                            self.pairs_ready = true;
                        }
                        huffman_block_pairs(
                            &mut bits,
                            page,
                            &mut out,
                            &self.pairs,
                            &self.litlen,
                            &self.dist,
                        )
                    }
                    Ok(false) => huffman_block(&mut bits, page, &mut out, &self.litlen, &self.dist),
                    Err(e) => Err(e),
                },
                _ => Err(DecodeFault::Corrupt("reserved block type")),
            };
            if let Err(fault) = result {
                return Err(bits.fault(fault));
            }
            if header & 1 != 0 {
                break;
            }
            first = false;
        }
        let consumed = bits.consumed_bits();
        if consumed > stream.len() * 8 {
            return Err(DecodeFault::Truncated);
        }
        if out != page.len() {
            return Err(DecodeFault::Short { produced: out });
        }
        let used = consumed.div_ceil(8);
        if used < stream.len() {
            return Err(DecodeFault::TrailingBytes {
                extra: stream.len() - used,
            });
        }
        Ok(())
    }

    /// Sets up the tables of a dynamic block: those of the last stream when
    /// this is a stream's first block and its header has the same bits as
    /// that stream's (returns true), else built from the header (false).
    fn dynamic_header(
        &mut self,
        bits: &mut Bits,
        stream: &[u8],
        first: bool,
    ) -> Result<bool, DecodeFault> {
        if first && self.header_cache.matches(stream) {
            bits.restart_at(self.header_cache.bits)?;
            return Ok(true);
        }
        // The tables are about to change.
        self.header_cache.bits = 0;
        self.pairs_ready = false;
        self.read_dynamic_header(bits)?;
        if first {
            self.header_cache.store(stream, bits.consumed_bits());
        }
        Ok(false)
    }

    /// Reads a dynamic block's code descriptions and builds its tables.
    fn read_dynamic_header(&mut self, bits: &mut Bits) -> Result<(), DecodeFault> {
        bits.refill()?;
        let hlit = bits.take(5) as usize + 257;
        let hdist = bits.take(5) as usize + 1;
        let hclen = bits.take(4) as usize + 4;
        if hlit > 286 || hdist > 30 {
            return Err(DecodeFault::Corrupt("too many length or distance codes"));
        }
        let mut precode_lens = [0u8; 19];
        for (i, &sym) in PRECODE_ORDER[..hclen].iter().enumerate() {
            if i == 8 {
                bits.refill()?;
            }
            precode_lens[sym] = bits.take(3) as u8;
        }
        build_table(
            &precode_lens,
            &PRECODE_INFO,
            &mut self.precode,
            PRECODE_BITS,
        )?;

        let total = hlit + hdist;
        let lens = &mut self.lens;
        let mut i = 0;
        while i < total {
            bits.refill()?;
            let entry = self.precode[bits.peek(PRECODE_BITS) as usize];
            if entry & F_EXC != 0 {
                return Err(DecodeFault::Corrupt("invalid code-length code"));
            }
            bits.consume(entry & 0xff);
            let sym = (entry >> 16) as u8;
            let (value, repeat) = match sym {
                0..=15 => {
                    lens[i] = sym;
                    i += 1;
                    continue;
                }
                16 => {
                    if i == 0 {
                        return Err(DecodeFault::Corrupt("repeat of no previous length"));
                    }
                    (lens[i - 1], 3 + bits.take(2) as usize)
                }
                17 => (0, 3 + bits.take(3) as usize),
                _ => (0, 11 + bits.take(7) as usize),
            };
            if i + repeat > total {
                return Err(DecodeFault::Corrupt("code lengths overflow"));
            }
            lens[i..i + repeat].fill(value);
            i += repeat;
        }
        // Distance lengths follow the literal/length ones in `lens`.
        let mut dist_lens = [0u8; DIST_SYMS];
        dist_lens[..hdist].copy_from_slice(&lens[hlit..hlit + hdist]);
        build_table(&dist_lens, &DIST_INFO, &mut self.dist[..], DIST_BITS)?;
        lens[hlit..LITLEN_SYMS].fill(0);
        build_table(
            &lens[..LITLEN_SYMS],
            &LITLEN_INFO,
            &mut self.litlen[..],
            LITLEN_BITS,
        )
    }
}

fn stored_block(bits: &mut Bits, page: &mut [u8], out: &mut usize) -> Result<(), DecodeFault> {
    let pos = bits.align()?;
    let input = bits.input;
    let header = input.get(pos..pos + 4).ok_or(DecodeFault::Truncated)?;
    let len = u16::from_le_bytes([header[0], header[1]]);
    let nlen = u16::from_le_bytes([header[2], header[3]]);
    if len != !nlen {
        return Err(DecodeFault::Corrupt("stored block length check"));
    }
    let len = len as usize;
    let data = input
        .get(pos + 4..pos + 4 + len)
        .ok_or(DecodeFault::Truncated)?;
    let dest = page.get_mut(*out..*out + len).ok_or(DecodeFault::PastEnd)?;
    dest.copy_from_slice(data);
    *out += len;
    bits.pos = pos + 4 + len;
    Ok(())
}

/// Decodes the symbols of one Huffman block up to its end-of-block code.
#[inline(always)]
fn huffman_block(
    bits: &mut Bits,
    page: &mut [u8],
    out: &mut usize,
    litlen: &LitlenTable,
    dist: &DistTable,
) -> Result<(), DecodeFault> {
    let mut pos = *out;
    let main = &litlen[..1 << LITLEN_BITS];
    let result = huffman_loop::<false>(bits, page, &mut pos, main, litlen, dist);
    *out = pos;
    result
}

/// `huffman_block` with the pair table of the code in `litlen` as the first
/// lookup (`build_pairs`): one lookup may give two literals.
#[inline(always)]
fn huffman_block_pairs(
    bits: &mut Bits,
    page: &mut [u8],
    out: &mut usize,
    pairs: &PairTable,
    litlen: &LitlenTable,
    dist: &DistTable,
) -> Result<(), DecodeFault> {
    let mut pos = *out;
    let result = huffman_loop::<true>(bits, page, &mut pos, &pairs[..], litlen, dist);
    *out = pos;
    result
}

/// The Huffman block's symbols. The first lookup of each literal/length
/// symbol goes to `main`: `litlen`'s own 2^LITLEN_BITS entries, or, with
/// PAIRS, the 2^PAIR_BITS entries of a pair table, whose entries may carry
/// two literals; subtables are always `litlen`'s.
#[inline(always)]
fn huffman_loop<const PAIRS: bool>(
    bits: &mut Bits,
    page: &mut [u8],
    out: &mut usize,
    main: &[u32],
    litlen: &LitlenTable,
    dist: &DistTable,
) -> Result<(), DecodeFault> {
    let main_bits = if PAIRS { PAIR_BITS } else { LITLEN_BITS };
    let ll_mask: u64 = (1 << main_bits) - 1;
    // Room kept at the page's end: five literals of a byte each, or four
    // lookups of up to two literals each written as two-byte stores.
    let margin = if PAIRS { 9 } else { FAST_OUT_MARGIN };
    assert!(main.len() == 1 << main_bits);
    const D_MASK: u64 = (1 << DIST_BITS) - 1;
    let input = bits.input;
    let page_len = page.len();
    let mut pos = *out;

    // Fast loop: while 8 input bytes can be read and `margin` bytes fit in
    // the page, the bit buffer needs no bounds checks; matches check their
    // own room.
    if bits.overrun == 0 && input.len() >= 8 && page_len >= margin {
        let in_last = input.len() - 8;
        let out_last = page_len - margin;
        let in_ptr = input.as_ptr();
        let out_ptr = page.as_mut_ptr();
        let mut ip = bits.pos;
        let mut buf = bits.buf;
        let mut cnt = bits.count;
        let mut result = None;
        'symbols: while ip <= in_last && pos <= out_last {
            // SAFETY: ip + 8 <= input.len() by the loop condition.
            let word = unsafe { in_ptr.add(ip).cast::<u64>().read_unaligned() };
            buf |= u64::from_le(word) << cnt;
            ip += (63 - cnt as usize) >> 3;
            cnt |= 56;

            let mut entry = main[(buf & ll_mask) as usize];
            if entry & F_LIT != 0 {
                // Up to five literals per refill: a literal in the main
                // table takes at most LITLEN_BITS, 5 x 10 <= 56, and the
                // loop condition leaves room for five bytes. With pairs,
                // four lookups of at most PAIR_BITS, 4 x 13 <= 56, of one
                // or two literals each. Written out rather than looped: a
                // counted loop measured 2-3 % slower on fixed-Huffman pages.
                macro_rules! literal {
                    () => {
                        buf >>= entry & 0xff;
                        cnt -= entry & 0xff;
                        debug_assert!(pos + 1 < page_len);
                        if PAIRS {
                            // SAFETY: the loop condition held pos <=
                            // page_len - margin, and at most three lookups
                            // of two literals were written since, so
                            // pos + 2 <= page_len.
                            unsafe {
                                out_ptr
                                    .add(pos)
                                    .cast::<u16>()
                                    .write_unaligned(((entry >> 16) as u16).to_le())
                            };
                            pos += 1 + (((entry >> 8) & 15) == PAIR_MARK) as usize;
                        } else {
                            // SAFETY: the loop condition held pos <=
                            // page_len - FAST_OUT_MARGIN, and at most
                            // FAST_OUT_MARGIN - 1 literals were written
                            // since, so pos < page_len.
                            unsafe { *out_ptr.add(pos) = (entry >> 16) as u8 };
                            pos += 1;
                        }
                    };
                    // A literal, then the next entry; leaves `$done` on
                    // anything but a literal.
                    (then $done:lifetime) => {
                        literal!();
                        entry = main[(buf & ll_mask) as usize];
                        if entry & F_LIT == 0 {
                            break $done;
                        }
                    };
                }
                'literals: {
                    literal!(then 'literals);
                    literal!(then 'literals);
                    literal!(then 'literals);
                    if !PAIRS {
                        literal!(then 'literals);
                    }
                    literal!();
                    continue 'symbols;
                }
                // A length needs up to 48 bits: refill again.
                if cnt < 48 {
                    continue;
                }
            }
            if entry & F_SUB != 0 {
                buf >>= LITLEN_BITS;
                cnt -= LITLEN_BITS;
                let sub =
                    (entry >> 16) as usize + (buf & ((1 << ((entry >> 8) & 15)) - 1)) as usize;
                entry = litlen[sub];
                if entry & F_LIT != 0 {
                    buf >>= entry & 0xff;
                    cnt -= entry & 0xff;
                    // SAFETY: at most four literals (with pairs, three
                    // lookups of up to two) were written since the loop
                    // condition, which left room for five (nine).
                    unsafe { *out_ptr.add(pos) = (entry >> 16) as u8 };
                    pos += 1;
                    continue;
                }
            }
            if entry & F_EXC != 0 {
                if entry & F_EOB != 0 {
                    buf >>= entry & 0xff;
                    cnt -= entry & 0xff;
                    result = Some(Ok(()));
                } else {
                    result = Some(Err(DecodeFault::Corrupt("invalid literal/length code")));
                }
                break;
            }
            let total = entry & 0xff;
            let len = (entry >> 16) as usize
                + ((buf & ((1u64 << total) - 1)) >> ((entry >> 8) & 15)) as usize;
            buf >>= total;
            cnt -= total;

            let mut entry = dist[(buf & D_MASK) as usize];
            if entry & F_SUB != 0 {
                buf >>= DIST_BITS;
                cnt -= DIST_BITS;
                let sub =
                    (entry >> 16) as usize + (buf & ((1 << ((entry >> 8) & 15)) - 1)) as usize;
                entry = dist[sub];
            }
            if entry & F_EXC != 0 {
                result = Some(Err(DecodeFault::Corrupt("invalid distance code")));
                break;
            }
            let total = entry & 0xff;
            let d = (entry >> 16) as usize
                + ((buf & ((1u64 << total) - 1)) >> ((entry >> 8) & 15)) as usize;
            buf >>= total;
            cnt -= total;
            if d > pos {
                result = Some(Err(DecodeFault::Corrupt("distance too far back")));
                break;
            }
            if pos + len + COPY_SLACK <= page_len {
                // SAFETY: 1 <= d <= pos and pos + len + COPY_SLACK <= page_len.
                unsafe { copy_match_unchecked(out_ptr, pos, d, len) };
            } else if len <= page_len - pos {
                // Not `copy_match(page, ..)`: reborrowing `page` here would
                // invalidate `out_ptr` for the writes that follow.
                // SAFETY: 1 <= d <= pos and pos + len <= page_len.
                unsafe { copy_match_bytes(out_ptr, pos, d, len) };
            } else {
                result = Some(Err(DecodeFault::PastEnd));
                break;
            }
            pos += len;
        }
        bits.pos = ip;
        bits.buf = buf;
        bits.count = cnt;
        if let Some(r) = result {
            *out = pos;
            return r;
        }
    }

    // Careful loop for the stream's and the page's last bytes.
    const LL_MASK: u64 = (1 << LITLEN_BITS) - 1;
    let mut b = Bits {
        input,
        pos: bits.pos,
        overrun: bits.overrun,
        buf: bits.buf,
        count: bits.count,
    };
    let result = loop {
        if let Err(e) = b.refill() {
            break Err(e);
        }
        let mut entry = litlen[(b.buf & LL_MASK) as usize];
        if entry & F_SUB != 0 {
            b.consume(LITLEN_BITS);
            let sub = (entry >> 16) as usize + b.peek((entry >> 8) & 15) as usize;
            entry = litlen[sub];
        }
        if entry & F_LIT != 0 {
            b.consume(entry & 0xff);
            if pos >= page_len {
                break Err(DecodeFault::PastEnd);
            }
            page[pos] = (entry >> 16) as u8;
            pos += 1;
            continue;
        }
        if entry & F_EXC != 0 {
            if entry & F_EOB != 0 {
                b.consume(entry & 0xff);
                break Ok(());
            }
            break Err(DecodeFault::Corrupt("invalid literal/length code"));
        }
        let total = entry & 0xff;
        let len = (entry >> 16) as usize + (b.peek(total) >> ((entry >> 8) & 15)) as usize;
        b.consume(total);

        let mut entry = dist[(b.buf & D_MASK) as usize];
        if entry & F_SUB != 0 {
            b.consume(DIST_BITS);
            let sub = (entry >> 16) as usize + b.peek((entry >> 8) & 15) as usize;
            entry = dist[sub];
        }
        if entry & F_EXC != 0 {
            break Err(DecodeFault::Corrupt("invalid distance code"));
        }
        let total = entry & 0xff;
        let d = (entry >> 16) as usize + (b.peek(total) >> ((entry >> 8) & 15)) as usize;
        b.consume(total);
        if d > pos {
            break Err(DecodeFault::Corrupt("distance too far back"));
        }
        if len > page_len - pos {
            break Err(DecodeFault::PastEnd);
        }
        copy_match(page, pos, d, len);
        pos += len;
    };
    bits.pos = b.pos;
    bits.overrun = b.overrun;
    bits.buf = b.buf;
    bits.count = b.count;
    *out = pos;
    result
}

/// Bytes past a match's end that `copy_match_unchecked` may write.
const COPY_SLACK: usize = 16;
/// Room the fast loop keeps at the page's end: five literals.
const FAST_OUT_MARGIN: usize = 5;

/// Bits of the first lookup in a pair table.
const PAIR_BITS: u32 = 13;
const PAIR_TABLE_LEN: usize = 1 << PAIR_BITS;
/// A pair table: for every PAIR_BITS-bit window, the literal/length table's
/// entry for its first codeword, or, when it is a literal followed by a
/// second literal that the window holds whole, both literals.
type PairTable = [u32; PAIR_TABLE_LEN];
/// The length nibble (bits 8-11) of a pair entry: no main-table literal has
/// a codeword of 15 bits.
const PAIR_MARK: u32 = 15;

/// Fills `pairs` from the main literal/length table `litlen`.
fn build_pairs(litlen: &LitlenTable, pairs: &mut PairTable) {
    const MAIN: usize = (1 << LITLEN_BITS) - 1;
    for (window, pair) in pairs.iter_mut().enumerate() {
        let first = litlen[window & MAIN];
        *pair = first;
        if first & (F_LIT | F_EXC) != F_LIT {
            continue;
        }
        let l1 = first & 0xff;
        let second = litlen[(window >> l1) & MAIN];
        let l2 = second & 0xff;
        if second & (F_LIT | F_EXC) == F_LIT && l1 + l2 <= PAIR_BITS {
            *pair = F_LIT
                | (PAIR_MARK << 8)
                | (l1 + l2)
                | (first & 0xff_0000)
                | ((second & 0xff_0000) << 8);
        }
    }
}

/// Copies `len` bytes from `dist` back to `pos`, LZ77-style, in 16- or
/// 8-byte chunks that may write up to COPY_SLACK - 1 bytes past the match
/// (inside the page, overwritten by what follows).
///
/// # Safety
/// `out` points to a page of at least `pos + len + COPY_SLACK` bytes, and
/// `1 <= dist <= pos`.
#[inline(always)]
unsafe fn copy_match_unchecked(out: *mut u8, pos: usize, dist: usize, len: usize) {
    // SAFETY: the caller's bounds keep every access inside the page.
    unsafe {
        let mut d = out.add(pos);
        let end = d.add(len);
        let mut s = d.sub(dist);
        if dist >= 16 {
            // Each chunk reads 16 bytes that end at or before where it writes.
            loop {
                d.cast::<u128>()
                    .write_unaligned(s.cast::<u128>().read_unaligned());
                d = d.add(16);
                s = s.add(16);
                if d >= end {
                    break;
                }
            }
        } else if dist >= 8 {
            loop {
                d.cast::<u64>()
                    .write_unaligned(s.cast::<u64>().read_unaligned());
                d = d.add(8);
                s = s.add(8);
                if d >= end {
                    break;
                }
            }
        } else if dist == 1 {
            let v = u64::from_ne_bytes([*s; 8]);
            loop {
                d.cast::<u64>().write_unaligned(v);
                d = d.add(8);
                if d >= end {
                    break;
                }
            }
        } else {
            // Short period: byte by byte, each byte reading one already final.
            while d < end {
                *d = *s;
                d = d.add(1);
                s = s.add(1);
            }
        }
    }
}

/// Copies `len` bytes from `dist` back to `pos` one byte at a time, through
/// the fast loop's pointer, for the few matches that end within COPY_SLACK
/// of the page's end.
///
/// # Safety
/// `out` points to a page of at least `pos + len` bytes, and `1 <= dist <= pos`.
#[inline(always)]
unsafe fn copy_match_bytes(out: *mut u8, pos: usize, dist: usize, len: usize) {
    for i in pos..pos + len {
        // SAFETY: i < pos + len <= the page's length and i - dist < i.
        unsafe { *out.add(i) = *out.add(i - dist) };
    }
}

/// Copies `len` bytes from `dist` back to `pos`, LZ77-style (overlap repeats).
/// The caller checked dist <= pos and pos + len <= page.len().
#[inline(always)]
fn copy_match(page: &mut [u8], pos: usize, dist: usize, len: usize) {
    let src = pos - dist;
    if dist >= 8 && pos + len + 8 <= page.len() {
        // Word copies, each reading bytes already final; may write up to 7
        // bytes past the match, inside the page, overwritten later.
        let end = pos + len;
        let mut s = src;
        let mut d = pos;
        while d < end {
            let mut w = [0u8; 8];
            w.copy_from_slice(&page[s..s + 8]);
            page[d..d + 8].copy_from_slice(&w);
            s += 8;
            d += 8;
        }
    } else if dist == 1 {
        let byte = page[src];
        page[pos..pos + len].fill(byte);
    } else {
        for i in 0..len {
            page[pos + i] = page[src + i];
        }
    }
}

// A refill leaves 56 bits: a whole match (litlen codeword with its
// subtable, length extra bits, distance codeword, distance extra bits) fits:
// 15 + 5 + 15 + 13 = 48 bits.
const _: () = assert!(MAX_MATCH == LEN_BASE[28] as usize);
// Five main-table literals, or four and one from a subtable, per refill.
const _: () = assert!(5 * LITLEN_BITS <= 56 && 4 * LITLEN_BITS + MAX_CODE_LEN as u32 <= 56);

#[cfg(test)]
mod tests {
    use super::*;

    /// Streams of turbo (one header for all), fast (a header per page),
    /// fixed and stored blocks, intact and damaged (in the header, just
    /// after it, truncated inside it), decoded in a row by one decoder (its
    /// header cache hits, misses and is replaced) and each by a fresh
    /// decoder: the verdicts and pages must be the same.
    #[test]
    fn the_header_cache_never_changes_a_verdict() {
        use crate::codec::encode::tests::varied_pages;
        use crate::codec::{Level, PageEncoder};
        let pages: Vec<Vec<u8>> = varied_pages()
            .into_iter()
            .filter(|p| p.len() == 4096)
            .collect();
        let mut streams = Vec::new();
        for level in [Level::Turbo, Level::Fast, Level::Turbo, Level::Strong] {
            let mut encoder = PageEncoder::new(level);
            for page in &pages {
                let mut out = vec![0u8; 4095];
                let Some(len) = encoder.encode(page, &mut out) else {
                    continue;
                };
                out.truncate(len);
                streams.push(out.clone());
                for cut in [20, 40, 60, len - 1] {
                    streams.push(out[..cut.min(len)].to_vec());
                }
                for bit in [7 * 8 + 3, 30 * 8 + 1, 70 * 8 + 6, 8 * len - 9] {
                    if bit >= 8 * len {
                        continue;
                    }
                    let mut damaged = out.clone();
                    damaged[bit / 8] ^= 1 << (bit % 8);
                    streams.push(damaged);
                }
            }
        }
        let mut shared = PageDecoder::new();
        let (mut hits, mut ok) = (0, 0);
        for stream in &streams {
            let hit = shared.header_cache.matches(stream);
            let mut a = vec![0u8; 4096];
            let mut b = vec![0u8; 4096];
            let ra = shared.decode(stream, &mut a);
            let rb = PageDecoder::new().decode(stream, &mut b);
            assert_eq!(ra, rb, "header cache hit: {hit}");
            if ra.is_ok() {
                assert_eq!(a, b);
                ok += 1;
            }
            hits += hit as usize;
        }
        assert!(
            hits > pages.len(),
            "the cache should hit on turbo streams: {hits}"
        );
        assert!(ok >= 3 * pages.len());
    }

    #[test]
    fn over_subscribed_codes_fail_incomplete_ones_decode_as_invalid() {
        let mut table = [0u32; DIST_TABLE_LEN];
        assert!(build_table(&[1, 1, 1], &DIST_INFO[..3], &mut table, DIST_BITS).is_err());
        assert!(build_table(&[1, 0, 0], &DIST_INFO[..3], &mut table, DIST_BITS).is_ok());
        // Codeword 0 (length 1) is symbol 0; the other half is unreachable.
        assert_eq!(table[0] & F_EXC, 0);
        assert_eq!(table[1], INVALID);
        // 15-bit codewords land in subtables.
        let mut lens = [0u8; 30];
        for (i, l) in lens.iter_mut().enumerate().take(15) {
            *l = i as u8 + 1;
        }
        lens[15] = 15;
        assert!(build_table(&lens, &DIST_INFO, &mut table, DIST_BITS).is_ok());
        let last = (1usize << DIST_BITS) - 1;
        assert_ne!(table[last] & F_SUB, 0);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn bmi2_and_portable_builds_decode_alike() {
        use crate::codec::{Level, PageEncoder};
        if !std::arch::is_x86_feature_detected!("bmi2") {
            eprintln!("no BMI2 on this CPU: only the portable build runs here");
            return;
        }
        let mut decoder = PageDecoder::new();
        let mut encoder = PageEncoder::new(Level::Fast);
        for page in crate::codec::encode::tests::varied_pages() {
            let mut stream = vec![0u8; page.len() + 64];
            let Some(len) = encoder.encode(&page, &mut stream) else {
                continue;
            };
            stream.truncate(len);
            // The stream, then damaged copies: both builds must agree on
            // the result, fault included.
            let mut variants = vec![stream.clone(), stream[..len / 2].to_vec()];
            for bit in [3usize, 40, 8 * len / 3] {
                let mut flipped = stream.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                variants.push(flipped);
            }
            for (k, input) in variants.iter().enumerate() {
                let mut portable = vec![0u8; page.len()];
                let mut bmi2 = vec![0u8; page.len()];
                let a = decoder.decode_portable(input, &mut portable);
                // SAFETY: this CPU has BMI2 (checked above).
                let b = unsafe { decoder.decode_bmi2(input, &mut bmi2) };
                assert_eq!(a, b);
                if k == 0 {
                    assert_eq!(a, Ok(()));
                    assert_eq!(portable, page);
                }
                // A flipped bit may still make a valid stream of other
                // bytes; both builds must then write the same ones.
                if a.is_ok() {
                    assert_eq!(portable, bmi2);
                }
            }
        }
    }
}
