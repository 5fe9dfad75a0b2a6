//! One opened work queue: its character device, its portal when it can be
//! mapped, and the three ways a descriptor reaches it. Queues are shared by
//! every channel of the process ([`open_shared`]): a dedicated queue can be
//! opened only once, and its depth must be counted across channels, since
//! MOVDIR64B to a full dedicated queue loses the descriptor silently.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use std::time::{Duration, Instant};

use super::descriptor::{self, read_record, status, Descriptor, Fields, DESCRIPTOR_SIZE};
use super::discovery::{WorkQueueInfo, WqMode};
use super::memory::DeviceMemory;
use super::settings::{Submit, Wait};

/// The portal: one page of the WQ's MMIO space.
const PORTAL_SIZE: usize = 4096;
/// NOOPs a new queue may fail before it is not used.
const PROBES: usize = 3;

/// The outcome of one submission attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    Accepted,
    /// The queue is full (ENQCMD's retry status, `EAGAIN`, or a dedicated
    /// queue with all its entries in flight): try again later.
    Retry,
    /// `write()` failed otherwise (its errno).
    Failed(i32),
}

pub struct WorkQueue {
    pub info: WorkQueueInfo,
    fd: libc::c_int,
    portal: Option<NonNull<u8>>,
    /// How descriptors actually reach it (`write()` when the portal could
    /// not be mapped).
    pub submit: Submit,
    /// Why the method differs from discovery's, if it does.
    pub note: Option<String>,
    /// Dedicated queues: entries this process has in flight.
    in_flight: AtomicU32,
}

// SAFETY: the descriptor and the portal are process-wide handles; ENQCMD,
// MOVDIR64B and write() may be issued from any thread at once; the only
// mutable state is atomic.
unsafe impl Send for WorkQueue {}
// SAFETY: as above.
unsafe impl Sync for WorkQueue {}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn describe_open_error(path: &std::path::Path, code: i32) -> String {
    let error = std::io::Error::from_raw_os_error(code);
    match code {
        libc::EACCES | libc::EPERM => format!(
            "{}: no permission ({error}): the user running QEMU needs read and write access to it",
            path.display()
        ),
        libc::ENOENT | libc::ENODEV | libc::ENXIO => {
            format!("{}: no such character device ({error})", path.display())
        }
        libc::EBUSY => format!(
            "{}: busy ({error}): a dedicated queue is opened by another process",
            path.display()
        ),
        _ => format!("{}: cannot be opened ({error})", path.display()),
    }
}

impl WorkQueue {
    /// Opens the queue's character device and, for the instructions, maps
    /// its portal as Intel QPL does; a portal that cannot be mapped means
    /// `write()`.
    pub fn open(info: &WorkQueueInfo) -> Result<WorkQueue, String> {
        let path = CString::new(info.path.as_os_str().as_bytes())
            .map_err(|_| format!("{}: a NUL in the path", info.path.display()))?;
        // SAFETY: a NUL-terminated path; libc's open (which the IAA model
        // interposes when it is preloaded).
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(describe_open_error(&info.path, errno()));
        }
        let mut queue = WorkQueue {
            info: info.clone(),
            fd,
            portal: None,
            submit: info.submit,
            note: None,
            in_flight: AtomicU32::new(0),
        };
        if info.submit != Submit::Write {
            // SAFETY: mapping one page of the queue's portal, write-only and
            // shared, prefaulted, as Intel QPL 1.9 does.
            let portal = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    PORTAL_SIZE,
                    libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_POPULATE,
                    fd,
                    0,
                )
            };
            if portal == libc::MAP_FAILED {
                let error = std::io::Error::last_os_error();
                queue.note = Some(format!(
                    "the portal cannot be mapped ({error}): write() instead of {}",
                    info.submit.name()
                ));
                queue.submit = Submit::Write;
            } else {
                queue.portal = NonNull::new(portal.cast());
            }
        }
        Ok(queue)
    }

    /// Submits a NOOP and waits for its success, as Intel QPL probes a queue
    /// before it uses `write()`: a queue that takes descriptors but never
    /// completes them, or fails every one of three NOOPs, is not used.
    fn probe(&self, wait: Wait, timeout: Duration) -> Result<(), String> {
        let mut record = DeviceMemory::new("the IAA probe's completion record", 64)
            .map_err(|error| error.to_string())?;
        let desc = Descriptor::new(&Fields {
            opcode: descriptor::OP_NOOP,
            flags: descriptor::FLAG_CRAV | descriptor::FLAG_RCR,
            completion: record.at(0) as u64,
            ..Fields::default()
        });
        let deadline = Instant::now() + timeout;
        let mut last = 0;
        for _ in 0..PROBES {
            // SAFETY: no descriptor naming the record is in flight.
            unsafe { descriptor::clear_record(record.at(0)) };
            loop {
                match self.try_submit(&desc) {
                    Submitted::Accepted => break,
                    Submitted::Retry if Instant::now() < deadline => std::thread::yield_now(),
                    Submitted::Retry => return Err("the queue stays full".into()),
                    Submitted::Failed(code) => {
                        return Err(format!(
                            "write() failed ({})",
                            std::io::Error::from_raw_os_error(code)
                        ))
                    }
                }
            }
            // SAFETY: the record is this function's, alive until it returns
            // (or kept forever below).
            let done = unsafe { super::wait::until_complete(record.at(0), deadline, wait) };
            if !done {
                // The device may still write the record some day.
                record.keep_forever();
                return Err(format!(
                    "a NOOP did not complete within {} ms",
                    timeout.as_millis()
                ));
            }
            self.completed();
            // SAFETY: the status is set: the device is done with the record.
            last = unsafe { read_record(record.at(0)) }.status;
            if last == status::SUCCESS {
                return Ok(());
            }
        }
        Err(format!("{PROBES} NOOPs completed with status {last:#04x}"))
    }

    /// One attempt to hand `desc` to the queue. A dedicated queue first
    /// takes one of its entries; [`WorkQueue::completed`] gives it back.
    pub fn try_submit(&self, desc: &Descriptor) -> Submitted {
        let dedicated = self.info.mode == WqMode::Dedicated;
        if dedicated && !self.reserve() {
            return Submitted::Retry;
        }
        let outcome = match (self.submit, self.portal) {
            (Submit::Enqcmd, Some(portal)) => {
                if enqcmd(portal, desc) {
                    Submitted::Accepted
                } else {
                    Submitted::Retry
                }
            }
            (Submit::Movdir64b, Some(portal)) => {
                movdir64b(portal, desc);
                Submitted::Accepted
            }
            _ => self.write(desc),
        };
        if dedicated && outcome != Submitted::Accepted {
            self.completed();
        }
        outcome
    }

    fn write(&self, desc: &Descriptor) -> Submitted {
        // SAFETY: writing the 64 bytes of a live descriptor to the queue's
        // file, as the kernel's idxd_cdev_write takes them.
        let written = unsafe { libc::write(self.fd, desc.0.as_ptr().cast(), DESCRIPTOR_SIZE) };
        match written {
            n if n == DESCRIPTOR_SIZE as isize => Submitted::Accepted,
            -1 if errno() == libc::EAGAIN => Submitted::Retry,
            -1 => Submitted::Failed(errno()),
            _ => Submitted::Failed(libc::EIO),
        }
    }

    fn reserve(&self) -> bool {
        let size = self.info.size;
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < size).then_some(n + 1)
            })
            .is_ok()
    }

    /// A descriptor submitted to this queue has completed (its record's
    /// status was seen): a dedicated queue's entry is free again. Never
    /// called for an abandoned descriptor, whose entry the device may
    /// still hold.
    pub fn completed(&self) {
        if self.info.mode == WqMode::Dedicated {
            let _ = self
                .in_flight
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }
}

impl Drop for WorkQueue {
    fn drop(&mut self) {
        // SAFETY: the mapping and the descriptor were made in `open` and are
        // released once; no channel holds the queue any more.
        unsafe {
            if let Some(portal) = self.portal {
                libc::munmap(portal.as_ptr().cast(), PORTAL_SIZE);
            }
            libc::close(self.fd);
        }
    }
}

/// ENQCMD of `desc` to the shared queue behind `portal`: true when the
/// queue accepted it (ZF clear), false for its retry status.
fn enqcmd(portal: NonNull<u8>, desc: &Descriptor) -> bool {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        let retry: u8;
        // SAFETY: SFENCE orders the stores that filled the job's buffers
        // before the descriptor reaches the device. ENQCMD (F2 0F 38 F8 /r,
        // here `enqcmd rax, [rdx]`; written as bytes for assemblers without
        // it) reads the 64-byte descriptor at rdx and stores it to the
        // mapped portal at rax; it sets ZF when the queue refused it. It is
        // used only on CPUs whose CPUID lists it, or when a test forces it
        // on the IAA model, which emulates it.
        unsafe {
            std::arch::asm!(
                "sfence",
                ".byte 0xf2, 0x0f, 0x38, 0xf8, 0x02",
                "setz {retry}",
                retry = out(reg_byte) retry,
                in("rax") portal.as_ptr(),
                in("rdx") desc.0.as_ptr(),
                options(nostack),
            );
        }
        retry == 0
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    {
        let _ = (portal, desc);
        false
    }
}

/// MOVDIR64B of `desc` to the dedicated queue behind `portal` (no status:
/// the caller has reserved an entry).
fn movdir64b(portal: NonNull<u8>, desc: &Descriptor) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: SFENCE as for ENQCMD; MOVDIR64B (66 0F 38 F8 /r, here
    // `movdir64b rax, [rdx]`) copies the 64 bytes at rdx to the portal at
    // rax (64-byte aligned: the start of the mapped page) as one store. Used
    // on CPUs whose CPUID lists it, or forced on the IAA model.
    unsafe {
        std::arch::asm!(
            "sfence",
            ".byte 0x66, 0x0f, 0x38, 0xf8, 0x02",
            in("rax") portal.as_ptr(),
            in("rdx") desc.0.as_ptr(),
            options(nostack, preserves_flags),
        );
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = (portal, desc);
}

/// Queues opened by this process, by path: every channel shares them.
static OPENED: Mutex<Vec<(std::path::PathBuf, Weak<WorkQueue>)>> = Mutex::new(Vec::new());

/// The process's handle on the queue `info` describes, opened and probed
/// with a NOOP on first use.
pub fn open_shared(
    info: &WorkQueueInfo,
    wait: Wait,
    timeout: Duration,
) -> Result<Arc<WorkQueue>, String> {
    let mut opened = OPENED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    opened.retain(|(_, queue)| queue.strong_count() > 0);
    if let Some(queue) = opened
        .iter()
        .find(|(path, _)| *path == info.path)
        .and_then(|(_, queue)| queue.upgrade())
    {
        return Ok(queue);
    }
    let queue = WorkQueue::open(info)?;
    queue
        .probe(wait, timeout)
        .map_err(|why| format!("{} {}: {why}", info.device, info.name))?;
    let queue = Arc::new(queue);
    opened.push((info.path.clone(), Arc::downgrade(&queue)));
    Ok(queue)
}
