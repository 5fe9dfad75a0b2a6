//! DECOMPRESS (opcode 0x42) without filtering: raw DEFLATE in source 1,
//! data out to the destination, CRC and XOR checksum of the output.
//!
//! Modelled: a stream that starts at a block boundary in source 1 (no AECS
//! read), the stop/check rules, ignore-end-bits, suppressed output (Intel
//! QPL's verification pass), output overflow and the analytics error codes
//! for bad streams. Not modelled (the descriptor completes with "invalid
//! decompression flags", so a client cannot mistake it for success):
//! resuming from an AECS state, indexing, big-endian Huffman-only input.

use super::checksum::{crc32, xor16};
use super::inflate::{inflate, Outcome, StopRule};
use super::{status, Pages, MAX_TRANSFER};
use crate::descriptor::{Completion, Descriptor};
use crate::memory;
use crate::uapi::{IDXD_OP_FLAG_CRC_RFC3720, IDXD_OP_FLAG_RD_SRC2_2ND, IDXD_OP_FLAG_RD_SRC2_AECS};

// Decompression flags (descriptor bytes 38..40; Intel QPL `ADDF_*`).
const DF_ENABLE: u16 = 1 << 0;
const DF_FLUSH_OUTPUT: u16 = 1 << 1;
const DF_STOP_ON_EOB: u16 = 1 << 2;
const DF_CHECK_EOB: u16 = 1 << 3;
const DF_SELECT_BFINAL_EOB: u16 = 1 << 4;
const DF_IGNORE_END_BITS_SHIFT: u16 = 6;
const DF_SUPPRESS_OUTPUT: u16 = 1 << 9;
const DF_MODELLED: u16 = DF_ENABLE
    | DF_FLUSH_OUTPUT
    | DF_STOP_ON_EOB
    | DF_CHECK_EOB
    | DF_SELECT_BFINAL_EOB
    | (7 << DF_IGNORE_END_BITS_SHIFT)
    | DF_SUPPRESS_OUTPUT;

pub fn execute(desc: &Descriptor, pages: &mut Pages) -> Completion {
    let dflags = desc.op_specific_flags();
    let flags = desc.flags();
    let unsupported = dflags & !DF_MODELLED;
    if unsupported != 0 || flags & (IDXD_OP_FLAG_RD_SRC2_AECS | IDXD_OP_FLAG_RD_SRC2_2ND) != 0 {
        let mut completion = Completion::status(status::INVALID_COMP_FLAG);
        completion.invalid_flags = u32::from(unsupported)
            | (flags & (IDXD_OP_FLAG_RD_SRC2_AECS | IDXD_OP_FLAG_RD_SRC2_2ND));
        return completion;
    }
    if desc.filter_flags() != 0 || desc.num_inputs() != 0 {
        return Completion::status(status::NONZERO_RESERVED);
    }
    let size = desc.src1_size() as u64;
    if size == 0 || size > MAX_TRANSFER {
        return Completion::status(status::INVALID_SIZE);
    }
    let suppress = dflags & DF_SUPPRESS_OUTPUT != 0;
    let limit = if suppress {
        usize::MAX
    } else {
        desc.max_dst_size() as usize
    };
    if let Err(fault) = pages.require(desc.src1(), size as usize, false) {
        return fault;
    }
    // SAFETY: the pages are present (checked above); DMA-like read.
    let input = unsafe { memory::read(desc.src1(), size as usize) };

    let (output, bytes_completed, outcome) = if dflags & DF_ENABLE == 0 {
        // Decompression disabled: the data passes through unchanged.
        let take = input.len().min(limit);
        let outcome = if take < input.len() {
            Outcome::Overflow
        } else {
            Outcome::Done {
                reached_final_eob: false,
                reached_eob: false,
            }
        };
        (input[..take].to_vec(), take as u64, outcome)
    } else {
        let rule = StopRule {
            stop_on_eob: dflags & DF_STOP_ON_EOB != 0,
            check_eob: dflags & DF_CHECK_EOB != 0,
            bfinal_only: dflags & DF_SELECT_BFINAL_EOB != 0,
        };
        let ignore = u32::from((dflags >> DF_IGNORE_END_BITS_SHIFT) & 7);
        let result = inflate(&input, ignore, limit, rule);
        (
            result.output,
            result.bits_consumed.div_ceil(8),
            result.outcome,
        )
    };

    let castagnoli = flags & IDXD_OP_FLAG_CRC_RFC3720 != 0;
    let mut completion = match outcome {
        Outcome::Done { .. } => Completion::status(status::SUCCESS),
        Outcome::Overflow => Completion::status(status::OUTBUF_OVERFLOW),
        Outcome::Error(code) => {
            let mut completion = Completion::status(status::ANALYTICS_ERROR);
            completion.error_code = code;
            completion.bytes_completed = bytes_completed as u32;
            return completion;
        }
    };
    completion.bytes_completed = bytes_completed as u32;
    completion.crc = crc32(0, &output, castagnoli);
    completion.xor_csum = xor16(0, &output);
    if !suppress {
        if let Err(fault) = pages.require(desc.dst(), output.len(), true) {
            return fault;
        }
        // SAFETY: present (checked above); at most max_dst_size bytes.
        unsafe { memory::write(desc.dst(), &output) };
        completion.output_size = output.len() as u32;
    }
    completion
}
