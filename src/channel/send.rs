//! The sending side of one channel: pages in, one packet body out.
//!
//! The pages are live guest RAM: a running guest's vCPUs may rewrite a page
//! while it is being compressed. The encoder reads its input more than once
//! (to count symbols, then to write them), so it never reads guest memory:
//! each page is first copied, once, into a page-sized snapshot of the
//! sender's own, and the snapshot is compressed. Whatever the guest does,
//! the stream then inflates to exactly the bytes that were copied (the page
//! is dirty and QEMU sends it again). A page that does not shrink goes raw,
//! straight from guest memory, as upstream does.
//!
//! With an IAA work queue (src/iaa), the device compresses the snapshots of
//! a whole packet's pages; a page it does not finish is compressed here.

use std::fmt;
use std::time::Instant;

use super::iaa_send::SendWork;
use super::layout::Layout;
use super::{allocate, AutoLevel, ChannelConfig};
use crate::codec::{Level, PageEncoder};
use crate::error::Error;
use crate::iaa::{self, CompressBuffers, Counters, Device, Huffman, Route, Settings};
use crate::wire::LENGTH_BYTES;

/// One piece of a prepared packet body, in wire order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// `len` bytes of the sender's own buffer starting at `start`: the length
    /// array and the DEFLATE streams, which are laid out back to back so that
    /// neighbours merge into one segment.
    Owned { start: usize, len: usize },
    /// The caller's page at this index, sent as it is (no copy).
    RawPage { page: usize },
}

/// The packet body `Sender::prepare` produced, valid until the next call.
#[derive(Debug)]
pub struct PreparedPacket<'a> {
    owned: &'a [u8],
    pub segments: &'a [Segment],
    /// Total bytes of the body: the packet header's `next_packet_size`.
    pub payload_size: u32,
}

impl<'a> PreparedPacket<'a> {
    /// The bytes of an `Owned` segment. Every segment that becomes an iovec
    /// goes through here, so a length that would point past the sender's
    /// buffer is an internal error, never an out-of-bounds iovec.
    pub fn owned(&self, start: usize, len: usize) -> Result<&'a [u8], Error> {
        start
            .checked_add(len)
            .and_then(|end| self.owned.get(start..end))
            .ok_or_else(|| {
                Error::internal(format!(
                    "a segment of {len} bytes at {start} lies outside the {}-byte send buffer",
                    self.owned.len()
                ))
            })
    }

    /// The body as one byte vector, for tests and tools that do not send iovecs.
    pub fn to_bytes<P: PageSource + ?Sized>(&self, pages: &P) -> Result<Vec<u8>, Error> {
        let mut body = Vec::with_capacity(self.payload_size as usize);
        for segment in self.segments {
            match *segment {
                Segment::Owned { start, len } => {
                    body.extend_from_slice(self.owned(start, len)?);
                }
                Segment::RawPage { page } => {
                    let at = body.len();
                    body.resize(at + pages.page_size(page), 0);
                    pages.copy_page(page, &mut body[at..]);
                }
            }
        }
        Ok(body)
    }
}

/// The pages of one packet, wherever they live: a slice of slices in Rust,
/// an array of pointers to guest RAM behind the C boundary.
pub trait PageSource {
    fn count(&self) -> usize;
    /// The size of page `index`; the sender accepts only its page size.
    fn page_size(&self, index: usize) -> usize;
    /// Copies page `index`, as it is at this moment, into `dest` (as long as
    /// the page). Guest memory may change during the copy; the copy is then
    /// some mix of old and new bytes, which is all the sender needs.
    fn copy_page(&self, index: usize, dest: &mut [u8]);
}

impl<T: AsRef<[u8]>> PageSource for [T] {
    fn count(&self) -> usize {
        self.len()
    }

    fn page_size(&self, index: usize) -> usize {
        self[index].as_ref().len()
    }

    fn copy_page(&self, index: usize, dest: &mut [u8]) {
        dest.copy_from_slice(self[index].as_ref());
    }
}

/// Which engine compresses a channel's pages.
type Engine = super::engine::Engine<CompressBuffers>;

/// The sending side of one channel.
pub struct Sender {
    config: ChannelConfig,
    encoder: PageEncoder,
    /// The page being compressed, copied out of guest memory.
    snapshot: Vec<u8>,
    /// Length array followed by the DEFLATE streams of one packet.
    owned: Vec<u8>,
    segments: Vec<Segment>,
    engine: Engine,
    counters: Counters,
    /// Set for the automatic level, with when the last packet was handed over.
    auto: Option<(AutoLevel, Option<Instant>)>,
    /// `QEMU_QPL_IAA_LOG`.
    log: Option<std::path::PathBuf>,
}

/// The Huffman codes the device uses at `level`, unless the settings force them.
fn huffman_for(level: Level, settings: &Settings) -> Huffman {
    settings.huffman.unwrap_or(match level {
        Level::Turbo | Level::Fast => Huffman::Fixed,
        Level::Strong => Huffman::Dynamic,
    })
}

impl Sender {
    /// A sender whose level follows its channel (`channel/auto_level.rs`):
    /// the tables of every level are allocated here.
    pub fn with_auto_level(config: ChannelConfig) -> Result<Sender, Error> {
        let auto = AutoLevel::new();
        let mut sender = Sender::new(config, auto.level())?;
        for level in [Level::Turbo, Level::Strong] {
            sender
                .encoder
                .reserve(level, config.page_size())
                .map_err(|failed| Error::OutOfMemory {
                    what: "the encoder's tables",
                    bytes: failed.bytes,
                })?;
        }
        sender.auto = Some((auto, None));
        Ok(sender)
    }

    /// The automatic level's record: packets sent at turbo, fast and strong,
    /// and how often the level moved; None for a fixed level.
    pub fn auto_level(&self) -> Option<([u64; 3], u64)> {
        self.auto.as_ref().map(|(auto, _)| auto.packets())
    }

    /// The level of the next packet.
    pub fn level(&self) -> Level {
        self.encoder.level()
    }

    /// A sender whose engine follows the environment (`QEMU_QPL_IAA` and
    /// the other switches of docs/iaa.md).
    pub fn new(config: ChannelConfig, level: Level) -> Result<Sender, Error> {
        Sender::with_settings(config, level, &Settings::from_env()?)
    }

    /// A sender whose engine follows `settings`.
    pub fn with_settings(
        config: ChannelConfig,
        level: Level,
        settings: &Settings,
    ) -> Result<Sender, Error> {
        config.validate()?;
        let max_pages = config.max_pages();
        // Every stored stream is at most page_size - 1 bytes.
        let owned_bytes = max_pages * (LENGTH_BYTES + config.page_size() - 1);
        let owned = allocate("the send buffer", owned_bytes)?;
        let snapshot = allocate("the page snapshot", config.page_size())?;
        let mut segments = Vec::new();
        segments
            .try_reserve_exact(max_pages + 1)
            .map_err(|_| Error::OutOfMemory {
                what: "the send segment list",
                bytes: (max_pages + 1) * std::mem::size_of::<Segment>(),
            })?;
        let encoder = PageEncoder::for_pages(level, config.page_size()).map_err(|failed| {
            Error::OutOfMemory {
                what: "the encoder's tables",
                bytes: failed.bytes,
            }
        })?;
        let engine = match iaa::route(settings, config.page_size())? {
            Route::Cpu(why) => Engine::Cpu(why),
            Route::Iaa {
                queues,
                wait,
                notes,
            } => {
                let buffers = CompressBuffers::new(
                    config.page_size(),
                    max_pages,
                    huffman_for(level, settings),
                )?;
                Engine::Iaa(Box::new(Device::new(
                    queues,
                    wait,
                    notes,
                    config.channel,
                    max_pages,
                    settings,
                    buffers,
                )?))
            }
        };
        Ok(Sender {
            config,
            encoder,
            snapshot,
            owned,
            segments,
            engine,
            counters: Counters::default(),
            auto: None,
            log: settings.log.clone(),
        }
        .logged_setup())
    }

    pub fn config(&self) -> ChannelConfig {
        self.config
    }

    /// What the channel counted since setup.
    pub fn counters(&self) -> Counters {
        self.engine.counters(self.counters)
    }

    /// Whether packets go to the device now.
    pub fn uses_iaa(&self) -> bool {
        self.engine.uses_iaa()
    }

    fn logged_setup(self) -> Self {
        let channel = self.config.channel;
        self.engine
            .log(self.log.as_deref(), "sender", channel, None);
        self
    }

    /// One line saying which engine compresses and why.
    pub fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        self.engine.describe(out)
    }

    /// Compresses `pages` into one packet body. A page whose stream would not
    /// be shorter than a page is sent raw, straight from the caller's memory.
    /// At most `pages_per_packet + 1` segments result.
    pub fn prepare<P: PageSource + ?Sized>(
        &mut self,
        pages: &P,
    ) -> Result<PreparedPacket<'_>, Error> {
        let page_size = self.config.page_size();
        let count = pages.count();
        if count > self.config.max_pages() {
            return Err(Error::invalid(format!(
                "{count} pages exceed the {} pages per packet set up for channel {}",
                self.config.pages_per_packet, self.config.channel
            )));
        }
        if let Some(index) = (0..count).find(|&index| pages.page_size(index) != page_size) {
            return Err(Error::invalid(format!(
                "page {index} is {} bytes, not the page size {page_size}",
                pages.page_size(index)
            )));
        }
        let started = self.auto.is_some().then(Instant::now);
        self.segments.clear();
        if count == 0 {
            return Ok(PreparedPacket {
                owned: &self.owned[..0],
                segments: &self.segments,
                payload_size: 0,
            });
        }

        let mut layout = Layout::new(&mut self.owned, &mut self.segments, count, page_size);
        match &mut self.engine {
            Engine::Iaa(device) if device.usable() => {
                let block_on_fault = device.block_on_fault();
                let Device {
                    driver, buffers, ..
                } = &mut **device;
                let mut work = SendWork {
                    pages,
                    buffers,
                    encoder: &mut self.encoder,
                    layout: &mut layout,
                    counters: &mut self.counters,
                    block_on_fault,
                };
                driver.run(&mut work)?;
            }
            _ => {
                for index in 0..count {
                    pages.copy_page(index, &mut self.snapshot);
                    match self.encoder.encode(&self.snapshot, layout.window()) {
                        Some(stream_len) => {
                            layout.stream(index, stream_len)?;
                            self.counters.pages_cpu += 1;
                        }
                        None => {
                            layout.raw(index);
                            self.counters.pages_raw += 1;
                        }
                    }
                }
            }
        }
        let payload_size = layout.finish();
        if let (Some((auto, last)), Some(started)) = (&mut self.auto, started) {
            let now = Instant::now();
            let away = last.map_or(Default::default(), |last| started - last);
            self.encoder.set_level(auto.observe(now - started, away));
            *last = Some(now);
        }
        Ok(PreparedPacket {
            owned: &self.owned,
            segments: &self.segments,
            payload_size,
        })
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let counters = self.counters();
        let channel = self.config.channel;
        self.engine
            .log(self.log.as_deref(), "sender", channel, Some(&counters));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_outside_the_send_buffer_is_an_internal_error() {
        let owned = [0u8; 16];
        let packet = PreparedPacket {
            owned: &owned,
            segments: &[],
            payload_size: 0,
        };
        assert_eq!(packet.owned(4, 12).unwrap().len(), 12);
        for (start, len) in [(4, 13), (17, 0), (usize::MAX, 2)] {
            let error = packet.owned(start, len).unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::Internal, "{error}");
        }
    }
}
