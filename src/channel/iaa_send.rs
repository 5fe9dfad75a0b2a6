//! The sender's packet on the device: each page is copied into its snapshot
//! slot and compressed by the device; the results are laid out in page
//! order, and a page the device did not finish is compressed here from the
//! same snapshot.

use super::layout::Layout;
use super::send::PageSource;
use crate::codec::PageEncoder;
use crate::error::Error;
use crate::iaa::{CompressBuffers, Counters, Step, Verdict, Work};

pub struct SendWork<'a, 'l, P: PageSource + ?Sized> {
    pub pages: &'a P,
    pub buffers: &'a CompressBuffers,
    pub encoder: &'a mut PageEncoder,
    pub layout: &'a mut Layout<'l>,
    pub counters: &'a mut Counters,
    pub block_on_fault: bool,
}

impl<P: PageSource + ?Sized> SendWork<'_, '_, P> {
    /// The CPU compresses page `index` from its snapshot slot.
    fn on_cpu(&mut self, index: usize, started: bool) -> Result<(), Error> {
        if !started {
            // SAFETY: no job of this page was submitted in this packet, and
            // the slot's jobs of earlier packets have all completed (a
            // channel that abandoned a job never comes back here).
            let slot = unsafe { self.buffers.snapshot(index) };
            self.pages.copy_page(index, slot);
        }
        // SAFETY: the device writes no snapshot slot; it may at most still be
        // reading this one (a job abandoned after a timeout).
        let snapshot = unsafe { self.buffers.snapshot_ref(index) };
        match self.encoder.encode(snapshot, self.layout.window()) {
            Some(len) => {
                self.layout.stream(index, len)?;
                self.counters.pages_cpu += 1;
            }
            None => {
                self.layout.raw(index);
                self.counters.pages_raw += 1;
            }
        }
        Ok(())
    }
}

impl<P: PageSource + ?Sized> Work for SendWork<'_, '_, P> {
    fn count(&self) -> usize {
        self.pages.count()
    }

    fn first(&mut self, index: usize, record: u64) -> Option<crate::iaa::Descriptor> {
        // SAFETY: the page's slot has no job in flight: its job of the last
        // packet completed before that packet was emitted.
        let slot = unsafe { self.buffers.snapshot(index) };
        self.pages.copy_page(index, slot);
        Some(self.buffers.first(index, record, self.block_on_fault))
    }

    fn next(
        &mut self,
        index: usize,
        desc: &crate::iaa::Descriptor,
        completion: &crate::iaa::Completion,
        record: u64,
    ) -> Step {
        // SAFETY: the driver calls this once the descriptor has completed.
        unsafe {
            self.buffers
                .next(index, completion, desc, record, self.block_on_fault)
        }
    }

    fn emit(&mut self, index: usize, verdict: Verdict) -> Result<(), Error> {
        match verdict {
            Verdict::Device(completion) if CompressBuffers::does_not_fit(&completion) => {
                self.layout.raw(index);
                self.counters.pages_raw += 1;
            }
            Verdict::Device(completion) => {
                let len = completion.output_size as usize;
                // SAFETY: the page's job completed (its verdict is the
                // device's), so the device no longer writes its output slot.
                let stream = unsafe { self.buffers.stream(index, len) };
                let window = self.layout.window();
                if len == 0 || len > window.len() {
                    return Err(Error::internal(format!(
                        "page {index}: the device reports a {len}-byte stream for a {}-byte window",
                        window.len()
                    )));
                }
                window[..len].copy_from_slice(stream);
                self.layout.stream(index, len)?;
                self.counters.pages_iaa += 1;
            }
            Verdict::Cpu { started, .. } => self.on_cpu(index, started)?,
            Verdict::NoWork => {
                return Err(Error::internal(format!(
                    "page {index}: no device work for a page to compress"
                )))
            }
        }
        Ok(())
    }

    fn owns(&self, addr: u64) -> bool {
        self.buffers.owns(addr)
    }

    fn evict(&mut self) {
        self.buffers.evict();
    }
}
