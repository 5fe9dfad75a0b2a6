//! Memory the device reads and writes: allocated once at setup, aligned,
//! made resident, and reached only through raw pointers (the device writes
//! it outside the program's view). Memory the device may still write after
//! a job was abandoned is never freed: [`DeviceMemory::leak`].

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use crate::error::Error;

/// The granularity of residency: slots that are whole pages fault (and are
/// evicted) one at a time.
pub const PAGE: usize = 4096;

pub struct DeviceMemory {
    base: NonNull<u8>,
    layout: Layout,
    leaked: bool,
}

// SAFETY: the memory is owned by one channel object, which one thread uses
// at a time; the device's accesses are ordered by the completion protocol.
unsafe impl Send for DeviceMemory {}

impl DeviceMemory {
    /// `len` bytes (rounded up to whole pages), page-aligned, zeroed and
    /// resident; `OUT_OF_MEMORY` when the allocation fails.
    pub fn new(what: &'static str, len: usize) -> Result<DeviceMemory, Error> {
        let bytes = len.max(1).div_ceil(PAGE) * PAGE;
        let layout = Layout::from_size_align(bytes, PAGE)
            .map_err(|_| Error::OutOfMemory { what, bytes: len })?;
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { alloc::alloc(layout) };
        let base = NonNull::new(base).ok_or(Error::OutOfMemory { what, bytes })?;
        // Writing every byte makes every page resident before the device
        // sees it (fresh allocations are often untouched mappings).
        // SAFETY: `base` holds `bytes` writable bytes just allocated.
        unsafe { std::ptr::write_bytes(base.as_ptr(), 0, bytes) };
        Ok(DeviceMemory {
            base,
            layout,
            leaked: false,
        })
    }

    pub fn len(&self) -> usize {
        self.layout.size()
    }

    /// The address of byte `at` (`at <= len`).
    pub fn at(&self, at: usize) -> *mut u8 {
        assert!(at <= self.len(), "offset {at} outside {} bytes", self.len());
        // SAFETY: in bounds of the allocation (checked above).
        unsafe { self.base.as_ptr().add(at) }
    }

    /// Whether `addr` lies in this memory.
    pub fn contains(&self, addr: u64) -> bool {
        let start = self.base.as_ptr() as u64;
        (start..start + self.len() as u64).contains(&addr)
    }

    /// `len` bytes at `at`, to read.
    ///
    /// # Safety
    /// No job that may write the range is in flight.
    pub unsafe fn slice(&self, at: usize, len: usize) -> &[u8] {
        assert!(at.checked_add(len).is_some_and(|end| end <= self.len()));
        // SAFETY: in bounds (checked); the caller guarantees the device does
        // not write the range meanwhile.
        unsafe { std::slice::from_raw_parts(self.at(at), len) }
    }

    /// `len` bytes at `at`, to write.
    ///
    /// # Safety
    /// No job that may read or write the range is in flight.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut(&self, at: usize, len: usize) -> &mut [u8] {
        assert!(at.checked_add(len).is_some_and(|end| end <= self.len()));
        // SAFETY: in bounds (checked); the caller guarantees that nothing
        // else, device or program, touches the range meanwhile.
        unsafe { std::slice::from_raw_parts_mut(self.at(at), len) }
    }

    /// Gives the pages of `[at, at + len)` back to the kernel
    /// (`MADV_DONTNEED`): their next access faults in zeroed pages, as
    /// after reclaim. Only the test switch `QEMU_QPL_IAA_EVICT_EVERY` uses
    /// it, to show the page-fault handling at work.
    ///
    /// # Safety
    /// No job that may access the range is in flight, and no reference to
    /// it is alive.
    pub unsafe fn evict(&self, at: usize, len: usize) {
        let start = at / PAGE * PAGE;
        let end = (at + len).div_ceil(PAGE) * PAGE;
        if end > self.len() || start >= end {
            return;
        }
        // SAFETY: whole pages inside this allocation, which is private
        // anonymous (or heap) memory of this object; the caller guarantees
        // nothing uses them. A failure only leaves them resident.
        unsafe {
            libc::madvise(self.at(start).cast(), end - start, libc::MADV_DONTNEED);
        }
    }

    /// Never frees the memory: the device may still write it.
    pub fn keep_forever(&mut self) {
        self.leaked = true;
    }
}

impl Drop for DeviceMemory {
    fn drop(&mut self) {
        if !self.leaked {
            // SAFETY: allocated in `new` with this layout, freed once.
            unsafe { alloc::dealloc(self.base.as_ptr(), self.layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_zeroed_and_bounded() {
        let memory = DeviceMemory::new("a test buffer", 5000).unwrap();
        assert_eq!(memory.len(), 8192);
        assert_eq!(memory.at(0) as usize % PAGE, 0);
        assert!(memory.contains(memory.at(8191) as u64));
        assert!(!memory.contains(memory.at(0) as u64 + 8192));
        // SAFETY: no device is involved in this test.
        unsafe {
            assert!(memory.slice(0, 8192).iter().all(|&b| b == 0));
            memory.slice_mut(4096, 1)[0] = 7;
            memory.evict(4096, 4096);
            assert_eq!(
                memory.slice(4096, 1)[0],
                0,
                "an evicted page comes back zeroed"
            );
        }
    }
}
