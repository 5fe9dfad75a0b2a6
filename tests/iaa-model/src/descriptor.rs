//! One 64-byte IAA descriptor as the device reads it, through the kernel's
//! UAPI layout (`struct iax_hw_desc`, bindgen in [`crate::uapi`]), and the
//! completion record the device writes back (`struct iax_completion_record`).

use crate::uapi::{iax_completion_record, iax_hw_desc, iax_opcode};

pub const DESCRIPTOR_SIZE: usize = 64;

pub const OP_NOOP: u8 = iax_opcode::IAX_OPCODE_NOOP as u8;
pub const OP_DRAIN: u8 = iax_opcode::IAX_OPCODE_DRAIN as u8;
pub const OP_DECOMPRESS: u8 = iax_opcode::IAX_OPCODE_DECOMPRESS as u8;
pub const OP_COMPRESS: u8 = iax_opcode::IAX_OPCODE_COMPRESS as u8;

/// Operation flags outside the UAPI header: AECS select (bit 22), named
/// `ADOF_AECS_SEL` in Intel QPL's `own_hw_definitions.h`.
pub const FLAG_AECS_SEL: u32 = 1 << 22;

#[derive(Clone, Copy)]
pub struct Descriptor {
    pub raw: [u8; DESCRIPTOR_SIZE],
    hw: iax_hw_desc,
}

impl Descriptor {
    pub fn from_bytes(raw: [u8; DESCRIPTOR_SIZE]) -> Descriptor {
        // SAFETY: iax_hw_desc is a packed plain-old-data struct of exactly 64
        // bytes (bindgen's layout test checks the size); every bit pattern is
        // a valid value.
        let hw = unsafe { std::ptr::read_unaligned(raw.as_ptr().cast::<iax_hw_desc>()) };
        Descriptor { raw, hw }
    }

    pub fn opcode(&self) -> u8 {
        self.hw.opcode() as u8
    }
    /// The 24-bit operation flags (`IDXD_OP_FLAG_*`).
    pub fn flags(&self) -> u32 {
        self.hw.flags()
    }
    pub fn pasid_word(&self) -> u32 {
        u32::from_le_bytes(self.raw[0..4].try_into().unwrap())
    }
    pub fn completion_addr(&self) -> u64 {
        self.hw.completion_addr
    }
    pub fn src1(&self) -> u64 {
        self.hw.src1_addr
    }
    pub fn dst(&self) -> u64 {
        self.hw.dst_addr
    }
    pub fn src1_size(&self) -> u32 {
        self.hw.src1_size
    }
    /// Compression or decompression flags (one union in the UAPI).
    pub fn op_specific_flags(&self) -> u16 {
        // SAFETY: both union members are u16.
        unsafe { self.hw.__bindgen_anon_1.compr_flags }
    }
    pub fn src2(&self) -> u64 {
        self.hw.src2_addr
    }
    pub fn max_dst_size(&self) -> u32 {
        self.hw.max_dst_size
    }
    pub fn src2_size(&self) -> u32 {
        self.hw.src2_size
    }
    pub fn filter_flags(&self) -> u32 {
        self.hw.filter_flags
    }
    pub fn num_inputs(&self) -> u32 {
        self.hw.num_inputs
    }
    pub fn int_handle(&self) -> u16 {
        self.hw.int_handle
    }
}

/// What the device writes into the completion record.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub status: u8,
    pub error_code: u8,
    pub bytes_completed: u32,
    pub fault_addr: u64,
    pub invalid_flags: u32,
    pub output_size: u32,
    pub output_bits: u8,
    pub xor_csum: u16,
    pub crc: u32,
}

impl Completion {
    pub fn status(status: u8) -> Completion {
        Completion {
            status,
            ..Completion::default()
        }
    }

    /// The 64 bytes of the record, status byte included.
    pub fn to_record(self) -> iax_completion_record {
        iax_completion_record {
            status: self.status,
            error_code: self.error_code,
            bytes_completed: self.bytes_completed,
            fault_addr: self.fault_addr,
            invalid_flags: self.invalid_flags,
            output_size: self.output_size,
            output_bits: self.output_bits,
            xor_csum: self.xor_csum,
            crc: self.crc,
            ..iax_completion_record::default()
        }
    }

    pub fn to_bytes(self) -> [u8; 64] {
        let record = self.to_record();
        let mut bytes = [0u8; 64];
        // SAFETY: iax_completion_record is packed plain-old-data of 64 bytes.
        unsafe { std::ptr::write_unaligned(bytes.as_mut_ptr().cast(), record) };
        bytes
    }
}
