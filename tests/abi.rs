//! The C boundary itself: status codes, messages, and the pointers the ABI
//! forbids (NULL, misaligned) turned into errors instead of crashes.

use std::ffi::{c_char, CStr};
use std::ptr;

use qemu_qpl::abi::*;

mod common;

const PAGE: u32 = 4096;

struct Message([c_char; 256]);

impl Message {
    fn new() -> Self {
        Message([0; 256])
    }
    fn text(&self) -> String {
        // SAFETY: the library always NUL-terminates within the buffer.
        unsafe { CStr::from_ptr(self.0.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }
}

fn new_sender(pages_per_packet: u32) -> *mut QemuQplSender {
    // SAFETY: every pointer passed below is either valid for the call or
    // deliberately NULL/misaligned to test the library's checks.
    unsafe {
        let mut sender = ptr::null_mut();
        let mut msg = Message::new();
        let status = qemu_qpl_sender_new(
            0,
            PAGE,
            pages_per_packet,
            0,
            &mut sender,
            msg.0.as_mut_ptr(),
            256,
        );
        assert_eq!(status, QemuQplStatus::Ok, "{}", msg.text());
        sender
    }
}

fn new_receiver(pages_per_packet: u32) -> *mut QemuQplReceiver {
    // SAFETY: every pointer passed below is either valid for the call or
    // deliberately NULL/misaligned to test the library's checks.
    unsafe {
        let mut receiver = ptr::null_mut();
        let mut msg = Message::new();
        let status = qemu_qpl_receiver_new(
            2,
            PAGE,
            pages_per_packet,
            &mut receiver,
            msg.0.as_mut_ptr(),
            256,
        );
        assert_eq!(status, QemuQplStatus::Ok, "{}", msg.text());
        receiver
    }
}

#[test]
fn setup_rejects_bad_sizes_and_levels_with_a_message() {
    // SAFETY: every pointer passed below is either valid for the call or
    // deliberately NULL/misaligned to test the library's checks.
    unsafe {
        let mut sender = ptr::null_mut();
        let mut msg = Message::new();
        for (page_size, per_packet, level) in [
            (4000, 128, 0),
            (4096, 0, 0),
            (1 << 20, 1, 0),
            (4096, 128, 9),
        ] {
            let status = qemu_qpl_sender_new(
                0,
                page_size,
                per_packet,
                level,
                &mut sender,
                msg.0.as_mut_ptr(),
                256,
            );
            assert_eq!(status, QemuQplStatus::InvalidArgument);
            assert!(!msg.text().is_empty());
        }
        let status = qemu_qpl_sender_new(0, PAGE, 128, 0, ptr::null_mut(), msg.0.as_mut_ptr(), 256);
        assert_eq!(status, QemuQplStatus::InvalidArgument);
        assert!(msg.text().contains("sender_out is NULL"), "{}", msg.text());
        // A too-small message buffer is truncated, still NUL-terminated.
        let mut tiny = [0x7f as c_char; 8];
        qemu_qpl_sender_new(0, 4000, 128, 0, &mut sender, tiny.as_mut_ptr(), tiny.len());
        assert_eq!(tiny[7], 0);
        // No message buffer at all is allowed.
        let status = qemu_qpl_sender_new(0, 4000, 128, 0, &mut sender, ptr::null_mut(), 0);
        assert_eq!(status, QemuQplStatus::InvalidArgument);
    }
}

#[test]
fn prepare_rejects_null_and_misaligned_pointers() {
    // SAFETY: every pointer passed below is either valid for the call or
    // deliberately NULL/misaligned to test the library's checks.
    unsafe {
        let sender = new_sender(4);
        let page = vec![1u8; PAGE as usize];
        let pages = [page.as_ptr()];
        let mut iov = [QemuQplIovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        }; 5];
        let (mut count, mut size) = (0u32, 0u32);
        let mut msg = Message::new();
        let m = msg.0.as_mut_ptr();

        let status = qemu_qpl_send_prepare(
            ptr::null_mut(),
            pages.as_ptr(),
            1,
            iov.as_mut_ptr(),
            5,
            &mut count,
            &mut size,
            m,
            256,
        );
        assert_eq!(status, QemuQplStatus::InvalidArgument);
        assert!(msg.text().contains("sender is NULL"));

        let status = qemu_qpl_send_prepare(
            sender,
            ptr::null(),
            1,
            iov.as_mut_ptr(),
            5,
            &mut count,
            &mut size,
            m,
            256,
        );
        assert_eq!(status, QemuQplStatus::InvalidArgument);
        assert!(msg.text().contains("page pointer array is NULL"));

        let null_page = [ptr::null::<u8>()];
        let status = qemu_qpl_send_prepare(
            sender,
            null_page.as_ptr(),
            1,
            iov.as_mut_ptr(),
            5,
            &mut count,
            &mut size,
            m,
            256,
        );
        assert_eq!(status, QemuQplStatus::InvalidArgument);
        assert!(msg.text().contains("page pointer 0 is NULL"));

        // A page pointer array that is not pointer-aligned.
        let mut storage = vec![0u8; 2 * std::mem::size_of::<usize>() + 1];
        let misaligned = storage.as_mut_ptr().wrapping_add(1) as *const *const u8;
        let status = qemu_qpl_send_prepare(
            sender,
            misaligned,
            1,
            iov.as_mut_ptr(),
            5,
            &mut count,
            &mut size,
            m,
            256,
        );
        assert_eq!(status, QemuQplStatus::InvalidArgument);
        assert!(msg.text().contains("not aligned"), "{}", msg.text());

        let misaligned_count = storage.as_mut_ptr().wrapping_add(1) as *mut u32;
        let status = qemu_qpl_send_prepare(
            sender,
            pages.as_ptr(),
            1,
            iov.as_mut_ptr(),
            5,
            misaligned_count,
            &mut size,
            m,
            256,
        );
        assert_eq!(status, QemuQplStatus::InvalidArgument);
        assert!(
            msg.text().contains("iov_count is not aligned"),
            "{}",
            msg.text()
        );

        let status = qemu_qpl_send_prepare(
            sender,
            pages.as_ptr(),
            1,
            iov.as_mut_ptr(),
            1,
            &mut count,
            &mut size,
            m,
            256,
        );
        assert_eq!(status, QemuQplStatus::InvalidArgument);
        assert!(msg.text().contains("iov capacity"), "{}", msg.text());

        // And the same call done right.
        let status = qemu_qpl_send_prepare(
            sender,
            pages.as_ptr(),
            1,
            iov.as_mut_ptr(),
            5,
            &mut count,
            &mut size,
            m,
            256,
        );
        assert_eq!(status, QemuQplStatus::Ok, "{}", msg.text());
        assert_eq!(count, 1, "length array and stream share one iovec");
        assert_eq!(iov[0].iov_len, size as usize);
        qemu_qpl_sender_free(sender);
        qemu_qpl_sender_free(ptr::null_mut());
    }
}

#[test]
fn receive_steps_report_corrupt_packets_and_misuse() {
    // SAFETY: every pointer passed below is either valid for the call or
    // deliberately NULL/misaligned to test the library's checks.
    unsafe {
        let receiver = new_receiver(8);
        let mut msg = Message::new();
        let m = msg.0.as_mut_ptr();
        let (mut buf, mut len) = (ptr::null_mut(), 0usize);

        // Out of order: lengths before begin.
        let status = qemu_qpl_recv_lengths(receiver, &mut buf, &mut len, m, 256);
        assert_eq!(status, QemuQplStatus::InvalidArgument);

        // Too many pages is the network's fault, and names the channel.
        let status = qemu_qpl_recv_begin(receiver, 9, 100_000, &mut buf, &mut len, m, 256);
        assert_eq!(status, QemuQplStatus::CorruptPacket);
        assert!(msg.text().contains("channel 2"), "{}", msg.text());
        // ... and concerns the packet, not one of its pages.
        assert_eq!(qemu_qpl_recv_fault_page(receiver), -1);

        // A length above the page size, in the second page.
        assert_eq!(
            qemu_qpl_recv_begin(receiver, 2, 8 + 5100, &mut buf, &mut len, m, 256),
            QemuQplStatus::Ok
        );
        assert_eq!(len, 8);
        // SAFETY: the library returned an 8-byte buffer.
        ptr::copy_nonoverlapping(100u32.to_be_bytes().as_ptr(), buf, 4);
        ptr::copy_nonoverlapping(5000u32.to_be_bytes().as_ptr(), buf.add(4), 4);
        let status = qemu_qpl_recv_lengths(receiver, &mut buf, &mut len, m, 256);
        assert_eq!(status, QemuQplStatus::CorruptPacket);
        assert!(msg.text().contains("page 1"), "{}", msg.text());
        assert_eq!(qemu_qpl_recv_fault_page(receiver), 1);
        assert_eq!(qemu_qpl_recv_fault_page(ptr::null()), -1);

        // After a failure the receiver refuses to decode the half-read packet.
        let mut page = vec![0u8; PAGE as usize];
        let dest = [page.as_mut_ptr()];
        let status = qemu_qpl_recv_pages(receiver, dest.as_ptr(), 1, m, 256);
        assert_eq!(status, QemuQplStatus::InvalidArgument);

        // NULL destination array and NULL destination page.
        assert_eq!(
            qemu_qpl_recv_begin(receiver, 1, 4 + PAGE as u64, &mut buf, &mut len, m, 256),
            QemuQplStatus::Ok
        );
        // A new packet forgets the last one's fault.
        assert_eq!(qemu_qpl_recv_fault_page(receiver), -1);
        // SAFETY: a 4-byte buffer from the library.
        ptr::copy_nonoverlapping(PAGE.to_be_bytes().as_ptr(), buf, 4);
        assert_eq!(
            qemu_qpl_recv_lengths(receiver, &mut buf, &mut len, m, 256),
            QemuQplStatus::Ok
        );
        assert_eq!(len, PAGE as usize);
        let status = qemu_qpl_recv_pages(receiver, ptr::null(), 1, m, 256);
        assert_eq!(status, QemuQplStatus::InvalidArgument);
        let null_dest = [ptr::null_mut::<u8>()];
        let status = qemu_qpl_recv_pages(receiver, null_dest.as_ptr(), 1, m, 256);
        assert_eq!(status, QemuQplStatus::InvalidArgument);
        assert!(msg.text().contains("destination page pointer 0 is NULL"));
        qemu_qpl_receiver_free(receiver);
    }
}

/// Payload bytes of one packet of `pages` sent at `level`.
fn payload_at(level: u32, pages: &[&[u8]]) -> Result<u32, (QemuQplStatus, String)> {
    // SAFETY: the out-pointers, message buffer, page pointers (PAGE bytes
    // each) and iovec array (n + 1 entries) are valid for the calls.
    unsafe {
        let mut sender = ptr::null_mut();
        let mut msg = Message::new();
        let status = qemu_qpl_sender_new(
            0,
            PAGE,
            pages.len() as u32,
            level,
            &mut sender,
            msg.0.as_mut_ptr(),
            256,
        );
        if status != QemuQplStatus::Ok {
            return Err((status, msg.text()));
        }
        let pointers: Vec<*const u8> = pages.iter().map(|p| p.as_ptr()).collect();
        let mut iov = vec![
            QemuQplIovec {
                iov_base: ptr::null_mut(),
                iov_len: 0
            };
            pages.len() + 1
        ];
        let (mut count, mut size) = (0u32, 0u32);
        let status = qemu_qpl_send_prepare(
            sender,
            pointers.as_ptr(),
            pages.len() as u32,
            iov.as_mut_ptr(),
            iov.len() as u32,
            &mut count,
            &mut size,
            msg.0.as_mut_ptr(),
            256,
        );
        qemu_qpl_sender_free(sender);
        assert_eq!(status, QemuQplStatus::Ok, "{}", msg.text());
        Ok(size)
    }
}

#[test]
fn levels_zero_is_fast_two_is_strong_three_is_turbo_four_is_auto_and_others_are_refused() {
    let data = common::real_data(PAGE as usize * 64);
    let pages = common::pages(&data, PAGE as usize);
    let (default, fast, strong, turbo) = (
        payload_at(0, &pages).unwrap(),
        payload_at(1, &pages).unwrap(),
        payload_at(2, &pages).unwrap(),
        payload_at(3, &pages).unwrap(),
    );
    assert_eq!(default, fast, "the default level is fast");
    assert!(
        strong < fast && fast < turbo,
        "strong ({strong}) < fast ({fast}) < turbo ({turbo})"
    );
    // Auto starts at fast.
    assert_eq!(payload_at(4, &pages).unwrap(), fast);
    let (status, message) = payload_at(5, &pages).unwrap_err();
    assert_eq!(status, QemuQplStatus::InvalidArgument);
    assert!(message.contains("unknown compression level 5"), "{message}");
}
