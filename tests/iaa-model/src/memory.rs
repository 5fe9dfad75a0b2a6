//! The device's view of client memory: the same address space (as IAA with
//! shared virtual memory and a PASID), residency checks that stand for the
//! IOMMU's page walks, and reads and writes that stand for DMA.

use std::sync::atomic::{AtomicU8, Ordering};

pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as usize
    } else {
        4096
    }
}

/// The first address in `[addr, addr + len)` whose page is not resident (or
/// not mapped at all), as an IOMMU walk that takes an I/O page fault would
/// report it. `None` when every page is present.
pub fn first_absent(addr: u64, len: usize) -> Option<u64> {
    if len == 0 {
        return None;
    }
    let page = page_size() as u64;
    let start = addr & !(page - 1);
    let end = addr.checked_add(len as u64)?;
    let pages = end.div_ceil(page) - start / page;
    let mut status = vec![0u8; pages as usize];
    // SAFETY: mincore only inspects the address range; `status` has one byte
    // per page of it.
    let rc = unsafe {
        libc::mincore(
            start as *mut libc::c_void,
            (pages * page) as usize,
            status.as_mut_ptr(),
        )
    };
    if rc != 0 {
        // Some page is not mapped at all: find the first one.
        for index in 0..pages {
            let at = start + index * page;
            let mut one = 0u8;
            // SAFETY: as above, for one page.
            let rc = unsafe { libc::mincore(at as *mut libc::c_void, page as usize, &mut one) };
            if rc != 0 || one & 1 == 0 {
                return Some(at.max(addr));
            }
        }
        return Some(addr);
    }
    status
        .iter()
        .position(|s| s & 1 == 0)
        .map(|index| (start + index as u64 * page).max(addr))
}

/// Makes the page at `addr` present (block-on-fault: the OS resolves the
/// fault and the device goes on). A write fault needs a writable mapping: a
/// compare-and-swap of a byte with its own value dirties the page without
/// changing a byte that a client thread may be writing at the same time
/// (an atomic add of zero would not do: LLVM turns it into a plain load).
///
/// # Safety
/// `addr` must be mapped (readable, and writable when `write`).
pub unsafe fn touch(addr: u64, write: bool) {
    if write {
        // SAFETY: the caller guarantees a writable mapping.
        let byte = unsafe { AtomicU8::from_ptr(addr as *mut u8) };
        let mut value = byte.load(Ordering::Relaxed);
        while let Err(now) =
            byte.compare_exchange(value, value, Ordering::Relaxed, Ordering::Relaxed)
        {
            value = now;
        }
    } else {
        // SAFETY: the caller guarantees a readable mapping.
        unsafe { std::ptr::read_volatile(addr as *const u8) };
    }
}

/// Copies `len` bytes of client memory.
///
/// # Safety
/// The range must be mapped and readable.
pub unsafe fn read(addr: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    // SAFETY: the caller guarantees the source; `out` is fresh.
    unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, out.as_mut_ptr(), len) };
    out
}

/// Writes `data` into client memory.
///
/// # Safety
/// The range must be mapped and writable.
pub unsafe fn write(addr: u64, data: &[u8]) {
    // SAFETY: the caller guarantees the destination.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, data.len()) };
}
