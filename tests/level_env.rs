//! `QEMU_QPL_LEVEL` picks the level of senders created with level 0. Its own
//! test binary (one process, one test) because it changes the environment.

use std::ffi::{c_char, CStr};
use std::ptr;

use qemu_qpl::abi::*;

mod common;

const PAGE: usize = 4096;

/// Creates a sender at `level`; Ok(sender) or Err((status, message)).
fn sender_at(level: u32) -> Result<*mut QemuQplSender, (QemuQplStatus, String)> {
    let mut sender = ptr::null_mut();
    let mut msg = [0 as c_char; 256];
    // SAFETY: sender and msg are valid for the call; msg holds 256 bytes.
    let status = unsafe {
        qemu_qpl_sender_new(
            0,
            PAGE as u32,
            64,
            level,
            &mut sender,
            msg.as_mut_ptr(),
            256,
        )
    };
    if status == QemuQplStatus::Ok {
        Ok(sender)
    } else {
        // SAFETY: the library NUL-terminates its message inside the buffer.
        let text = unsafe { CStr::from_ptr(msg.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        Err((status, text))
    }
}

/// Payload bytes of one packet of `pages` sent by `sender`.
fn payload_size(sender: *mut QemuQplSender, pages: &[&[u8]]) -> u32 {
    let pointers: Vec<*const u8> = pages.iter().map(|p| p.as_ptr()).collect();
    let mut iov = vec![
        QemuQplIovec {
            iov_base: ptr::null_mut(),
            iov_len: 0
        };
        pages.len() + 1
    ];
    let (mut count, mut size) = (0u32, 0u32);
    let mut msg = [0 as c_char; 256];
    // SAFETY: every page pointer is valid for PAGE bytes; iov holds n + 1 entries.
    let status = unsafe {
        qemu_qpl_send_prepare(
            sender,
            pointers.as_ptr(),
            pages.len() as u32,
            iov.as_mut_ptr(),
            iov.len() as u32,
            &mut count,
            &mut size,
            msg.as_mut_ptr(),
            256,
        )
    };
    assert_eq!(status, QemuQplStatus::Ok);
    size
}

fn free(sender: *mut QemuQplSender) {
    // SAFETY: sender came from qemu_qpl_sender_new and is freed once.
    unsafe { qemu_qpl_sender_free(sender) }
}

#[test]
fn level_env_selects_the_default_level_and_rejects_typos() {
    let data = common::real_data(PAGE * 64);
    let pages = common::pages(&data, PAGE);
    let size_at = |level: u32| {
        let sender = sender_at(level).expect("sender");
        let size = payload_size(sender, &pages);
        free(sender);
        size
    };
    std::env::remove_var("QEMU_QPL_LEVEL");
    let (fast, strong, default) = (size_at(1), size_at(2), size_at(0));
    assert!(
        strong < fast,
        "strong ({strong}) must be tighter than fast ({fast})"
    );
    assert_eq!(default, fast, "the default level is fast");

    std::env::set_var("QEMU_QPL_LEVEL", "strong");
    assert_eq!(size_at(0), strong, "QEMU_QPL_LEVEL=strong");
    assert_eq!(size_at(1), fast, "an explicit level wins over the variable");
    std::env::set_var("QEMU_QPL_LEVEL", "Fast");
    assert_eq!(size_at(0), fast, "QEMU_QPL_LEVEL=Fast");

    std::env::set_var("QEMU_QPL_LEVEL", "strongest");
    let (status, message) = sender_at(0).expect_err("a misspelt level must fail");
    assert_eq!(status, QemuQplStatus::InvalidArgument);
    assert!(
        message.contains("QEMU_QPL_LEVEL") && message.contains("strongest"),
        "{message}"
    );
    std::env::remove_var("QEMU_QPL_LEVEL");
}
