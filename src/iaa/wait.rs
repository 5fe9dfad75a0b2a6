//! Waiting for a completion record's status, until a deadline: PAUSE while
//! a device would plausibly answer, then yielding the core; or
//! UMONITOR/UMWAIT on the record where the CPU has WAITPKG.

use std::time::Instant;

use super::descriptor::record_status;
use super::settings::Wait;

/// Spins before the first yield: a page takes the device microseconds.
const SPINS_BEFORE_YIELD: u32 = 2048;
/// UMWAIT's own bound, in TSC ticks (tens of microseconds): the loop checks
/// the deadline between waits.
const UMWAIT_TICKS: u64 = 100_000;

/// Waits until the status of the record at `record` is non-zero (true) or
/// `deadline` passes (false).
///
/// # Safety
/// `record` points at a live completion record.
pub unsafe fn until_complete(record: *const u8, deadline: Instant, how: Wait) -> bool {
    let mut spins = 0u32;
    loop {
        // SAFETY: the caller's record.
        if unsafe { record_status(record) } != 0 {
            return true;
        }
        spins = spins.wrapping_add(1);
        if spins % 64 == 0 && Instant::now() >= deadline {
            // SAFETY: as above; a last look after the deadline.
            return unsafe { record_status(record) } != 0;
        }
        match how {
            Wait::Umwait => {
                // SAFETY: the record is live (the caller's guarantee).
                unsafe { umwait(record) };
            }
            Wait::Pause if spins < SPINS_BEFORE_YIELD => std::hint::spin_loop(),
            Wait::Pause => std::thread::yield_now(),
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
