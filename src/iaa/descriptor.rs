//! IAA descriptors and completion records, laid out by the kernel's UAPI
//! (`struct iax_hw_desc`, `struct iax_completion_record`: bindgen in
//! [`super::uapi`]), and the flag values the library uses, with their source.

use std::sync::atomic::{AtomicU8, Ordering};

use super::uapi::{
    self, dsa_completion_status as dsa, iax_completion_record, iax_completion_status as iax,
    iax_hw_desc, iax_hw_desc__bindgen_ty_1, iax_opcode,
};

pub const DESCRIPTOR_SIZE: usize = 64;
/// Completion records: 64 bytes, 64-byte aligned (the kernel's idxd
/// character device refuses others for IAA; the model too).
pub const RECORD_SIZE: usize = 64;

pub const OP_NOOP: u8 = iax_opcode::IAX_OPCODE_NOOP as u8;
pub const OP_DECOMPRESS: u8 = iax_opcode::IAX_OPCODE_DECOMPRESS as u8;
pub const OP_COMPRESS: u8 = iax_opcode::IAX_OPCODE_COMPRESS as u8;

pub const FLAG_BOF: u32 = uapi::IDXD_OP_FLAG_BOF;
pub const FLAG_CRAV: u32 = uapi::IDXD_OP_FLAG_CRAV;
pub const FLAG_RCR: u32 = uapi::IDXD_OP_FLAG_RCR;
pub const FLAG_RD_SRC2_AECS: u32 = uapi::IDXD_OP_FLAG_RD_SRC2_AECS;

/// Compression flags (descriptor bytes 38..40), as Intel QPL names them
/// (`ADCF_*` in its `own_hw_definitions.h`) and sets them for QEMU's jobs:
/// statistics mode, flush the output to a byte, end processing "append EOB".
pub const COMPRESS_STATISTICS: u16 = 1 << 0;
pub const COMPRESS_FLUSH: u16 = 1 << 1;
pub const COMPRESS_APPEND_EOB: u16 = 1 << 2;

/// Decompression flags (Intel QPL `ADDF_*`): enable, flush, stop on EOB,
/// check for EOB, and only the final block's EOB counts: the device decodes
/// exactly one whole stream and says so.
pub const DECOMPRESS_WHOLE_STREAM: u16 = 0x1F;

/// The completion statuses the library acts on.
pub mod status {
    use super::{dsa, iax};
    pub const SUCCESS: u8 = iax::IAX_COMP_SUCCESS as u8;
    /// A page fault the device did not resolve (no block on fault); bit 7
    /// set for a write (`DSA_COMP_STATUS_WRITE`).
    pub const PAGE_FAULT: u8 = dsa::DSA_COMP_PAGE_FAULT_NOBOF as u8;
    pub const WRITE_FAULT: u8 = super::uapi::DSA_COMP_STATUS_WRITE as u8;
    pub const ANALYTICS_ERROR: u8 = iax::IAX_COMP_ANALYTICS_ERROR as u8;
    pub const OUTBUF_OVERFLOW: u8 = iax::IAX_COMP_OUTBUF_OVERFLOW as u8;
    /// The analytics error code of a compression that does not fit its
    /// output (the kernel's `IAA_ERROR_COMP_BUF_OVERFLOW`, Intel QPL's
    /// `AD_ERROR_CODE_UNRECOVERABLE_OUTPUT_OVERFLOW`).
    pub const COMPRESS_OVERFLOW_CODE: u8 = 25;
}

/// One descriptor, aligned as ENQCMD and MOVDIR64B want their source.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub struct Descriptor(pub [u8; DESCRIPTOR_SIZE]);

/// The fields a descriptor of this library sets; the rest are zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fields {
    pub opcode: u8,
    pub flags: u32,
    pub completion: u64,
    pub src1: u64,
    pub src1_size: u32,
    pub dst: u64,
    pub max_dst_size: u32,
    /// Compression or decompression flags.
    pub op_flags: u16,
    pub src2: u64,
    pub src2_size: u32,
}

impl std::fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.fields().fmt(f)
    }
}

impl Descriptor {
    pub fn new(fields: &Fields) -> Descriptor {
        let mut hw = iax_hw_desc {
            completion_addr: fields.completion,
            src1_addr: fields.src1,
            dst_addr: fields.dst,
            src1_size: fields.src1_size,
            __bindgen_anon_1: iax_hw_desc__bindgen_ty_1 {
                compr_flags: fields.op_flags,
            },
            src2_addr: fields.src2,
            max_dst_size: fields.max_dst_size,
            src2_size: fields.src2_size,
            ..iax_hw_desc::default()
        };
        hw.set_flags(fields.flags);
        hw.set_opcode(u32::from(fields.opcode));
        let mut bytes = [0u8; DESCRIPTOR_SIZE];
        // SAFETY: `iax_hw_desc` is packed plain old data of exactly 64 bytes
        // (bindgen's layout assertions); `bytes` holds 64.
        unsafe { std::ptr::write_unaligned(bytes.as_mut_ptr().cast::<iax_hw_desc>(), hw) };
        Descriptor(bytes)
    }

    /// The fields back, as the device reads them (for tests and records).
    pub fn fields(&self) -> Fields {
        // SAFETY: 64 bytes of plain old data; every bit pattern is valid.
        let hw = unsafe { std::ptr::read_unaligned(self.0.as_ptr().cast::<iax_hw_desc>()) };
        Fields {
            opcode: hw.opcode() as u8,
            flags: hw.flags(),
            completion: hw.completion_addr,
            src1: hw.src1_addr,
            src1_size: hw.src1_size,
            dst: hw.dst_addr,
            max_dst_size: hw.max_dst_size,
            // SAFETY: both members of the union are u16.
            op_flags: unsafe { hw.__bindgen_anon_1.compr_flags },
            src2: hw.src2_addr,
            src2_size: hw.src2_size,
        }
    }
}

/// What a completion record says, read once its status is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Completion {
    pub status: u8,
    pub error_code: u8,
    pub bytes_completed: u32,
    pub fault_addr: u64,
    pub output_size: u32,
    pub output_bits: u8,
    pub crc: u32,
}

impl Completion {
    /// A page fault: `Some(is_write)`.
    pub fn page_fault(&self) -> Option<bool> {
        (self.status & !status::WRITE_FAULT == status::PAGE_FAULT)
            .then_some(self.status & status::WRITE_FAULT != 0)
    }
}

/// The status byte of the record at `record`, with acquire ordering: once
/// it is non-zero the rest of the record is visible.
///
/// # Safety
/// `record` points at a live completion record of this library.
pub unsafe fn record_status(record: *const u8) -> u8 {
    // SAFETY: the caller's pointer is valid; the device writes the byte
    // concurrently, hence the atomic access.
    unsafe { AtomicU8::from_ptr(record.cast_mut()) }.load(Ordering::Acquire)
}

/// Clears the record before its descriptor is submitted.
///
/// # Safety
/// `record` points at 64 writable bytes no in-flight descriptor names.
pub unsafe fn clear_record(record: *mut u8) {
    // SAFETY: per the caller's guarantee.
    unsafe { std::ptr::write_bytes(record, 0, RECORD_SIZE) };
}

/// Reads a record whose status is set.
///
/// # Safety
/// `record` points at a record whose status was seen non-zero (the device
/// no longer writes it).
pub unsafe fn read_record(record: *const u8) -> Completion {
    // SAFETY: a packed plain-old-data struct of 64 bytes at a valid pointer.
    let raw = unsafe { std::ptr::read_volatile(record.cast::<iax_completion_record>()) };
    Completion {
        status: raw.status,
        error_code: raw.error_code,
        bytes_completed: raw.bytes_completed,
        fault_addr: raw.fault_addr,
        output_size: raw.output_size,
        output_bits: raw.output_bits,
        crc: raw.crc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_land_where_the_kernel_header_puts_them() {
        let fields = Fields {
            opcode: OP_COMPRESS,
            flags: FLAG_CRAV | FLAG_RCR | FLAG_RD_SRC2_AECS | FLAG_BOF,
            completion: 0x1122_3344_5566_7740,
            src1: 0x1000,
            src1_size: 4096,
            dst: 0x2000,
            max_dst_size: 4095,
            op_flags: COMPRESS_FLUSH | COMPRESS_APPEND_EOB,
            src2: 0x3000,
            src2_size: 1568,
        };
        let desc = Descriptor::new(&fields);
        assert_eq!(desc.fields(), fields);
        let word = u32::from_le_bytes(desc.0[4..8].try_into().unwrap());
        // Intel QPL's COMPRESS for QEMU: flags 0x01000e, opcode 0x43.
        assert_eq!(word, 0x4301_000e);
        assert_eq!(&desc.0[8..16], &0x1122_3344_5566_7740u64.to_le_bytes());
        assert_eq!(&desc.0[32..36], &4096u32.to_le_bytes());
        assert_eq!(&desc.0[38..40], &6u16.to_le_bytes());
        assert_eq!(&desc.0[48..52], &4095u32.to_le_bytes());
        assert_eq!(&desc.0[52..56], &1568u32.to_le_bytes());
    }

    #[test]
    fn records_are_read_from_their_layout() {
        let mut raw = [0u8; 64];
        raw[0] = status::PAGE_FAULT | status::WRITE_FAULT;
        raw[1] = 9;
        raw[4..8].copy_from_slice(&123u32.to_le_bytes());
        raw[8..16].copy_from_slice(&0xdead_b000u64.to_le_bytes());
        raw[24..28].copy_from_slice(&77u32.to_le_bytes());
        raw[28] = 5;
        raw[32..36].copy_from_slice(&0xabcdu32.to_le_bytes());
        // SAFETY: a local 64-byte record.
        let c = unsafe { read_record(raw.as_ptr()) };
        assert_eq!(c.page_fault(), Some(true));
        assert_eq!(
            (c.error_code, c.bytes_completed, c.fault_addr),
            (9, 123, 0xdead_b000)
        );
        assert_eq!((c.output_size, c.output_bits, c.crc), (77, 5, 0xabcd));
        assert_eq!(
            Completion {
                status: status::SUCCESS,
                ..c
            }
            .page_fault(),
            None
        );
    }
}
