//! The sender's device memory and descriptors: per page of a packet, a
//! snapshot slot (the device compresses the sender's copy of the page,
//! never live guest RAM) and an output slot; the AECS with the codes.
//!
//! Every COMPRESS is Intel QPL's for QEMU's jobs (docs/iaa.md compares them
//! field by field): read the AECS, flush, append an end-of-block, at most
//! page size − 1 bytes out, so that a page that does not shrink fails to fit
//! and travels raw.

use super::aecs::{self, AECS_SIZE};
use super::batch::Step;
use super::descriptor::{self, status, Completion, Descriptor, Fields};
use super::huffman::{self, HISTOGRAM_SIZE};
use super::memory::{DeviceMemory, PAGE};
use super::settings::Huffman;
use crate::error::Error;

pub struct CompressBuffers {
    page_size: usize,
    /// Bytes between two pages' slots (whole pages, so that each slot
    /// faults and is evicted on its own).
    stride: usize,
    huffman: Huffman,
    src: DeviceMemory,
    dst: DeviceMemory,
    /// Fixed: one AECS for every page. Dynamic: one per page, built from the
    /// page's histogram.
    aecs: DeviceMemory,
    /// Dynamic: each page's histogram (the statistics pass's output).
    histograms: Option<DeviceMemory>,
}

/// AECS slots are 64-byte aligned (the device wants 32).
const AECS_STRIDE: usize = AECS_SIZE.div_ceil(64) * 64;

impl CompressBuffers {
    pub fn new(page_size: usize, max_pages: usize, huffman: Huffman) -> Result<Self, Error> {
        let stride = page_size.div_ceil(PAGE) * PAGE;
        let src = DeviceMemory::new("the IAA page snapshots", max_pages * stride)?;
        let dst = DeviceMemory::new("the IAA compression output", max_pages * stride)?;
        let (aecs, histograms) = match huffman {
            Huffman::Fixed => {
                let aecs = DeviceMemory::new("the IAA AECS", AECS_STRIDE)?;
                // SAFETY: just allocated; no device job exists yet.
                aecs::fill_fixed(unsafe { aecs.slice_mut(0, AECS_SIZE) });
                (aecs, None)
            }
            Huffman::Dynamic => (
                DeviceMemory::new("the IAA AECS", max_pages * AECS_STRIDE)?,
                Some(DeviceMemory::new(
                    "the IAA histograms",
                    max_pages * HISTOGRAM_SIZE.div_ceil(64) * 64,
                )?),
            ),
        };
        Ok(CompressBuffers {
            page_size,
            stride,
            huffman,
            src,
            dst,
            aecs,
            histograms,
        })
    }

    pub fn huffman(&self) -> Huffman {
        self.huffman
    }

    /// Page `index`'s snapshot slot, to copy the page into.
    ///
    /// # Safety
    /// No job of page `index` is in flight.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn snapshot(&self, index: usize) -> &mut [u8] {
        // SAFETY: per the caller; the slot lies in `src`.
        unsafe { self.src.slice_mut(index * self.stride, self.page_size) }
    }

    /// Page `index`'s snapshot, to read.
    ///
    /// # Safety
    /// The device does not write the slot (it never does; this is a
    /// reminder that the bytes are device memory).
    pub unsafe fn snapshot_ref(&self, index: usize) -> &[u8] {
        // SAFETY: per the caller; the slot lies in `src`.
        unsafe { self.src.slice(index * self.stride, self.page_size) }
    }

    /// Page `index`'s stream, `len` bytes the device wrote.
    ///
    /// # Safety
    /// Page `index`'s job has completed and was not abandoned.
    pub unsafe fn stream(&self, index: usize, len: usize) -> &[u8] {
        // SAFETY: per the caller; bounded by the slot.
        unsafe { self.dst.slice(index * self.stride, len.min(self.page_size)) }
    }

    fn histogram_at(&self, index: usize) -> u64 {
        self.histograms
            .as_ref()
            .map_or(0, |h| h.at(index * HISTOGRAM_SIZE.div_ceil(64) * 64) as u64)
    }

    fn compress(&self, index: usize, record: u64, bof: bool, aecs_at: u64) -> Descriptor {
        Descriptor::new(&Fields {
            opcode: descriptor::OP_COMPRESS,
            flags: descriptor::FLAG_CRAV
                | descriptor::FLAG_RCR
                | descriptor::FLAG_RD_SRC2_AECS
                | if bof { descriptor::FLAG_BOF } else { 0 },
            completion: record,
            src1: self.src.at(index * self.stride) as u64,
            src1_size: self.page_size as u32,
            dst: self.dst.at(index * self.stride) as u64,
            max_dst_size: (self.page_size - 1) as u32,
            op_flags: descriptor::COMPRESS_FLUSH | descriptor::COMPRESS_APPEND_EOB,
            src2: aecs_at,
            src2_size: AECS_SIZE as u32,
        })
    }

    /// Page `index`'s first descriptor: the compression (fixed codes) or the
    /// statistics pass (dynamic codes).
    pub fn first(&self, index: usize, record: u64, bof: bool) -> Descriptor {
        match self.huffman {
            Huffman::Fixed => self.compress(index, record, bof, self.aecs.at(0) as u64),
            Huffman::Dynamic => Descriptor::new(&Fields {
                opcode: descriptor::OP_COMPRESS,
                flags: descriptor::FLAG_CRAV
                    | descriptor::FLAG_RCR
                    | if bof { descriptor::FLAG_BOF } else { 0 },
                completion: record,
                src1: self.src.at(index * self.stride) as u64,
                src1_size: self.page_size as u32,
                dst: self.histogram_at(index),
                max_dst_size: HISTOGRAM_SIZE as u32,
                op_flags: descriptor::COMPRESS_STATISTICS,
                ..Fields::default()
            }),
        }
    }

    /// What follows page `index`'s completed descriptor.
    ///
    /// # Safety
    /// Page `index`'s descriptor whose completion this is has completed.
    pub unsafe fn next(
        &self,
        index: usize,
        completion: &Completion,
        desc: &Descriptor,
        record: u64,
        bof: bool,
    ) -> Step {
        let fields = desc.fields();
        let statistics = fields.op_flags & descriptor::COMPRESS_STATISTICS != 0;
        match completion.status {
            status::SUCCESS if statistics => {
                let at = index * AECS_STRIDE;
                // SAFETY: the statistics pass has completed, so the device no
                // longer writes the histogram, and no job reads this page's
                // AECS slot.
                let (histogram, aecs) = unsafe {
                    (
                        self.histograms.as_ref().map(|h| {
                            h.slice(index * HISTOGRAM_SIZE.div_ceil(64) * 64, HISTOGRAM_SIZE)
                        }),
                        self.aecs.slice_mut(at, AECS_SIZE),
                    )
                };
                match histogram.and_then(|h| huffman::build_aecs(h, aecs)) {
                    Some(()) => {
                        Step::Submit(self.compress(index, record, bof, self.aecs.at(at) as u64))
                    }
                    // No dynamic block fits the AECS: this page's fixed codes.
                    None => {
                        aecs::fill_fixed(aecs);
                        Step::Submit(self.compress(index, record, bof, self.aecs.at(at) as u64))
                    }
                }
            }
            status::SUCCESS
                if completion.output_size > 0
                    && (completion.output_size as usize) < self.page_size =>
            {
                Step::Done
            }
            _ if does_not_fit(completion) => Step::Done,
            _ => Step::Fallback(super::counters::Fallback::Error),
        }
    }

    /// Whether the device's verdict is that the page does not fit in page
    /// size − 1 bytes (it then travels raw).
    pub fn does_not_fit(completion: &Completion) -> bool {
        does_not_fit(completion)
    }

    pub fn owns(&self, addr: u64) -> bool {
        self.src.contains(addr)
            || self.dst.contains(addr)
            || self.aecs.contains(addr)
            || self.histograms.as_ref().is_some_and(|h| h.contains(addr))
    }

    /// Test switch: the output slots' pages go back to the kernel.
    pub fn evict(&self) {
        // SAFETY: called between packets, when no job is in flight.
        unsafe { self.dst.evict(0, self.dst.len()) };
    }

    /// The device may still use this memory: never free it.
    pub fn keep_forever(&mut self) {
        self.src.keep_forever();
        self.dst.keep_forever();
        self.aecs.keep_forever();
        if let Some(h) = self.histograms.as_mut() {
            h.keep_forever();
        }
    }
}

/// A COMPRESS that does not fit its output: the analytics error with the
/// output-overflow code (the model, Intel QPL, the kernel's `iaa_crypto`),
/// or the output-overflow status.
fn does_not_fit(completion: &Completion) -> bool {
    (completion.status == status::ANALYTICS_ERROR
        && completion.error_code == status::COMPRESS_OVERFLOW_CODE)
        || completion.status == status::OUTBUF_OVERFLOW
}
