//! The compression AECS (analytics engine configuration and state) that a
//! COMPRESS descriptor reads as its second source: the bits to emit before
//! the page's tokens (the block header), and the literal/length and distance
//! codes to encode them with.
//!
//! Layout, 1568 bytes (Intel QPL's `hw_iaa_aecs_compress`; the kernel's
//! `iaa_crypto` uses the same record): CRC at 0, XOR checksum at 4, output
//! accumulator bit count at 28, accumulator (256 bytes) at 32,
//! literal/length codes (286 × u32) at 288, distance codes (30 × u32) at
//! 1440. A code entry holds the code, most significant bit first, in bits
//! 14:0 and its length in bits 18:15.

pub const AECS_SIZE: usize = 1568;
const OFF_ACC_BITS: usize = 28;
const OFF_ACC: usize = 32;
/// The accumulator holds at most this many header bits.
pub const ACC_BITS: usize = 256 * 8;
const OFF_LL: usize = 288;
const OFF_D: usize = 1440;
pub const LL_CODES: usize = 286;
pub const D_CODES: usize = 30;

fn put32(aecs: &mut [u8], at: usize, value: u32) {
    aecs[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Writes `codes[i]` (code, length) as entries at `at`.
fn put_codes(aecs: &mut [u8], at: usize, codes: &[(u16, u8)]) {
    for (i, &(code, length)) in codes.iter().enumerate() {
        put32(
            aecs,
            at + 4 * i,
            u32::from(code) | (u32::from(length) << 15),
        );
    }
}

/// Fills `aecs` (AECS_SIZE bytes) with a header of `header_bits` bits (LSB
/// first, as DEFLATE emits them) and the given codes; CRC and XOR start at 0.
pub fn fill(aecs: &mut [u8], header: &[u8], header_bits: usize, ll: &[(u16, u8)], d: &[(u16, u8)]) {
    assert!(aecs.len() >= AECS_SIZE && header_bits <= ACC_BITS);
    assert!(ll.len() == LL_CODES && d.len() == D_CODES);
    aecs[..AECS_SIZE].fill(0);
    put32(aecs, OFF_ACC_BITS, header_bits as u32);
    let bytes = header_bits.div_ceil(8);
    aecs[OFF_ACC..OFF_ACC + bytes].copy_from_slice(&header[..bytes]);
    put_codes(aecs, OFF_LL, ll);
    put_codes(aecs, OFF_D, d);
}

/// RFC 1951's fixed literal/length code of `symbol` (section 3.2.6).
pub fn fixed_ll(symbol: usize) -> (u16, u8) {
    match symbol {
        0..=143 => (0x30 + symbol as u16, 8),
        144..=255 => (0x190 + (symbol - 144) as u16, 9),
        256..=279 => ((symbol - 256) as u16, 7),
        _ => (0xC0 + (symbol - 280) as u16, 8),
    }
}

/// Intel QPL's AECS for QEMU's jobs: a final block with fixed codes
/// (header bits BFINAL = 1, BTYPE = 01), RFC 1951's fixed codes.
pub fn fill_fixed(aecs: &mut [u8]) {
    let ll: [(u16, u8); LL_CODES] = std::array::from_fn(fixed_ll);
    let d: [(u16, u8); D_CODES] = std::array::from_fn(|s| (s as u16, 5));
    fill(aecs, &[0b011], 3, &ll, &d);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_aecs_is_intel_qpls() {
        let mut aecs = vec![0xAAu8; AECS_SIZE];
        fill_fixed(&mut aecs);
        let word = |at: usize| u32::from_le_bytes(aecs[at..at + 4].try_into().unwrap());
        assert_eq!((word(0), word(4)), (0, 0));
        assert_eq!(word(28), 3);
        assert_eq!(aecs[32], 0b011);
        // QPL writes RFC 1951's fixed literal 0 as 0x40030 (docs/iaa-model.md).
        assert_eq!(word(288), 0x40030);
        assert_eq!(word(288 + 4 * 144), 0x190 | (9 << 15));
        assert_eq!(word(288 + 4 * 256), 7 << 15);
        assert_eq!(word(288 + 4 * 285), 0xC5 | (8 << 15));
        assert_eq!(word(1440 + 4 * 29), 29 | (5 << 15));
        assert!(aecs[1560..].iter().all(|&b| b == 0));
    }
}
