//! Every buffer and table of a channel is allocated at setup: preparing a
//! packet and the three receive calls allocate nothing, from the first packet
//! on, at every level and page size. A counting global allocator proves it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::c_char;
use std::ptr;

use qemu_qpl::abi::*;

mod common;

/// Counts the allocations of the current thread (tests run in threads).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Bytes currently allocated by this thread.
    static LIVE_BYTES: Cell<i64> = const { Cell::new(0) };
}

fn add_bytes(n: i64) {
    LIVE_BYTES.with(|b| b.set(b.get() + n));
}

// SAFETY: forwards to the system allocator; the counter is a const-initialised
// thread-local Cell, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        add_bytes(layout.size() as i64);
        // SAFETY: the caller's layout contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add_bytes(-(layout.size() as i64));
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        add_bytes(new_size as i64 - layout.size() as i64);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Allocations made by `f`.
fn counted<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = allocations();
    let result = f();
    (result, allocations() - before)
}

/// Sends `packets` through a new sender and receiver at `level`, counting
/// the allocations of every per-packet call; returns (send, receive) counts.
fn per_packet_allocations(level: u32, page_size: usize, packets: &[Vec<&[u8]>]) -> (u64, u64) {
    let max_pages = packets.iter().map(Vec::len).max().unwrap();
    let mut msg = [0 as c_char; 256];
    let m = msg.as_mut_ptr();
    let (mut send_allocs, mut recv_allocs) = (0, 0);
    // SAFETY: all pointers are valid for the calls: out-pointers are locals,
    // page pointers point at `page_size` bytes, iov has max_pages + 1 entries,
    // receive buffers come from the library, destinations are whole pages.
    unsafe {
        let (mut sender, mut receiver) = (ptr::null_mut(), ptr::null_mut());
        let ps = page_size as u32;
        let n = max_pages as u32;
        assert_eq!(
            qemu_qpl_sender_new(3, ps, n, level, &mut sender, m, 256),
            QemuQplStatus::Ok
        );
        assert_eq!(
            qemu_qpl_receiver_new(3, ps, n, &mut receiver, m, 256),
            QemuQplStatus::Ok
        );
        let mut pointers: Vec<*const u8> = Vec::with_capacity(max_pages);
        let mut dest = vec![0u8; max_pages * page_size];
        let dest_ptrs: Vec<*mut u8> = dest
            .chunks_exact_mut(page_size)
            .map(|p| p.as_mut_ptr())
            .collect();
        let mut iov = vec![
            QemuQplIovec {
                iov_base: ptr::null_mut(),
                iov_len: 0
            };
            max_pages + 1
        ];
        let mut body = Vec::with_capacity(max_pages * (page_size + 4));
        for packet in packets {
            pointers.clear();
            pointers.extend(packet.iter().map(|p| p.as_ptr()));
            let count = packet.len() as u32;
            let (mut iov_count, mut payload) = (0u32, 0u32);
            let (status, n) = counted(|| {
                qemu_qpl_send_prepare(
                    sender,
                    pointers.as_ptr(),
                    count,
                    iov.as_mut_ptr(),
                    iov.len() as u32,
                    &mut iov_count,
                    &mut payload,
                    m,
                    256,
                )
            });
            assert_eq!(status, QemuQplStatus::Ok);
            send_allocs += n;
            body.clear();
            for entry in &iov[..iov_count as usize] {
                body.extend_from_slice(std::slice::from_raw_parts(
                    entry.iov_base.cast::<u8>(),
                    entry.iov_len,
                ));
            }

            let (mut buf, mut len) = (ptr::null_mut(), 0usize);
            let (status, n) = counted(|| {
                qemu_qpl_recv_begin(receiver, count, payload.into(), &mut buf, &mut len, m, 256)
            });
            assert_eq!(status, QemuQplStatus::Ok);
            recv_allocs += n;
            ptr::copy_nonoverlapping(body.as_ptr(), buf, len);
            let lengths_len = len;
            let (status, n) =
                counted(|| qemu_qpl_recv_lengths(receiver, &mut buf, &mut len, m, 256));
            assert_eq!(status, QemuQplStatus::Ok);
            recv_allocs += n;
            ptr::copy_nonoverlapping(body[lengths_len..].as_ptr(), buf, len);
            let (status, n) =
                counted(|| qemu_qpl_recv_pages(receiver, dest_ptrs.as_ptr(), count, m, 256));
            assert_eq!(status, QemuQplStatus::Ok);
            recv_allocs += n;
            for (page, out) in packet.iter().zip(dest.chunks_exact(page_size)) {
                assert_eq!(*page, out);
            }
        }
        qemu_qpl_sender_free(sender);
        qemu_qpl_receiver_free(receiver);
    }
    (send_allocs, recv_allocs)
}

#[test]
fn no_allocation_per_packet_at_any_level_or_page_size() {
    let data = common::real_data(4 << 20);
    let noise = common::noise(1 << 20, 7);
    let zeros = vec![0u8; 65536];
    for page_size in [512usize, 4096, 65536] {
        let real = common::pages(&data, page_size);
        let random = common::pages(&noise, page_size);
        let per_packet = (256 * 1024 / page_size).max(4);
        // Real pages, a full packet of them, then a mixed packet with random
        // (raw) and zero pages, then a short one.
        let mut mixed: Vec<&[u8]> = real[..per_packet / 2].to_vec();
        mixed.extend(random.iter().take(per_packet / 4));
        mixed.push(&zeros[..page_size]);
        let packets = vec![
            real[per_packet..2 * per_packet].to_vec(),
            mixed,
            real[..3].to_vec(),
        ];
        for level in [0, 1, 2, 3, 4] {
            let (send, recv) = per_packet_allocations(level, page_size, &packets);
            assert_eq!(
                (send, recv),
                (0, 0),
                "level {level}, {page_size}-byte pages: allocations in (send_prepare, receive calls)"
            );
        }
    }
}

#[test]
fn the_counter_sees_allocations() {
    // The check above could not fail if the counter never moved.
    let (_, n) = counted(|| std::hint::black_box(vec![1u8; 100]));
    assert_eq!(n, 1);
}

/// The heap bytes one channel holds on each side, for README's table:
/// `cargo test --release --test allocations -- --nocapture`.
#[test]
fn memory_per_channel() {
    let live = || LIVE_BYTES.with(Cell::get);
    let mut msg = [0 as c_char; 256];
    eprintln!("| page size | pages per packet | level | sender bytes | receiver bytes |");
    eprintln!("|---|---|---|---|---|");
    for (page_size, pages) in [(4096u32, 128u32), (65536, 8)] {
        for level in [1u32, 2, 3, 4] {
            // SAFETY: valid out-pointers and message buffer; handles freed once.
            unsafe {
                let (mut sender, mut receiver) = (ptr::null_mut(), ptr::null_mut());
                let before = live();
                let status = qemu_qpl_sender_new(
                    0,
                    page_size,
                    pages,
                    level,
                    &mut sender,
                    msg.as_mut_ptr(),
                    256,
                );
                assert_eq!(status, QemuQplStatus::Ok);
                let send = live() - before;
                let before = live();
                let status = qemu_qpl_receiver_new(
                    0,
                    page_size,
                    pages,
                    &mut receiver,
                    msg.as_mut_ptr(),
                    256,
                );
                assert_eq!(status, QemuQplStatus::Ok);
                let recv = live() - before;
                eprintln!("| {page_size} | {pages} | {level} | {send} | {recv} |");
                qemu_qpl_sender_free(sender);
                qemu_qpl_receiver_free(receiver);
                assert!(
                    send > (pages * (page_size - 1)) as i64,
                    "the send buffer is counted"
                );
            }
        }
    }
}
