//! The layout of one packet body as the sender builds it, page by page in
//! order: the length array, the streams back to back after it (neighbours
//! merge into one segment), raw pages as segments of their own.

use super::send::Segment;
use crate::error::Error;
use crate::wire::{self, LENGTH_BYTES};

pub struct Layout<'a> {
    page_size: usize,
    lengths: &'a mut [u8],
    streams: &'a mut [u8],
    lengths_end: usize,
    streams_used: usize,
    open: Segment,
    segments: &'a mut Vec<Segment>,
    payload: usize,
}

impl<'a> Layout<'a> {
    /// A layout for `count` pages (at least one) in `owned`, which holds the
    /// length array and `count` windows of page size − 1 bytes.
    pub fn new(
        owned: &'a mut [u8],
        segments: &'a mut Vec<Segment>,
        count: usize,
        page_size: usize,
    ) -> Layout<'a> {
        let lengths_end = count * LENGTH_BYTES;
        let (lengths, streams) = owned.split_at_mut(lengths_end);
        segments.clear();
        Layout {
            page_size,
            lengths,
            streams,
            lengths_end,
            streams_used: 0,
            open: Segment::Owned {
                start: 0,
                len: lengths_end,
            },
            segments,
            payload: lengths_end,
        }
    }

    /// Where the next stream goes. Bounding it at page size − 1 is the rule
    /// of the wire: a stream must be shorter than the page it stands for.
    pub fn window(&mut self) -> &mut [u8] {
        let start = self.streams_used;
        &mut self.streams[start..start + self.page_size - 1]
    }

    /// Page `index` is the `len`-byte stream now in [`Layout::window`].
    pub fn stream(&mut self, index: usize, len: usize) -> Result<(), Error> {
        if len == 0 || len > self.page_size - 1 {
            return Err(Error::internal(format!(
                "page {index}: a {len}-byte stream for a {}-byte window",
                self.page_size - 1
            )));
        }
        wire::put_length(self.lengths, index, len as u32);
        self.open = match self.open {
            Segment::Owned { start, len: open } => Segment::Owned {
                start,
                len: open + len,
            },
            Segment::RawPage { .. } => {
                self.segments.push(self.open);
                Segment::Owned {
                    start: self.lengths_end + self.streams_used,
                    len,
                }
            }
        };
        self.streams_used += len;
        self.payload += len;
        Ok(())
    }

    /// Page `index` travels raw.
    pub fn raw(&mut self, index: usize) {
        wire::put_length(self.lengths, index, self.page_size as u32);
        self.segments.push(self.open);
        self.open = Segment::RawPage { page: index };
        self.payload += self.page_size;
    }

    /// The body's size; the segments are complete.
    pub fn finish(self) -> u32 {
        self.segments.push(self.open);
        self.payload as u32
    }
}
