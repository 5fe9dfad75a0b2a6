//! Raw DEFLATE (RFC 1951) for one page at a time.
//!
//! The encoder and the decoder are allocated once per multifd channel and
//! reset per page, so the per-packet path allocates nothing.

mod decode;
mod encode;
mod huffman;
mod tables;

pub use decode::PageDecoder;
pub use encode::PageEncoder;

/// Codeword lengths of at most `max_len` bits for the symbols with
/// frequencies `freqs` (a complete, length-limited Huffman code). For the
/// tool that trains turbo's canned code.
#[doc(hidden)]
pub fn code_lengths(freqs: &[u32], max_len: u32) -> Vec<u8> {
    // The builder packs a frequency and a symbol into one u32.
    assert!(
        freqs.iter().all(|&f| f < 1 << 23),
        "frequencies must be below 2^23"
    );
    let mut lens = vec![0u8; freqs.len()];
    huffman::build_lengths(freqs, max_len, &mut lens);
    lens
}

/// A table could not be allocated: `bytes` were asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocFailed {
    pub bytes: usize,
}

/// `len` copies of `value` in a new vector, or `AllocFailed` instead of the
/// abort that `vec!` does when memory runs out.
pub(crate) fn try_filled<T: Clone>(len: usize, value: T) -> Result<Vec<T>, AllocFailed> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| AllocFailed {
        bytes: len.saturating_mul(std::mem::size_of::<T>()),
    })?;
    v.resize(len, value);
    Ok(v)
}

/// How hard the encoder works. Every level emits standard raw DEFLATE that any
/// decoder (Intel QPL, IAA, zlib, ...) reads; levels differ only in speed and ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// Fastest: one pass under a canned code, for CPU-bound migrations.
    Turbo,
    /// The default: a code built for each page.
    Fast,
    /// Tighter output at a lower speed, for bandwidth-bound links.
    Strong,
}

impl Level {
    /// The ABI's level numbers: 0 selects the default.
    pub fn from_abi(level: u32) -> Option<Level> {
        match level {
            0 | 1 => Some(Level::Fast),
            2 => Some(Level::Strong),
            3 => Some(Level::Turbo),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Turbo => "turbo",
            Level::Fast => "fast",
            Level::Strong => "strong",
        }
    }
}

/// Why a stream failed to inflate to exactly one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeFault {
    Corrupt(&'static str),
    Truncated,
    PastEnd,
    Short { produced: usize },
    TrailingBytes { extra: usize },
}
