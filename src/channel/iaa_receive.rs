//! The receiver's packet on the device: every stream is handed to the
//! device together; pages are then written in order, from the device's
//! output slot when it decoded the stream to exactly one page, and
//! otherwise by the CPU decoder, whose verdict (a page, or the packet's
//! fault) is final.

use super::receive::{decode_fault, DestPages};
use crate::codec::PageDecoder;
use crate::error::Error;
use crate::iaa::{Completion, Counters, DecompressBuffers, Descriptor, Step, Verdict, Work};
use crate::wire::PageEncoding;

pub struct RecvWork<'a> {
    pub channel: u32,
    pub page_size: usize,
    /// The packet's data as read from the network; the device reads it.
    pub data: &'a [u8],
    pub offsets: &'a [usize],
    pub encodings: &'a [PageEncoding],
    pub buffers: &'a DecompressBuffers,
    pub decoder: &'a mut PageDecoder,
    pub dest: &'a mut dyn DestPages,
    pub counters: &'a mut Counters,
    pub block_on_fault: bool,
}

impl RecvWork<'_> {
    fn stream(&self, index: usize) -> &[u8] {
        let start = self.offsets[index];
        match self.encodings[index] {
            PageEncoding::Raw => &self.data[start..start + self.page_size],
            PageEncoding::Deflate(len) => &self.data[start..start + len as usize],
        }
    }
}

impl Work for RecvWork<'_> {
    fn count(&self) -> usize {
        self.encodings.len()
    }

    fn first(&mut self, index: usize, record: u64) -> Option<Descriptor> {
        let PageEncoding::Deflate(len) = self.encodings[index] else {
            return None;
        };
        let stream = self.stream(index).as_ptr();
        Some(
            self.buffers
                .descriptor(index, stream, len as usize, record, self.block_on_fault),
        )
    }

    fn next(&mut self, index: usize, _: &Descriptor, completion: &Completion, _: u64) -> Step {
        self.buffers.next(completion, self.stream(index).len())
    }

    fn emit(&mut self, index: usize, verdict: Verdict) -> Result<(), Error> {
        let page_size = self.page_size;
        match verdict {
            Verdict::NoWork => {
                let start = self.offsets[index];
                self.dest
                    .page(index)?
                    .copy_from_slice(&self.data[start..start + page_size]);
                self.counters.pages_raw += 1;
            }
            Verdict::Device(_) => {
                // SAFETY: the page's job completed (the verdict is the
                // device's): its output slot is no longer written.
                let page = unsafe { self.buffers.page(index) };
                self.dest.page(index)?.copy_from_slice(page);
                self.counters.pages_iaa += 1;
            }
            Verdict::Cpu { .. } => {
                let start = self.offsets[index];
                let PageEncoding::Deflate(len) = self.encodings[index] else {
                    return Err(Error::internal(format!(
                        "page {index}: a raw page sent to the CPU decoder"
                    )));
                };
                let stream = &self.data[start..start + len as usize];
                let dest = self.dest.page(index)?;
                self.decoder
                    .decode(stream, dest)
                    .map_err(|fault| Error::Packet {
                        channel: self.channel,
                        fault: decode_fault(index, page_size, fault),
                    })?;
                self.counters.pages_cpu += 1;
            }
        }
        Ok(())
    }

    fn owns(&self, addr: u64) -> bool {
        let start = self.data.as_ptr() as u64;
        self.buffers.owns(addr) || (start..start + self.data.len() as u64).contains(&addr)
    }

    fn evict(&mut self) {
        self.buffers.evict();
    }
}
