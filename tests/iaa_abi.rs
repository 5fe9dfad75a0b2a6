//! The IAA path through the C ABI: the path line and the counters, as QEMU's
//! shim reads them (`qemu_qpl_{sender,receiver}_{path,counters}`), on the CPU
//! path and, in a child process, on the IAA model.

use std::ffi::{c_char, CStr};
use std::ptr;

use qemu_qpl::abi::*;

mod common;
mod iaa_common;

fn text(buffer: &[c_char]) -> String {
    // SAFETY: the library NUL-terminates what it writes into the buffer.
    unsafe { CStr::from_ptr(buffer.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

struct Channel {
    sender: *mut QemuQplSender,
    receiver: *mut QemuQplReceiver,
}

impl Channel {
    fn new() -> Channel {
        let (mut sender, mut receiver) = (ptr::null_mut(), ptr::null_mut());
        let mut msg = [0 as c_char; 256];
        // SAFETY: valid out-pointers and message buffer.
        unsafe {
            assert_eq!(
                qemu_qpl_sender_new(5, 4096, 128, 0, &mut sender, msg.as_mut_ptr(), msg.len()),
                QemuQplStatus::Ok,
                "{}",
                text(&msg)
            );
            assert_eq!(
                qemu_qpl_receiver_new(5, 4096, 128, &mut receiver, msg.as_mut_ptr(), msg.len()),
                QemuQplStatus::Ok,
                "{}",
                text(&msg)
            );
        }
        Channel { sender, receiver }
    }

    fn paths(&self) -> (String, String) {
        let (mut send, mut recv) = ([0 as c_char; 512], [0 as c_char; 512]);
        // SAFETY: live handles, buffers of the given sizes.
        unsafe {
            assert_eq!(
                qemu_qpl_sender_path(
                    self.sender,
                    send.as_mut_ptr(),
                    send.len(),
                    ptr::null_mut(),
                    0
                ),
                QemuQplStatus::Ok
            );
            assert_eq!(
                qemu_qpl_receiver_path(
                    self.receiver,
                    recv.as_mut_ptr(),
                    recv.len(),
                    ptr::null_mut(),
                    0
                ),
                QemuQplStatus::Ok
            );
        }
        (text(&send), text(&recv))
    }

    fn counters(&self) -> (QemuQplCounters, QemuQplCounters) {
        let mut send = QemuQplCounters {
            size: std::mem::size_of::<QemuQplCounters>() as u32,
            ..QemuQplCounters::default()
        };
        let mut recv = send;
        // SAFETY: live handles, counters structs of the size they announce.
        unsafe {
            assert_eq!(
                qemu_qpl_sender_counters(self.sender, &mut send, ptr::null_mut(), 0),
                QemuQplStatus::Ok
            );
            assert_eq!(
                qemu_qpl_receiver_counters(self.receiver, &mut recv, ptr::null_mut(), 0),
                QemuQplStatus::Ok
            );
        }
        (send, recv)
    }

    /// One packet of `pages` through the sender and the receiver.
    fn round_trip(&self, pages: &[&[u8]]) {
        let pointers: Vec<*const u8> = pages.iter().map(|p| p.as_ptr()).collect();
        let mut iov = vec![
            QemuQplIovec {
                iov_base: ptr::null_mut(),
                iov_len: 0
            };
            pages.len() + 1
        ];
        let (mut count, mut payload) = (0u32, 0u32);
        let mut msg = [0 as c_char; 256];
        let m = msg.as_mut_ptr();
        let mut dest = vec![vec![0u8; 4096]; pages.len()];
        let dest_ptrs: Vec<*mut u8> = dest.iter_mut().map(|p| p.as_mut_ptr()).collect();
        let n = pages.len() as u32;
        // SAFETY: pointers to live pages of 4096 bytes, an iov of n + 1
        // entries, receive buffers from the library, whole destination pages.
        unsafe {
            assert_eq!(
                qemu_qpl_send_prepare(
                    self.sender,
                    pointers.as_ptr(),
                    n,
                    iov.as_mut_ptr(),
                    n + 1,
                    &mut count,
                    &mut payload,
                    m,
                    256
                ),
                QemuQplStatus::Ok
            );
            let mut body = Vec::new();
            for entry in &iov[..count as usize] {
                body.extend_from_slice(std::slice::from_raw_parts(
                    entry.iov_base.cast::<u8>(),
                    entry.iov_len,
                ));
            }
            let (mut buf, mut len) = (ptr::null_mut(), 0usize);
            assert_eq!(
                qemu_qpl_recv_begin(self.receiver, n, payload.into(), &mut buf, &mut len, m, 256),
                QemuQplStatus::Ok
            );
            ptr::copy_nonoverlapping(body.as_ptr(), buf, len);
            let lengths = len;
            assert_eq!(
                qemu_qpl_recv_lengths(self.receiver, &mut buf, &mut len, m, 256),
                QemuQplStatus::Ok
            );
            ptr::copy_nonoverlapping(body[lengths..].as_ptr(), buf, len);
            assert_eq!(
                qemu_qpl_recv_pages(self.receiver, dest_ptrs.as_ptr(), n, m, 256),
                QemuQplStatus::Ok,
                "{}",
                text(&msg)
            );
        }
        for (page, out) in pages.iter().zip(&dest) {
            assert!(*page == out.as_slice());
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        // SAFETY: live handles, freed once.
        unsafe {
            qemu_qpl_sender_free(self.sender);
            qemu_qpl_receiver_free(self.receiver);
        }
    }
}

#[test]
fn the_cpu_path_says_why_and_counts_its_pages() {
    if std::env::var_os("IAA_TEST_SCENARIO").is_some()
        || std::env::var_os("QEMU_QPL_IAA_SYSFS").is_some()
    {
        eprintln!("skipped: the environment points the library at an IAA device");
        return;
    }
    let channel = Channel::new();
    let (send, recv) = channel.paths();
    // This machine has no IAA device (or the environment says off).
    assert!(
        send.starts_with("CPU: ") && recv.starts_with("CPU: "),
        "{send} / {recv}"
    );
    let data = common::real_data(1 << 20);
    let noise = common::noise(4096, 9);
    let mut pages = common::pages(&data, 4096)[..100].to_vec();
    pages.push(&noise);
    channel.round_trip(&pages);
    let (s, r) = channel.counters();
    for c in [s, r] {
        assert_eq!(c.size as usize, std::mem::size_of::<QemuQplCounters>());
        assert_eq!(c.path, QEMU_QPL_PATH_CPU);
        assert_eq!(c.pages_iaa, 0);
        assert_eq!(c.pages_cpu + c.pages_raw, 101);
        assert!(c.pages_raw >= 1, "the noise page travels raw");
        assert_eq!(c.descriptors, 0);
    }
}

#[test]
fn counters_fill_at_most_the_callers_size() {
    let channel = Channel::new();
    let mut msg = [0 as c_char; 256];
    // An older caller's struct: the two header words and pages_iaa only.
    let mut small = [0u64; 3];
    small[0] = 16 + 8; // size = 24
                       // SAFETY: `small` holds 24 bytes and is aligned for the struct's words.
    let status = unsafe {
        qemu_qpl_sender_counters(
            channel.sender,
            small.as_mut_ptr().cast::<QemuQplCounters>(),
            msg.as_mut_ptr(),
            msg.len(),
        )
    };
    assert_eq!(status, QemuQplStatus::Ok);
    assert_eq!(small[0] as u32, 24, "the size filled");
    // Too small for the header: refused, nothing written past it.
    let mut tiny = [0u64; 3];
    tiny[0] = 4;
    tiny[2] = 0xAAAA;
    // SAFETY: as above.
    let status = unsafe {
        qemu_qpl_sender_counters(
            channel.sender,
            tiny.as_mut_ptr().cast::<QemuQplCounters>(),
            msg.as_mut_ptr(),
            msg.len(),
        )
    };
    assert_eq!(status, QemuQplStatus::InvalidArgument);
    assert!(
        text(&msg).contains("sizeof(QemuQplCounters)"),
        "{}",
        text(&msg)
    );
    assert_eq!(tiny[2], 0xAAAA);
    // NULL counters and NULL or empty path buffers are caller bugs.
    // SAFETY: a live handle; the NULL pointers are what is being tested.
    unsafe {
        assert_eq!(
            qemu_qpl_receiver_counters(channel.receiver, ptr::null_mut(), ptr::null_mut(), 0),
            QemuQplStatus::InvalidArgument
        );
        assert_eq!(
            qemu_qpl_sender_path(channel.sender, ptr::null_mut(), 10, ptr::null_mut(), 0),
            QemuQplStatus::InvalidArgument
        );
    }
    // A short buffer gets the line cut, NUL-terminated.
    let mut short = [0x7f as c_char; 8];
    // SAFETY: an 8-byte buffer.
    unsafe {
        assert_eq!(
            qemu_qpl_sender_path(
                channel.sender,
                short.as_mut_ptr(),
                short.len(),
                ptr::null_mut(),
                0
            ),
            QemuQplStatus::Ok
        );
    }
    assert_eq!(text(&short).len(), 7);
}

/// Child: a channel on the model, through the C ABI.
fn on_the_model() {
    let channel = Channel::new();
    let data = common::real_data(1 << 20);
    let pages = common::pages(&data, 4096);
    for packet in pages.chunks(128) {
        channel.round_trip(packet);
    }
    let (send, recv) = channel.paths();
    println!("RESULT send_path={send}");
    println!("RESULT recv_path={recv}");
    let (s, r) = channel.counters();
    for (side, c) in [("send", s), ("recv", r)] {
        println!("RESULT {side}_path_code={}", c.path);
        println!("RESULT {side}_iaa={}", c.pages_iaa);
        println!(
            "RESULT {side}_all={}",
            c.pages_iaa + c.pages_cpu + c.pages_raw
        );
        println!("RESULT {side}_descriptors={}", c.descriptors);
    }
    println!("RESULT pages={}", pages.len());
}

#[test]
#[ignore]
fn model_child() {
    if std::env::var("IAA_TEST_SCENARIO").as_deref() == Ok("abi") {
        on_the_model();
    }
}

#[test]
fn the_iaa_path_through_the_abi() {
    let outcome = iaa_common::run_on_model(
        "abi",
        "shared:128:bof",
        &[("QEMU_QPL_IAA_SUBMIT", "enqcmd")],
        true,
    );
    let pages = outcome.number("pages");
    for side in ["send", "recv"] {
        assert!(outcome.result(&format!("{side}_path")).starts_with(
            "IAA: iax1 wq1.0 (shared WQ of 128 entries, block on fault, NUMA node 0) via ENQCMD"
        ));
        assert_eq!(
            outcome.number(&format!("{side}_path_code")),
            u64::from(QEMU_QPL_PATH_IAA)
        );
        assert_eq!(outcome.number(&format!("{side}_all")), pages);
        assert!(outcome.number(&format!("{side}_iaa")) > pages / 2);
        assert!(
            outcome.number(&format!("{side}_descriptors"))
                >= outcome.number(&format!("{side}_iaa"))
        );
    }
    assert_eq!(outcome.stat("compress_ok"), outcome.number("send_iaa"));
    assert_eq!(outcome.stat("decompress_ok"), outcome.number("recv_iaa"));
}
