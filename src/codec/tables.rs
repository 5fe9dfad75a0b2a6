//! Constant tables of RFC 1951 shared by the encoder and the decoder.

/// Base match length of length symbols 257..=285.
pub(super) const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];

/// Extra bits of length symbols 257..=285.
pub(super) const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];

/// Base distance of distance symbols 0..=29.
pub(super) const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];

/// Extra bits of distance symbols 0..=29.
pub(super) const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// The order in which a dynamic block header lists the precode lengths.
pub(super) const PRECODE_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// Literal/length symbols the format defines (286 and 287 are never valid).
pub(super) const LITLEN_SYMS: usize = 288;
/// Distance symbols the format defines (30 and 31 are never valid).
pub(super) const DIST_SYMS: usize = 32;
/// The end-of-block symbol.
pub(super) const EOB: usize = 256;
/// The longest codeword DEFLATE allows for literal/length and distance codes.
pub(super) const MAX_CODE_LEN: usize = 15;
/// The longest codeword of the precode.
pub(super) const MAX_PRECODE_LEN: usize = 7;
/// The farthest a match may reach back.
pub(super) const WINDOW: usize = 32768;

/// Code lengths of the fixed literal/length code (RFC 1951, 3.2.6).
pub(super) const fn fixed_litlen_lengths() -> [u8; LITLEN_SYMS] {
    let mut lens = [0u8; LITLEN_SYMS];
    let mut i = 0;
    while i < LITLEN_SYMS {
        lens[i] = if i < 144 {
            8
        } else if i < 256 {
            9
        } else if i < 280 {
            7
        } else {
            8
        };
        i += 1;
    }
    lens
}

/// Code lengths of the fixed distance code: 5 bits for all 32 symbols.
pub(super) const FIXED_DIST_LENGTHS: [u8; DIST_SYMS] = [5; DIST_SYMS];
