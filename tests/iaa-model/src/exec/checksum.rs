//! The two checksums of an IAA completion record: CRC-32 (IEEE, as gzip and
//! zlib compute it, or CRC-32C when the descriptor asks for RFC 3720) and the
//! 16-bit XOR checksum, both over the uncompressed data.

const fn table(poly: u32) -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut crc = index as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ poly
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[index] = crc;
        index += 1;
    }
    table
}

static IEEE: [u32; 256] = table(0xEDB8_8320);
static CASTAGNOLI: [u32; 256] = table(0x82F6_3B78);

/// Continues a CRC from `previous` (a finished value, 0 for a new stream).
pub fn crc32(previous: u32, data: &[u8], castagnoli: bool) -> u32 {
    let table = if castagnoli { &CASTAGNOLI } else { &IEEE };
    let mut crc = !previous;
    for &byte in data {
        crc = table[((crc ^ byte as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// XOR of the data taken as little-endian 16-bit words (a final odd byte
/// counts as the low byte of a word), continued from `previous`.
pub fn xor16(previous: u16, data: &[u8]) -> u16 {
    let mut chunks = data.chunks_exact(2);
    let mut sum = previous;
    for pair in &mut chunks {
        sum ^= u16::from_le_bytes([pair[0], pair[1]]);
    }
    if let [last] = chunks.remainder() {
        sum ^= *last as u16;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(crc32(0, b"123456789", false), 0xCBF4_3926);
        assert_eq!(crc32(0, b"123456789", true), 0xE306_9283);
        let split = crc32(crc32(0, b"12345", false), b"6789", false);
        assert_eq!(split, 0xCBF4_3926);
        assert_eq!(xor16(0, &[1, 2, 3]), 0x0201 ^ 3);
    }
}
