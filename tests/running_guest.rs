//! Pages that change while they are compressed, as a running guest's vCPUs
//! change them during pre-copy: QEMU hands the sender live guest RAM.
//!
//! Writer threads keep rewriting the pages (random bytes at random offsets,
//! runs of real data, whole-page flips between two contents, zero pages)
//! while the sender prepares packets through the C ABI. Every packet must
//! come back OK, every iovec must be a page of the caller or lie in memory
//! that is not guest RAM, the iovecs must add up to the payload, and every
//! page must inflate to exactly one page, with our decoder and with an
//! independent one (miniz_oxide).

use std::ffi::{c_char, CStr};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use qemu_qpl::abi::*;
use qemu_qpl::{ChannelConfig, Receiver};

mod common;

/// Guest RAM shared with the writer threads: only ever accessed through
/// raw pointers, with volatile accesses, as memory another agent writes.
struct GuestRam {
    base: *mut u8,
    len: usize,
    _backing: Vec<u64>,
}

// SAFETY: the memory is only reached through raw pointers with volatile
// reads and writes; it models RAM that vCPUs write outside our control.
unsafe impl Send for GuestRam {}
// SAFETY: as above.
unsafe impl Sync for GuestRam {}

impl GuestRam {
    fn new(bytes: &[u8]) -> GuestRam {
        let mut backing = vec![0u64; bytes.len().div_ceil(8)];
        let base = backing.as_mut_ptr().cast::<u8>();
        // SAFETY: `backing` holds at least `bytes.len()` bytes.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), base, bytes.len()) };
        GuestRam {
            base,
            len: bytes.len(),
            _backing: backing,
        }
    }

    fn write(&self, at: usize, bytes: &[u8]) {
        assert!(at + bytes.len() <= self.len);
        for (k, &b) in bytes.iter().enumerate() {
            // SAFETY: in bounds (checked above).
            unsafe { self.base.add(at + k).write_volatile(b) };
        }
    }

    fn contains(&self, p: *const u8, len: usize) -> bool {
        let start = self.base as usize;
        let p = p as usize;
        p < start + self.len && p + len > start
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// What the writer threads do to the pages until `stop`.
fn scribble(ram: &GuestRam, page_size: usize, data: &[u8], seed: u64, stop: &AtomicBool) -> u64 {
    let mut state = seed | 1;
    let pages = ram.len / page_size;
    let mut writes = 0u64;
    let zero = vec![0u8; page_size];
    let mut noise = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        let r = xorshift(&mut state);
        let page = (r >> 8) as usize % pages;
        let at = page * page_size;
        match r % 8 {
            // Random bytes at a random offset.
            0..=3 => {
                let len = 1 + (r >> 40) as usize % noise.len();
                let off = (r >> 24) as usize % (page_size - len + 1);
                for b in &mut noise[..len] {
                    *b = xorshift(&mut state) as u8;
                }
                ram.write(at + off, &noise[..len]);
            }
            // A run of real data somewhere in the page.
            4 | 5 => {
                let len = 16 + (r >> 40) as usize % (page_size / 2);
                let off = (r >> 24) as usize % (page_size - len + 1);
                let src = (xorshift(&mut state) as usize) % (data.len() - len);
                ram.write(at + off, &data[src..src + len]);
            }
            // A whole-page flip to another page of real data.
            6 => {
                let src = (xorshift(&mut state) as usize) % (data.len() / page_size);
                ram.write(at, &data[src * page_size..(src + 1) * page_size]);
            }
            // The page becomes zero (a guest freeing memory).
            _ => ram.write(at, &zero),
        }
        writes += 1;
    }
    writes
}

fn message(buffer: &[c_char]) -> String {
    // SAFETY: the library NUL-terminates its message inside the buffer.
    unsafe { CStr::from_ptr(buffer.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Inflates `stream` with miniz_oxide; it must give exactly one page.
fn independent_inflate(stream: &[u8], page_size: usize) -> Result<(), String> {
    use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
    use miniz_oxide::inflate::TINFLStatus;
    let mut out = vec![0u8; page_size + 1];
    let mut state = DecompressorOxide::new();
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let (status, read, written) = decompress(&mut state, stream, &mut out, 0, flags);
    match status {
        TINFLStatus::Done if written == page_size && read == stream.len() => Ok(()),
        _ => Err(format!(
            "miniz: {status:?}, read {read} of {}, wrote {written}",
            stream.len()
        )),
    }
}

struct Outcome {
    packets: u64,
    writes: u64,
    compressed_pages: u64,
}

/// Prepares packets of `pages_per_packet` live pages for `duration` while
/// two threads rewrite them; checks every packet as described above.
fn run(level: u32, page_size: usize, pages_per_packet: usize, duration: Duration) -> Outcome {
    let data = common::real_data(8 << 20);
    assert!(data.len() >= 64 * page_size, "not enough real data");
    let initial: Vec<u8> = data
        .iter()
        .copied()
        .cycle()
        .take(pages_per_packet * page_size)
        .collect();
    let ram = Arc::new(GuestRam::new(&initial));
    let data = Arc::new(data);
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..2u64)
        .map(|k| {
            let (ram, data, stop, writes) =
                (ram.clone(), data.clone(), stop.clone(), writes.clone());
            thread::spawn(move || {
                let n = scribble(&ram, page_size, &data, 0x9e37_79b9 + k, &stop);
                writes.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();

    let mut sender = ptr::null_mut();
    let mut msg = [0 as c_char; 256];
    // SAFETY: out-pointer and message buffer are valid for the call.
    let status = unsafe {
        qemu_qpl_sender_new(
            1,
            page_size as u32,
            pages_per_packet as u32,
            level,
            &mut sender,
            msg.as_mut_ptr(),
            msg.len(),
        )
    };
    assert_eq!(status, QemuQplStatus::Ok, "{}", message(&msg));
    let config = ChannelConfig {
        channel: 1,
        page_size: page_size as u32,
        pages_per_packet: pages_per_packet as u32,
    };
    let mut receiver = Receiver::new(config).unwrap();
    let page_ptrs: Vec<*const u8> = (0..pages_per_packet)
        // SAFETY: every page lies inside the guest RAM buffer.
        .map(|i| unsafe { ram.base.add(i * page_size) }.cast_const())
        .collect();
    let mut iov = vec![
        QemuQplIovec {
            iov_base: ptr::null_mut(),
            iov_len: 0
        };
        pages_per_packet + 1
    ];
    let mut dest: Vec<Vec<u8>> = vec![vec![0u8; page_size]; pages_per_packet];
    let mut outcome = Outcome {
        packets: 0,
        writes: 0,
        compressed_pages: 0,
    };
    let start = Instant::now();
    let mut failure = None;
    while start.elapsed() < duration && failure.is_none() {
        let (mut iov_count, mut payload) = (0u32, 0u32);
        // SAFETY: the page pointers point at live pages of `page_size`
        // bytes; iov has pages_per_packet + 1 entries; out-pointers valid.
        let status = unsafe {
            qemu_qpl_send_prepare(
                sender,
                page_ptrs.as_ptr(),
                pages_per_packet as u32,
                iov.as_mut_ptr(),
                iov.len() as u32,
                &mut iov_count,
                &mut payload,
                msg.as_mut_ptr(),
                msg.len(),
            )
        };
        if status != QemuQplStatus::Ok {
            failure = Some(format!("send_prepare: {status:?}: {}", message(&msg)));
            break;
        }
        let mut body = Vec::with_capacity(payload as usize);
        let mut raw_pages = 0;
        for entry in &iov[..iov_count as usize] {
            let base = entry.iov_base.cast::<u8>().cast_const();
            let is_page = page_ptrs.contains(&base) && entry.iov_len == page_size;
            if !is_page && ram.contains(base, entry.iov_len) {
                failure = Some(format!(
                    "iovec {base:?}+{} overlaps guest RAM but is not one page",
                    entry.iov_len
                ));
                break;
            }
            raw_pages += is_page as u64;
            // SAFETY: the library says this iovec is readable; the sender's
            // buffers are alive until its next prepare. (AddressSanitizer
            // catches an iovec that runs past its buffer here.)
            body.extend_from_slice(unsafe { std::slice::from_raw_parts(base, entry.iov_len) });
        }
        if failure.is_some() {
            break;
        }
        if body.len() != payload as usize {
            failure = Some(format!(
                "iovecs hold {} bytes, payload_size says {payload}",
                body.len()
            ));
            break;
        }
        // Independent check of every compressed page before our receiver.
        let lengths: Vec<usize> = body[..4 * pages_per_packet]
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
            .collect();
        let mut at = 4 * pages_per_packet;
        for (page, &len) in lengths.iter().enumerate() {
            if at + len > body.len() || len == 0 || len > page_size {
                failure = Some(format!("page {page}: length {len} does not fit the body"));
                break;
            }
            if len < page_size {
                outcome.compressed_pages += 1;
                if let Err(e) = independent_inflate(&body[at..at + len], page_size) {
                    failure = Some(format!("page {page}: {e}"));
                    break;
                }
            }
            at += len;
        }
        if failure.is_some() {
            break;
        }
        let mut dest_refs: Vec<&mut [u8]> = dest.iter_mut().map(|p| p.as_mut_slice()).collect();
        if let Err(e) = receiver.receive_packet(&body, &mut dest_refs) {
            failure = Some(format!("receiver: {e}"));
            break;
        }
        let _ = raw_pages;
        outcome.packets += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    // SAFETY: a live handle, not used again.
    unsafe { qemu_qpl_sender_free(sender) };
    outcome.writes = writes.load(Ordering::Relaxed);
    if let Some(failure) = failure {
        panic!(
            "level {level}, {page_size}-byte pages, after {} good packets: {failure}",
            outcome.packets
        );
    }
    outcome
}

/// Seconds per configuration: QEMU_QPL_STRESS_SECONDS, default 2.
fn duration() -> Duration {
    let secs = std::env::var("QEMU_QPL_STRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

fn stress(level: u32) {
    for (page_size, per_packet) in [(4096, 128), (512, 256), (65536, 8)] {
        let outcome = run(level, page_size, per_packet, duration());
        eprintln!(
            "level {level}, {page_size}-byte pages: {} packets, {} compressed pages, {} writes by the guest threads",
            outcome.packets, outcome.compressed_pages, outcome.writes
        );
        assert!(outcome.packets > 0 && outcome.writes > 0);
        assert!(outcome.compressed_pages > 0, "no page was compressed");
    }
}

#[test]
fn fast_level_survives_pages_changing_under_it() {
    stress(1);
}

#[test]
fn strong_level_survives_pages_changing_under_it() {
    stress(2);
}

#[test]
fn turbo_level_survives_pages_changing_under_it() {
    stress(3);
}

#[test]
fn auto_level_survives_pages_changing_under_it() {
    stress(4);
}
