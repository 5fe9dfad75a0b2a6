//! Every way a packet from the network can be wrong gets its own error, naming
//! the channel and the page, and nothing is written outside the destination.

mod common;

use qemu_qpl::wire::LENGTH_BYTES;
use qemu_qpl::{ChannelConfig, Error, Level, PacketFault, Receiver, Sender};

const PAGE: usize = 4096;
const CHANNEL: u32 = 3;

fn config(pages_per_packet: u32) -> ChannelConfig {
    ChannelConfig {
        channel: CHANNEL,
        page_size: PAGE as u32,
        pages_per_packet,
    }
}

/// A valid body of `count` compressible real pages, and the pages.
fn valid_packet(count: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let data = common::real_data(PAGE * count);
    let pages: Vec<Vec<u8>> = data.chunks_exact(PAGE).map(<[u8]>::to_vec).collect();
    let mut sender = Sender::new(config(count as u32), Level::Fast).unwrap();
    let body = sender
        .prepare(pages.as_slice())
        .unwrap()
        .to_bytes(pages.as_slice())
        .unwrap();
    (body, pages)
}

fn length_of(body: &[u8], page: usize) -> u32 {
    let at = page * LENGTH_BYTES;
    u32::from_be_bytes(body[at..at + 4].try_into().unwrap())
}

fn set_length(body: &mut [u8], page: usize, length: u32) {
    let at = page * LENGTH_BYTES;
    body[at..at + 4].copy_from_slice(&length.to_be_bytes());
}

/// Offset of page `page`'s stream in `body` (for `count` pages).
fn stream_start(body: &[u8], count: usize, page: usize) -> usize {
    count * LENGTH_BYTES
        + (0..page)
            .map(|p| length_of(body, p) as usize)
            .sum::<usize>()
}

/// Receives `body` as a packet of `count` pages into guarded destination pages
/// and returns the error; asserts that no byte around the pages was touched.
fn receive_expecting_error(body: &[u8], count: usize, pages_per_packet: u32) -> Error {
    const GUARD: usize = 64;
    let mut arena = vec![0x5Au8; count * (PAGE + GUARD) + GUARD];
    let mut receiver = Receiver::new(config(pages_per_packet)).unwrap();
    let error = {
        let mut dest: Vec<&mut [u8]> = arena[GUARD..]
            .chunks_mut(PAGE + GUARD)
            .map(|chunk| &mut chunk[..PAGE])
            .take(count)
            .collect();
        receiver
            .receive_packet(body, &mut dest)
            .expect_err("a malformed packet was accepted")
    };
    let outside_pages = |offset: usize| offset < GUARD || (offset - GUARD) % (PAGE + GUARD) >= PAGE;
    assert!(
        arena
            .iter()
            .enumerate()
            .all(|(offset, &byte)| !outside_pages(offset) || byte == 0x5A),
        "bytes outside the destination pages were written"
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("channel {CHANNEL}")),
        "message does not name the channel: {message}"
    );
    error
}

fn fault(error: &Error) -> PacketFault {
    error.packet_fault().cloned().expect("not a packet fault")
}

/// A raw DEFLATE stream of `data` made by an independent encoder.
fn deflate(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec(data, 6)
}

/// A body of one page whose stream is `stream`.
fn single_stream_body(stream: &[u8]) -> Vec<u8> {
    let mut body = (stream.len() as u32).to_be_bytes().to_vec();
    body.extend_from_slice(stream);
    body
}

#[test]
fn valid_packet_is_accepted() {
    let (body, pages) = valid_packet(8);
    let mut receiver = Receiver::new(config(8)).unwrap();
    let mut dest = vec![vec![0u8; PAGE]; 8];
    let mut views: Vec<&mut [u8]> = dest.iter_mut().map(|p| p.as_mut_slice()).collect();
    receiver.receive_packet(&body, &mut views).unwrap();
    assert_eq!(dest, pages);
}

#[test]
fn length_above_page_size() {
    let (mut body, _) = valid_packet(8);
    set_length(&mut body, 5, PAGE as u32 + 1);
    let error = receive_expecting_error(&body, 8, 8);
    assert_eq!(
        fault(&error),
        PacketFault::LengthAbovePageSize {
            page: 5,
            length: 4097,
            page_size: 4096
        }
    );
    assert!(error.to_string().contains("page 5"), "{error}");
}

#[test]
fn lengths_that_do_not_add_up_to_the_payload() {
    let (mut body, _) = valid_packet(8);
    let shorter = length_of(&body, 2) - 1;
    set_length(&mut body, 2, shorter);
    let error = receive_expecting_error(&body, 8, 8);
    assert!(matches!(
        fault(&error),
        PacketFault::LengthsDoNotMatchPayload { .. }
    ));
    // And a payload one byte longer than the lengths say.
    let (mut body, _) = valid_packet(8);
    body.push(0);
    let error = receive_expecting_error(&body, 8, 8);
    assert!(matches!(
        fault(&error),
        PacketFault::LengthsDoNotMatchPayload { .. }
    ));
}

#[test]
fn more_pages_than_a_packet_holds() {
    let (body, _) = valid_packet(8);
    let error = receive_expecting_error(&body, 8, 4);
    assert_eq!(
        fault(&error),
        PacketFault::TooManyPages {
            pages: 8,
            max_pages: 4
        }
    );
}

#[test]
fn payload_too_short_for_its_length_array_or_present_without_pages() {
    let error = receive_expecting_error(&[0u8; 10], 4, 8);
    assert!(matches!(
        fault(&error),
        PacketFault::PayloadShorterThanLengths { .. }
    ));
    let mut receiver = Receiver::new(config(8)).unwrap();
    let error = receiver.begin(0, 100).unwrap_err();
    assert_eq!(
        fault(&error),
        PacketFault::PayloadWithoutPages { payload: 100 }
    );
}

#[test]
fn zero_length_page() {
    let (body, _) = valid_packet(2);
    // Move page 1's bytes onto page 0 so the sum still matches.
    let mut edited = body.clone();
    let total = length_of(&body, 0) + length_of(&body, 1);
    set_length(&mut edited, 0, 0);
    set_length(&mut edited, 1, total);
    let error = receive_expecting_error(&edited, 2, 2);
    assert_eq!(fault(&error), PacketFault::EmptyStream { page: 0 });
}

#[test]
fn corrupt_stream() {
    let (mut body, _) = valid_packet(4);
    // Block header with BFINAL=1 and the reserved block type 11.
    let start = stream_start(&body, 4, 2);
    body[start] = 0b0000_0111;
    let error = receive_expecting_error(&body, 4, 4);
    assert!(
        matches!(fault(&error), PacketFault::CorruptStream { page: 2, .. }),
        "{error}"
    );
}

#[test]
fn stream_that_ends_early() {
    let page = common::real_data(PAGE);
    let stream = deflate(&page);
    let truncated = &stream[..stream.len() / 2];
    let error = receive_expecting_error(&single_stream_body(truncated), 1, 8);
    assert_eq!(fault(&error), PacketFault::TruncatedStream { page: 0 });
}

#[test]
fn stream_that_inflates_past_the_page() {
    let two_pages = common::real_data(2 * PAGE);
    let stream = deflate(&two_pages);
    assert!(stream.len() < PAGE);
    let error = receive_expecting_error(&single_stream_body(&stream), 1, 8);
    assert_eq!(
        fault(&error),
        PacketFault::InflatesPastPage {
            page: 0,
            page_size: 4096
        }
    );
}

#[test]
fn stream_that_inflates_short_of_the_page() {
    let stream = deflate(&common::real_data(PAGE - 1));
    let error = receive_expecting_error(&single_stream_body(&stream), 1, 8);
    assert_eq!(
        fault(&error),
        PacketFault::InflatesShortOfPage {
            page: 0,
            produced: 4095,
            page_size: 4096
        }
    );
}

#[test]
fn bytes_after_the_final_block() {
    let mut stream = deflate(&common::real_data(PAGE));
    stream.extend_from_slice(&[0xDE, 0xAD]);
    let error = receive_expecting_error(&single_stream_body(&stream), 1, 8);
    assert_eq!(
        fault(&error),
        PacketFault::TrailingBytes { page: 0, extra: 2 }
    );
}

#[test]
fn random_garbage_never_panics_or_writes_outside() {
    // Every length and stream byte random: whatever happens must be an error
    // or an accepted page, and the guard bytes must stay intact.
    for seed in 1..200u64 {
        let noise = common::noise(64, seed);
        let length = 1 + (noise[0] as usize % 60);
        let body = single_stream_body(&noise[4..4 + length]);
        let _ = receive_expecting_error_or_ok(&body);
    }
}

fn receive_expecting_error_or_ok(body: &[u8]) -> Result<(), Error> {
    let mut arena = vec![0x5Au8; 3 * PAGE];
    let mut receiver = Receiver::new(config(1)).unwrap();
    let result = receiver.receive_packet(body, &mut [&mut arena[PAGE..2 * PAGE]]);
    assert!(arena[..PAGE].iter().all(|&b| b == 0x5A));
    assert!(arena[2 * PAGE..].iter().all(|&b| b == 0x5A));
    result
}
