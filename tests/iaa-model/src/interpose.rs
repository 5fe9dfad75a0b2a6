//! The character devices `/dev/iax/wq1.N` as a user process sees them:
//! `open`, `mmap` of the portal, `write()` of descriptors, `munmap`, `close`.
//! These symbols interpose libc's when the model is preloaded; every call
//! that is not about a work queue goes straight to libc.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

use crate::config::PortalMode;
use crate::descriptor::DESCRIPTOR_SIZE;
use crate::device::{device, Submit};

/// `/dev/iax/wq<device>.<queue>`: the model is device 1.
pub const DEVICE_ID: u32 = 1;

static FDS: Mutex<Option<HashMap<c_int, usize>>> = Mutex::new(None);
static OPEN_FDS: AtomicUsize = AtomicUsize::new(0);
static PORTALS: RwLock<Vec<(u64, u64, usize)>> = RwLock::new(Vec::new());
static PORTAL_COUNT: AtomicUsize = AtomicUsize::new(0);

/// The work queue behind a portal address.
pub fn portal_queue(addr: u64) -> Option<usize> {
    if PORTAL_COUNT.load(Ordering::Acquire) == 0 {
        return None;
    }
    let portals = PORTALS.read().ok()?;
    portals
        .iter()
        .find(|(start, end, _)| (*start..*end).contains(&addr))
        .map(|p| p.2)
}

fn queue_of_path(path: *const c_char) -> Option<Result<usize, c_int>> {
    if path.is_null() {
        return None;
    }
    // SAFETY: open's contract: a NUL-terminated path.
    let path = unsafe { CStr::from_ptr(path) }.to_bytes();
    let name = path.strip_prefix(b"/dev/iax/")?;
    let parsed = std::str::from_utf8(name).ok().and_then(|name| {
        let (dev, wq) = name.strip_prefix("wq")?.split_once('.')?;
        Some((dev.parse::<u32>().ok()?, wq.parse::<usize>().ok()?))
    });
    Some(match parsed {
        Some((DEVICE_ID, wq)) if wq < crate::config().wqs.len() => Ok(wq),
        _ => Err(libc::ENOENT),
    })
}

fn queue_of_fd(fd: c_int) -> Option<usize> {
    if fd < 0 || OPEN_FDS.load(Ordering::Acquire) == 0 {
        return None;
    }
    FDS.lock().ok()?.as_ref()?.get(&fd).copied()
}

fn set_errno(code: c_int) {
    // SAFETY: errno is thread-local.
    unsafe { *libc::__errno_location() = code };
}

/// The address of the next definition of a libc symbol (after this
/// library's), resolved once.
fn resolve(cache: &AtomicUsize, name: &CStr) -> usize {
    let mut pointer = cache.load(Ordering::Relaxed);
    if pointer == 0 {
        // SAFETY: dlsym with a NUL-terminated name.
        pointer = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
        if pointer == 0 {
            eprintln!("iaa-model: libc has no {name:?}");
            std::process::abort();
        }
        cache.store(pointer, Ordering::Relaxed);
    }
    pointer
}

/// libc's function of type `$ty`; calling it is the caller's unsafe act.
macro_rules! next {
    ($name:literal : $ty:ty) => {{
        static CACHE: AtomicUsize = AtomicUsize::new(0);
        let name = CStr::from_bytes_with_nul(concat!($name, "\0").as_bytes()).unwrap_or_default();
        let pointer = resolve(&CACHE, name);
        // SAFETY: `pointer` is the non-null address of libc's `$name`,
        // whose C type `$ty` declares.
        let function: $ty = unsafe { std::mem::transmute::<usize, $ty>(pointer) };
        function
    }};
}

type OpenFn = unsafe extern "C" fn(*const c_char, c_int, libc::mode_t) -> c_int;
type OpenatFn = unsafe extern "C" fn(c_int, *const c_char, c_int, libc::mode_t) -> c_int;
type MmapFn =
    unsafe extern "C" fn(*mut c_void, usize, c_int, c_int, c_int, libc::off_t) -> *mut c_void;

fn open_queue(wq: usize, flags: c_int) -> c_int {
    crate::device::device();
    let memfd_flags = if flags & libc::O_CLOEXEC != 0 {
        libc::MFD_CLOEXEC
    } else {
        0
    };
    let name = format!("iaa-model-wq{DEVICE_ID}.{wq}\0");
    // SAFETY: a NUL-terminated name; memfd_create gives a real descriptor
    // number that no other file can take while it is open.
    let fd = unsafe { libc::memfd_create(name.as_ptr().cast(), memfd_flags) };
    if fd >= 0 {
        let mut fds = FDS.lock().unwrap();
        fds.get_or_insert_with(HashMap::new).insert(fd, wq);
        OPEN_FDS.fetch_add(1, Ordering::Release);
    }
    fd
}

fn open_common(path: *const c_char, flags: c_int) -> Option<c_int> {
    match queue_of_path(path)? {
        Ok(wq) => Some(open_queue(wq, flags)),
        Err(code) => {
            set_errno(code);
            Some(-1)
        }
    }
}

/// # Safety
/// libc's `open`; `mode` is read only with `O_CREAT`/`O_TMPFILE`, as the
/// variadic C function does.
#[no_mangle]
pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int {
    if let Some(fd) = open_common(path, flags) {
        return fd;
    }
    let real = next!("open": OpenFn);
    // SAFETY: forwarding the caller's arguments.
    unsafe { real(path, flags, mode) }
}

/// # Safety
/// As [`open`].
#[no_mangle]
pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int {
    if let Some(fd) = open_common(path, flags) {
        return fd;
    }
    let real = next!("open64": OpenFn);
    // SAFETY: forwarding.
    unsafe { real(path, flags, mode) }
}

/// # Safety
/// libc's `openat`.
#[no_mangle]
pub unsafe extern "C" fn openat(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: libc::mode_t,
) -> c_int {
    if let Some(fd) = open_common(path, flags) {
        return fd;
    }
    let real = next!("openat": OpenatFn);
    // SAFETY: forwarding.
    unsafe { real(dirfd, path, flags, mode) }
}

/// # Safety
/// libc's `openat64`.
#[no_mangle]
pub unsafe extern "C" fn openat64(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: libc::mode_t,
) -> c_int {
    if let Some(fd) = open_common(path, flags) {
        return fd;
    }
    let real = next!("openat64": OpenatFn);
    // SAFETY: forwarding.
    unsafe { real(dirfd, path, flags, mode) }
}

/// # Safety
/// libc's `close`.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if queue_of_fd(fd).is_some() {
        if let Some(fds) = FDS.lock().unwrap().as_mut() {
            if fds.remove(&fd).is_some() {
                OPEN_FDS.fetch_sub(1, Ordering::Release);
            }
        }
    }
    // SAFETY: forwarding.
    let real = next!("close": unsafe extern "C" fn(c_int) -> c_int);
    // SAFETY: forwarding.
    unsafe { real(fd) }
}

fn map_portal(addr: *mut c_void, len: usize, flags: c_int, fd: c_int, wq: usize) -> *mut c_void {
    let config = crate::config();
    if config.portal == PortalMode::Write {
        // As when the kernel refuses to map the portal: clients fall back
        // to write().
        set_errno(libc::EPERM);
        return libc::MAP_FAILED;
    }
    let page = crate::memory::page_size();
    if len == 0 || len > page {
        set_errno(libc::EINVAL);
        return libc::MAP_FAILED;
    }
    let _ = fd;
    let fixed = flags & libc::MAP_FIXED;
    // The portal is mapped with no access, so that every store to it traps
    // (MOVDIR64B is a plain store on CPUs that have it; ENQCMD faults as an
    // invalid opcode on CPUs that do not) and the model takes the descriptor.
    // SAFETY: an anonymous mapping; a MAP_FIXED address is the caller's.
    let real = next!("mmap": MmapFn);
    // SAFETY: as above.
    let portal = unsafe {
        real(
            addr,
            page,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | fixed,
            -1,
            0,
        )
    };
    if portal != libc::MAP_FAILED {
        crate::trap::install();
        let start = portal as u64;
        PORTALS
            .write()
            .unwrap()
            .push((start, start + page as u64, wq));
        PORTAL_COUNT.fetch_add(1, Ordering::Release);
    }
    portal
}

/// # Safety
/// libc's `mmap`.
#[no_mangle]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    offset: libc::off_t,
) -> *mut c_void {
    if let Some(wq) = queue_of_fd(fd) {
        return map_portal(addr, len, flags, fd, wq);
    }
    // SAFETY: forwarding.
    let real = next!("mmap": MmapFn);
    // SAFETY: forwarding.
    unsafe { real(addr, len, prot, flags, fd, offset) }
}

/// # Safety
/// libc's `mmap64`.
#[no_mangle]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    offset: libc::off_t,
) -> *mut c_void {
    if let Some(wq) = queue_of_fd(fd) {
        return map_portal(addr, len, flags, fd, wq);
    }
    // SAFETY: forwarding.
    let real = next!("mmap64": MmapFn);
    // SAFETY: forwarding.
    unsafe { real(addr, len, prot, flags, fd, offset) }
}

/// # Safety
/// libc's `munmap`.
#[no_mangle]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> c_int {
    if PORTAL_COUNT.load(Ordering::Acquire) > 0 {
        let start = addr as u64;
        let end = start.saturating_add(len as u64);
        let mut portals = PORTALS.write().unwrap();
        let before = portals.len();
        portals.retain(|(s, e, _)| *e <= start || *s >= end);
        PORTAL_COUNT.fetch_sub(before - portals.len(), Ordering::Release);
    }
    // SAFETY: forwarding.
    let real = next!("munmap": unsafe extern "C" fn(*mut c_void, usize) -> c_int);
    // SAFETY: forwarding.
    unsafe { real(addr, len) }
}

/// Descriptors written to a work queue's file, as the kernel's idxd
/// character device takes them (`idxd_cdev_write`): whole 64-byte
/// descriptors only (a shorter tail is ignored), a completion record that is
/// not 64-byte aligned is `EINVAL`, and a refused one ends the write with the
/// count written so far, or `EAGAIN` if it was the first.
fn write_descriptors(wq: usize, buf: *const c_void, count: usize) -> isize {
    if buf.is_null() {
        set_errno(libc::EFAULT);
        return -1;
    }
    let device = device();
    let mut done = 0usize;
    while done + DESCRIPTOR_SIZE <= count {
        let mut bytes = [0u8; DESCRIPTOR_SIZE];
        // SAFETY: write's contract: `count` readable bytes at `buf`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (buf as *const u8).add(done),
                bytes.as_mut_ptr(),
                DESCRIPTOR_SIZE,
            )
        };
        let completion = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
        let refusal = if completion % 64 != 0 {
            Some(libc::EINVAL)
        } else {
            match device.submit(wq, bytes) {
                Submit::Accepted | Submit::Dropped => None,
                Submit::Retry => Some(libc::EAGAIN),
            }
        };
        if let Some(code) = refusal {
            if done == 0 {
                set_errno(code);
                return -1;
            }
            break;
        }
        done += DESCRIPTOR_SIZE;
    }
    done as isize
}

/// # Safety
/// libc's `write`.
#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: usize) -> isize {
    if let Some(wq) = queue_of_fd(fd) {
        return write_descriptors(wq, buf, count);
    }
    // SAFETY: forwarding.
    let real = next!("write": unsafe extern "C" fn(c_int, *const c_void, usize) -> isize);
    // SAFETY: forwarding.
    unsafe { real(fd, buf, count) }
}
