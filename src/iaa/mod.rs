//! The Intel IAA path: pages compressed and decompressed by an In-Memory
//! Analytics Accelerator through its user work queues, with no Intel QPL and
//! no libaccel-config (docs/iaa.md).
//!
//! A channel looks for a usable work queue when it is set up ([`route`]);
//! with one, each packet's pages go to the device together and every page
//! that the device does not finish (queue full, error, page fault, timeout)
//! is done on the CPU, alone. Without one, or with `QEMU_QPL_IAA=off`, the
//! channel is the CPU path it always was.

mod aecs;
mod batch;
mod compress;
mod counters;
pub mod cpu;
mod decompress;
mod descriptor;
pub mod discovery;
mod huffman;
pub mod log;
mod memory;
mod queue;
pub mod settings;
// bindgen's output for the kernel's idxd UAPI, compared with a fresh run by
// tests/iaa_uapi_bindings.rs.
#[rustfmt::skip]
#[allow(unsafe_op_in_unsafe_fn)]
mod uapi;
mod wait;

use std::fmt;
use std::sync::Arc;

pub(crate) use batch::{Step, Verdict, Work};
pub(crate) use compress::CompressBuffers;
pub use counters::{Counters, DeviceCounters, Fallback};
pub(crate) use decompress::DecompressBuffers;
pub(crate) use descriptor::{Completion, Descriptor};
pub use settings::{Huffman, Mode, Settings, Submit, Wait};

use batch::Driver;
use queue::WorkQueue;

use crate::error::Error;

/// Where a channel's pages go, decided at setup.
pub enum Route {
    /// The CPU, and why.
    Cpu(String),
    /// The device, through these opened queues (and notes on the ones that
    /// could not be used).
    Iaa {
        queues: Vec<Arc<WorkQueue>>,
        wait: Wait,
        notes: Vec<String>,
    },
}

/// Decides a channel's route from `settings`: discovery, then opening the
/// usable queues. `QEMU_QPL_IAA=require` turns "no usable queue" into an
/// error.
pub fn route(settings: &Settings, page_size: usize) -> Result<Route, Error> {
    let why = if cfg!(miri) {
        "the IAA path is not built for Miri".to_string()
    } else if settings.mode == Mode::Off {
        "QEMU_QPL_IAA=off".to_string()
    } else {
        let features = cpu::Features::detect();
        let found = discovery::discover(settings, features, page_size);
        let wait = settings.wait.unwrap_or(if features.waitpkg {
            Wait::Umwait
        } else {
            Wait::Pause
        });
        let mut queues = Vec::new();
        let mut notes = found.skipped.clone();
        for info in &found.queues {
            match queue::open_shared(info, wait, settings.timeout) {
                Ok(queue) => queues.push(queue),
                Err(why) => notes.push(why),
            }
        }
        if !queues.is_empty() {
            return Ok(Route::Iaa {
                queues,
                wait,
                notes,
            });
        }
        if found.queues.is_empty() {
            found.why_none()
        } else {
            format!("no IAA work queue could be opened: {}", notes.join("; "))
        }
    };
    if settings.mode == Mode::Require {
        return Err(Error::invalid(format!(
            "QEMU_QPL_IAA=require, but the IAA path is unavailable: {why}"
        )));
    }
    Ok(Route::Cpu(why))
}

/// The device machinery of one channel side: the driver and that side's
/// buffers, kept forever if the device may still write them.
pub(crate) struct Device<B: Buffers> {
    pub driver: Driver,
    pub buffers: B,
    /// Notes from setup (queues that were skipped), for the path line.
    pub notes: Vec<String>,
}

/// The buffers of one side, which outlive the channel after a timeout.
pub(crate) trait Buffers {
    fn keep_forever(&mut self);
    fn kind(&self) -> &'static str;
}

impl Buffers for CompressBuffers {
    fn keep_forever(&mut self) {
        CompressBuffers::keep_forever(self);
    }
    fn kind(&self) -> &'static str {
        self.huffman().name()
    }
}

impl Buffers for DecompressBuffers {
    fn keep_forever(&mut self) {
        DecompressBuffers::keep_forever(self);
    }
    fn kind(&self) -> &'static str {
        "decompression"
    }
}

impl<B: Buffers> Device<B> {
    pub fn new(
        queues: Vec<Arc<WorkQueue>>,
        wait: Wait,
        notes: Vec<String>,
        channel: u32,
        max_pages: usize,
        settings: &Settings,
        buffers: B,
    ) -> Result<Self, Error> {
        Ok(Device {
            driver: Driver::new(
                queues,
                channel,
                max_pages,
                wait,
                settings.timeout,
                settings.evict_every,
            )?,
            buffers,
            notes,
        })
    }

    /// Whether the channel still uses the device.
    pub fn usable(&self) -> bool {
        self.driver.disabled.is_none()
    }

    /// Whether the chosen queue blocks on faults (chooses it if needed).
    pub fn block_on_fault(&mut self) -> bool {
        self.driver.queue().info.block_on_fault
    }

    /// The path line: which queue, how, with what.
    pub fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        if let Some(disabled) = &self.driver.disabled {
            return write!(
                out,
                "CPU since IAA timed out: {} did not complete a descriptor within {} ms; the channel no longer uses the device",
                disabled.queue,
                disabled.timeout.as_millis()
            );
        }
        let describe_queue = |out: &mut dyn fmt::Write, q: &WorkQueue| -> fmt::Result {
            write!(
                out,
                "{} {} ({} WQ of {} entries{}, NUMA node {}) via {}",
                q.info.device,
                q.info.name,
                q.info.mode.name(),
                q.info.size,
                if q.info.block_on_fault {
                    ", block on fault"
                } else {
                    ""
                },
                q.info.numa_node,
                q.submit.name()
            )?;
            if let Some(note) = &q.note {
                write!(out, " ({note})")?;
            }
            Ok(())
        };
        write!(out, "IAA: ")?;
        match self.driver.chosen() {
            Some(queue) => describe_queue(out, queue)?,
            None => {
                let queues = self.driver.queues();
                for (k, queue) in queues.iter().enumerate() {
                    if k > 0 {
                        write!(out, ", ")?;
                    }
                    describe_queue(out, queue)?;
                }
                if queues.len() > 1 {
                    write!(out, "; the channel thread's NUMA node picks one")?;
                }
            }
        }
        write!(out, "; {}", self.buffers.kind())?;
        for (k, note) in self.notes.iter().enumerate() {
            write!(out, "{}{note}", if k == 0 { "; skipped: " } else { "; " })?;
        }
        Ok(())
    }
}

impl<B: Buffers> Drop for Device<B> {
    fn drop(&mut self) {
        if self.driver.must_leak() {
            self.buffers.keep_forever();
        }
    }
}
