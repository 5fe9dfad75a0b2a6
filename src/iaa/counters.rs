//! What a channel counts: pages by path, fallbacks by reason, page faults,
//! descriptors. The C ABI hands them to the shim (`QemuQplCounters`).

/// Why one page went to the CPU although the channel uses IAA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The queue refused the descriptor after the retries, with none of the
    /// packet's other jobs on the device to wait for.
    QueueFull,
    /// An error completion (or a `write()` that failed).
    Error,
    /// A page fault again after touching the page and resubmitting.
    PageFault,
    /// The device did not complete in time: the channel gave it up.
    Timeout,
    /// The receiver's device did not decode the stream to exactly one page:
    /// the CPU decoder gives the verdict.
    Rejected,
    /// The channel had given the device up earlier in the packet.
    Disabled,
}

/// The device side's counts (the batch driver's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    pub descriptors: u64,
    pub submit_retries: u64,
    pub page_faults: u64,
    pub fallback_queue_full: u64,
    pub fallback_error: u64,
    pub fallback_page_fault: u64,
    pub fallback_timeout: u64,
    pub fallback_rejected: u64,
}

impl DeviceCounters {
    pub fn count(&mut self, reason: Fallback) {
        let counter = match reason {
            Fallback::QueueFull => &mut self.fallback_queue_full,
            Fallback::Error => &mut self.fallback_error,
            Fallback::PageFault => &mut self.fallback_page_fault,
            Fallback::Timeout => &mut self.fallback_timeout,
            Fallback::Rejected => &mut self.fallback_rejected,
            Fallback::Disabled => return,
        };
        *counter += 1;
    }
}

/// Everything one channel counted since it was set up.
///
/// Every page is counted once: `pages_iaa + pages_cpu + pages_raw` is the
/// number of pages the channel sent or received. A page that travels raw
/// counts as raw whichever engine found that it does not shrink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Streams compressed (sender) or decompressed (receiver) by the device.
    pub pages_iaa: u64,
    /// Streams compressed or decompressed on the CPU, fallbacks included.
    pub pages_cpu: u64,
    /// Pages sent or received raw.
    pub pages_raw: u64,
    pub device: DeviceCounters,
}
