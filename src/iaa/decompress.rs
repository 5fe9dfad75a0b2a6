//! The receiver's device memory and descriptors: per page of a packet, an
//! output slot of the receiver's own that the device decompresses into; the
//! page is then copied to guest RAM.
//!
//! The slot, rather than guest RAM, is the device's destination for two
//! reasons: the device never meets a guest page that is not resident (the
//! I/O page faults that made upstream's IAA path need `--mem-prealloc`), and
//! a job abandoned after a timeout can only ever write memory the receiver
//! never reuses, never a guest page that a later packet has rewritten.

use super::batch::Step;
use super::counters::Fallback;
use super::descriptor::{self, status, Completion, Descriptor, Fields};
use super::memory::{DeviceMemory, PAGE};
use crate::error::Error;

pub struct DecompressBuffers {
    page_size: usize,
    stride: usize,
    out: DeviceMemory,
}

impl DecompressBuffers {
    pub fn new(page_size: usize, max_pages: usize) -> Result<Self, Error> {
        let stride = page_size.div_ceil(PAGE) * PAGE;
        Ok(DecompressBuffers {
            page_size,
            stride,
            out: DeviceMemory::new("the IAA decompression output", max_pages * stride)?,
        })
    }

    /// The DECOMPRESS of page `index`'s stream (`len` bytes at `stream`):
    /// Intel QPL's decompression flags for QEMU's jobs (stop at and check for
    /// the final block's end), output capped at one page.
    pub fn descriptor(
        &self,
        index: usize,
        stream: *const u8,
        len: usize,
        record: u64,
        bof: bool,
    ) -> Descriptor {
        Descriptor::new(&Fields {
            opcode: descriptor::OP_DECOMPRESS,
            flags: descriptor::FLAG_CRAV
                | descriptor::FLAG_RCR
                | if bof { descriptor::FLAG_BOF } else { 0 },
            completion: record,
            src1: stream as u64,
            src1_size: len as u32,
            dst: self.out.at(index * self.stride) as u64,
            max_dst_size: self.page_size as u32,
            op_flags: descriptor::DECOMPRESS_WHOLE_STREAM,
            ..Fields::default()
        })
    }

    /// The device's decompression of a `len`-byte stream is used only when it
    /// consumed the whole stream and produced exactly one page; anything else
    /// gets the CPU decoder's verdict.
    pub fn next(&self, completion: &Completion, len: usize) -> Step {
        match completion.status {
            status::SUCCESS
                if completion.output_size as usize == self.page_size
                    && completion.bytes_completed as usize == len =>
            {
                Step::Done
            }
            status::SUCCESS | status::ANALYTICS_ERROR | status::OUTBUF_OVERFLOW => {
                Step::Fallback(Fallback::Rejected)
            }
            _ => Step::Fallback(Fallback::Error),
        }
    }

    /// Page `index` as the device wrote it.
    ///
    /// # Safety
    /// Page `index`'s job has completed and was not abandoned.
    pub unsafe fn page(&self, index: usize) -> &[u8] {
        // SAFETY: per the caller; the slot lies in `out`.
        unsafe { self.out.slice(index * self.stride, self.page_size) }
    }

    pub fn owns(&self, addr: u64) -> bool {
        self.out.contains(addr)
    }

    /// Test switch: the output slots' pages go back to the kernel.
    pub fn evict(&self) {
        // SAFETY: called between packets, when no job is in flight.
        unsafe { self.out.evict(0, self.out.len()) };
    }

    /// The device may still write this memory: never free it.
    pub fn keep_forever(&mut self) {
        self.out.keep_forever();
    }
}
