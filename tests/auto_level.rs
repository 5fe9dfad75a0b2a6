//! The automatic level on a real sender: packets prepared back to back (a
//! CPU-bound channel) move it to turbo; packets with waits between them (a
//! channel held up by its socket) move it to strong. Every packet stays
//! valid throughout.

use std::time::Duration;

use qemu_qpl::{ChannelConfig, Level, Receiver, Sender};

mod common;

const PAGE: usize = 4096;

#[test]
fn the_level_follows_the_channel() {
    let data = common::real_data(PAGE * 128);
    let pages = common::pages(&data, PAGE);
    let config = ChannelConfig {
        channel: 0,
        page_size: PAGE as u32,
        pages_per_packet: 128,
    };
    let mut sender = Sender::with_auto_level(config).unwrap();
    let mut receiver = Receiver::new(config).unwrap();
    let mut out = vec![vec![0u8; PAGE]; pages.len()];
    // Sends one packet; every `check`th is also received and compared
    // (receiving takes about as long as sending: doing it for every packet
    // would make the channel look half idle).
    let mut sent = 0;
    let mut send = |sender: &mut Sender, check: usize| {
        let packet = sender.prepare(pages.as_slice()).unwrap();
        sent += 1;
        if sent % check == 0 {
            let body = packet.to_bytes(pages.as_slice()).unwrap();
            let mut dest: Vec<&mut [u8]> = out.iter_mut().map(Vec::as_mut_slice).collect();
            receiver.receive_packet(&body, &mut dest).unwrap();
            assert!(out.iter().zip(&pages).all(|(a, b)| a == b));
        }
    };
    assert_eq!(sender.level(), Level::Fast, "auto starts at the default");
    // Back to back: compression is all the channel does.
    for _ in 0..40 {
        send(&mut sender, 20);
    }
    assert_eq!(sender.level(), Level::Turbo);
    // A wait after each packet several times longer than compressing it.
    for _ in 0..60 {
        send(&mut sender, 1);
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(sender.level(), Level::Strong);
    let (packets, moves) = sender.auto_level().unwrap();
    eprintln!("packets at turbo, fast, strong: {packets:?}; {moves} moves");
    assert!(packets.iter().all(|&n| n > 0) && moves >= 3);
}
