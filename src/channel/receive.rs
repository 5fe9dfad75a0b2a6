//! The receiving side of one channel: the three steps of every packet, each
//! checking what came off the network before it is used.
//!
//! With an IAA work queue (src/iaa), the device decompresses a packet's
//! streams together; what it does not turn into exactly one page gets the
//! CPU decoder's verdict, so the device changes nothing of what is accepted.

use std::fmt;

use super::iaa_receive::RecvWork;
use super::{allocate, ChannelConfig};
use crate::codec::{DecodeFault, PageDecoder};
use crate::error::{Error, PacketFault};
use crate::iaa::{self, Counters, DecompressBuffers, Device, Route, Settings};
use crate::wire::{self, PageEncoding, LENGTH_BYTES};

/// The destination pages of a packet, handed out one at a time.
pub trait DestPages {
    /// Page `index` (exactly one page), or an error for a bad destination.
    fn page(&mut self, index: usize) -> Result<&mut [u8], Error>;
}

impl<T: AsMut<[u8]>> DestPages for &mut [T] {
    fn page(&mut self, index: usize) -> Result<&mut [u8], Error> {
        let pages = self.len();
        self.get_mut(index)
            .map(AsMut::as_mut)
            .ok_or_else(|| Error::invalid(format!("no destination for page {index} of {pages}")))
    }
}

/// Which engine decompresses a channel's pages.
type Engine = super::engine::Engine<DecompressBuffers>;

/// The fault of page `index` whose stream failed to decode.
pub(super) fn decode_fault(index: usize, page_size: usize, fault: DecodeFault) -> PacketFault {
    let page = index as u32;
    let page_size = page_size as u32;
    match fault {
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
    /// The page of the packet that the last fault was found in.
    fault_page: Option<u32>,
    engine: Engine,
    counters: Counters,
    /// `QEMU_QPL_IAA_LOG`.
    log: Option<std::path::PathBuf>,
}

impl Receiver {
    /// A receiver whose engine follows the environment (`QEMU_QPL_IAA` and
    /// the other switches of docs/iaa.md).
    pub fn new(config: ChannelConfig) -> Result<Receiver, Error> {
        Receiver::with_settings(config, &Settings::from_env()?)
    }

    /// A receiver whose engine follows `settings`.
    pub fn with_settings(config: ChannelConfig, settings: &Settings) -> Result<Receiver, Error> {
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
        let decoder = PageDecoder::try_new().map_err(|failed| Error::OutOfMemory {
            what: "the decoder's tables",
            bytes: failed.bytes,
        })?;
        let engine = match iaa::route(settings, config.page_size())? {
            Route::Cpu(why) => Engine::Cpu(why),
            Route::Iaa {
                queues,
                wait,
                notes,
            } => Engine::Iaa(Box::new(Device::new(
                queues,
                wait,
                notes,
                config.channel,
                max_pages,
                settings,
                DecompressBuffers::new(config.page_size(), max_pages)?,
            )?)),
        };
        Ok(Receiver {
            config,
            decoder,
            lengths,
            data,
            encodings,
            offsets,
            step: ReceiveStep::Idle,
            fault_page: None,
            engine,
            counters: Counters::default(),
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
            .log(self.log.as_deref(), "receiver", channel, None);
        self
    }

    /// One line saying which engine decompresses and why.
    pub fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        self.engine.describe(out)
    }

    fn fault(&mut self, fault: PacketFault) -> Error {
        self.step = ReceiveStep::Idle;
        self.fault_page = fault.page();
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
        self.fault_page = None;
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

    /// The index in its packet of the page in which the last corrupt-packet
    /// error was found, if it concerned one page; cleared by `begin`. With it
    /// the caller names the page by its place in guest memory.
    pub fn fault_page(&self) -> Option<u32> {
        self.fault_page
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
                self.counters.pages_raw += 1;
                Ok(())
            }
            PageEncoding::Deflate(len) => {
                let stream = &self.data[start..start + len as usize];
                let result = self.decoder.decode(stream, dest);
                self.counters.pages_cpu += u64::from(result.is_ok());
                result
            }
        };
        result.map_err(|fault| self.fault(decode_fault(index, page_size, fault)))
    }

    /// Step 3 for the whole packet: writes every page into `dest`, on the
    /// device when the channel uses one, with exactly the CPU path's
    /// verdicts. On an error the step ends: pages from the failing one on
    /// hold unspecified bytes.
    pub fn decode_pages(&mut self, dest: &mut dyn DestPages) -> Result<(), Error> {
        let pages = self.pending_pages() as usize;
        let result = match &mut self.engine {
            Engine::Iaa(device) if device.usable() => {
                let block_on_fault = device.block_on_fault();
                let Device {
                    driver, buffers, ..
                } = &mut **device;
                let mut work = RecvWork {
                    channel: self.config.channel,
                    page_size: self.config.page_size(),
                    data: &self.data,
                    offsets: &self.offsets[..pages],
                    encodings: &self.encodings[..pages],
                    buffers,
                    decoder: &mut self.decoder,
                    dest,
                    counters: &mut self.counters,
                    block_on_fault,
                };
                driver.run(&mut work)
            }
            _ => (0..pages).try_for_each(|index| {
                let page = dest.page(index)?;
                self.decode_page(index, page)
            }),
        };
        match &result {
            Err(Error::Packet { fault, .. }) => {
                self.fault_page = fault.page();
                self.step = ReceiveStep::Idle;
            }
            _ => self.finish(),
        }
        result
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
        let mut dest = dest;
        self.decode_pages(&mut dest)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let counters = self.counters();
        let channel = self.config.channel;
        self.engine
            .log(self.log.as_deref(), "receiver", channel, Some(&counters));
    }
}
