//! COMPRESS (opcode 0x43): DEFLATE tokens encoded with the Huffman codes the
//! AECS carries, after the bits already in the AECS output accumulator
//! (a block header written by software), optionally ended with an
//! end-of-block symbol and a stored block; or, in statistics mode, the
//! token histogram.
//!
//! The compression AECS, 0x620 bytes (Intel QPL `hw_iaa_aecs_compress`):
//! CRC at 0, XOR checksum at 4, output accumulator bit count at 28, output
//! accumulator (256 bytes) at 32, literal/length codes (286 × u32) at 288,
//! distance codes (30 × u32) at 1440. A code entry holds the code, most
//! significant bit first, in bits 14:0 and its length in bits 18:15.

use super::bits::BitWriter;
use super::checksum::{crc32, xor16};
use super::lz77::{self, Token};
use super::{aecs_copies, status, Context, Pages, MAX_TRANSFER};
use crate::descriptor::{Completion, Descriptor};
use crate::memory;
use crate::uapi::{
    IDXD_OP_FLAG_CRC_RFC3720, IDXD_OP_FLAG_RD_SRC2_2ND, IDXD_OP_FLAG_RD_SRC2_AECS,
    IDXD_OP_FLAG_WR_SRC2_AECS_COMP, IDXD_OP_FLAG_WR_SRC2_AECS_OVFL,
};

pub const AECS_SIZE: usize = 0x620;
const OFF_CRC: usize = 0;
const OFF_XOR: usize = 4;
const OFF_ACC_BITS: usize = 28;
const OFF_ACC: usize = 32;
const ACC_BYTES: usize = 256;
const OFF_LL: usize = 288;
const OFF_D: usize = 1440;
pub const HISTOGRAM_SIZE: usize = 1280;

// Compression flags (descriptor bytes 38..40; Intel QPL `ADCF_*`).
const CF_STATS_MODE: u16 = 1 << 0;
const CF_FLUSH_OUTPUT: u16 = 1 << 1;
const CF_END_PROC_SHIFT: u16 = 2;
const CF_GEN_LITERALS: u16 = 1 << 4;
/// Bits that IAA 1.0 does not implement or that the model does not model:
/// big-endian Huffman-only output (5), indexing (6..8), dictionary load
/// (10..11) and header generation (12..14) are IAA 2.0; bit 9 and 15 are
/// reserved.
const CF_UNSUPPORTED: u16 =
    !(CF_STATS_MODE | CF_FLUSH_OUTPUT | (3 << CF_END_PROC_SHIFT) | CF_GEN_LITERALS);

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

struct Code {
    code: u32,
    length: u32,
}

fn code_at(aecs: &[u8], offset: usize, symbol: usize) -> Code {
    let entry = le32(aecs, offset + 4 * symbol);
    Code {
        code: entry & 0x7FFF,
        length: (entry >> 15) & 0xF,
    }
}

pub fn execute(desc: &Descriptor, ctx: &Context, pages: &mut Pages) -> Completion {
    let cflags = desc.op_specific_flags();
    if cflags & CF_UNSUPPORTED != 0 {
        let mut completion = Completion::status(status::INVALID_COMP_FLAG);
        completion.invalid_flags = u32::from(cflags & CF_UNSUPPORTED);
        return completion;
    }
    let flags = desc.flags();
    if flags & IDXD_OP_FLAG_RD_SRC2_2ND != 0 {
        let mut completion = Completion::status(status::INVALID_FLAGS);
        completion.invalid_flags = IDXD_OP_FLAG_RD_SRC2_2ND;
        return completion;
    }
    let size = desc.src1_size() as u64;
    if size == 0 || size > MAX_TRANSFER {
        return Completion::status(status::INVALID_SIZE);
    }
    let read_aecs = flags & IDXD_OP_FLAG_RD_SRC2_AECS != 0;
    let write_always = flags & IDXD_OP_FLAG_WR_SRC2_AECS_COMP != 0;
    let write_on_overflow = flags & IDXD_OP_FLAG_WR_SRC2_AECS_OVFL != 0;
    let stats = cflags & CF_STATS_MODE != 0;
    let uses_aecs = read_aecs || write_always || write_on_overflow;
    if uses_aecs {
        if desc.src2() % 32 != 0 {
            return Completion::status(status::ADDR_ALIGN);
        }
        if (desc.src2_size() as usize) < AECS_SIZE {
            return Completion::status(status::INVALID_SIZE);
        }
    }
    let (read_at, write_at) = aecs_copies(desc, desc.src2_size() as u64);

    if let Err(fault) = pages.require(desc.src1(), size as usize, false) {
        return fault;
    }
    // SAFETY: the pages are present (checked just above); the device reads
    // client memory as DMA would.
    let input = unsafe { memory::read(desc.src1(), size as usize) };
    let aecs = if read_aecs {
        if let Err(fault) = pages.require(read_at, AECS_SIZE, false) {
            return fault;
        }
        // SAFETY: as for the input.
        let aecs = unsafe { memory::read(read_at, AECS_SIZE) };
        pages.observation.aecs_read = Some(aecs.clone());
        Some(aecs)
    } else {
        None
    };
    let castagnoli = flags & IDXD_OP_FLAG_CRC_RFC3720 != 0;
    let (crc_in, xor_in) = aecs
        .as_ref()
        .map_or((0, 0), |a| (le32(a, OFF_CRC), le32(a, OFF_XOR) as u16));
    let mut completion = Completion::status(status::SUCCESS);
    completion.crc = crc32(crc_in, &input, castagnoli);
    completion.xor_csum = xor16(xor_in, &input);
    completion.bytes_completed = size as u32;

    let tokens = lz77::tokens(&input, cflags & CF_GEN_LITERALS != 0);
    if stats {
        return histogram(desc, &tokens, completion, pages);
    }
    let Some(aecs) = aecs else {
        // Without an AECS there are no Huffman codes to encode with.
        let mut completion = Completion::status(status::ANALYTICS_ERROR);
        completion.error_code = 22; // AD_ERROR_CODE_AECS_ERROR
        return completion;
    };

    let mut out = BitWriter::new();
    let acc_bits = le32(&aecs, OFF_ACC_BITS) as usize;
    if acc_bits > ACC_BYTES * 8 {
        let mut completion = Completion::status(status::ANALYTICS_ERROR);
        completion.error_code = 22;
        return completion;
    }
    for bit in 0..acc_bits {
        out.put(u32::from(aecs[OFF_ACC + bit / 8] >> (bit % 8)) & 1, 1);
    }
    if let Err(error) = encode(&aecs, &tokens, &mut out) {
        let mut completion = Completion::status(status::ANALYTICS_ERROR);
        completion.error_code = error;
        return completion;
    }
    match (cflags >> CF_END_PROC_SHIFT) & 3 {
        0 => {}
        end => {
            let eob = code_at(&aecs, OFF_LL, 256);
            if eob.length == 0 {
                let mut completion = Completion::status(status::ANALYTICS_ERROR);
                completion.error_code = 30; // AD_ERROR_CODE_INVALID_HUFFCODE
                return completion;
            }
            out.put_code(eob.code, eob.length);
            if end >= 2 {
                // An empty stored block: final (3) or not (2).
                out.put(u32::from(end == 3), 1);
                out.put(0, 2);
                out.pad_to_byte();
                out.put(0x0000, 16);
                out.put(0xFFFF, 16);
            }
        }
    }
    let total_bits = out.bit_len();
    let flush = cflags & CF_FLUSH_OUTPUT != 0;
    if flush {
        out.pad_to_byte();
    }
    let (mut bytes, pending, pending_bits) = out.finish();
    if ctx.corrupt && !bytes.is_empty() {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
    }
    completion.output_bits = (total_bits % 8) as u8;
    if bytes.len() > desc.max_dst_size() as usize {
        // A compression that does not fit is an analytics error with the
        // "unrecoverable output overflow" code (the kernel's iaa_crypto
        // checks exactly this pair: IAA_ANALYTICS_ERROR and
        // IAA_ERROR_COMP_BUF_OVERFLOW); status 0x0B is decompression's.
        let mut overflow = Completion::status(status::ANALYTICS_ERROR);
        overflow.error_code = super::inflate::code::UNRECOVERABLE_OUTPUT_OVERFLOW;
        overflow.crc = completion.crc;
        overflow.xor_csum = completion.xor_csum;
        return overflow;
    }
    if let Err(fault) = pages.require(desc.dst(), bytes.len(), true) {
        return fault;
    }
    if write_always {
        let mut next = aecs.clone();
        next[OFF_CRC..OFF_CRC + 4].copy_from_slice(&completion.crc.to_le_bytes());
        next[OFF_XOR..OFF_XOR + 4].copy_from_slice(&u32::from(completion.xor_csum).to_le_bytes());
        next[OFF_ACC_BITS..OFF_ACC_BITS + 4].copy_from_slice(&pending_bits.to_le_bytes());
        next[OFF_ACC..OFF_ACC + ACC_BYTES].fill(0);
        next[OFF_ACC] = pending;
        if let Err(fault) = pages.require(write_at, AECS_SIZE, true) {
            return fault;
        }
        // SAFETY: present (checked above) and the client's own AECS buffer.
        unsafe { memory::write(write_at, &next) };
    }
    // SAFETY: the destination pages are present (checked above); the length
    // is within max_dst_size.
    unsafe { memory::write(desc.dst(), &bytes) };
    completion.output_size = bytes.len() as u32;
    if !flush {
        completion.output_bits = pending_bits as u8;
    }
    completion
}

fn encode(aecs: &[u8], tokens: &[Token], out: &mut BitWriter) -> Result<(), u8> {
    const INVALID_HUFFCODE: u8 = 30;
    for token in tokens {
        match *token {
            Token::Literal(byte) => {
                let code = code_at(aecs, OFF_LL, byte as usize);
                if code.length == 0 {
                    return Err(INVALID_HUFFCODE);
                }
                out.put_code(code.code, code.length);
            }
            Token::Match { length, distance } => {
                let (symbol, extra, extra_bits) = lz77::length_code(length);
                let code = code_at(aecs, OFF_LL, symbol);
                let (dsymbol, dextra, dextra_bits) = lz77::distance_code(distance);
                let dcode = code_at(aecs, OFF_D, dsymbol);
                if code.length == 0 || dcode.length == 0 {
                    return Err(INVALID_HUFFCODE);
                }
                out.put_code(code.code, code.length);
                out.put(extra, extra_bits);
                out.put_code(dcode.code, dcode.length);
                out.put(dextra, dextra_bits);
            }
        }
    }
    Ok(())
}

/// Statistics mode: the literal/length and distance histogram
/// (Intel QPL `hw_iaa_histogram`: 286 + 2 reserved + 30 + 2 reserved u32).
fn histogram(
    desc: &Descriptor,
    tokens: &[Token],
    mut completion: Completion,
    pages: &mut Pages,
) -> Completion {
    let mut counts = [0u32; 320];
    for token in tokens {
        match *token {
            Token::Literal(byte) => counts[byte as usize] += 1,
            Token::Match { length, distance } => {
                counts[lz77::length_code(length).0] += 1;
                counts[288 + lz77::distance_code(distance).0] += 1;
            }
        }
    }
    if (desc.max_dst_size() as usize) < HISTOGRAM_SIZE {
        let mut overflow = Completion::status(status::ANALYTICS_ERROR);
        overflow.error_code = super::inflate::code::UNRECOVERABLE_OUTPUT_OVERFLOW;
        overflow.crc = completion.crc;
        return overflow;
    }
    let bytes: Vec<u8> = counts.iter().flat_map(|c| c.to_le_bytes()).collect();
    if let Err(fault) = pages.require(desc.dst(), bytes.len(), true) {
        return fault;
    }
    // SAFETY: present (checked above) and within max_dst_size.
    unsafe { memory::write(desc.dst(), &bytes) };
    completion.output_size = bytes.len() as u32;
    completion
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::FLAG_AECS_SEL;
    use crate::exec::{execute, Observation};
    use crate::uapi::{iax_hw_desc, IDXD_OP_FLAG_CRAV, IDXD_OP_FLAG_RCR};

    /// RFC 1951's fixed codes in the AECS entry format.
    fn fixed_aecs(header_bits: &[u8]) -> Vec<u8> {
        let mut aecs = vec![0u8; AECS_SIZE];
        for symbol in 0..286usize {
            let (code, length) = match symbol {
                0..=143 => (0x30 + symbol as u32, 8),
                144..=255 => (0x190 + symbol as u32 - 144, 9),
                256..=279 => (symbol as u32 - 256, 7),
                _ => (0xC0 + symbol as u32 - 280, 8),
            };
            aecs[OFF_LL + 4 * symbol..OFF_LL + 4 * symbol + 4]
                .copy_from_slice(&(code | length << 15).to_le_bytes());
        }
        for symbol in 0..30u32 {
            let at = OFF_D + 4 * symbol as usize;
            aecs[at..at + 4].copy_from_slice(&(symbol | 5 << 15).to_le_bytes());
        }
        for (index, &bit) in header_bits.iter().enumerate() {
            aecs[OFF_ACC + index / 8] |= bit << (index % 8);
        }
        aecs[OFF_ACC_BITS..OFF_ACC_BITS + 4]
            .copy_from_slice(&(header_bits.len() as u32).to_le_bytes());
        aecs
    }

    fn descriptor(
        flags: u32,
        cflags: u16,
        input: &[u8],
        out: &mut [u8],
        aecs: &mut [u8],
    ) -> Descriptor {
        let mut hw = iax_hw_desc::default();
        hw.set_opcode(u32::from(crate::descriptor::OP_COMPRESS));
        hw.set_flags(flags);
        hw.src1_addr = input.as_ptr() as u64;
        hw.src1_size = input.len() as u32;
        hw.dst_addr = out.as_mut_ptr() as u64;
        hw.max_dst_size = out.len() as u32;
        hw.src2_addr = aecs.as_mut_ptr() as u64;
        hw.src2_size = AECS_SIZE as u32;
        hw.__bindgen_anon_1.compr_flags = cflags;
        let mut raw = [0u8; 64];
        // SAFETY: iax_hw_desc is 64 bytes of plain data.
        unsafe { std::ptr::write_unaligned(raw.as_mut_ptr().cast(), hw) };
        Descriptor::from_bytes(raw)
    }

    /// `bytes` at a 64-byte aligned address (the AECS must be 32-byte aligned).
    struct Aligned {
        storage: Vec<u8>,
        offset: usize,
        len: usize,
    }

    impl Aligned {
        fn new(bytes: &[u8]) -> Aligned {
            let mut storage = vec![0u8; bytes.len() + 64];
            let offset = storage.as_ptr().align_offset(64);
            storage[offset..offset + bytes.len()].copy_from_slice(bytes);
            Aligned {
                storage,
                offset,
                len: bytes.len(),
            }
        }
        fn slice(&mut self) -> &mut [u8] {
            &mut self.storage[self.offset..self.offset + self.len]
        }
    }

    fn context() -> Context {
        Context {
            wq_block_on_fault: false,
            corrupt: false,
            fault_delay: std::time::Duration::ZERO,
        }
    }

    fn text() -> Vec<u8> {
        b"IAA compresses what the AECS codes say; ".repeat(60)
    }

    #[test]
    fn fixed_block_with_eob_and_flush_inflates() {
        let input = text();
        let mut out = vec![0u8; 4095];
        // BFINAL = 1, BTYPE = 01: the header Intel QPL leaves in the accumulator.
        let mut aecs = Aligned::new(&fixed_aecs(&[1, 1, 0]));
        let flags = IDXD_OP_FLAG_CRAV | IDXD_OP_FLAG_RCR | crate::uapi::IDXD_OP_FLAG_RD_SRC2_AECS;
        let desc = descriptor(
            flags,
            CF_FLUSH_OUTPUT | 1 << CF_END_PROC_SHIFT,
            &input,
            &mut out,
            aecs.slice(),
        );
        let completion = execute(&desc, &context(), &mut Observation::default());
        assert_eq!(completion.status, status::SUCCESS);
        let stream = &out[..completion.output_size as usize];
        assert_eq!(
            miniz_oxide::inflate::decompress_to_vec(stream).unwrap(),
            input
        );
        assert_eq!(
            completion.crc,
            super::super::checksum::crc32(0, &input, false)
        );
    }

    #[test]
    fn without_flush_the_pending_bits_go_to_the_other_aecs_copy() {
        let input = text();
        let mut out = vec![0u8; 4095];
        // Two AECS copies; AECS select 1 reads the second and writes the first.
        let mut both = fixed_aecs(&[0, 1, 0]);
        both.extend_from_slice(&fixed_aecs(&[1, 1, 0]));
        let mut pair = Aligned::new(&both);
        let flags = IDXD_OP_FLAG_CRAV
            | IDXD_OP_FLAG_RCR
            | crate::uapi::IDXD_OP_FLAG_RD_SRC2_AECS
            | IDXD_OP_FLAG_WR_SRC2_AECS_COMP
            | FLAG_AECS_SEL;
        let desc = descriptor(
            flags,
            1 << CF_END_PROC_SHIFT,
            &input,
            &mut out,
            pair.slice(),
        );
        let completion = execute(&desc, &context(), &mut Observation::default());
        assert_eq!(completion.status, status::SUCCESS);
        let written = &pair.slice()[..AECS_SIZE];
        let pending = le32(written, OFF_ACC_BITS);
        assert_eq!(u32::from(completion.output_bits), pending);
        assert!(pending < 8);
        assert_eq!(le32(written, OFF_CRC), completion.crc);
        // The stream is the output plus the pending bits: a whole final block.
        let mut stream = out[..completion.output_size as usize].to_vec();
        stream.push(written[OFF_ACC]);
        assert_eq!(
            miniz_oxide::inflate::decompress_to_vec(&stream).unwrap(),
            input
        );
    }

    #[test]
    fn output_that_does_not_fit_is_an_analytics_error() {
        let input: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut out = vec![0u8; 100];
        let mut aecs = Aligned::new(&fixed_aecs(&[1, 1, 0]));
        let flags = IDXD_OP_FLAG_CRAV | crate::uapi::IDXD_OP_FLAG_RD_SRC2_AECS;
        let desc = descriptor(
            flags,
            CF_FLUSH_OUTPUT | 1 << CF_END_PROC_SHIFT,
            &input,
            &mut out,
            aecs.slice(),
        );
        let completion = execute(&desc, &context(), &mut Observation::default());
        assert_eq!(
            (completion.status, completion.error_code),
            (status::ANALYTICS_ERROR, 25)
        );
        assert!(out.iter().all(|&b| b == 0), "nothing may be written");
    }
}
