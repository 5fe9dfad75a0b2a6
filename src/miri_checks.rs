//! Tests small enough for Miri (`make miri`), which interprets every memory
//! access of the codec's and the ABI's `unsafe` code and checks it against
//! Rust's aliasing rules (Stacked and Tree Borrows). The other tests cover
//! the same code at full size; these keep the inputs tiny so that Miri's
//! speed (thousands of times slower) stays within a few minutes.

use std::ffi::c_char;
use std::ptr;

use crate::abi::*;
use crate::codec::{Level, PageDecoder, PageEncoder};

const PAGE: usize = 512;

/// Small pages that reach every block type and the decoder's fast and
/// careful loops: text (dynamic), one byte repeated (matches at distance 1),
/// a short period (overlapping copies), noise (stored), and short random
/// runs (fixed or dynamic with long distances).
fn pages() -> Vec<Vec<u8>> {
    let text = b"pub fn decode(&mut self, stream: &[u8], page: &mut [u8]) -> Result<(), DecodeFault> { let mut bits = Bits::new(stream); } ";
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let noise: Vec<u8> = (0..PAGE).map(|_| next() as u8).collect();
    let runs: Vec<u8> = (0..PAGE)
        .map(|i| {
            if (i / 24) % 3 == 0 {
                noise[i % 40]
            } else {
                next() as u8 % 4
            }
        })
        .collect();
    // A match that ends within the decoder's copy slack of the page's end,
    // followed by literals that its fast loop still writes: the path where a
    // reborrow of the page once invalidated the loop's output pointer. Cheap
    // literals first, so that the page is not stored, then noise, so that
    // the stream's end is as long as the page's.
    let mut tail: Vec<u8> = (0..PAGE)
        .map(|i| {
            if i < PAGE / 2 {
                next() as u8 % 16
            } else {
                next() as u8
            }
        })
        .collect();
    tail.copy_within(300..312, PAGE - 27);
    vec![
        tail,
        text.iter().copied().cycle().take(PAGE).collect(),
        vec![0x5a; PAGE],
        (0..PAGE).map(|i| (i % 3) as u8).collect(),
        noise,
        runs,
    ]
}

#[test]
fn codec_round_trips_and_faults_under_miri() {
    let mut decoder = PageDecoder::new();
    for level in [Level::Turbo, Level::Fast, Level::Strong] {
        let mut encoder = PageEncoder::new(level);
        for page in pages() {
            let mut stream = vec![0u8; PAGE - 1];
            let Some(len) = encoder.encode(&page, &mut stream) else {
                continue;
            };
            let mut out = vec![0u8; PAGE];
            decoder.decode(&stream[..len], &mut out).unwrap();
            assert_eq!(out, page);
            // Truncated and bit-flipped streams fail or inflate, never
            // touching memory outside the page.
            for cut in [1, len / 2, len - 1] {
                let _ = decoder.decode(&stream[..cut], &mut out);
            }
            for bit in [3, 8 * len / 3, 8 * len - 5] {
                stream[bit / 8] ^= 1 << (bit % 8);
                let _ = decoder.decode(&stream[..len], &mut out);
                stream[bit / 8] ^= 1 << (bit % 8);
            }
        }
    }
}

/// Turbo's pages share one header: the second one decoded hits the
/// decoder's header cache and goes through the pair table, whose two-byte
/// stores Miri checks.
#[test]
fn turbo_pages_through_the_header_cache_and_pair_table_under_miri() {
    let mut encoder = PageEncoder::new(Level::Turbo);
    let mut decoder = PageDecoder::new();
    let base = pages();
    for k in 0..3 {
        // 1 KiB pages (turbo's smallest): text, then text with a tail of runs.
        let mut page: Vec<u8> = base[1]
            .iter()
            .chain(&base[5])
            .copied()
            .cycle()
            .skip(k * 77)
            .take(1024)
            .collect();
        page[1000..].fill(b'x');
        let mut stream = vec![0u8; 1023];
        let len = encoder.encode(&page, &mut stream).expect("text compresses");
        let mut out = vec![0u8; 1024];
        decoder.decode(&stream[..len], &mut out).unwrap();
        assert_eq!(out, page);
    }
}

#[test]
fn abi_send_and_receive_under_miri() {
    let pages = pages();
    let count = pages.len() as u32;
    let mut msg = [0 as c_char; 128];
    let m = msg.as_mut_ptr();
    // SAFETY: every pointer below is valid for its call: the out-pointers
    // are locals, the page pointers point at PAGE bytes each, iov holds
    // count + 1 entries, the receive buffers are the library's own.
    unsafe {
        let (mut sender, mut receiver) = (ptr::null_mut(), ptr::null_mut());
        assert_eq!(
            qemu_qpl_sender_new(0, PAGE as u32, count, 2, &mut sender, m, 128),
            QemuQplStatus::Ok
        );
        assert_eq!(
            qemu_qpl_receiver_new(0, PAGE as u32, count, &mut receiver, m, 128),
            QemuQplStatus::Ok
        );
        let pointers: Vec<*const u8> = pages.iter().map(|p| p.as_ptr()).collect();
        let mut iov = vec![
            QemuQplIovec {
                iov_base: ptr::null_mut(),
                iov_len: 0
            };
            pages.len() + 1
        ];
        let (mut iov_count, mut payload) = (0u32, 0u32);
        assert_eq!(
            qemu_qpl_send_prepare(
                sender,
                pointers.as_ptr(),
                count,
                iov.as_mut_ptr(),
                iov.len() as u32,
                &mut iov_count,
                &mut payload,
                m,
                128
            ),
            QemuQplStatus::Ok
        );
        let mut body = Vec::new();
        for entry in &iov[..iov_count as usize] {
            body.extend_from_slice(std::slice::from_raw_parts(
                entry.iov_base.cast::<u8>(),
                entry.iov_len,
            ));
        }
        assert_eq!(body.len(), payload as usize);

        let (mut buf, mut len) = (ptr::null_mut(), 0usize);
        assert_eq!(
            qemu_qpl_recv_begin(receiver, count, payload.into(), &mut buf, &mut len, m, 128),
            QemuQplStatus::Ok
        );
        ptr::copy_nonoverlapping(body.as_ptr(), buf, len);
        let lengths_len = len;
        assert_eq!(
            qemu_qpl_recv_lengths(receiver, &mut buf, &mut len, m, 128),
            QemuQplStatus::Ok
        );
        ptr::copy_nonoverlapping(body[lengths_len..].as_ptr(), buf, len);
        let mut dest = vec![0u8; PAGE * pages.len()];
        let dest_ptrs: Vec<*mut u8> = dest
            .chunks_exact_mut(PAGE)
            .map(|p| p.as_mut_ptr())
            .collect();
        assert_eq!(
            qemu_qpl_recv_pages(receiver, dest_ptrs.as_ptr(), count, m, 128),
            QemuQplStatus::Ok
        );
        assert_eq!(dest, pages.concat());

        // Misuse through the ABI is refused without touching memory.
        assert_eq!(
            qemu_qpl_send_prepare(
                sender,
                ptr::null(),
                1,
                iov.as_mut_ptr(),
                2,
                &mut iov_count,
                &mut payload,
                m,
                128
            ),
            QemuQplStatus::InvalidArgument
        );
        assert_eq!(qemu_qpl_recv_fault_page(receiver), -1);
        qemu_qpl_sender_free(sender);
        qemu_qpl_receiver_free(receiver);
    }
}
