//! One packet's pages on the device: every page's job is submitted, then
//! the jobs are collected in page order, each ending with the device's
//! result or, for that page alone, a fallback to the CPU.
//!
//! The driver owns what is common to both sides: the work queue, one
//! completion record per page, submission with bounded retries (a queue
//! still full after them sends the page to the CPU, as upstream does, so
//! that the CPU works while the device does), page faults (the faulting
//! address is touched and the descriptor resubmitted once), and the
//! deadline: a job that does
//! not complete in time is abandoned, the channel uses the CPU for good, and
//! every buffer the device might still write is never reused or freed. The
//! side-specific work (which descriptors, what a result means, where it
//! goes) is a [`Work`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::counters::{DeviceCounters, Fallback};
use super::descriptor::{
    clear_record, read_record, record_status, Completion, Descriptor, RECORD_SIZE,
};
use super::memory::DeviceMemory;
use super::queue::{Submitted, WorkQueue};
use super::settings::Wait;
use super::wait;
use crate::error::Error;

/// A refused submission is tried again for this long (and at least
/// `SUBMIT_ATTEMPTS` times) before the page goes to the CPU: a few
/// descriptors' time on a device, well under what the CPU takes for a page
/// (upstream QEMU tries 4 times).
const SUBMIT_BUDGET: Duration = Duration::from_micros(10);
const SUBMIT_ATTEMPTS: u32 = 4;

/// What happened to one page, handed to [`Work::emit`] in page order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The page needed no device work (a raw page on the receiver).
    NoWork,
    /// The device's final completion for the page.
    Device(Completion),
    /// The CPU must do this page; `started`: [`Work::first`] ran for it.
    Cpu { reason: Fallback, started: bool },
}

/// What follows a completed descriptor.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// The page is finished with this completion.
    Done,
    /// Another descriptor for the page (a second stage).
    Submit(Descriptor),
    /// The completion is not usable: the CPU does the page.
    Fallback(Fallback),
}

/// One side's device work for a packet.
pub trait Work {
    /// Pages in the packet.
    fn count(&self) -> usize;
    /// Page `index`'s first descriptor, completion record at `record`;
    /// `None` when the page needs no device work.
    fn first(&mut self, index: usize, record: u64) -> Option<Descriptor>;
    /// Page `index`'s descriptor `desc` completed with `completion`.
    fn next(
        &mut self,
        index: usize,
        desc: &Descriptor,
        completion: &Completion,
        record: u64,
    ) -> Step;
    /// Page `index` is finished (called in page order). An error ends the
    /// packet once every job still in flight has completed or been abandoned.
    fn emit(&mut self, index: usize, verdict: Verdict) -> Result<(), Error>;
    /// Whether `addr` lies in memory of this side that the device reads or
    /// writes (a page-fault address is only touched then).
    fn owns(&self, addr: u64) -> bool;
    /// Test switch: give the device output buffers' pages back to the kernel.
    fn evict(&mut self);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not started.
    Pending,
    /// `desc` is on the device.
    InFlight,
    Done(Verdict),
}

#[derive(Clone, Copy)]
struct Job {
    state: State,
    desc: Descriptor,
    since: Option<Instant>,
    /// Page faults resubmitted for this job's current descriptor.
    faults: u8,
    started: bool,
}

impl Job {
    const IDLE: Job = Job {
        state: State::Pending,
        desc: Descriptor([0; 64]),
        since: None,
        faults: 0,
        started: false,
    };
}

/// Why a channel stopped using the device for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disabled {
    pub queue: String,
    pub timeout: Duration,
}

pub struct Driver {
    queues: Vec<Arc<WorkQueue>>,
    chosen: Option<usize>,
    channel: u32,
    records: DeviceMemory,
    jobs: Vec<Job>,
    wait: Wait,
    timeout: Duration,
    evict_every: u32,
    packets: u64,
    pub counters: DeviceCounters,
    pub disabled: Option<Disabled>,
    /// Jobs were abandoned on the device: its memory is never freed.
    abandoned: bool,
}

impl Driver {
    /// A driver for packets of up to `max_pages`, over `queues` (at least
    /// one), all allocated here.
    pub fn new(
        queues: Vec<Arc<WorkQueue>>,
        channel: u32,
        max_pages: usize,
        wait: Wait,
        timeout: Duration,
        evict_every: u32,
    ) -> Result<Driver, Error> {
        let records = DeviceMemory::new("the IAA completion records", max_pages * RECORD_SIZE)?;
        let mut jobs = Vec::new();
        jobs.try_reserve_exact(max_pages)
            .map_err(|_| Error::OutOfMemory {
                what: "the IAA job table",
                bytes: max_pages * std::mem::size_of::<Job>(),
            })?;
        jobs.resize(max_pages, Job::IDLE);
        Ok(Driver {
            queues,
            chosen: None,
            channel,
            records,
            jobs,
            wait,
            timeout,
            evict_every,
            packets: 0,
            counters: DeviceCounters::default(),
            disabled: None,
            abandoned: false,
        })
    }

    /// The queue this channel submits to: chosen at its first packet, from
    /// the channel thread, among the queues on that thread's NUMA node
    /// (all queues when none is), spread over channels by number.
    pub fn queue(&mut self) -> &Arc<WorkQueue> {
        let index = *self.chosen.get_or_insert_with(|| {
            let nodes = self.queues.iter().map(|q| q.info.numa_node);
            pick_queue(nodes, super::cpu::current_node(), self.channel)
        });
        &self.queues[index]
    }

    /// The chosen queue, once a packet has run.
    pub fn chosen(&self) -> Option<&Arc<WorkQueue>> {
        self.chosen.map(|i| &self.queues[i])
    }

    pub fn queues(&self) -> &[Arc<WorkQueue>] {
        &self.queues
    }

    /// Whether the device's memory must outlive the channel.
    pub fn must_leak(&self) -> bool {
        self.abandoned
    }

    fn record(&self, index: usize) -> *mut u8 {
        self.records.at(index * RECORD_SIZE)
    }

    /// Runs one packet through the device: every page's descriptor is
    /// submitted, then the pages are finished and emitted in order. Every
    /// page is emitted exactly once, unless `emit` fails.
    pub fn run<W: Work>(&mut self, work: &mut W) -> Result<(), Error> {
        let count = work.count();
        if count > self.jobs.len() {
            return Err(Error::internal(format!(
                "{count} pages for an IAA driver of {}",
                self.jobs.len()
            )));
        }
        self.queue();
        self.packets += 1;
        if self.evict_every > 0 && self.packets % u64::from(self.evict_every) == 0 {
            work.evict();
        }
        for index in 0..count {
            self.jobs[index] = Job::IDLE;
            self.start(index, work);
        }
        for index in 0..count {
            self.finish(index, count, work);
            let State::Done(verdict) = self.jobs[index].state else {
                return Err(Error::internal(format!("page {index} was not finished")));
            };
            if let Err(error) = work.emit(index, verdict) {
                self.settle(index + 1, count);
                return Err(error);
            }
        }
        Ok(())
    }

    /// Submits page `index`'s first descriptor (or finds it needs none).
    fn start<W: Work>(&mut self, index: usize, work: &mut W) {
        if self.disabled.is_some() {
            self.jobs[index].state = State::Done(Verdict::Cpu {
                reason: Fallback::Disabled,
                started: false,
            });
            return;
        }
        let record = self.record(index);
        let Some(desc) = work.first(index, record as u64) else {
            self.jobs[index].state = State::Done(Verdict::NoWork);
            return;
        };
        let job = &mut self.jobs[index];
        job.started = true;
        job.desc = desc;
        self.submit(index);
    }

    /// Submits the job's descriptor: in flight, or, when the queue refuses
    /// it after the retries (as upstream does) or `write()` fails, the page
    /// goes to the CPU.
    fn submit(&mut self, index: usize) {
        let record = self.record(index);
        // SAFETY: the record belongs to this job, which is not in flight.
        unsafe { clear_record(record) };
        let desc = self.jobs[index].desc;
        let queue = self.queue().clone();
        let mut outcome = queue.try_submit(&desc);
        if outcome == Submitted::Retry {
            let start = Instant::now();
            let mut attempts = 1;
            while outcome == Submitted::Retry
                && (attempts < SUBMIT_ATTEMPTS || start.elapsed() < SUBMIT_BUDGET)
            {
                self.counters.submit_retries += 1;
                std::hint::spin_loop();
                outcome = queue.try_submit(&desc);
                attempts += 1;
            }
        }
        match outcome {
            Submitted::Accepted => {
                self.counters.descriptors += 1;
                let job = &mut self.jobs[index];
                job.since = Some(Instant::now());
                job.state = State::InFlight;
            }
            Submitted::Retry => self.fall_back(index, Fallback::QueueFull),
            Submitted::Failed(_) => self.fall_back(index, Fallback::Error),
        }
    }

    fn fall_back(&mut self, index: usize, reason: Fallback) {
        self.counters.count(reason);
        let started = self.jobs[index].started;
        self.jobs[index].state = State::Done(Verdict::Cpu { reason, started });
    }

    /// Takes page `index` to its end: its job's completions (next stages,
    /// page faults) until it is done, moving the later pages' completed
    /// jobs on meanwhile, so that their next stages reach the device.
    fn finish<W: Work>(&mut self, index: usize, count: usize, work: &mut W) {
        while self.jobs[index].state == State::InFlight {
            for later in index..count {
                if self.jobs[later].state == State::InFlight
                    // SAFETY: this job's record.
                    && unsafe { record_status(self.record(later)) } != 0
                {
                    self.completed(later, work);
                }
            }
            if self.jobs[index].state != State::InFlight {
                break;
            }
            let since = self.jobs[index].since.unwrap_or_else(Instant::now);
            // SAFETY: this job's record, alive as long as the driver.
            let done = unsafe {
                wait::until_complete(self.record(index), since + self.timeout, self.wait)
            };
            if !done {
                self.give_up(index, count);
            }
        }
    }

    /// Page `index`'s descriptor has completed: page faults, next stage or done.
    fn completed<W: Work>(&mut self, index: usize, work: &mut W) {
        let record = self.record(index);
        // SAFETY: the status was seen set: the device is done with the record.
        let completion = unsafe { read_record(record) };
        if let Some(queue) = self.chosen() {
            queue.completed();
        }
        if let Some(write) = completion.page_fault() {
            self.counters.page_faults += 1;
            let ours =
                work.owns(completion.fault_addr) || self.records.contains(completion.fault_addr);
            let job = &mut self.jobs[index];
            if job.faults == 0 && self.disabled.is_none() && ours {
                job.faults = 1;
                // SAFETY: the address lies in this side's device memory
                // (`owns`), and no job of the packet is writing it: the
                // faulting one has completed and pages do not share slots.
                unsafe { touch(completion.fault_addr, write) };
                self.submit(index);
                return;
            }
            self.fall_back(index, Fallback::PageFault);
            return;
        }
        let desc = self.jobs[index].desc;
        match work.next(index, &desc, &completion, record as u64) {
            Step::Done => self.jobs[index].state = State::Done(Verdict::Device(completion)),
            Step::Fallback(reason) => self.fall_back(index, reason),
            Step::Submit(desc) if self.disabled.is_none() => {
                let job = &mut self.jobs[index];
                job.desc = desc;
                job.faults = 0;
                self.submit(index);
            }
            Step::Submit(_) => self.fall_back(index, Fallback::Timeout),
        }
    }

    /// A job did not complete in time: the device is given up for good; the
    /// packet's jobs that are still out are abandoned (their memory is
    /// never reused or freed) and their pages go to the CPU.
    fn give_up(&mut self, from: usize, count: usize) {
        let queue = self.chosen().map_or_else(String::new, |q| {
            format!("{} {}", q.info.device, q.info.name)
        });
        self.disabled = Some(Disabled {
            queue,
            timeout: self.timeout,
        });
        for index in from..count {
            if self.jobs[index].state == State::InFlight {
                self.abandoned = true;
                self.fall_back(index, Fallback::Timeout);
            }
        }
    }

    /// After a failed emit: waits for the packet's jobs still on the device
    /// (until the deadline), so that the next packet can reuse the slots.
    fn settle(&mut self, from: usize, count: usize) {
        for index in from..count {
            if self.jobs[index].state != State::InFlight {
                continue;
            }
            let since = self.jobs[index].since.unwrap_or_else(Instant::now);
            // SAFETY: this job's record.
            let done = unsafe {
                wait::until_complete(self.record(index), since + self.timeout, self.wait)
            };
            if !done {
                self.give_up(index, count);
                return;
            }
            if let Some(queue) = self.chosen() {
                queue.completed();
            }
            self.jobs[index].state = State::Pending;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if self.abandoned {
            // The device may still write the abandoned jobs' records.
            self.records.keep_forever();
        }
    }
}

/// The index of the queue for `channel` among queues on NUMA nodes
/// `nodes`: the queues on `node` (all of them when none is) in turn by
/// channel number.
fn pick_queue(nodes: impl Iterator<Item = i32> + Clone, node: Option<i32>, channel: u32) -> usize {
    let local = nodes.clone().filter(|&n| Some(n) == node).count();
    let all = nodes.clone().count().max(1);
    if local == 0 {
        return channel as usize % all;
    }
    let nth = channel as usize % local;
    nodes
        .enumerate()
        .filter(|&(_, n)| Some(n) == node)
        .nth(nth)
        .map_or(0, |(index, _)| index)
}

/// Makes the page at `addr` present, as the OS does for a device's page
/// request: a read, or for a write fault a compare-and-swap of one byte with
/// itself (dirtying the page without changing a byte).
///
/// # Safety
/// `addr` lies in memory of this library that is mapped readable and
/// writable and that no other thread writes.
unsafe fn touch(addr: u64, write: bool) {
    let byte = addr as *mut u8;
    if write {
        // SAFETY: the caller's guarantee.
        let atomic = unsafe { std::sync::atomic::AtomicU8::from_ptr(byte) };
        let value = atomic.load(std::sync::atomic::Ordering::Relaxed);
        let _ = atomic.compare_exchange(
            value,
            value,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
    } else {
        // SAFETY: the caller's guarantee.
        unsafe { std::ptr::read_volatile(byte) };
    }
}

#[cfg(test)]
mod tests {
    use super::pick_queue;

    #[test]
    fn channels_prefer_their_node_and_spread() {
        let nodes = [0, 1, 0, 1, 1];
        let pick = |node, channel| pick_queue(nodes.iter().copied(), node, channel);
        assert_eq!(
            [
                pick(Some(1), 0),
                pick(Some(1), 1),
                pick(Some(1), 2),
                pick(Some(1), 3)
            ],
            [1, 3, 4, 1]
        );
        assert_eq!([pick(Some(0), 0), pick(Some(0), 1)], [0, 2]);
        // No queue on the thread's node (or no node known): all queues in turn.
        assert_eq!(
            [pick(Some(7), 0), pick(Some(7), 4), pick(None, 6)],
            [0, 4, 1]
        );
    }
}
