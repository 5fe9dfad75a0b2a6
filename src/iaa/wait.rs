//! Waiting for a completion record's status, until a deadline: PAUSE while
//! a device would plausibly answer, then yielding the core; or
//! UMONITOR/UMWAIT on the record where the CPU has WAITPKG.

use std::time::{Duration, Instant};

use super::descriptor::record_status;
use super::settings::Wait;

/// How long a waiter spins, then yields the core, before it sleeps between
/// looks: a page takes a device microseconds, so the spin catches nearly
/// every completion; a device shared with busy clients (or a software
/// model on the same cores) gets the core back.
const SPIN: Duration = Duration::from_micros(20);
const YIELD: Duration = Duration::from_micros(200);
const SLEEP: Duration = Duration::from_micros(20);
/// UMWAIT's own bound, in TSC ticks (tens of microseconds): the loop checks
/// the deadline between waits.
const UMWAIT_TICKS: u64 = 100_000;

/// Backs off once, after `waited` of waiting for the device: spin, yield or
/// sleep.
fn back_off(waited: Duration) {
    if waited < SPIN {
        std::hint::spin_loop();
    } else if waited < YIELD {
        std::thread::yield_now();
    } else {
        std::thread::sleep(SLEEP);
    }
}

/// Waits until the status of the record at `record` is non-zero (true) or
/// `deadline` passes (false).
///
/// # Safety
/// `record` points at a live completion record.
pub unsafe fn until_complete(record: *const u8, deadline: Instant, how: Wait) -> bool {
    let start = Instant::now();
    let mut waited = Duration::ZERO;
    let mut looks = 0u32;
    loop {
        // SAFETY: the caller's record.
        if unsafe { record_status(record) } != 0 {
            return true;
        }
        looks = looks.wrapping_add(1);
        if looks % 16 == 0 || waited >= SPIN {
            let now = Instant::now();
            if now >= deadline {
                // SAFETY: as above; a last look after the deadline.
                return unsafe { record_status(record) } != 0;
            }
            waited = now - start;
        }
        match how {
            Wait::Umwait if waited < YIELD => {
                // SAFETY: the record is live (the caller's guarantee).
                unsafe { umwait(record) };
            }
            _ => back_off(waited),
        }
    }
}

/// Arms the monitor on the record's line, looks once more, and waits for a
/// write to it (or UMWAIT's deadline).
///
/// # Safety
/// `record` points at a live completion record.
unsafe fn umwait(record: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        // SAFETY: UMONITOR rax (F3 0F AE /6, register form) arms address
        // monitoring of the record's line; it only reads the address.
        unsafe {
            std::arch::asm!(
                ".byte 0xf3, 0x0f, 0xae, 0xf0",
                in("rax") record,
                options(nostack, preserves_flags),
            );
        }
        // SAFETY: the caller's record. A completion written between the
        // caller's look and the monitor's arming is seen here.
        if unsafe { record_status(record) } != 0 {
            return;
        }
        // SAFETY: reading the time-stamp counter has no preconditions.
        let deadline = unsafe { core::arch::x86_64::_rdtsc() }.wrapping_add(UMWAIT_TICKS);
        // SAFETY: UMWAIT ecx (F2 0F AE /6, register form) waits in C0.1
        // (ecx bit 0 set: the lighter state, quicker to wake) until the
        // monitored line is written or the TSC reaches edx:eax; it changes
        // only the flags. Used on CPUs with WAITPKG, or forced on the IAA
        // model, which emulates it.
        unsafe {
            std::arch::asm!(
                ".byte 0xf2, 0x0f, 0xae, 0xf1",
                in("ecx") 1u32,
                in("eax") deadline as u32,
                in("edx") (deadline >> 32) as u32,
                options(nostack),
            );
        }
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    {
        let _ = record;
        std::hint::spin_loop();
    }
}
