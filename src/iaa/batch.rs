//! One packet's pages on the device: every page's job is submitted, then
//! the jobs are collected in page order, each ending with the device's
//! result or, for that page alone, a fallback to the CPU.
//!
//! The driver owns what is common to both sides: the work queue, one
//! completion record per page, submission with bounded retries (a full
//! queue first gets the chance to drain while the driver collects an
//! earlier job of the packet), page faults (the faulting address is touched
//! and the descriptor resubmitted once), and the deadline: a job that does
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

/// Attempts of one submission before the driver looks at its other jobs.
const SUBMIT_ATTEMPTS: u32 = 8;
/// How long a page waits for room in a full queue when none of the
/// packet's jobs is on the device (the queue is full of other clients'
/// descriptors) before the CPU does it: about the time the CPU would take.
const QUEUE_FULL_WAIT: Duration = Duration::from_micros(50);

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
    /// `desc` must be submitted (the queue refused it).
    Ready,
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
    /// When the queue first refused the job's current descriptor.
    refused: Option<Instant>,
}

impl Job {
    const IDLE: Job = Job {
        state: State::Pending,
        desc: Descriptor([0; 64]),
        since: None,
        faults: 0,
        started: false,
        refused: None,
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

    /// Runs one packet through the device. Every page is emitted exactly
    /// once, in order, unless `emit` fails.
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
        for job in &mut self.jobs[..count] {
            *job = Job::IDLE;
        }
        let (mut started, mut finished) = (0, 0);
        while finished < count {
            let mut progressed = false;
            while started < count && self.disabled.is_none() {
                if !self.start(started, work) {
                    break;
                }
                started += 1;
                progressed = true;
            }
            let mut scan = finished;
            while scan < started {
                match self.advance(scan, work) {
                    Advance::Moved => progressed = true,
                    Advance::Waiting => break,
                    Advance::Still => {}
                }
                scan += 1;
            }
            while finished < count {
                let State::Done(verdict) = self.jobs[finished].state else {
                    break;
                };
                if let Err(error) = work.emit(finished, verdict) {
                    self.settle(finished + 1, count, work);
                    return Err(error);
                }
                finished += 1;
                progressed = true;
            }
            if finished == count || progressed {
                continue;
            }
            if self.disabled.is_some() {
                // Pages never started after the device was given up.
                for job in &mut self.jobs[finished..count] {
                    if job.state == State::Pending {
                        job.state = State::Done(Verdict::Cpu {
                            reason: Fallback::Disabled,
                            started: false,
                        });
                    }
                }
                continue;
            }
            self.unblock(finished, started, work);
            // A refused first descriptor that went to the CPU: the page is done.
            if started < count && matches!(self.jobs[started].state, State::Done(_)) {
                started += 1;
            }
        }
        Ok(())
    }

    /// Starts page `index` (or retries its refused first descriptor);
    /// false when the queue refused it.
    fn start<W: Work>(&mut self, index: usize, work: &mut W) -> bool {
        if !self.jobs[index].started {
            let record = self.record(index);
            let Some(desc) = work.first(index, record as u64) else {
                self.jobs[index].state = State::Done(Verdict::NoWork);
                return true;
            };
            let job = &mut self.jobs[index];
            job.started = true;
            job.desc = desc;
            job.state = State::Ready;
        }
        self.submit(index) != State::Ready
    }

    /// Submits the job's descriptor; its new state.
    fn submit(&mut self, index: usize) -> State {
        let record = self.record(index);
        // SAFETY: the record belongs to this job, which is not in flight.
        unsafe { clear_record(record) };
        let desc = self.jobs[index].desc;
        let queue = self.queue().clone();
        let mut outcome = Submitted::Retry;
        for attempt in 0..SUBMIT_ATTEMPTS {
            outcome = queue.try_submit(&desc);
            if outcome != Submitted::Retry {
                break;
            }
            self.counters.submit_retries += 1;
            if attempt + 1 < SUBMIT_ATTEMPTS {
                std::hint::spin_loop();
            }
        }
        let job = &mut self.jobs[index];
        job.state = match outcome {
            Submitted::Accepted => {
                self.counters.descriptors += 1;
                job.since = Some(Instant::now());
                job.refused = None;
                State::InFlight
            }
            Submitted::Retry => {
                job.refused.get_or_insert_with(Instant::now);
                State::Ready
            }
            Submitted::Failed(_) => {
                self.counters.count(Fallback::Error);
                State::Done(Verdict::Cpu {
                    reason: Fallback::Error,
                    started: true,
                })
            }
        };
        job.state
    }

    /// Moves page `index` on if its job has completed (or retries a refused
    /// submission).
    fn advance<W: Work>(&mut self, index: usize, work: &mut W) -> Advance {
        match self.jobs[index].state {
            State::Done(_) | State::Pending => Advance::Still,
            State::Ready => {
                if self.disabled.is_some() {
                    return self.fall_back(index, Fallback::Timeout);
                }
                match self.submit(index) {
                    State::Ready => Advance::Waiting,
                    _ => Advance::Moved,
                }
            }
            State::InFlight => {
                // SAFETY: this job's record.
                if unsafe { record_status(self.record(index)) } == 0 {
                    return Advance::Waiting;
                }
                self.completed(index, work);
                Advance::Moved
            }
        }
    }

    fn fall_back(&mut self, index: usize, reason: Fallback) -> Advance {
        self.counters.count(reason);
        let started = self.jobs[index].started;
        self.jobs[index].state = State::Done(Verdict::Cpu { reason, started });
        Advance::Moved
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
            let job = &mut self.jobs[index];
            let ours =
                work.owns(completion.fault_addr) || self.records.contains(completion.fault_addr);
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
            Step::Fallback(reason) => {
                self.fall_back(index, reason);
            }
            Step::Submit(desc) if self.disabled.is_none() => {
                let job = &mut self.jobs[index];
                job.desc = desc;
                job.faults = 0;
                self.submit(index);
            }
            Step::Submit(_) => {
                self.fall_back(index, Fallback::Timeout);
            }
        }
    }

    /// Nothing moved: wait for the first job in flight, or, when the queue
    /// refuses and none of this packet's jobs is on the device, give the
    /// refused page to the CPU.
    fn unblock<W: Work>(&mut self, finished: usize, started: usize, work: &mut W) {
        let in_flight = (finished..started).find(|&i| self.jobs[i].state == State::InFlight);
        if let Some(index) = in_flight {
            let since = self.jobs[index].since.unwrap_or_else(Instant::now);
            // SAFETY: this job's record, alive as long as the driver.
            let done = unsafe {
                wait::until_complete(self.record(index), since + self.timeout, self.wait)
            };
            if done {
                self.completed(index, work);
            } else {
                self.give_up(finished);
            }
            return;
        }
        let refused = (finished..started)
            .find(|&i| self.jobs[i].state == State::Ready)
            .unwrap_or(started);
        if refused < self.jobs.len() {
            let waited = self.jobs[refused]
                .refused
                .map_or(Duration::ZERO, |t| t.elapsed());
            if waited < QUEUE_FULL_WAIT {
                wait::back_off(waited);
            } else {
                self.fall_back(refused, Fallback::QueueFull);
            }
        }
    }

    /// A job did not complete in time: the device is given up for good; the
    /// packet's jobs that are still out are abandoned (their memory is
    /// never reused or freed) and their pages go to the CPU.
    fn give_up(&mut self, from: usize) {
        let queue = self.chosen().map_or_else(String::new, |q| {
            format!("{} {}", q.info.device, q.info.name)
        });
        self.disabled = Some(Disabled {
            queue,
            timeout: self.timeout,
        });
        for index in from..self.jobs.len() {
            match self.jobs[index].state {
                State::InFlight => {
                    self.abandoned = true;
                    self.fall_back(index, Fallback::Timeout);
                }
                State::Ready => {
                    self.fall_back(index, Fallback::Timeout);
                }
                _ => {}
            }
        }
    }

    /// After a failed emit: waits for the packet's jobs still on the device
    /// (until the deadline), so that the next packet can reuse the slots.
    fn settle<W: Work>(&mut self, from: usize, count: usize, work: &mut W) {
        for index in from..count {
            if self.jobs[index].state != State::InFlight {
                continue;
            }
            let since = self.jobs[index].since.unwrap_or_else(Instant::now);
            // SAFETY: this job's record.
            let done = unsafe {
                wait::until_complete(self.record(index), since + self.timeout, self.wait)
            };
            if done {
                if let Some(queue) = self.chosen() {
                    queue.completed();
                }
                self.jobs[index].state = State::Pending;
            } else {
                self.give_up(index);
                return;
            }
        }
        let _ = work;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Advance {
    /// The page's state changed.
    Moved,
    /// The page waits for the device (or for room in the queue).
    Waiting,
    /// Nothing to do for this page.
    Still,
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
