//! The receiver's verdicts do not depend on the engine: for valid streams of
//! every kind (several encoders, stored/fixed/dynamic blocks, several
//! blocks) and for thousands of damaged ones (bit flips, truncations, bytes
//! appended, streams one byte short of or past a page), a receiver on the
//! IAA model and a receiver on the CPU give the same result: the same pages,
//! or the same fault of the same page.

use qemu_qpl::iaa::{Mode, Settings};
use qemu_qpl::{ChannelConfig, Level, Receiver, Sender};

mod common;
mod iaa_common;

const PAGE: usize = 4096;

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A raw DEFLATE stream of `data` from miniz_oxide at `level`.
fn miniz(data: &[u8], level: u8) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec(data, level)
}

/// Two stored blocks, the first not final.
fn two_stored_blocks(page: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, half) in page.chunks(PAGE / 2).enumerate() {
        out.push(u8::from(k == 1)); // BFINAL, BTYPE 00, padding
        out.extend_from_slice(&(half.len() as u16).to_le_bytes());
        out.extend_from_slice(&(!(half.len() as u16)).to_le_bytes());
        out.extend_from_slice(half);
    }
    out
}

/// A packet body: `streams` (None = a raw page) for `pages`.
fn body(pages: &[&[u8]], streams: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (page, stream) in pages.iter().zip(streams) {
        let len = stream.as_ref().map_or(page.len(), Vec::len);
        body.extend_from_slice(&(len as u32).to_be_bytes());
    }
    for (page, stream) in pages.iter().zip(streams) {
        body.extend_from_slice(stream.as_deref().unwrap_or(page));
    }
    body
}

/// Child: every case through both receivers.
fn compare() {
    let config = ChannelConfig {
        channel: 2,
        page_size: PAGE as u32,
        pages_per_packet: 8,
    };
    let mut device = Receiver::new(config).unwrap();
    assert!(device.uses_iaa());
    let cpu_settings = Settings {
        mode: Mode::Off,
        ..Settings::default()
    };
    let mut cpu = Receiver::with_settings(config, &cpu_settings).unwrap();
    let data = common::real_data(1 << 20);
    let pages: Vec<&[u8]> = common::pages(&data, PAGE);
    let mut sender = Sender::with_settings(config, Level::Strong, &cpu_settings).unwrap();

    // Valid streams of every kind for page `k`.
    let mut valid = |k: usize| -> Vec<Vec<u8>> {
        let page = pages[k % pages.len()];
        let mut ours = Vec::new();
        let packet = [page];
        let prepared = sender_stream(&mut sender, &packet);
        if let Some(stream) = prepared {
            ours.push(stream);
        }
        let mut all = vec![
            miniz(page, 0),
            miniz(page, 1),
            miniz(page, 6),
            miniz(page, 9),
            two_stored_blocks(page),
        ];
        all.extend(ours);
        all
    };
    let mut state = 0x1234_5678u64;
    let (mut cases, mut accepted, mut rejected) = (0u64, 0u64, 0u64);
    let mut dest_device = vec![vec![0u8; PAGE]; 3];
    let mut dest_cpu = vec![vec![0u8; PAGE]; 3];
    for k in 0..pages.len().min(160) {
        let streams = valid(k);
        for (variant, stream) in streams.iter().enumerate() {
            let mut damaged = vec![stream.clone()];
            for _ in 0..6 {
                let mut s = stream.clone();
                let bit = xorshift(&mut state) as usize % (8 * s.len());
                s[bit / 8] ^= 1 << (bit % 8);
                damaged.push(s);
            }
            let cut = 1 + xorshift(&mut state) as usize % (stream.len() - 1).max(1);
            damaged.push(stream[..cut.min(stream.len())].to_vec());
            let mut longer = stream.clone();
            longer.push(xorshift(&mut state) as u8);
            damaged.push(longer);
            let page = pages[k % pages.len()];
            damaged.push(miniz(&page[..PAGE - 1], 1));
            let mut past = page.to_vec();
            past.push(0);
            damaged.push(miniz(&past, 1));
            for stream in damaged {
                if stream.is_empty() || stream.len() >= PAGE {
                    continue;
                }
                // The damaged page between two valid ones (one raw).
                let around = [
                    pages[(k + 1) % pages.len()],
                    page,
                    pages[(k + 2) % pages.len()],
                ];
                let packet = body(&around, &[None, Some(stream), Some(miniz(around[2], 1))]);
                let mut refs: Vec<&mut [u8]> =
                    dest_device.iter_mut().map(|p| p.as_mut_slice()).collect();
                let on_device = device.receive_packet(&packet, &mut refs);
                let mut refs: Vec<&mut [u8]> =
                    dest_cpu.iter_mut().map(|p| p.as_mut_slice()).collect();
                let on_cpu = cpu.receive_packet(&packet, &mut refs);
                assert_eq!(
                    on_device, on_cpu,
                    "page {k}, encoder variant {variant}: the engines disagree"
                );
                assert_eq!(device.fault_page(), cpu.fault_page());
                if on_cpu.is_ok() {
                    assert!(
                        dest_device == dest_cpu,
                        "page {k}: the engines wrote different pages"
                    );
                    accepted += 1;
                } else {
                    rejected += 1;
                }
                cases += 1;
            }
        }
    }
    let c = device.counters();
    println!("RESULT cases={cases}");
    println!("RESULT accepted={accepted}");
    println!("RESULT rejected={rejected}");
    println!("RESULT device_pages={}", c.pages_iaa);
    println!("RESULT device_rejected={}", c.device.fallback_rejected);
    println!("RESULT device_errors={}", c.device.fallback_error);
}

/// Our sender's stream for one page, if it shrinks.
fn sender_stream(sender: &mut Sender, packet: &[&[u8]; 1]) -> Option<Vec<u8>> {
    let prepared = sender.prepare(&packet[..]).unwrap();
    let body = prepared.to_bytes(&packet[..]).unwrap();
    let len = u32::from_be_bytes(body[..4].try_into().unwrap()) as usize;
    (len < PAGE).then(|| body[4..4 + len].to_vec())
}

#[test]
#[ignore]
fn model_child() {
    if std::env::var("IAA_TEST_SCENARIO").as_deref() == Ok("compare") {
        compare();
    }
}

#[test]
fn the_device_accepts_exactly_what_the_cpu_accepts() {
    let outcome = iaa_common::run_on_model(
        "compare",
        "shared:128:bof",
        &[("QEMU_QPL_IAA_SUBMIT", "enqcmd")],
        true,
    );
    let (cases, accepted, rejected) = (
        outcome.number("cases"),
        outcome.number("accepted"),
        outcome.number("rejected"),
    );
    eprintln!("{cases} cases: {accepted} accepted, {rejected} rejected by both engines");
    assert!(accepted > 500 && rejected > 500, "{}", outcome.output);
    // The device decoded the valid pages itself, and turned down the bad ones.
    assert!(
        outcome.number("device_pages") > accepted,
        "{}",
        outcome.output
    );
    assert!(
        outcome.number("device_rejected") > rejected / 2,
        "{}",
        outcome.output
    );
    assert_eq!(outcome.number("device_errors"), 0);
}
