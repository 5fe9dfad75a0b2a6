//! DEFLATE's bit order: least significant bit first, within bytes taken in
//! order.

pub struct BitWriter {
    pub bytes: Vec<u8>,
    acc: u64,
    count: u32,
}

impl Default for BitWriter {
    fn default() -> BitWriter {
        BitWriter::new()
    }
}

impl BitWriter {
    pub fn new() -> BitWriter {
        BitWriter {
            bytes: Vec::with_capacity(8192),
            acc: 0,
            count: 0,
        }
    }

    /// Appends the low `count` bits of `value` (count <= 32).
    pub fn put(&mut self, value: u32, count: u32) {
        debug_assert!(count <= 32);
        if count == 0 {
            return;
        }
        self.acc |= ((value as u64) & ((1u64 << count) - 1)) << self.count;
        self.count += count;
        while self.count >= 8 {
            self.bytes.push(self.acc as u8);
            self.acc >>= 8;
            self.count -= 8;
        }
    }

    /// Appends a Huffman code given most significant bit first.
    pub fn put_code(&mut self, code: u32, length: u32) {
        self.put(reverse(code, length), length);
    }

    pub fn bit_len(&self) -> u64 {
        self.bytes.len() as u64 * 8 + self.count as u64
    }

    pub fn pad_to_byte(&mut self) {
        if self.count > 0 {
            self.put(0, 8 - self.count);
        }
    }

    /// The whole bytes written so far and the pending bits (< 8) with their count.
    pub fn finish(self) -> (Vec<u8>, u8, u32) {
        (self.bytes, self.acc as u8, self.count)
    }
}

pub fn reverse(code: u32, length: u32) -> u32 {
    if length == 0 {
        0
    } else {
        code.reverse_bits() >> (32 - length)
    }
}

/// Reads a bit string of `limit` bits.
pub struct BitReader<'a> {
    data: &'a [u8],
    pub position: u64,
    limit: u64,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8], limit: u64) -> BitReader<'a> {
        BitReader {
            data,
            position: 0,
            limit: limit.min(data.len() as u64 * 8),
        }
    }

    pub fn remaining(&self) -> u64 {
        self.limit - self.position
    }

    /// `count` bits (<= 32), or `None` at the end of the input.
    pub fn take(&mut self, count: u32) -> Option<u32> {
        if self.remaining() < count as u64 {
            return None;
        }
        if count == 0 {
            return Some(0);
        }
        let byte = (self.position / 8) as usize;
        let shift = (self.position % 8) as u32;
        let mut window = [0u8; 8];
        let available = (self.data.len() - byte).min(8);
        window[..available].copy_from_slice(&self.data[byte..byte + available]);
        let word = u64::from_le_bytes(window) >> shift;
        self.position += count as u64;
        Some((word & ((1u64 << count) - 1)) as u32)
    }

    pub fn align_to_byte(&mut self) {
        self.position = self.position.div_ceil(8) * 8;
        self.position = self.position.min(self.limit);
    }
}
