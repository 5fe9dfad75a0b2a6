//! The C boundary: raw pointers become checked slices, results become a
//! status code plus a message, and no panic crosses into C.
//!
//! No compression logic lives here; everything is handed to `channel`.
//! `include/qemu_qpl.h` is generated from this file by cbindgen.

use std::ffi::{c_char, c_void};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use crate::channel::{ChannelConfig, DestPages, PageSource, Receiver, Segment, Sender};
use crate::codec::Level;
use crate::error::{Error, ErrorKind};
use crate::iaa::Counters;

/// Result of every fallible call.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QemuQplStatus {
    Ok = 0,
    /// The caller broke the contract: a null or misaligned pointer, a size out
    /// of range, a call out of order. A bug in the caller, not in the data.
    InvalidArgument = -1,
    /// Data received from the network is malformed. The migration must fail;
    /// the message names the channel, the page and the reason.
    CorruptPacket = -2,
    /// An allocation failed (only at setup).
    OutOfMemory = -3,
    /// A bug inside the library was caught before it could cross into C.
    InternalError = -4,
}

/// One piece of a packet body, laid out exactly like POSIX `struct iovec`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct QemuQplIovec {
    pub iov_base: *mut c_void,
    pub iov_len: usize,
}

/// `QemuQplCounters::path`: the channel compresses or decompresses on the CPU.
pub const QEMU_QPL_PATH_CPU: u32 = 0;
/// `QemuQplCounters::path`: the channel uses an Intel IAA work queue.
pub const QEMU_QPL_PATH_IAA: u32 = 1;

/// What one channel counted since it was set up (`qemu_qpl_sender_counters`,
/// `qemu_qpl_receiver_counters`). Every page counts once:
/// `pages_iaa + pages_cpu + pages_raw` is the number of pages the channel
/// sent or received. Fields may be added at the end in later versions: the
/// caller sets `size` to `sizeof(QemuQplCounters)` and the library fills at
/// most that many bytes, then sets `size` to the bytes it filled.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QemuQplCounters {
    /// In: the caller's `sizeof(QemuQplCounters)`. Out: bytes filled.
    pub size: u32,
    /// `QEMU_QPL_PATH_IAA` while the channel uses the device, else
    /// `QEMU_QPL_PATH_CPU` (also after it gave the device up).
    pub path: u32,
    /// Pages whose stream the device compressed or decompressed.
    pub pages_iaa: u64,
    /// Pages whose stream the CPU compressed or decompressed (fallbacks
    /// included).
    pub pages_cpu: u64,
    /// Pages sent or received raw (they do not shrink).
    pub pages_raw: u64,
    /// Pages given to the CPU because the work queue stayed full.
    pub fallback_queue_full: u64,
    /// Pages given to the CPU after an error completion or submission error.
    pub fallback_error: u64,
    /// Pages given to the CPU after a page fault that touching did not cure.
    pub fallback_page_fault: u64,
    /// Pages given to the CPU when the device did not complete in time (the
    /// channel then uses the CPU for good).
    pub fallback_timeout: u64,
    /// Receiver: streams the device did not decode to exactly one page,
    /// which then got the CPU decoder's verdict.
    pub fallback_rejected: u64,
    /// Page-fault completions (each address touched, the job resubmitted once).
    pub page_faults: u64,
    /// Descriptors the device accepted.
    pub descriptors: u64,
    /// Submissions the work queue refused and that were tried again.
    pub submit_retries: u64,
}

impl QemuQplCounters {
    fn from_counters(counters: &Counters, uses_iaa: bool) -> QemuQplCounters {
        let d = &counters.device;
        QemuQplCounters {
            size: std::mem::size_of::<QemuQplCounters>() as u32,
            path: if uses_iaa {
                QEMU_QPL_PATH_IAA
            } else {
                QEMU_QPL_PATH_CPU
            },
            pages_iaa: counters.pages_iaa,
            pages_cpu: counters.pages_cpu,
            pages_raw: counters.pages_raw,
            fallback_queue_full: d.fallback_queue_full,
            fallback_error: d.fallback_error,
            fallback_page_fault: d.fallback_page_fault,
            fallback_timeout: d.fallback_timeout,
            fallback_rejected: d.fallback_rejected,
            page_faults: d.page_faults,
            descriptors: d.descriptors,
            submit_retries: d.submit_retries,
        }
    }
}

/// The sending side of one multifd channel (opaque).
pub struct QemuQplSender {
    sender: Sender,
    /// Set by an internal error: the object's state may be broken, so every
    /// later call is refused.
    broken: bool,
}

/// The receiving side of one multifd channel (opaque).
pub struct QemuQplReceiver {
    receiver: Receiver,
    /// As for the sender.
    broken: bool,
}

/// The objects behind the ABI's handles.
trait Handle {
    const NAME: &'static str;
    fn broken(&mut self) -> &mut bool;
}

impl Handle for QemuQplSender {
    const NAME: &'static str = "sender";
    fn broken(&mut self) -> &mut bool {
        &mut self.broken
    }
}

impl Handle for QemuQplReceiver {
    const NAME: &'static str = "receiver";
    fn broken(&mut self) -> &mut bool {
        &mut self.broken
    }
}

/// Copies `message` into the caller's buffer, truncated and NUL-terminated.
fn write_message(buffer: *mut c_char, capacity: usize, message: &str) {
    if buffer.is_null() || capacity == 0 {
        return;
    }
    let bytes = message.as_bytes();
    let mut len = bytes.len().min(capacity - 1);
    // Cut at a character boundary so the C string stays valid UTF-8.
    while !message.is_char_boundary(len) {
        len -= 1;
    }
    // SAFETY: the caller promises `buffer` holds `capacity` bytes; we write
    // `len + 1 <= capacity` of them.
    unsafe {
        ptr::copy_nonoverlapping(bytes.as_ptr(), buffer.cast::<u8>(), len);
        *buffer.add(len) = 0;
    }
}

/// A caller's character buffer as a `fmt::Write` target: text past its end
/// is dropped (cut at a character boundary) and the result NUL-terminated.
struct MessageWriter<'a> {
    buffer: &'a mut [u8],
    len: usize,
}

impl<'a> MessageWriter<'a> {
    /// Checks the buffer (non-NULL, at least one byte for the NUL).
    fn new(buffer: *mut c_char, capacity: usize) -> Result<MessageWriter<'a>, Error> {
        if buffer.is_null() || capacity == 0 {
            return Err(Error::invalid("the text buffer is NULL or empty"));
        }
        // SAFETY: the caller promises `capacity` writable bytes at `buffer`.
        let buffer = unsafe { std::slice::from_raw_parts_mut(buffer.cast::<u8>(), capacity) };
        buffer[0] = 0;
        Ok(MessageWriter { buffer, len: 0 })
    }
}

impl fmt::Write for MessageWriter<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let room = self.buffer.len() - 1 - self.len;
        let mut take = text.len().min(room);
        while !text.is_char_boundary(take) {
            take -= 1;
        }
        self.buffer[self.len..self.len + take].copy_from_slice(&text.as_bytes()[..take]);
        self.len += take;
        self.buffer[self.len] = 0;
        Ok(())
    }
}

/// Runs `body`, turning its error or panic into a status and a message.
fn guarded(
    err_msg: *mut c_char,
    err_msg_len: usize,
    body: impl FnOnce() -> Result<(), Error>,
) -> QemuQplStatus {
    let outcome = catch_unwind(AssertUnwindSafe(body));
    let (status, message) = match outcome {
        Ok(Ok(())) => return QemuQplStatus::Ok,
        Ok(Err(error)) => {
            let status = match error.kind() {
                ErrorKind::InvalidArgument => QemuQplStatus::InvalidArgument,
                ErrorKind::CorruptPacket => QemuQplStatus::CorruptPacket,
                ErrorKind::OutOfMemory => QemuQplStatus::OutOfMemory,
                ErrorKind::Internal => QemuQplStatus::InternalError,
            };
            (status, error.to_string())
        }
        Err(_) => (
            QemuQplStatus::InternalError,
            "qemu-qpl: internal error (a bug in the library was caught; please report it)"
                .to_string(),
        ),
    };
    write_message(err_msg, err_msg_len, &message);
    status
}

/// Checks a pointer the ABI requires to be usable as a `T`.
fn require<T>(pointer: *const T, name: &str) -> Result<(), Error> {
    if pointer.is_null() {
        Err(Error::invalid(format!("{name} is NULL")))
    } else if !pointer.is_aligned() {
        Err(Error::invalid(format!(
            "{name} is not aligned to {} bytes",
            std::mem::align_of::<T>()
        )))
    } else {
        Ok(())
    }
}

/// The object behind a handle, or an error for a NULL or misaligned one.
fn object<'a, T: Handle>(handle: *mut T) -> Result<&'a mut T, Error> {
    require(handle, T::NAME)?;
    // SAFETY: non-null and aligned were checked; the header obliges the caller
    // to pass a live handle from the matching `_new` and to use it from one
    // thread at a time, so no other reference to it exists during the call.
    let object = unsafe { &mut *handle };
    if *object.broken() {
        return Err(Error::internal(format!(
            "this {} had an internal error earlier and refuses further calls",
            T::NAME
        )));
    }
    Ok(object)
}

/// `guarded` for a call on an object: an internal error (a caught panic or a
/// violated invariant) marks the object broken, so that no later call runs
/// on state that may be inconsistent.
fn guarded_on<T: Handle>(
    handle: *mut T,
    err_msg: *mut c_char,
    err_msg_len: usize,
    body: impl FnOnce(&mut T) -> Result<(), Error>,
) -> QemuQplStatus {
    let status = guarded(err_msg, err_msg_len, || body(object(handle)?));
    if status == QemuQplStatus::InternalError && !handle.is_null() && handle.is_aligned() {
        // SAFETY: a live handle (the call got past `object`, or failed inside
        // it for being broken already); the body's borrow has ended.
        unsafe { *(*handle).broken() = true };
    }
    status
}

/// Moves `value` to the heap for a handle, returning `OUT_OF_MEMORY` rather
/// than aborting when the allocation fails.
fn try_box<T>(what: &'static str, value: T) -> Result<Box<T>, Error> {
    let layout = std::alloc::Layout::new::<T>();
    assert!(layout.size() > 0, "handles are not zero-sized");
    // SAFETY: the layout has a non-zero size (asserted above).
    let raw = unsafe { std::alloc::alloc(layout) }.cast::<T>();
    if raw.is_null() {
        return Err(Error::OutOfMemory {
            what,
            bytes: layout.size(),
        });
    }
    // SAFETY: `raw` was just allocated with `T`'s layout, so writing a `T`
    // there and giving it to a `Box` (which frees it with the same layout)
    // is sound.
    unsafe {
        raw.write(value);
        Ok(Box::from_raw(raw))
    }
}

/// A caller's array of `count` page pointers, checked and viewed as pages.
struct PagePointers {
    pointers: *const *const u8,
    count: usize,
    page_size: usize,
}

impl PagePointers {
    fn new(pointers: *const *const u8, count: u32, page_size: usize) -> Result<Self, Error> {
        let count = count as usize;
        if count > 0 {
            require(pointers, "the page pointer array")?;
        }
        let this = PagePointers {
            pointers,
            count,
            page_size,
        };
        if let Some(index) = (0..count).find(|&index| this.pointer(index).is_null()) {
            return Err(Error::invalid(format!("page pointer {index} is NULL")));
        }
        Ok(this)
    }

    fn pointer(&self, index: usize) -> *const u8 {
        // SAFETY: `index < count` and the caller's array holds `count` pointers.
        unsafe { *self.pointers.add(index) }
    }
}

impl PageSource for PagePointers {
    fn count(&self) -> usize {
        self.count
    }

    fn page_size(&self, _index: usize) -> usize {
        self.page_size
    }

    fn copy_page(&self, index: usize, dest: &mut [u8]) {
        assert_eq!(dest.len(), self.page_size, "a snapshot is one page");
        // SAFETY: the pointer was checked non-null in `new`; the caller of
        // qemu_qpl_send_prepare promises `page_size` readable bytes there.
        unsafe { copy_guest_page(self.pointer(index), dest) };
    }
}

/// Copies guest memory that vCPUs may be writing at the same moment, reading
/// every byte once. On x86_64 the copy is one `rep movsb` in inline assembly
/// (fast strings move a page at memcpy speed), which the compiler treats as
/// opaque: it cannot assume the bytes stay still, nor read them again.
/// Elsewhere (and under Miri) the reads are volatile, as for memory that
/// changes outside the program. Public for qpl-bench, which measures its cost.
///
/// # Safety
/// `source` points at `dest.len()` readable bytes that do not overlap `dest`.
#[doc(hidden)]
pub unsafe fn copy_guest_page(source: *const u8, dest: &mut [u8]) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: `rep movsb` copies rcx = dest.len() bytes from rsi = source
    // (readable, the function's contract) to rdi = dest (writable, a
    // `&mut` slice of that length); the direction flag is clear at every
    // Rust call boundary, as the ABI requires.
    unsafe {
        std::arch::asm!(
            "rep movsb",
            inout("rcx") dest.len() => _,
            inout("rsi") source => _,
            inout("rdi") dest.as_mut_ptr() => _,
            options(nostack, preserves_flags)
        );
    }
    #[cfg(any(not(target_arch = "x86_64"), miri))]
    for (k, byte) in dest.iter_mut().enumerate() {
        // SAFETY: `source` points at `dest.len()` readable bytes (the
        // function's contract) and `k < dest.len()`.
        *byte = unsafe { source.add(k).read_volatile() };
    }
}

/// Writes `value` through an out-pointer that `require` has checked.
fn put<T>(out: *mut T, value: T) {
    // SAFETY: callers check `out` with `require` first.
    unsafe { out.write(value) }
}

fn channel_config(channel: u32, page_size: u32, pages_per_packet: u32) -> ChannelConfig {
    ChannelConfig {
        channel,
        page_size,
        pages_per_packet,
    }
}

/// The ABI's level number of the automatic level.
const LEVEL_AUTO: u32 = 4;

/// The library's version, a static NUL-terminated string.
#[no_mangle]
pub extern "C" fn qemu_qpl_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Creates the sender of multifd channel `channel` for pages of `page_size`
/// bytes (a power of two from 512 to 65536), at most `pages_per_packet` per
/// packet, compressing at `level` (0 = the library's default, which is fast;
/// 1 = fast; 2 = strong; 3 = turbo; 4 = auto, which moves between turbo,
/// fast and strong as the channel is CPU-bound or waits on the network;
/// QEMU passes its `multifd-qpl-level` parameter).
/// All buffers are allocated here; `qemu_qpl_send_prepare` allocates nothing.
/// On success `*sender_out` holds the new object, to be freed with
/// `qemu_qpl_sender_free`. On failure a message goes to `err_msg` (a buffer of
/// `err_msg_len` bytes; may be NULL when `err_msg_len` is 0).
///
/// # Safety
/// `sender_out` must be valid for a pointer write; `err_msg` must hold `err_msg_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn qemu_qpl_sender_new(
    channel: u32,
    page_size: u32,
    pages_per_packet: u32,
    level: u32,
    sender_out: *mut *mut QemuQplSender,
    err_msg: *mut c_char,
    err_msg_len: usize,
) -> QemuQplStatus {
    guarded(err_msg, err_msg_len, || {
        require(sender_out, "sender_out")?;
        let config = channel_config(channel, page_size, pages_per_packet);
        let sender = if level == LEVEL_AUTO {
            Sender::with_auto_level(config)?
        } else {
            let level = Level::from_abi(level)
                .ok_or_else(|| Error::invalid(format!("unknown compression level {level}")))?;
            Sender::new(config, level)?
        };
        put(
            sender_out,
            Box::into_raw(try_box(
                "the sender",
                QemuQplSender {
                    sender,
                    broken: false,
                },
            )?),
        );
        Ok(())
    })
}

/// Frees a sender. NULL is ignored. Iovecs from its last prepare become invalid.
///
/// # Safety
/// `sender` is NULL or a live handle from `qemu_qpl_sender_new`, not used again.
#[no_mangle]
pub unsafe extern "C" fn qemu_qpl_sender_free(sender: *mut QemuQplSender) {
    if !sender.is_null() {
        // SAFETY: a non-null sender comes from `qemu_qpl_sender_new` (the
        // header's contract) and is not used again after this call.
        drop(unsafe { Box::from_raw(sender) });
    }
}

/// Compresses `page_count` pages into one packet body exactly as upstream
/// QEMU's `qpl` method sends it: the big-endian u32 length array, then each
/// page's DEFLATE stream, or the page itself when compressing does not make it
/// shorter than a page. The body is described by at most `page_count + 1`
/// iovecs written to `iov` (room for `iov_capacity`), their number to
/// `*iov_count` and the body's total size to `*payload_size`. Raw pages point
/// at the caller's memory (no copy); the rest point into the sender and stay
/// valid until its next prepare or free. `page_count == 0` yields no iovecs.
/// The pages may be live guest RAM that vCPUs keep writing during the call:
/// each page is read once, into a copy that is compressed, so every stream
/// inflates to one page (of old bytes, new bytes or a mix; the page is dirty
/// and will be sent again). Returns `INTERNAL_ERROR` (and the iovecs must not
/// be used) if the library finds a segment outside its own buffer.
///
/// # Safety
/// `sender` is a live handle used by no other thread; `pages` holds `page_count` pointers each to `page_size` readable bytes; `iov` holds `iov_capacity` entries; `iov_count`, `payload_size` are writable; `err_msg` holds `err_msg_len` bytes.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn qemu_qpl_send_prepare(
    sender: *mut QemuQplSender,
    pages: *const *const u8,
    page_count: u32,
    iov: *mut QemuQplIovec,
    iov_capacity: u32,
    iov_count: *mut u32,
    payload_size: *mut u32,
    err_msg: *mut c_char,
    err_msg_len: usize,
) -> QemuQplStatus {
    guarded_on(sender, err_msg, err_msg_len, |sender| {
        let sender = &mut sender.sender;
        require(iov_count, "iov_count")?;
        require(payload_size, "payload_size")?;
        let needed = if page_count == 0 { 0 } else { page_count + 1 };
        if iov_capacity < needed {
            return Err(Error::invalid(format!(
                "iov capacity {iov_capacity} is below the {needed} entries {page_count} pages may need"
            )));
        }
        if needed > 0 {
            require(iov, "iov")?;
        }
        let page_size = sender.config().page_size as usize;
        let pointers = PagePointers::new(pages, page_count, page_size)?;
        let packet = sender.prepare(&pointers)?;
        if packet.segments.len() > needed as usize {
            return Err(Error::internal(format!(
                "{} segments for {page_count} pages",
                packet.segments.len()
            )));
        }
        for (slot, segment) in packet.segments.iter().enumerate() {
            let (base, len) = match *segment {
                Segment::Owned { start, len } => (packet.owned(start, len)?.as_ptr(), len),
                Segment::RawPage { page } if page < pointers.count => {
                    (pointers.pointer(page), page_size)
                }
                Segment::RawPage { page } => {
                    return Err(Error::internal(format!(
                        "a raw segment names page {page} of {page_count}"
                    )))
                }
            };
            let entry = QemuQplIovec {
                iov_base: base.cast_mut().cast(),
                iov_len: len,
            };
            // SAFETY: `iov` holds `iov_capacity >= page_count + 1` entries and
            // there are at most `page_count + 1` segments (checked above).
            unsafe { iov.add(slot).write(entry) };
        }
        put(iov_count, packet.segments.len() as u32);
        put(payload_size, packet.payload_size);
        Ok(())
    })
}

/// Creates the receiver of multifd channel `channel`; the arguments are as for
/// `qemu_qpl_sender_new` (the receiver reads every level). Free it with
/// `qemu_qpl_receiver_free`.
///
/// # Safety
/// `receiver_out` must be valid for a pointer write; `err_msg` must hold `err_msg_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn qemu_qpl_receiver_new(
    channel: u32,
    page_size: u32,
    pages_per_packet: u32,
    receiver_out: *mut *mut QemuQplReceiver,
    err_msg: *mut c_char,
    err_msg_len: usize,
) -> QemuQplStatus {
    guarded(err_msg, err_msg_len, || {
        require(receiver_out, "receiver_out")?;
        let receiver = Receiver::new(channel_config(channel, page_size, pages_per_packet))?;
        put(
            receiver_out,
            Box::into_raw(try_box(
                "the receiver",
                QemuQplReceiver {
                    receiver,
                    broken: false,
                },
            )?),
        );
        Ok(())
    })
}

/// Frees a receiver. NULL is ignored.
///
/// # Safety
/// `receiver` is NULL or a live handle from `qemu_qpl_receiver_new`, not used again.
#[no_mangle]
pub unsafe extern "C" fn qemu_qpl_receiver_free(receiver: *mut QemuQplReceiver) {
    if !receiver.is_null() {
        // SAFETY: a non-null receiver comes from `qemu_qpl_receiver_new` (the
        // header's contract) and is not used again after this call.
        drop(unsafe { Box::from_raw(receiver) });
    }
}

/// Step 1 of receiving a packet: checks the normal page count and the payload
/// size (`next_packet_size`) from multifd's packet header, and says where to
/// read the length array (`*lengths_buf`, `*lengths_len` bytes: 4 per page).
/// For `page_count == 0` the length is 0 and the packet is complete.
///
/// # Safety
/// `receiver` is a live handle used by no other thread; the out-pointers are writable; `err_msg` holds `err_msg_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn qemu_qpl_recv_begin(
    receiver: *mut QemuQplReceiver,
    page_count: u32,
    payload_size: u64,
    lengths_buf: *mut *mut u8,
    lengths_len: *mut usize,
    err_msg: *mut c_char,
    err_msg_len: usize,
) -> QemuQplStatus {
    guarded_on(receiver, err_msg, err_msg_len, |receiver| {
        let receiver = &mut receiver.receiver;
        require(lengths_buf, "lengths_buf")?;
        require(lengths_len, "lengths_len")?;
        let buffer = receiver.begin(page_count, payload_size)?;
        put(lengths_buf, buffer.as_mut_ptr());
        put(lengths_len, buffer.len());
        Ok(())
    })
}

/// Step 2: checks the big-endian lengths now in the step 1 buffer (each at
/// most a page, none zero, their sum matching the payload) and says where to
/// read the pages' bytes (`*data_buf`, `*data_len` bytes).
///
/// # Safety
/// As for `qemu_qpl_recv_begin`; the length array must have been written into step 1's buffer.
#[no_mangle]
pub unsafe extern "C" fn qemu_qpl_recv_lengths(
    receiver: *mut QemuQplReceiver,
    data_buf: *mut *mut u8,
    data_len: *mut usize,
    err_msg: *mut c_char,
    err_msg_len: usize,
) -> QemuQplStatus {
    guarded_on(receiver, err_msg, err_msg_len, |receiver| {
        let receiver = &mut receiver.receiver;
        require(data_buf, "data_buf")?;
        require(data_len, "data_len")?;
        let buffer = receiver.accept_lengths()?;
        put(data_buf, buffer.as_mut_ptr());
        put(data_len, buffer.len());
        Ok(())
    })
}

/// After a call on `receiver` returned `QEMU_QPL_STATUS_CORRUPT_PACKET`: the
/// index, in the packet, of the page whose length or stream was bad, so that
/// the caller can name the page by its RAMBlock and offset; -1 when the fault
/// concerned the packet as a whole (its page count, payload size or the sum of
/// its lengths), when there was no such fault since the last
/// `qemu_qpl_recv_begin`, or when `receiver` is NULL.
///
/// # Safety
/// `receiver` is NULL or a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn qemu_qpl_recv_fault_page(receiver: *const QemuQplReceiver) -> i64 {
    if receiver.is_null() || !receiver.is_aligned() {
        return -1;
    }
    // SAFETY: non-null and aligned; the caller passes a live handle.
    let receiver = unsafe { &(*receiver).receiver };
    receiver.fault_page().map_or(-1, i64::from)
}

/// Step 3: inflates (or copies, for raw pages) each page of the packet into
/// `dest_pages[i]`, each pointing at one writable page that overlaps no other
/// and none of the receiver's buffers. `page_count` must equal step 1's count.
/// Nothing is written outside the destination pages. On error the pages from
/// the failing one on hold unspecified bytes and the migration must fail.
///
/// # Safety
/// `receiver` is a live handle used by no other thread; `dest_pages` holds `page_count` pointers, each to `page_size` writable bytes overlapping nothing else; `err_msg` holds `err_msg_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn qemu_qpl_recv_pages(
    receiver: *mut QemuQplReceiver,
    dest_pages: *const *mut u8,
    page_count: u32,
    err_msg: *mut c_char,
    err_msg_len: usize,
) -> QemuQplStatus {
    guarded_on(receiver, err_msg, err_msg_len, |receiver| {
        let receiver = &mut receiver.receiver;
        let pending = receiver.pending_pages();
        if page_count != pending || pending == 0 {
            return Err(Error::invalid(format!(
                "{page_count} destination pages given for a packet of {pending} pages in progress"
            )));
        }
        require(dest_pages, "dest_pages")?;
        let mut dest = DestPointers {
            pointers: dest_pages,
            count: page_count as usize,
            page_size: receiver.config().page_size as usize,
        };
        receiver.decode_pages(&mut dest)
    })
}

/// The caller's array of destination page pointers, one page at a time.
struct DestPointers {
    pointers: *const *mut u8,
    count: usize,
    page_size: usize,
}

impl DestPages for DestPointers {
    fn page(&mut self, index: usize) -> Result<&mut [u8], Error> {
        if index >= self.count {
            return Err(Error::internal(format!(
                "destination page {index} of {} requested",
                self.count
            )));
        }
        // SAFETY: the array holds `count` pointers (caller's contract).
        let dest = unsafe { *self.pointers.add(index) };
        if dest.is_null() {
            return Err(Error::invalid(format!(
                "destination page pointer {index} is NULL"
            )));
        }
        // SAFETY: non-null; the caller promises a writable page of
        // `page_size` bytes that nothing else references during the call.
        // The slice borrows `self`, so one page slice exists at a time and
        // overlapping pages from a faulty caller create no aliasing `&mut`.
        Ok(unsafe { std::slice::from_raw_parts_mut(dest, self.page_size) })
    }
}

/// Writes one line into `buf` (`buf_len` bytes, NUL-terminated, truncated)
/// saying which engine compresses this sender's pages and why: for example
/// `IAA: iax1 wq1.0 (shared WQ of 128 entries, block on fault, NUMA node 0)
/// via ENQCMD; fixed Huffman` or `CPU: no IAA device in
/// /sys/bus/dsa/devices`. QEMU logs it once per channel.
///
/// # Safety
/// `sender` is a live handle used by no other thread; `buf` holds `buf_len` bytes; `err_msg` holds `err_msg_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn qemu_qpl_sender_path(
    sender: *mut QemuQplSender,
    buf: *mut c_char,
    buf_len: usize,
    err_msg: *mut c_char,
    err_msg_len: usize,
) -> QemuQplStatus {
    guarded_on(sender, err_msg, err_msg_len, |sender| {
        let mut out = MessageWriter::new(buf, buf_len)?;
        sender
            .sender
            .describe(&mut out)
            .map_err(|_| Error::internal("the path line could not be written"))
    })
}

/// As `qemu_qpl_sender_path`, for a receiver.
///
/// # Safety
/// As for `qemu_qpl_sender_path`.
#[no_mangle]
pub unsafe extern "C" fn qemu_qpl_receiver_path(
    receiver: *mut QemuQplReceiver,
    buf: *mut c_char,
    buf_len: usize,
    err_msg: *mut c_char,
    err_msg_len: usize,
) -> QemuQplStatus {
    guarded_on(receiver, err_msg, err_msg_len, |receiver| {
        let mut out = MessageWriter::new(buf, buf_len)?;
        receiver
            .receiver
            .describe(&mut out)
            .map_err(|_| Error::internal("the path line could not be written"))
    })
}

/// Copies `counters` into the caller's struct, at most `out->size` bytes.
fn put_counters(out: *mut QemuQplCounters, counters: QemuQplCounters) -> Result<(), Error> {
    require(out, "counters")?;
    // SAFETY: checked non-null and aligned; the caller set `size`.
    let room = unsafe { ptr::addr_of!((*out).size).read() } as usize;
    let fixed = std::mem::offset_of!(QemuQplCounters, pages_iaa);
    if room < fixed {
        return Err(Error::invalid(format!(
            "counters->size is {room}; set it to sizeof(QemuQplCounters)"
        )));
    }
    let take = room.min(std::mem::size_of::<QemuQplCounters>());
    let counters = QemuQplCounters {
        size: take as u32,
        ..counters
    };
    // SAFETY: the caller's struct holds `room >= take` bytes; the source is
    // a local struct of at least `take` bytes.
    unsafe {
        ptr::copy_nonoverlapping(ptr::addr_of!(counters).cast::<u8>(), out.cast::<u8>(), take)
    };
    Ok(())
}

/// Fills `*counters` with what the sender counted since setup (set
/// `counters->size = sizeof(QemuQplCounters)` first). QEMU reports them when
/// the channel is cleaned up; tests read them.
///
/// # Safety
/// `sender` is a live handle used by no other thread; `counters` points at `counters->size` writable bytes; `err_msg` holds `err_msg_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn qemu_qpl_sender_counters(
    sender: *mut QemuQplSender,
    counters: *mut QemuQplCounters,
    err_msg: *mut c_char,
    err_msg_len: usize,
) -> QemuQplStatus {
    guarded_on(sender, err_msg, err_msg_len, |sender| {
        let sender = &sender.sender;
        put_counters(
            counters,
            QemuQplCounters::from_counters(&sender.counters(), sender.uses_iaa()),
        )
    })
}

/// As `qemu_qpl_sender_counters`, for a receiver.
///
/// # Safety
/// As for `qemu_qpl_sender_counters`.
#[no_mangle]
pub unsafe extern "C" fn qemu_qpl_receiver_counters(
    receiver: *mut QemuQplReceiver,
    counters: *mut QemuQplCounters,
    err_msg: *mut c_char,
    err_msg_len: usize,
) -> QemuQplStatus {
    guarded_on(receiver, err_msg, err_msg_len, |receiver| {
        let receiver = &receiver.receiver;
        put_counters(
            counters,
            QemuQplCounters::from_counters(&receiver.counters(), receiver.uses_iaa()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender() -> *mut QemuQplSender {
        let mut sender = ptr::null_mut();
        // SAFETY: a valid out-pointer; no message buffer.
        let status = unsafe { qemu_qpl_sender_new(0, 4096, 4, 0, &mut sender, ptr::null_mut(), 0) };
        assert_eq!(status, QemuQplStatus::Ok);
        sender
    }

    #[test]
    fn an_internal_error_breaks_the_object_for_good() {
        let handle = sender();
        let mut msg = [0 as c_char; 160];
        let text = |msg: &[c_char]| {
            // SAFETY: the library NUL-terminates its messages in the buffer.
            unsafe { std::ffi::CStr::from_ptr(msg.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        };
        // A caller's mistake leaves the object usable.
        let status = guarded_on(handle, msg.as_mut_ptr(), msg.len(), |_| {
            Err(Error::invalid("a caller's mistake"))
        });
        assert_eq!(status, QemuQplStatus::InvalidArgument);
        assert_eq!(
            guarded_on(handle, msg.as_mut_ptr(), msg.len(), |_| Ok(())),
            QemuQplStatus::Ok
        );
        // A panic inside a call is caught and breaks the object...
        let status = guarded_on(
            handle,
            msg.as_mut_ptr(),
            msg.len(),
            |_| -> Result<(), Error> { panic!("a library bug") },
        );
        assert_eq!(status, QemuQplStatus::InternalError);
        // ... so that the next calls, even valid ones, are refused.
        let (mut count, mut size) = (0u32, 0u32);
        let mut iov = [QemuQplIovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        }];
        // SAFETY: valid out-pointers; no pages.
        let status = unsafe {
            qemu_qpl_send_prepare(
                handle,
                ptr::null(),
                0,
                iov.as_mut_ptr(),
                1,
                &mut count,
                &mut size,
                msg.as_mut_ptr(),
                msg.len(),
            )
        };
        assert_eq!(status, QemuQplStatus::InternalError);
        assert!(
            text(&msg).contains("refuses further calls"),
            "{}",
            text(&msg)
        );
        // SAFETY: a live handle, freed once.
        unsafe { qemu_qpl_sender_free(handle) };
    }

    #[test]
    fn an_internal_error_returned_as_a_value_breaks_the_object_too() {
        let handle = sender();
        let status = guarded_on(handle, ptr::null_mut(), 0, |_| {
            Err(Error::internal("a violated invariant"))
        });
        assert_eq!(status, QemuQplStatus::InternalError);
        assert_eq!(
            guarded_on(handle, ptr::null_mut(), 0, |_| Ok(())),
            QemuQplStatus::InternalError
        );
        // SAFETY: a live handle, freed once.
        unsafe { qemu_qpl_sender_free(handle) };
    }
}
