//! The checks behind qemu-qpl's fuzz targets, one function per target. Each
//! panics when the library misbehaves on its input; libFuzzer (under
//! AddressSanitizer) also stops on any out-of-bounds access, leak or
//! timeout. `tests/regressions.rs` replays the seeds and every input that
//! ever crashed through the same functions.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_char;
use std::ptr;

use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;
use qemu_qpl::abi::*;
use qemu_qpl::codec::PageDecoder;
use qemu_qpl::{ChannelConfig, Level, Receiver, Sender};

/// Bytes of guard kept on both sides of every destination page.
const GUARD: usize = 64;
const GUARD_BYTE: u8 = 0xA5;

/// `bytes` inflated by miniz_oxide, an independent decoder, when they are
/// one complete raw DEFLATE stream that gives exactly `page_size` bytes and
/// is followed by nothing.
pub fn reference_inflate(bytes: &[u8], page_size: usize) -> Option<Vec<u8>> {
    let mut out = vec![0u8; page_size + 1];
    let mut state = DecompressorOxide::new();
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let (status, read, written) = decompress(&mut state, bytes, &mut out, 0, flags);
    (status == TINFLStatus::Done && read == bytes.len() && written == page_size).then(|| {
        out.truncate(page_size);
        out
    })
}

/// A page-sized window inside a buffer of guard bytes.
struct Guarded {
    buffer: Vec<u8>,
    page_size: usize,
}

impl Guarded {
    fn new(page_size: usize) -> Self {
        Guarded {
            buffer: vec![GUARD_BYTE; page_size + 2 * GUARD],
            page_size,
        }
    }

    fn page(&mut self) -> &mut [u8] {
        &mut self.buffer[GUARD..GUARD + self.page_size]
    }

    fn assert_guards(&self) {
        let (head, rest) = self.buffer.split_at(GUARD);
        let tail = &rest[self.page_size..];
        assert!(
            head.iter().chain(tail).all(|&b| b == GUARD_BYTE),
            "a byte outside the destination page was written"
        );
    }
}

thread_local! {
    static DECODER: RefCell<PageDecoder> = RefCell::new(PageDecoder::new());
}

/// Target `decode_page`: the first byte picks a page size (512 B to 64 KiB),
/// the rest is a stream. Our decoder must accept exactly what the reference
/// inflater accepts as one page, with the same bytes, and write nothing
/// outside the page.
pub fn decode_page(data: &[u8]) {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let page_size = 512usize << (selector % 8);
    let mut dest = Guarded::new(page_size);
    let ours = DECODER.with(|d| d.borrow_mut().decode(stream, dest.page()));
    dest.assert_guards();
    // Again with the same decoder, which may now reuse the tables of this
    // stream's header (and their pair table): the same verdict and page.
    let mut again = Guarded::new(page_size);
    let second = DECODER.with(|d| d.borrow_mut().decode(stream, again.page()));
    again.assert_guards();
    assert_eq!(ours, second, "a second decode of the same stream disagrees");
    if ours.is_ok() {
        assert!(
            dest.page() == again.page(),
            "a second decode gives other bytes"
        );
    }
    let reference = reference_inflate(stream, page_size);
    match (ours, reference) {
        (Ok(()), Some(page)) => assert!(
            dest.page() == &page[..],
            "our page differs from the reference inflater's"
        ),
        (Ok(()), None) => {
            panic!("we accept a stream the reference inflater rejects as one {page_size}-byte page")
        }
        (Err(fault), Some(_)) => {
            panic!("we reject ({fault:?}) a stream that inflates to one {page_size}-byte page")
        }
        (Err(_), None) => {}
    }
}

/// Target `receive_abi`: a packet header's numbers and a body, through the
/// three receive calls of the C ABI as QEMU makes them. Layout: page size
/// selector, pages per packet (1-32), page count, 8 bytes of payload size
/// (or, when its top bit is clear, the rest of the input's length), then
/// the body. Every call must return OK or CORRUPT_PACKET (never a caller
/// error or an internal error), name a page of the packet when it blames
/// one, and write nothing outside the destination pages.
pub fn receive_abi(data: &[u8]) {
    if data.len() < 11 {
        return;
    }
    let page_size = 512u32 << (data[0] % 4);
    let per_packet = 1 + u32::from(data[1] % 32);
    let count = u32::from(data[2]) % (per_packet + 2);
    let declared = u64::from_le_bytes(data[3..11].try_into().unwrap());
    let body = &data[11..];
    let payload = if declared >> 63 == 0 {
        body.len() as u64
    } else {
        declared & !(1 << 63)
    };
    let mut msg = [0 as c_char; 256];
    let m = msg.as_mut_ptr();
    let text = |msg: &[c_char]| {
        // SAFETY: the library NUL-terminates its messages in the buffer.
        unsafe { std::ffi::CStr::from_ptr(msg.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    // SAFETY: the out-pointers are locals, the message buffer holds 256
    // bytes, the receive buffers are the library's own and are written only
    // within the lengths it returned, the destination pointers point at
    // whole pages.
    unsafe {
        let mut receiver = ptr::null_mut();
        let status = qemu_qpl_receiver_new(5, page_size, per_packet, &mut receiver, m, 256);
        assert_eq!(status, QemuQplStatus::Ok, "{}", text(&msg));
        let check = |status: QemuQplStatus, msg: &[c_char]| -> bool {
            match status {
                QemuQplStatus::Ok => true,
                QemuQplStatus::CorruptPacket => {
                    let page = qemu_qpl_recv_fault_page(receiver);
                    assert!(
                        page >= -1 && page < i64::from(count),
                        "fault page {page} of {count}"
                    );
                    assert!(text(msg).contains("channel 5"), "{}", text(msg));
                    false
                }
                other => panic!("{other:?}: {}", text(msg)),
            }
        };
        let mut fed = 0usize;
        let mut feed = |buf: *mut u8, len: usize| {
            let take = len.min(body.len() - fed);
            ptr::copy_nonoverlapping(body[fed..].as_ptr(), buf, take);
            ptr::write_bytes(buf.add(take), 0, len - take);
            fed += take;
        };
        let (mut buf, mut len) = (ptr::null_mut(), 0usize);
        let ok = check(
            qemu_qpl_recv_begin(receiver, count, payload, &mut buf, &mut len, m, 256),
            &msg,
        );
        if ok && count > 0 {
            assert_eq!(len, 4 * count as usize);
            feed(buf, len);
            let ok = check(
                qemu_qpl_recv_lengths(receiver, &mut buf, &mut len, m, 256),
                &msg,
            );
            if ok {
                assert_eq!(len as u64 + 4 * u64::from(count), payload);
                feed(buf, len);
                let mut pages: Vec<Guarded> = (0..count)
                    .map(|_| Guarded::new(page_size as usize))
                    .collect();
                let dest: Vec<*mut u8> = pages.iter_mut().map(|g| g.page().as_mut_ptr()).collect();
                check(
                    qemu_qpl_recv_pages(receiver, dest.as_ptr(), count, m, 256),
                    &msg,
                );
                for page in &pages {
                    page.assert_guards();
                }
            }
        }
        qemu_qpl_receiver_free(receiver);
    }
}

thread_local! {
    static SENDERS: RefCell<HashMap<(u32, Level), Sender>> = RefCell::new(HashMap::new());
    static RECEIVERS: RefCell<HashMap<u32, Receiver>> = RefCell::new(HashMap::new());
}

/// Target `send_roundtrip`: page size selector, level, page count (1-8),
/// then bytes that fill the pages (repeated, each repetition shifted, so
/// that short inputs make large pages of varied content). Every packet must
/// come back through our receiver page for page, every stream must be
/// shorter than a page and inflate to its page with the reference inflater,
/// and the payload size must be the body's length.
pub fn send_roundtrip(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let page_size = 512usize << (data[0] % 8);
    let level = [Level::Turbo, Level::Fast, Level::Strong][usize::from(data[1] % 3)];
    let count = 1 + usize::from(data[2] % 8);
    let fill = &data[3..];
    let pages: Vec<Vec<u8>> = (0..count)
        .map(|p| {
            (0..page_size)
                .map(|i| {
                    let round = (p * page_size + i) / fill.len();
                    fill[(p * page_size + i) % fill.len()].wrapping_add((round % 3) as u8)
                })
                .collect()
        })
        .collect();
    let config = ChannelConfig {
        channel: 1,
        page_size: page_size as u32,
        pages_per_packet: 8,
    };
    let body = SENDERS.with(|senders| {
        let mut senders = senders.borrow_mut();
        let sender = senders
            .entry((config.page_size, level))
            .or_insert_with(|| Sender::new(config, level).unwrap());
        let packet = sender.prepare(pages.as_slice()).unwrap();
        let body = packet.to_bytes(pages.as_slice()).unwrap();
        assert_eq!(body.len(), packet.payload_size as usize);
        body
    });
    let mut at = 4 * count;
    for (p, page) in pages.iter().enumerate() {
        let len = u32::from_be_bytes(body[4 * p..4 * p + 4].try_into().unwrap()) as usize;
        assert!(
            len > 0 && len <= page_size,
            "length {len} for a {page_size}-byte page"
        );
        if len < page_size {
            let inflated = reference_inflate(&body[at..at + len], page_size);
            assert!(
                inflated.as_deref() == Some(&page[..]),
                "page {p}: the reference inflater disagrees"
            );
        }
        at += len;
    }
    assert_eq!(at, body.len());
    RECEIVERS.with(|receivers| {
        let mut receivers = receivers.borrow_mut();
        let receiver = receivers
            .entry(config.page_size)
            .or_insert_with(|| Receiver::new(config).unwrap());
        let mut out = vec![vec![0u8; page_size]; count];
        let mut dest: Vec<&mut [u8]> = out.iter_mut().map(Vec::as_mut_slice).collect();
        receiver.receive_packet(&body, &mut dest).unwrap();
        assert!(
            out == pages,
            "the receiver's pages differ from the sent pages"
        );
    });
}
