//! The turbo level: one pass over the page. The fast level's matcher hands
//! each literal run and match straight to the bit writer under the canned
//! code (`canned.rs`); nothing is counted, no code is built, each byte of
//! the page is read once by the matcher and once more only as a literal.

use super::super::tables::{
    DIST_BASE, DIST_EXTRA, DIST_SYMS, EOB, LEN_BASE, LEN_EXTRA, LITLEN_SYMS,
};
use super::matchers::Sink;
use super::symbols::{dist_sym, LEN_SYM};
use super::writer::{write_literals, Writer, LITERALS_PER_FLUSH};

/// A matcher's output written at once under fixed packed codes.
pub(super) struct Emit<'o, 'c> {
    pub(super) w: Writer<'o>,
    pub(super) ll: &'c [u32; LITLEN_SYMS],
    pub(super) d: &'c [u32; DIST_SYMS],
}

impl Emit<'_, '_> {
    /// Ends the block; the stream's length (which may exceed the output:
    /// the caller checks).
    pub(super) fn finish(mut self) -> usize {
        let e = self.ll[EOB];
        self.w.put(e & 0xffff, e >> 16);
        self.w.finish()
    }
}

impl Sink for Emit<'_, '_> {
    #[inline(always)]
    fn literals_before_match(&mut self, page: &[u8], start: usize, end: usize) {
        let ll = self.ll;
        let mut quads = page[start..end].chunks_exact(LITERALS_PER_FLUSH);
        for quad in &mut quads {
            for &b in quad {
                let e = ll[b as usize];
                self.w.put(e & 0xffff, e >> 16);
            }
            self.w.flush();
        }
        // The last zero to three literals without a branch: the bytes read
        // past `end` are inside the match and weigh 0 bits.
        let tail = quads.remainder().len();
        let at = end - tail;
        let (mut codes, mut bits) = (0u32, 0u32);
        for k in 0..LITERALS_PER_FLUSH - 1 {
            let e = ll[page[at + k] as usize];
            let len = (e >> 16) * (k < tail) as u32;
            codes |= (e & 0xffff & ((1 << len) - 1)) << bits;
            bits += len;
        }
        self.w.put(codes, bits);
        self.w.flush();
    }

    #[inline(always)]
    fn push_match(&mut self, _k: usize, len: usize, dist: usize, _literals: usize) {
        let ls = LEN_SYM[len] as usize;
        let e = self.ll[257 + ls];
        self.w.put(e & 0xffff, e >> 16);
        self.w
            .put((len - LEN_BASE[ls] as usize) as u32, LEN_EXTRA[ls] as u32);
        let ds = dist_sym(dist);
        let e = self.d[ds];
        self.w.put(e & 0xffff, e >> 16);
        self.w
            .put(dist as u32 - DIST_BASE[ds] as u32, DIST_EXTRA[ds] as u32);
        self.w.flush();
    }

    #[inline(always)]
    fn literals(&mut self, literals: &[u8]) {
        write_literals(&mut self.w, literals, self.ll);
    }
}
