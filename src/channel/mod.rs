//! One sender and one receiver per multifd channel.
//!
//! All buffers are allocated when the channel is set up; preparing or receiving
//! a packet allocates nothing. The objects know nothing of pointers: the C
//! boundary (`abi.rs`) turns pointers into slices (or, for guest pages that may
//! change under us, into a [`PageSource`]) before calling in here.

mod auto_level;
mod engine;
mod iaa_receive;
mod iaa_send;
mod layout;
mod receive;
mod send;

pub use auto_level::AutoLevel;
pub use receive::{DestPages, Receiver};
pub use send::{PageSource, PreparedPacket, Segment, Sender};

use crate::error::Error;

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
    pub(crate) fn validate(&self) -> Result<(), Error> {
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

    pub(crate) fn page_size(&self) -> usize {
        self.page_size as usize
    }

    pub(crate) fn max_pages(&self) -> usize {
        self.pages_per_packet as usize
    }
}

/// Allocates a zeroed buffer, reporting failure instead of aborting.
pub(crate) fn allocate(what: &'static str, bytes: usize) -> Result<Vec<u8>, Error> {
    let mut buffer = Vec::new();
    buffer
        .try_reserve_exact(bytes)
        .map_err(|_| Error::OutOfMemory { what, bytes })?;
    buffer.resize(bytes, 0);
    Ok(buffer)
}
