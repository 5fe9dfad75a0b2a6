//! Raw DEFLATE decoding (RFC 1951) as IAA's decompressor reports it: output,
//! input bits consumed, and on a bad stream the IAA error code (the
//! `AD_ERROR_CODE_*` numbers of Intel QPL's `hw_status.h`, the ones the
//! device puts in a completion record's error code).

use super::bits::BitReader;

pub mod code {
    pub const UNDEF_CL_CODE: u8 = 2;
    pub const NO_LL_CODE: u8 = 5;
    pub const WRONG_NUM_LL_CODES: u8 = 6;
    pub const WRONG_NUM_DIST_CODES: u8 = 7;
    pub const BAD_CL_CODE_LEN: u8 = 8;
    pub const BAD_LL_CODE_LEN: u8 = 9;
    pub const BAD_DIST_CODE_LEN: u8 = 10;
    pub const BAD_LL_CODE: u8 = 11;
    pub const BAD_D_CODE: u8 = 12;
    pub const INVALID_BLOCK_TYPE: u8 = 13;
    pub const INVALID_STORED_LEN: u8 = 14;
    pub const BAD_EOF: u8 = 15;
    pub const BAD_LEN: u8 = 16;
    pub const BAD_DIST: u8 = 17;
    pub const REF_BEFORE_START: u8 = 18;
    pub const UNRECOVERABLE_OUTPUT_OVERFLOW: u8 = 25;
    pub const TOO_MANY_LL_CODES: u8 = 35;
    pub const TOO_MANY_D_CODES: u8 = 36;
}

/// When the decompressor stops (the descriptor's stop/check flags).
#[derive(Debug, Clone, Copy)]
pub struct StopRule {
    /// Stop after an end-of-block symbol (of a final block only when
    /// `bfinal_only`).
    pub stop_on_eob: bool,
    /// At the end of input, it is an error not to have seen that EOB.
    pub check_eob: bool,
    pub bfinal_only: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Decoded until the stop rule or the end of input.
    Done {
        reached_final_eob: bool,
        reached_eob: bool,
    },
    /// A bad stream: the IAA error code.
    Error(u8),
    /// The output does not fit.
    Overflow,
}

pub struct Inflated {
    pub output: Vec<u8>,
    pub bits_consumed: u64,
    pub outcome: Outcome,
}

const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// A canonical Huffman decoder: counts per length and symbols in code order.
struct Huffman {
    count: [u16; 16],
    symbol: Vec<u16>,
}

enum Build {
    Complete,
    Incomplete,
    Oversubscribed,
}

impl Huffman {
    fn new(lengths: &[u8]) -> (Huffman, Build) {
        let mut count = [0u16; 16];
        for &length in lengths {
            count[length as usize] += 1;
        }
        let mut left: i32 = 1;
        for length in 1..16 {
            left <<= 1;
            left -= count[length] as i32;
            if left < 0 {
                return (
                    Huffman {
                        count,
                        symbol: Vec::new(),
                    },
                    Build::Oversubscribed,
                );
            }
        }
        let mut offsets = [0u16; 16];
        for length in 1..15 {
            offsets[length + 1] = offsets[length] + count[length];
        }
        let mut symbol = vec![0u16; lengths.len()];
        for (sym, &length) in lengths.iter().enumerate() {
            if length != 0 {
                symbol[offsets[length as usize] as usize] = sym as u16;
                offsets[length as usize] += 1;
            }
        }
        count[0] = 0;
        let build = if left > 0 {
            Build::Incomplete
        } else {
            Build::Complete
        };
        (Huffman { count, symbol }, build)
    }

    /// The next symbol; `Err(true)` at the end of input, `Err(false)` for a
    /// code that is not in the table.
    fn decode(&self, input: &mut BitReader) -> Result<u16, bool> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for length in 1..16 {
            code |= input.take(1).ok_or(true)? as i32;
            let count = self.count[length] as i32;
            if code - count < first {
                return Ok(self.symbol[(index + (code - first)) as usize]);
            }
            index += count;
            first += count;
            first <<= 1;
            code <<= 1;
        }
        Err(false)
    }
}

struct Decoder<'a> {
    input: BitReader<'a>,
    output: Vec<u8>,
    limit: usize,
}

enum Stop {
    EndOfInput,
    Error(u8),
    Overflow,
}

impl Decoder<'_> {
    fn bits(&mut self, count: u32) -> Result<u32, Stop> {
        self.input.take(count).ok_or(Stop::EndOfInput)
    }

    fn push(&mut self, byte: u8) -> Result<(), Stop> {
        if self.output.len() >= self.limit {
            return Err(Stop::Overflow);
        }
        self.output.push(byte);
        Ok(())
    }

    fn stored(&mut self) -> Result<(), Stop> {
        self.input.align_to_byte();
        let len = self.bits(16)?;
        let nlen = self.bits(16)?;
        if len != !nlen & 0xFFFF {
            return Err(Stop::Error(code::INVALID_STORED_LEN));
        }
        for _ in 0..len {
            let byte = self.bits(8)? as u8;
            self.push(byte)?;
        }
        Ok(())
    }

    fn codes(&mut self, lit: &Huffman, dist: &Huffman) -> Result<(), Stop> {
        loop {
            let symbol = match lit.decode(&mut self.input) {
                Ok(symbol) => symbol,
                Err(true) => return Err(Stop::EndOfInput),
                Err(false) => return Err(Stop::Error(code::BAD_LL_CODE)),
            };
            if symbol < 256 {
                self.push(symbol as u8)?;
                continue;
            }
            if symbol == 256 {
                return Ok(());
            }
            let index = (symbol - 257) as usize;
            if index >= 29 {
                return Err(Stop::Error(code::BAD_LEN));
            }
            let length =
                LENGTH_BASE[index] as usize + self.bits(LENGTH_EXTRA[index] as u32)? as usize;
            let dsym = match dist.decode(&mut self.input) {
                Ok(symbol) => symbol as usize,
                Err(true) => return Err(Stop::EndOfInput),
                Err(false) => return Err(Stop::Error(code::BAD_D_CODE)),
            };
            if dsym >= 30 {
                return Err(Stop::Error(code::BAD_DIST));
            }
            let distance = DIST_BASE[dsym] as usize + self.bits(DIST_EXTRA[dsym] as u32)? as usize;
            if distance > self.output.len() {
                return Err(Stop::Error(code::REF_BEFORE_START));
            }
            for _ in 0..length {
                let byte = self.output[self.output.len() - distance];
                self.push(byte)?;
            }
        }
    }

    fn dynamic_tables(&mut self) -> Result<(Huffman, Huffman), Stop> {
        let nlen = self.bits(5)? as usize + 257;
        let ndist = self.bits(5)? as usize + 1;
        let ncode = self.bits(4)? as usize + 4;
        if nlen > 286 {
            return Err(Stop::Error(code::TOO_MANY_LL_CODES));
        }
        if ndist > 30 {
            return Err(Stop::Error(code::TOO_MANY_D_CODES));
        }
        const ORDER: [usize; 19] = [
            16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
        ];
        let mut cl_lengths = [0u8; 19];
        for &slot in ORDER.iter().take(ncode) {
            cl_lengths[slot] = self.bits(3)? as u8;
        }
        let (cl, build) = Huffman::new(&cl_lengths);
        if !matches!(build, Build::Complete) {
            return Err(Stop::Error(code::BAD_CL_CODE_LEN));
        }
        let mut lengths = [0u8; 316];
        let mut index = 0;
        while index < nlen + ndist {
            let symbol = match cl.decode(&mut self.input) {
                Ok(symbol) => symbol,
                Err(true) => return Err(Stop::EndOfInput),
                Err(false) => return Err(Stop::Error(code::UNDEF_CL_CODE)),
            };
            let (value, repeat) = match symbol {
                0..=15 => (symbol as u8, 1),
                16 => {
                    if index == 0 {
                        return Err(Stop::Error(code::WRONG_NUM_LL_CODES));
                    }
                    (lengths[index - 1], 3 + self.bits(2)? as usize)
                }
                17 => (0, 3 + self.bits(3)? as usize),
                _ => (0, 11 + self.bits(7)? as usize),
            };
            if index + repeat > nlen + ndist {
                return Err(Stop::Error(code::WRONG_NUM_DIST_CODES));
            }
            lengths[index..index + repeat].fill(value);
            index += repeat;
        }
        if lengths[256] == 0 {
            return Err(Stop::Error(code::NO_LL_CODE));
        }
        let (lit, build) = Huffman::new(&lengths[..nlen]);
        if matches!(build, Build::Oversubscribed)
            || (matches!(build, Build::Incomplete) && nlen - lit.count[0] as usize != 1)
        {
            return Err(Stop::Error(code::BAD_LL_CODE_LEN));
        }
        let (dist, build) = Huffman::new(&lengths[nlen..nlen + ndist]);
        if matches!(build, Build::Oversubscribed) {
            return Err(Stop::Error(code::BAD_DIST_CODE_LEN));
        }
        Ok((lit, dist))
    }
}

fn fixed_tables() -> (Huffman, Huffman) {
    let mut lengths = [0u8; 288];
    lengths[..144].fill(8);
    lengths[144..256].fill(9);
    lengths[256..280].fill(7);
    lengths[280..].fill(8);
    let (lit, _) = Huffman::new(&lengths);
    let (dist, _) = Huffman::new(&[5u8; 30]);
    (lit, dist)
}

/// Decodes `input` (its last `ignore_end_bits` bits are not part of the
/// stream) into at most `limit` bytes.
pub fn inflate(input: &[u8], ignore_end_bits: u32, limit: usize, rule: StopRule) -> Inflated {
    let total_bits = (input.len() as u64 * 8).saturating_sub(ignore_end_bits as u64);
    let mut decoder = Decoder {
        input: BitReader::new(input, total_bits),
        output: Vec::with_capacity(limit.min(1 << 20)),
        limit,
    };
    let mut reached_eob = false;
    let mut reached_final_eob = false;
    let outcome = loop {
        let block_start = decoder.input.position;
        let header = match decoder.bits(3) {
            Ok(header) => header,
            Err(Stop::EndOfInput) => {
                decoder.input.position = block_start;
                break Outcome::Done {
                    reached_final_eob,
                    reached_eob,
                };
            }
            Err(_) => unreachable!("reading bits only ends the input"),
        };
        let last = header & 1 == 1;
        let result = match header >> 1 {
            0 => decoder.stored(),
            1 => {
                let (lit, dist) = fixed_tables();
                decoder.codes(&lit, &dist)
            }
            2 => decoder
                .dynamic_tables()
                .and_then(|(lit, dist)| decoder.codes(&lit, &dist)),
            _ => Err(Stop::Error(code::INVALID_BLOCK_TYPE)),
        };
        match result {
            Ok(()) => {
                reached_eob = true;
                reached_final_eob |= last;
                if rule.stop_on_eob && (last || !rule.bfinal_only) {
                    break Outcome::Done {
                        reached_final_eob,
                        reached_eob,
                    };
                }
                if last && !rule.stop_on_eob && decoder.input.remaining() == 0 {
                    break Outcome::Done {
                        reached_final_eob,
                        reached_eob,
                    };
                }
            }
            Err(Stop::EndOfInput) => {
                // The stream stops inside a block: the model does not save a
                // partial block's state in the AECS (see docs/iaa-model.md).
                break Outcome::Done {
                    reached_final_eob: false,
                    reached_eob: false,
                };
            }
            Err(Stop::Error(error)) => break Outcome::Error(error),
            Err(Stop::Overflow) => break Outcome::Overflow,
        }
    };
    let outcome = match outcome {
        Outcome::Done {
            reached_final_eob,
            reached_eob,
        } if rule.check_eob => {
            let seen = if rule.bfinal_only {
                reached_final_eob
            } else {
                reached_eob
            };
            if seen {
                Outcome::Done {
                    reached_final_eob,
                    reached_eob,
                }
            } else {
                Outcome::Error(code::BAD_EOF)
            }
        }
        other => other,
    };
    Inflated {
        bits_consumed: decoder.input.position,
        output: decoder.output,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOP_FINAL: StopRule = StopRule {
        stop_on_eob: true,
        check_eob: true,
        bfinal_only: true,
    };

    #[test]
    fn fixed_block() {
        // "a" in a final fixed block: 1, 01, literal 'a' (0x61 -> code 0x91, 8 bits), EOB (7 zero bits).
        let stream = [0x4B, 0x04, 0x00];
        let result = inflate(&stream, 0, 16, STOP_FINAL);
        assert_eq!(result.output, b"a");
        assert_eq!(
            result.outcome,
            Outcome::Done {
                reached_final_eob: true,
                reached_eob: true
            }
        );
    }

    #[test]
    fn stored_and_errors() {
        let stream = [0x01, 0x03, 0x00, 0xFC, 0xFF, b'x', b'y', b'z'];
        assert_eq!(inflate(&stream, 0, 16, STOP_FINAL).output, b"xyz");
        let bad = [0x01, 0x03, 0x00, 0xFC, 0xFE, b'x', b'y', b'z'];
        assert_eq!(
            inflate(&bad, 0, 16, STOP_FINAL).outcome,
            Outcome::Error(code::INVALID_STORED_LEN)
        );
        assert_eq!(
            inflate(&[0x07], 0, 16, STOP_FINAL).outcome,
            Outcome::Error(code::INVALID_BLOCK_TYPE)
        );
        assert_eq!(
            inflate(&stream, 0, 2, STOP_FINAL).outcome,
            Outcome::Overflow
        );
        assert_eq!(
            inflate(&stream[..6], 0, 16, STOP_FINAL).outcome,
            Outcome::Error(code::BAD_EOF)
        );
    }
}
