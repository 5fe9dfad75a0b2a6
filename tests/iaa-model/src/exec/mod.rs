//! The device's execution of one descriptor: validation, page residency
//! (I/O page faults), the operation, and the completion it reports.

pub mod bits;
pub mod checksum;
pub mod compress;
pub mod decompress;
pub mod inflate;
pub mod lz77;

use crate::descriptor::{Completion, Descriptor, OP_COMPRESS, OP_DECOMPRESS, OP_NOOP};
use crate::memory;
use crate::uapi::{dsa_completion_status as dsa, iax_completion_status as iax, IDXD_OP_FLAG_BOF};

/// Completion status codes (kernel UAPI `idxd.h`; the page-fault code is the
/// DSA one, 0x03, which Intel QPL's `hw_status.h` also uses for IAA, with
/// bit 7 set for a write fault).
pub mod status {
    use super::{dsa, iax};
    pub const SUCCESS: u8 = iax::IAX_COMP_SUCCESS as u8;
    pub const PAGE_FAULT: u8 = dsa::DSA_COMP_PAGE_FAULT_NOBOF as u8;
    pub const WRITE_FAULT_BIT: u8 = crate::uapi::DSA_COMP_STATUS_WRITE as u8;
    pub const ANALYTICS_ERROR: u8 = iax::IAX_COMP_ANALYTICS_ERROR as u8;
    pub const OUTBUF_OVERFLOW: u8 = iax::IAX_COMP_OUTBUF_OVERFLOW as u8;
    pub const BAD_OPCODE: u8 = iax::IAX_COMP_BAD_OPCODE as u8;
    pub const INVALID_FLAGS: u8 = iax::IAX_COMP_INVALID_FLAGS as u8;
    pub const NONZERO_RESERVED: u8 = iax::IAX_COMP_NOZERO_RESERVE as u8;
    pub const INVALID_SIZE: u8 = iax::IAX_COMP_INVALID_SIZE as u8;
    pub const ADDR_ALIGN: u8 = iax::IAX_COMP_ADDR_ALIGN as u8;
    pub const HW_ERROR: u8 = iax::IAX_COMP_HW_ERR1 as u8;
    pub const INVALID_COMP_FLAG: u8 = iax::IAX_COMP_INVALID_COMP_FLAG as u8;
}

/// The largest transfer the modelled device accepts (GENCAP bits 20:16).
pub const MAX_TRANSFER_LOG2: u32 = 21;
pub const MAX_TRANSFER: u64 = 1 << MAX_TRANSFER_LOG2;

/// What the engine knows besides the descriptor.
pub struct Context {
    /// The work queue was configured with block-on-fault.
    pub wq_block_on_fault: bool,
    /// Test only: flip an output bit of every COMPRESS.
    pub corrupt: bool,
    /// The time a block-on-fault page fault costs the device.
    pub fault_delay: std::time::Duration,
}

/// What an execution saw, for the recorder.
#[derive(Default)]
pub struct Observation {
    pub aecs_read: Option<Vec<u8>>,
    pub faults_resolved: u32,
}

/// Residency of the memory an operation touches: with block-on-fault the
/// model makes each missing page present and goes on (the OS would resolve
/// the fault); without, the operation ends with a page-fault completion.
pub struct Pages<'a> {
    block_on_fault: bool,
    fault_delay: std::time::Duration,
    observation: &'a mut Observation,
}

impl Pages<'_> {
    pub fn require(&mut self, addr: u64, len: usize, write: bool) -> Result<(), Completion> {
        // Each touch makes one page present; more rounds than pages means a
        // page that will not stay present, reported as a fault.
        let mut rounds = len / memory::page_size() + 2;
        while let Some(fault) = memory::first_absent(addr, len) {
            rounds = rounds.saturating_sub(1);
            if !self.block_on_fault || !is_mapped(fault) || rounds == 0 {
                let mut completion = Completion::status(
                    status::PAGE_FAULT | if write { status::WRITE_FAULT_BIT } else { 0 },
                );
                completion.fault_addr = fault;
                return Err(completion);
            }
            // SAFETY: the page is mapped (checked above); an IOMMU fault on
            // it would be resolved by the OS touching it the same way.
            unsafe { memory::touch(fault, write) };
            self.observation.faults_resolved += 1;
            std::thread::sleep(self.fault_delay);
        }
        Ok(())
    }
}

fn is_mapped(addr: u64) -> bool {
    let page = memory::page_size() as u64;
    let mut one = 0u8;
    // SAFETY: mincore only inspects the page.
    unsafe {
        libc::mincore(
            (addr & !(page - 1)) as *mut libc::c_void,
            page as usize,
            &mut one,
        ) == 0
    }
}

pub fn execute(desc: &Descriptor, ctx: &Context, observation: &mut Observation) -> Completion {
    let desc_bof = desc.flags() & IDXD_OP_FLAG_BOF != 0;
    if desc_bof && !ctx.wq_block_on_fault {
        // Block on fault may only be asked for on a WQ configured for it.
        let mut completion = Completion::status(status::INVALID_FLAGS);
        completion.invalid_flags = IDXD_OP_FLAG_BOF;
        return completion;
    }
    let mut pages = Pages {
        block_on_fault: desc_bof,
        fault_delay: ctx.fault_delay,
        observation,
    };
    match desc.opcode() {
        OP_NOOP => Completion::status(status::SUCCESS),
        OP_COMPRESS => compress::execute(desc, ctx, &mut pages),
        OP_DECOMPRESS => decompress::execute(desc, &mut pages),
        _ => Completion::status(status::BAD_OPCODE),
    }
}

/// The AECS copy an operation reads (`sel`) and the one it writes (the other).
pub fn aecs_copies(desc: &Descriptor, size: u64) -> (u64, u64) {
    let sel = u64::from(desc.flags() & crate::descriptor::FLAG_AECS_SEL != 0);
    (desc.src2() + sel * size, desc.src2() + (sel ^ 1) * size)
}
