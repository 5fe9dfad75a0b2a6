//! The device: its work queues (bounded FIFOs of 64-byte descriptors) and
//! engines (threads that execute descriptors and write completion records),
//! fault injection, counters and the descriptor recorder.

use std::collections::{BTreeSet, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::atomic::{fence, AtomicU64, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::thread;

use crate::config::{Config, WqMode};
use crate::counters::{hex, Counters};
use crate::descriptor::{Completion, Descriptor, DESCRIPTOR_SIZE, OP_DRAIN};
use crate::exec::{self, status, Context, Observation};
use crate::memory;
use crate::uapi::IDXD_OP_FLAG_CRAV;

pub struct Device {
    pub config: &'static Config,
    pub counters: Counters,
    state: Mutex<State>,
    wake: Condvar,
    executed: AtomicU64,
    recorder: Mutex<Option<(BufWriter<File>, u64)>>,
}

struct Queued {
    wq: usize,
    seq: u64,
    desc: Descriptor,
}

struct State {
    queues: Vec<VecDeque<Queued>>,
    /// Per WQ: sequence numbers accepted and not yet completed (for DRAIN).
    in_flight: Vec<BTreeSet<u64>>,
    next_seq: u64,
    next_queue: usize,
    rng: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submit {
    Accepted,
    /// Shared WQ full: ENQCMD's retry status, or `EAGAIN` from `write()`.
    Retry,
    /// Dedicated WQ full: the descriptor is lost, as on hardware.
    Dropped,
}

static DEVICE: OnceLock<Device> = OnceLock::new();

/// The device, created and its engines started on first use (opening a
/// work queue: never from the instruction handlers, which only find it).
pub fn device() -> &'static Device {
    let device = DEVICE.get_or_init(|| {
        let config = crate::config();
        let depth: Vec<usize> = config.wqs.iter().map(|wq| wq.depth).collect();
        let recorder = config.record.as_ref().and_then(|dir| {
            let path = std::path::Path::new(dir).join(format!("{}.rec", std::process::id()));
            match File::create(&path) {
                Ok(file) => Some((BufWriter::new(file), 0)),
                Err(error) => {
                    eprintln!("iaa-model: cannot record into {}: {error}", path.display());
                    None
                }
            }
        });
        let device = Device {
            counters: Counters::default(),
            state: Mutex::new(State {
                queues: depth.iter().map(|&d| VecDeque::with_capacity(d)).collect(),
                in_flight: depth.iter().map(|_| BTreeSet::new()).collect(),
                next_seq: 0,
                next_queue: 0,
                rng: config.fail_seed.max(1),
            }),
            wake: Condvar::new(),
            executed: AtomicU64::new(0),
            recorder: Mutex::new(recorder),
            config,
        };
        device
    });
    start_engines(device);
    device
}

/// The device if it was ever used (for the statistics at exit).
pub fn existing() -> Option<&'static Device> {
    DEVICE.get()
}

static ENGINES: OnceLock<()> = OnceLock::new();

fn start_engines(device: &'static Device) {
    ENGINES.get_or_init(|| {
        for index in 0..device.config.engines {
            let _ = thread::Builder::new()
                .name(format!("iaa-engine{index}"))
                .spawn(move || device.engine());
        }
    });
}

impl Device {
    /// Hands a descriptor to work queue `wq` (a portal store or a `write()`).
    pub fn submit(&'static self, wq: usize, bytes: [u8; DESCRIPTOR_SIZE]) -> Submit {
        let Some(config) = self.config.wqs.get(wq) else {
            return Submit::Dropped;
        };
        let mut state = self.state.lock().unwrap();
        if state.queues[wq].len() >= config.depth {
            drop(state);
            return match config.mode {
                WqMode::Shared => {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    Submit::Retry
                }
                WqMode::Dedicated => {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    Submit::Dropped
                }
            };
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        state.in_flight[wq].insert(seq);
        state.queues[wq].push_back(Queued {
            wq,
            seq,
            desc: Descriptor::from_bytes(bytes),
        });
        drop(state);
        self.counters.submitted.fetch_add(1, Ordering::Relaxed);
        self.wake.notify_one();
        Submit::Accepted
    }

    fn stalled(&self) -> bool {
        self.config.stall_after > 0
            && self.executed.load(Ordering::Relaxed) >= self.config.stall_after
    }

    fn next(&self) -> Queued {
        let mut state = self.state.lock().unwrap();
        loop {
            if !self.stalled() {
                let count = state.queues.len();
                for step in 0..count {
                    let index = (state.next_queue + step) % count;
                    if let Some(item) = state.queues[index].pop_front() {
                        state.next_queue = (index + 1) % count;
                        return item;
                    }
                }
            }
            state = self.wake.wait(state).unwrap();
        }
    }

    fn engine(&'static self) {
        loop {
            let item = self.next();
            if item.desc.opcode() == OP_DRAIN {
                // Completes once everything submitted before it to this WQ has.
                let mut state = self.state.lock().unwrap();
                while state.in_flight[item.wq].range(..item.seq).next().is_some() {
                    state = self.wake.wait(state).unwrap();
                }
            }
            let mut observation = Observation::default();
            let completion = if self.inject_failure() {
                Completion::status(status::HW_ERROR)
            } else if item.desc.opcode() == OP_DRAIN {
                Completion::status(status::SUCCESS)
            } else {
                let context = Context {
                    wq_block_on_fault: self.config.wqs[item.wq].block_on_fault,
                    corrupt: self.config.corrupt,
                    fault_delay: std::time::Duration::from_micros(self.config.fault_us),
                };
                exec::execute(&item.desc, &context, &mut observation)
            };
            self.counters
                .faults_resolved
                .fetch_add(u64::from(observation.faults_resolved), Ordering::Relaxed);
            self.counters
                .completed(&item.desc, &completion, observation.aecs_read.as_deref());
            self.record(&item, &observation, &completion);
            write_completion(&item.desc, completion);
            self.executed.fetch_add(1, Ordering::Relaxed);
            let mut state = self.state.lock().unwrap();
            state.in_flight[item.wq].remove(&item.seq);
            drop(state);
            self.wake.notify_all();
        }
    }

    fn inject_failure(&self) -> bool {
        let count = self.executed.load(Ordering::Relaxed) + 1;
        if self.config.fail_every > 0 && count % self.config.fail_every == 0 {
            return true;
        }
        if self.config.fail_rate > 0.0 {
            let mut state = self.state.lock().unwrap();
            // xorshift64
            let mut x = state.rng;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            state.rng = x;
            return (x >> 11) as f64 / (1u64 << 53) as f64 <= self.config.fail_rate;
        }
        false
    }

    fn record(&self, item: &Queued, observation: &Observation, completion: &Completion) {
        let mut recorder = self.recorder.lock().unwrap();
        let Some((writer, lines)) = recorder.as_mut() else {
            return;
        };
        if *lines >= self.config.record_limit {
            return;
        }
        *lines += 1;
        let aecs = observation
            .aecs_read
            .as_deref()
            .map_or_else(|| "-".to_string(), hex);
        let _ = writeln!(
            writer,
            "pid={} wq={} seq={} opcode={:#04x} desc={} aecs={} completion={}",
            std::process::id(),
            item.wq,
            item.seq,
            item.desc.opcode(),
            hex(&item.desc.raw),
            aecs,
            hex(&completion.to_bytes())
        );
    }

    pub fn flush_recorder(&self) {
        if let Some((writer, _)) = self.recorder.lock().unwrap().as_mut() {
            let _ = writer.flush();
        }
    }
}

/// Writes the completion record: every field, then the status byte last
/// with release ordering, so a client that sees the status sees the rest.
fn write_completion(desc: &Descriptor, completion: Completion) {
    if desc.flags() & IDXD_OP_FLAG_CRAV == 0 {
        return;
    }
    let addr = desc.completion_addr();
    // IAA completion records are 64-byte aligned; the device cannot write a
    // misaligned one (it would raise a software error instead).
    if addr == 0
        || addr % 64 != 0
        || memory::first_absent(addr, 64).is_some_and(|a| !is_writable_page(a))
    {
        return;
    }
    let bytes = completion.to_bytes();
    // SAFETY: the record belongs to the client that named it in the
    // descriptor; 64 bytes, aligned, mapped. The status byte is written
    // separately below.
    unsafe {
        memory::touch(addr, true);
        std::ptr::copy_nonoverlapping(bytes[1..].as_ptr(), (addr + 1) as *mut u8, 63);
        fence(Ordering::Release);
        AtomicU8::from_ptr(addr as *mut u8).store(bytes[0], Ordering::Release);
    }
}

fn is_writable_page(addr: u64) -> bool {
    let page = memory::page_size() as u64;
    let mut one = 0u8;
    // SAFETY: mincore only inspects the page.
    unsafe {
        libc::mincore(
            (addr & !(page - 1)) as *mut libc::c_void,
            page as usize,
            &mut one,
        ) == 0
    }
}
