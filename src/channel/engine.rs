//! Which engine works a channel's pages (the CPU, and why, or an IAA device),
//! and the `QEMU_QPL_IAA_LOG` lines a channel writes about it: the same for
//! senders and receivers.

use std::fmt;
use std::path::Path;

use crate::iaa::{self, Buffers, Counters, Device};

pub(super) enum Engine<B: Buffers> {
    /// The CPU, and why.
    Cpu(String),
    Iaa(Box<Device<B>>),
}

impl<B: Buffers> Engine<B> {
    /// The channel's `counters` with the device's own filled in.
    pub fn counters(&self, mut counters: Counters) -> Counters {
        if let Engine::Iaa(device) = self {
            counters.device = device.driver.counters;
        }
        counters
    }

    /// Whether packets go to the device now.
    pub fn uses_iaa(&self) -> bool {
        matches!(self, Engine::Iaa(device) if device.usable())
    }

    /// One line saying which engine works the pages and why.
    pub fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        match self {
            Engine::Cpu(why) => write!(out, "CPU: {why}"),
            Engine::Iaa(device) => device.describe(out),
        }
    }

    /// Appends the channel's line to `log`, if there is one: at setup which
    /// engine and why; at the end (`done`) its counters too.
    pub fn log(&self, log: Option<&Path>, side: &str, channel: u32, done: Option<&Counters>) {
        let Some(file) = log else { return };
        let mut line = String::new();
        let _ = self.describe(&mut line);
        let pid = std::process::id();
        let line = match done {
            None => format!("qemu-qpl pid {pid} {side} channel {channel}: {line}"),
            Some(counters) => format!(
                "qemu-qpl pid {pid} {side} channel {channel} done: {}; {line}",
                iaa::log::counters(counters)
            ),
        };
        iaa::log::append(file, &line);
    }
}
