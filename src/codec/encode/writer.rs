//! The bit writer and the block writers: stored blocks, and the symbols of
//! a Huffman block under packed codes.

use super::super::tables::{
    DIST_BASE, DIST_EXTRA, DIST_SYMS, EOB, LEN_BASE, LEN_EXTRA, LITLEN_SYMS,
};
use super::symbols::LEN_SYM;
use super::LL_MAX_LEN;

/// Literals written per flush: the writer keeps at most 7 bits after a
/// flush and the buffer holds 64.
pub(super) const LITERALS_PER_FLUSH: usize = 4;
const _: () = assert!(7 + LITERALS_PER_FLUSH as u32 * LL_MAX_LEN <= 64);

/// LSB-first bit writer into the caller's buffer.
pub(super) struct Writer<'a> {
    out: &'a mut [u8],
    pos: usize,
    buf: u64,
    count: u32,
}

impl<'a> Writer<'a> {
    pub(super) fn new(out: &'a mut [u8]) -> Self {
        Writer {
            out,
            pos: 0,
            buf: 0,
            count: 0,
        }
    }

    /// A writer that continues after `prefix`, the first `bits` bits of a
    /// stream written earlier (copied to the start of `out`); None when
    /// `out` cannot hold the prefix.
    pub(super) fn after_prefix(out: &'a mut [u8], prefix: &[u8], bits: usize) -> Option<Self> {
        let (whole, rest) = (bits / 8, bits % 8);
        out.get_mut(..whole)?.copy_from_slice(&prefix[..whole]);
        let buf = if rest > 0 {
            u64::from(prefix[whole] & ((1u8 << rest) - 1))
        } else {
            0
        };
        Some(Writer {
            out,
            pos: whole,
            buf,
            count: rest as u32,
        })
    }

    /// Adds `n` bits; the caller flushes before the buffer could exceed 64.
    #[inline(always)]
    pub(super) fn put(&mut self, bits: u32, n: u32) {
        self.buf |= (bits as u64) << self.count;
        self.count += n;
    }

    /// Writes out the whole bytes; leaves at most 7 bits buffered.
    #[inline(always)]
    pub(super) fn flush(&mut self) {
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

    pub(super) fn finish(mut self) -> usize {
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

pub(super) fn write_stored(page: &[u8], out: &mut [u8]) -> usize {
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
pub(super) fn write_literals(w: &mut Writer, lits: &[u8], ll: &[u32; LITLEN_SYMS]) {
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
pub(super) fn write_items(
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
