//! One sender and one receiver per multifd channel.
//!
//! All buffers are allocated when the channel is set up; preparing or receiving
//! a packet allocates nothing. The objects know nothing of pointers: the C
//! boundary (`abi.rs`) turns pointers into slices before calling in here.

use crate::codec::{DecodeFault, Level, PageDecoder, PageEncoder};
use crate::error::{Error, PacketFault};
use crate::wire::{self, PageEncoding, LENGTH_BYTES};

/// Smallest and largest page sizes accepted: QEMU's target pages range from
/// 1 KiB to 64 KiB; 512 leaves room for tests of small pages.
pub const MIN_PAGE_SIZE: u32 = 512;
pub const MAX_PAGE_SIZE: u32 = 64 * 1024;
/// The largest packet body a channel buffers. QEMU's packets hold 512 KiB of
/// pages; this leaves ample room while keeping every u32 length sum exact.
pub const MAX_PACKET_BYTES: u64 = 256 * 1024 * 1024;

/// What every channel is set up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelConfig {
    /// The multifd channel number, used in error messages.
    pub channel: u32,
    pub page_size: u32,
    pub pages_per_packet: u32,
}

impl ChannelConfig {
    fn validate(&self) -> Result<(), Error> {
        let ChannelConfig {
            page_size,
            pages_per_packet,
            ..
        } = *self;
        if !page_size.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(Error::invalid(format!(
                "page size {page_size} is not a power of two between {MIN_PAGE_SIZE} and {MAX_PAGE_SIZE}"
            )));
        }
        let packet_bytes = u64::from(page_size) * u64::from(pages_per_packet);
        if pages_per_packet == 0 || packet_bytes > MAX_PACKET_BYTES {
            return Err(Error::invalid(format!(
                "{pages_per_packet} pages per packet of {page_size} bytes is not between 1 page and {MAX_PACKET_BYTES} bytes"
            )));
        }
        Ok(())
    }

    fn page_size(&self) -> usize {
        self.page_size as usize
    }

    fn max_pages(&self) -> usize {
        self.pages_per_packet as usize
    }
}

/// Allocates a zeroed buffer, reporting failure instead of aborting.
fn allocate(what: &'static str, bytes: usize) -> Result<Vec<u8>, Error> {
    let mut buffer = Vec::new();
    buffer
        .try_reserve_exact(bytes)
        .map_err(|_| Error::OutOfMemory { what, bytes })?;
    buffer.resize(bytes, 0);
    Ok(buffer)
}

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
    pub owned: &'a [u8],
    pub segments: &'a [Segment],
    /// Total bytes of the body: the packet header's `next_packet_size`.
    pub payload_size: u32,
}

impl PreparedPacket<'_> {
    /// The body as one byte vector, for tests and tools that do not send iovecs.
    pub fn to_bytes<P: PageSource + ?Sized>(&self, pages: &P) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.payload_size as usize);
        for segment in self.segments {
            match *segment {
                Segment::Owned { start, len } => {
                    body.extend_from_slice(&self.owned[start..start + len])
                }
                Segment::RawPage { page } => body.extend_from_slice(pages.page(page)),
            }
        }
        body
    }
}

/// The pages of one packet, wherever they live: a slice of slices in Rust,
/// an array of page pointers behind the C boundary.
pub trait PageSource {
    fn count(&self) -> usize;
    fn page(&self, index: usize) -> &[u8];
}

impl<T: AsRef<[u8]>> PageSource for [T] {
    fn count(&self) -> usize {
        self.len()
    }

    fn page(&self, index: usize) -> &[u8] {
        self[index].as_ref()
    }
}

/// The sending side of one channel.
pub struct Sender {
    config: ChannelConfig,
    encoder: PageEncoder,
    /// Length array followed by the DEFLATE streams of one packet.
    owned: Vec<u8>,
    segments: Vec<Segment>,
}

impl Sender {
    pub fn new(config: ChannelConfig, level: Level) -> Result<Sender, Error> {
        config.validate()?;
        let max_pages = config.max_pages();
        // Every stored stream is at most page_size - 1 bytes.
        let owned_bytes = max_pages * (LENGTH_BYTES + config.page_size() - 1);
        let owned = allocate("the send buffer", owned_bytes)?;
        let mut segments = Vec::new();
        segments
            .try_reserve_exact(max_pages + 1)
            .map_err(|_| Error::OutOfMemory {
                what: "the send segment list",
                bytes: (max_pages + 1) * std::mem::size_of::<Segment>(),
            })?;
        Ok(Sender {
            config,
            encoder: PageEncoder::new(level),
            owned,
            segments,
        })
    }

    pub fn config(&self) -> ChannelConfig {
        self.config
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
        if let Some(index) = (0..count).find(|&index| pages.page(index).len() != page_size) {
            return Err(Error::invalid(format!(
                "page {index} is {} bytes, not the page size {page_size}",
                pages.page(index).len()
            )));
        }
        self.segments.clear();
        if count == 0 {
            return Ok(PreparedPacket {
                owned: &self.owned[..0],
                segments: &self.segments,
                payload_size: 0,
            });
        }

        let lengths_end = count * LENGTH_BYTES;
        let (lengths, streams) = self.owned.split_at_mut(lengths_end);
        let mut open = Segment::Owned {
            start: 0,
            len: lengths_end,
        };
        let mut streams_used = 0;
        let mut payload = lengths_end;
        for index in 0..count {
            let page = pages.page(index);
            // Bounding the output at page_size - 1 is the rule of the wire: a
            // stream must be shorter than the page it stands for.
            let window = &mut streams[streams_used..streams_used + page_size - 1];
            match self.encoder.encode(page, window) {
                Some(stream_len) => {
                    wire::put_length(lengths, index, stream_len as u32);
                    open = match open {
                        Segment::Owned { start, len } => Segment::Owned {
                            start,
                            len: len + stream_len,
                        },
                        Segment::RawPage { .. } => {
                            self.segments.push(open);
                            Segment::Owned {
                                start: lengths_end + streams_used,
                                len: stream_len,
                            }
                        }
                    };
                    streams_used += stream_len;
                    payload += stream_len;
                }
                None => {
                    wire::put_length(lengths, index, page_size as u32);
                    self.segments.push(open);
                    open = Segment::RawPage { page: index };
                    payload += page_size;
                }
            }
        }
        self.segments.push(open);
        Ok(PreparedPacket {
            owned: &self.owned,
            segments: &self.segments,
            payload_size: payload as u32,
        })
    }
}

/// Where a receiver is in the three steps of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReceiveStep {
    Idle,
    AwaitingLengths { pages: u32, payload: u64 },
    AwaitingPages { pages: u32 },
}

/// The receiving side of one channel. Per packet: `begin` (checks the header's
/// numbers), `accept_lengths` (checks the length array), then `decode_page`
/// once per page in order, and `finish`.
pub struct Receiver {
    config: ChannelConfig,
    decoder: PageDecoder,
    lengths: Vec<u8>,
    data: Vec<u8>,
    encodings: Vec<PageEncoding>,
    /// Start of each page's bytes in `data`.
    offsets: Vec<usize>,
    step: ReceiveStep,
}

impl Receiver {
    pub fn new(config: ChannelConfig) -> Result<Receiver, Error> {
        config.validate()?;
        let max_pages = config.max_pages();
        let lengths = allocate("the receive length array", max_pages * LENGTH_BYTES)?;
        let data = allocate("the receive buffer", max_pages * config.page_size())?;
        let mut encodings = Vec::new();
        let mut offsets = Vec::new();
        encodings
            .try_reserve_exact(max_pages)
            .and_then(|_| offsets.try_reserve_exact(max_pages))
            .map_err(|_| Error::OutOfMemory {
                what: "the receive page table",
                bytes: max_pages * 16,
            })?;
        Ok(Receiver {
            config,
            decoder: PageDecoder::new(),
            lengths,
            data,
            encodings,
            offsets,
            step: ReceiveStep::Idle,
        })
    }

    pub fn config(&self) -> ChannelConfig {
        self.config
    }

    fn fault(&mut self, fault: PacketFault) -> Error {
        self.step = ReceiveStep::Idle;
        Error::Packet {
            channel: self.config.channel,
            fault,
        }
    }

    /// Step 1: checks the page count and payload size of the packet header and
    /// returns the buffer to read the length array into (empty for a packet
    /// without normal pages, which is then complete).
    pub fn begin(&mut self, pages: u32, payload: u64) -> Result<&mut [u8], Error> {
        self.step = ReceiveStep::Idle;
        if let Err(fault) = wire::check_packet_shape(pages, self.config.pages_per_packet, payload) {
            return Err(self.fault(fault));
        }
        if pages > 0 {
            self.step = ReceiveStep::AwaitingLengths { pages, payload };
        }
        let lengths_end = wire::lengths_bytes(pages) as usize;
        Ok(&mut self.lengths[..lengths_end])
    }

    /// Step 2: checks the length array read into `begin`'s buffer and returns
    /// the buffer to read the pages' bytes into.
    pub fn accept_lengths(&mut self) -> Result<&mut [u8], Error> {
        let ReceiveStep::AwaitingLengths { pages, payload } = self.step else {
            return Err(Error::invalid(
                "accept_lengths called without a packet begun",
            ));
        };
        let lengths_end = wire::lengths_bytes(pages) as usize;
        let parsed = wire::parse_lengths(
            &self.lengths[..lengths_end],
            self.config.page_size,
            payload,
            &mut self.encodings,
        );
        let data_len = match parsed {
            Ok(data_len) => data_len as usize,
            Err(fault) => return Err(self.fault(fault)),
        };
        self.offsets.clear();
        let mut offset = 0;
        for encoding in &self.encodings {
            self.offsets.push(offset);
            offset += match *encoding {
                PageEncoding::Raw => self.config.page_size(),
                PageEncoding::Deflate(len) => len as usize,
            };
        }
        self.step = ReceiveStep::AwaitingPages { pages };
        Ok(&mut self.data[..data_len])
    }

    /// Pages announced by the packet in progress (0 when none is).
    pub fn pending_pages(&self) -> u32 {
        match self.step {
            ReceiveStep::AwaitingPages { pages } => pages,
            _ => 0,
        }
    }

    /// Step 3: writes page `index` of the packet into `dest`, which must be
    /// exactly one page. Writes nothing outside `dest`.
    pub fn decode_page(&mut self, index: usize, dest: &mut [u8]) -> Result<(), Error> {
        let pages = self.pending_pages() as usize;
        if index >= pages {
            return Err(Error::invalid(format!(
                "page {index} requested but the packet in progress has {pages} pages"
            )));
        }
        let page_size = self.config.page_size();
        if dest.len() != page_size {
            return Err(Error::invalid(format!(
                "destination of page {index} is {} bytes, not the page size {page_size}",
                dest.len()
            )));
        }
        let start = self.offsets[index];
        let result = match self.encodings[index] {
            PageEncoding::Raw => {
                dest.copy_from_slice(&self.data[start..start + page_size]);
                Ok(())
            }
            PageEncoding::Deflate(len) => {
                let stream = &self.data[start..start + len as usize];
                self.decoder.decode(stream, dest)
            }
        };
        result.map_err(|fault| {
            let page = index as u32;
            let page_size = page_size as u32;
            self.fault(match fault {
                DecodeFault::Corrupt(detail) => PacketFault::CorruptStream { page, detail },
                DecodeFault::Truncated => PacketFault::TruncatedStream { page },
                DecodeFault::PastEnd => PacketFault::InflatesPastPage { page, page_size },
                DecodeFault::Short { produced } => PacketFault::InflatesShortOfPage {
                    page,
                    produced: produced as u32,
                    page_size,
                },
                DecodeFault::TrailingBytes { extra } => PacketFault::TrailingBytes {
                    page,
                    extra: extra as u32,
                },
            })
        })
    }

    /// Ends the packet in progress.
    pub fn finish(&mut self) {
        self.step = ReceiveStep::Idle;
    }

    /// All three steps over a body held in memory, for tests and tools.
    pub fn receive_packet(&mut self, body: &[u8], dest: &mut [&mut [u8]]) -> Result<(), Error> {
        let pages = u32::try_from(dest.len())
            .map_err(|_| Error::invalid("more destination pages than a u32 counts"))?;
        let lengths = self.begin(pages, body.len() as u64)?;
        if pages == 0 {
            return Ok(());
        }
        let lengths_len = lengths.len();
        lengths.copy_from_slice(&body[..lengths_len]);
        let data = self.accept_lengths()?;
        data.copy_from_slice(&body[lengths_len..]);
        for (index, page) in dest.iter_mut().enumerate() {
            self.decode_page(index, page)?;
        }
        self.finish();
        Ok(())
    }
}
