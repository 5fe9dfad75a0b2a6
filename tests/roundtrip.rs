//! Whole packets through a sender and a receiver, as two QEMUs would exchange
//! them, on real data, incompressible pages and zero pages.

mod common;

use qemu_qpl::wire::LENGTH_BYTES;
use qemu_qpl::{ChannelConfig, Level, Receiver, Sender};

fn config(page_size: u32, pages_per_packet: u32) -> ChannelConfig {
    ChannelConfig {
        channel: 1,
        page_size,
        pages_per_packet,
    }
}

/// Sends `pages` in packets of `per_packet`, receives them, and checks every
/// page arrives intact. Returns (pages sent raw, wire bytes).
fn roundtrip(pages: &[&[u8]], page_size: u32, per_packet: usize, level: Level) -> (usize, usize) {
    let mut sender = Sender::new(config(page_size, per_packet as u32), level).unwrap();
    let mut receiver = Receiver::new(config(page_size, per_packet as u32)).unwrap();
    let mut dest = vec![vec![0xAAu8; page_size as usize]; per_packet];
    let (mut raw, mut wire) = (0, 0);
    for packet_pages in pages.chunks(per_packet) {
        let packet = sender.prepare(packet_pages).unwrap();
        let body = packet.to_bytes(packet_pages).unwrap();
        assert_eq!(body.len(), packet.payload_size as usize);
        for index in 0..packet_pages.len() {
            let at = index * LENGTH_BYTES;
            let length = u32::from_be_bytes(body[at..at + 4].try_into().unwrap());
            assert!(length <= page_size, "length {length} above the page size");
            raw += usize::from(length == page_size);
        }
        wire += body.len();
        let mut dest_pages: Vec<&mut [u8]> = dest
            .iter_mut()
            .take(packet_pages.len())
            .map(|page| page.as_mut_slice())
            .collect();
        receiver.receive_packet(&body, &mut dest_pages).unwrap();
        for (index, page) in packet_pages.iter().enumerate() {
            assert!(
                dest[index] == *page,
                "page {index} differs after the round trip"
            );
        }
    }
    (raw, wire)
}

#[test]
fn real_data_round_trips_at_both_levels_and_shrinks() {
    let data = common::real_data(32 << 20);
    let pages = common::pages(&data, 4096);
    assert!(pages.len() >= 1024, "too little real data found");
    for level in [Level::Turbo, Level::Fast, Level::Strong] {
        let (raw, wire) = roundtrip(&pages, 4096, 128, level);
        let ratio = (pages.len() * 4096) as f64 / wire as f64;
        eprintln!(
            "{}: {} pages, {raw} raw, ratio {ratio:.2}",
            level.name(),
            pages.len()
        );
        assert!(ratio > 1.5, "real data should compress, got ratio {ratio}");
        assert!(raw < pages.len());
    }
}

#[test]
fn incompressible_pages_travel_raw_and_point_at_the_callers_memory() {
    let noise = common::noise(4096 * 8, 7);
    let pages = common::pages(&noise, 4096);
    let mut sender = Sender::new(config(4096, 8), Level::Fast).unwrap();
    let packet = sender.prepare(pages.as_slice()).unwrap();
    // Length array alone, then one raw segment per page.
    assert_eq!(packet.segments.len(), 9);
    assert_eq!(packet.payload_size as usize, 8 * 4 + 8 * 4096);
    assert_eq!(roundtrip(&pages, 4096, 8, Level::Fast).0, 8);
}

#[test]
fn zero_pages_and_mixed_packets_round_trip() {
    let zero = vec![0u8; 4096];
    let noise = common::noise(4096, 3);
    let text = common::real_data(4096 * 4);
    let mut pages: Vec<&[u8]> = vec![&zero, &noise, &zero];
    pages.extend(common::pages(&text, 4096));
    pages.push(&noise);
    let (raw, wire) = roundtrip(&pages, 4096, 16, Level::Fast);
    assert_eq!(raw, 2, "exactly the two noise pages go raw");
    assert!(wire < pages.len() * 4096);
}

#[test]
fn large_and_small_page_sizes_round_trip() {
    let data = common::real_data(8 << 20);
    for page_size in [65536u32, 4096, 512] {
        let pages = common::pages(&data, page_size as usize);
        let per_packet = (512 * 1024 / page_size) as usize;
        let (raw, _) = roundtrip(&pages, page_size, per_packet, Level::Fast);
        assert!(
            raw < pages.len(),
            "page size {page_size}: nothing compressed"
        );
    }
    let noise = common::noise(65536 * 2, 11);
    let pages = common::pages(&noise, 65536);
    assert_eq!(roundtrip(&pages, 65536, 8, Level::Strong).0, 2);
}

#[test]
fn empty_packet_has_no_body() {
    let mut sender = Sender::new(config(4096, 128), Level::Fast).unwrap();
    let pages: [&[u8]; 0] = [];
    let packet = sender.prepare(&pages[..]).unwrap();
    assert_eq!(packet.payload_size, 0);
    assert!(packet.segments.is_empty());
    let mut receiver = Receiver::new(config(4096, 128)).unwrap();
    receiver.receive_packet(&[], &mut []).unwrap();
}
