//! The IAA path on the model (tests/iaa-model): each scenario runs in a
//! child process with the model preloaded and a sysfs tree describing it;
//! the parent checks what the child printed and what the model counted.
//!
//! Submission: ENQCMD to a shared queue, MOVDIR64B to a dedicated one (its
//! depth tracked: the model counts a descriptor lost to a full dedicated
//! queue as `dropped`), `write()` when forced or when the portal cannot be
//! mapped, and whatever CPUID picks. Round trips of real pages through the
//! device, with both Huffman modes and three page sizes.

use std::time::Instant;

use qemu_qpl::iaa::cpu::Features;
use qemu_qpl::{ChannelConfig, Level, Receiver, Sender};

mod common;
mod iaa_common;

use iaa_common::run_on_model;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Inflates `stream` with miniz_oxide; it must give exactly `page`.
fn check_stream(stream: &[u8], page: &[u8]) -> Result<(), String> {
    let out = miniz_oxide::inflate::decompress_to_vec(stream)
        .map_err(|e| format!("miniz_oxide: {e:?}"))?;
    if out != page {
        return Err(format!("inflates to {} bytes, not the page", out.len()));
    }
    Ok(())
}

/// Child: packets of real pages (and some raw and zero pages) through a
/// sender and a receiver that must both use the device; every stream is
/// checked with miniz_oxide and every page compared.
fn roundtrip() {
    let page_size: usize = env_or("IAA_TEST_PAGE_SIZE", "4096").parse().unwrap();
    let level = match env_or("IAA_TEST_LEVEL", "fast").as_str() {
        "strong" => Level::Strong,
        _ => Level::Fast,
    };
    let bytes: usize = env_or("IAA_TEST_BYTES", "4194304").parse().unwrap();
    let per_packet = (512 * 1024 / page_size).max(4);
    let config = ChannelConfig {
        channel: 1,
        page_size: page_size as u32,
        pages_per_packet: per_packet as u32,
    };
    let data = common::real_data(bytes);
    let noise = common::noise(8 * page_size, 3);
    let zero = vec![0u8; page_size];
    let mut pages: Vec<&[u8]> = common::pages(&data, page_size);
    pages.extend(common::pages(&noise, page_size));
    pages.push(&zero);
    let mut sender = Sender::new(config, level).unwrap();
    let mut receiver = Receiver::new(config).unwrap();
    let mut line = String::new();
    sender.describe(&mut line).unwrap();
    println!("RESULT send_path={line}");
    let mut dest = vec![vec![0u8; page_size]; per_packet];
    let start = Instant::now();
    let mut wire = 0usize;
    for packet in pages.chunks(per_packet) {
        let prepared = sender.prepare(packet).unwrap();
        let body = prepared.to_bytes(packet).unwrap();
        wire += body.len();
        let mut at = 4 * packet.len();
        for (index, page) in packet.iter().enumerate() {
            let len =
                u32::from_be_bytes(body[4 * index..4 * index + 4].try_into().unwrap()) as usize;
            if len < page_size {
                if let Err(e) = check_stream(&body[at..at + len], page) {
                    panic!("page {index}: {e}");
                }
            }
            at += len;
        }
        let mut dest_refs: Vec<&mut [u8]> = dest[..packet.len()]
            .iter_mut()
            .map(|p| p.as_mut_slice())
            .collect();
        receiver.receive_packet(&body, &mut dest_refs).unwrap();
        for (index, page) in packet.iter().enumerate() {
            assert!(
                dest[index] == *page,
                "page {index} differs after the round trip"
            );
        }
    }
    let mut line = String::new();
    receiver.describe(&mut line).unwrap();
    println!("RESULT recv_path={line}");
    println!("RESULT seconds={:.3}", start.elapsed().as_secs_f64());
    println!("RESULT wire_bytes={wire}");
    for (side, c) in [("send", sender.counters()), ("recv", receiver.counters())] {
        println!("RESULT {side}_iaa={}", c.pages_iaa);
        println!("RESULT {side}_cpu={}", c.pages_cpu);
        println!("RESULT {side}_raw={}", c.pages_raw);
        println!("RESULT {side}_faults={}", c.device.page_faults);
        println!("RESULT {side}_descriptors={}", c.device.descriptors);
        println!(
            "RESULT {side}_fallbacks={}",
            c.device.fallback_queue_full
                + c.device.fallback_error
                + c.device.fallback_page_fault
                + c.device.fallback_timeout
                + c.device.fallback_rejected
        );
        println!("RESULT {side}_counters={c:?}");
    }
    println!("RESULT pages={}", pages.len());
}

/// The entry point of the child processes (ignored in normal runs).
#[test]
#[ignore]
fn model_child() {
    let Ok(scenario) = std::env::var("IAA_TEST_SCENARIO") else {
        return;
    };
    match scenario.as_str() {
        "roundtrip" => roundtrip(),
        other => panic!("unknown scenario {other}"),
    }
}

/// A round trip must have had the device do (nearly) all the work.
fn check_roundtrip(outcome: &iaa_common::Outcome, method: &str) {
    let pages = outcome.number("pages");
    for side in ["send", "recv"] {
        let (iaa, cpu, raw) = (
            outcome.number(&format!("{side}_iaa")),
            outcome.number(&format!("{side}_cpu")),
            outcome.number(&format!("{side}_raw")),
        );
        assert_eq!(iaa + cpu + raw, pages, "{side}: every page counted once");
        assert_eq!(
            cpu, 0,
            "{side}: no page fell back to the CPU:\n{}",
            outcome.output
        );
        assert!(
            iaa > pages / 2,
            "{side}: the device did the work:\n{}",
            outcome.output
        );
    }
    for side in ["send_path", "recv_path"] {
        let path = outcome.result(side);
        assert!(path.starts_with("IAA: iax1 wq1."), "{side}: {path}");
        assert!(path.contains(&format!("via {method}")), "{side}: {path}");
    }
    assert!(outcome.stat("compress_ok") > 0 && outcome.stat("decompress_ok") > 0);
    assert_eq!(
        outcome.stat("noop_ok"),
        1,
        "one NOOP probe per opened queue"
    );
    assert_eq!(
        outcome.stat("dropped"),
        0,
        "no descriptor lost to a full dedicated queue"
    );
}

#[test]
fn enqcmd_to_a_shared_queue() {
    let outcome = run_on_model(
        "roundtrip",
        "shared:128:bof",
        &[("QEMU_QPL_IAA_SUBMIT", "enqcmd")],
        true,
    );
    check_roundtrip(&outcome, "ENQCMD");
}

#[test]
fn movdir64b_to_a_dedicated_queue_tracks_its_depth() {
    // A queue shallower than a packet: without the depth count, MOVDIR64B
    // would lose descriptors (the model counts them as dropped).
    let outcome = run_on_model(
        "roundtrip",
        "dedicated:16:bof",
        &[("QEMU_QPL_IAA_SUBMIT", "movdir64b")],
        true,
    );
    check_roundtrip(&outcome, "MOVDIR64B");
}

#[test]
fn write_when_forced() {
    let outcome = run_on_model(
        "roundtrip",
        "shared:128:bof",
        &[("QEMU_QPL_IAA_SUBMIT", "write")],
        true,
    );
    check_roundtrip(&outcome, "write()");
}

#[test]
fn write_when_the_portal_cannot_be_mapped() {
    let outcome = run_on_model(
        "roundtrip",
        "shared:128:bof",
        &[
            ("QEMU_QPL_IAA_SUBMIT", "enqcmd"),
            ("IAA_MODEL_PORTAL", "write"),
        ],
        true,
    );
    check_roundtrip(&outcome, "write()");
    assert!(outcome.result("send_path").contains("cannot be mapped"));
}

#[test]
fn the_method_follows_cpuid() {
    let outcome = run_on_model("roundtrip", "shared:128:bof", &[], true);
    let method = if Features::detect().enqcmd {
        "ENQCMD"
    } else {
        "write()"
    };
    check_roundtrip(&outcome, method);
}

#[test]
fn dynamic_huffman_from_the_statistics_pass() {
    let outcome = run_on_model(
        "roundtrip",
        "shared:128:bof",
        &[
            ("QEMU_QPL_IAA_SUBMIT", "enqcmd"),
            ("QEMU_QPL_IAA_HUFFMAN", "dynamic"),
        ],
        true,
    );
    check_roundtrip(&outcome, "ENQCMD");
    assert!(outcome.result("send_path").ends_with("dynamic Huffman"));
    // Two descriptors per compressed page: statistics, then compression.
    assert!(outcome.number("send_descriptors") >= 2 * outcome.number("send_iaa"));
}

#[test]
fn umwait_on_the_completion_record() {
    let outcome = run_on_model(
        "roundtrip",
        "shared:128:bof",
        &[
            ("QEMU_QPL_IAA_SUBMIT", "enqcmd"),
            ("QEMU_QPL_IAA_WAIT", "umwait"),
        ],
        true,
    );
    check_roundtrip(&outcome, "ENQCMD");
}

#[test]
fn small_and_large_pages() {
    for (page_size, huffman) in [
        ("512", "fixed"),
        ("65536", "fixed"),
        ("512", "dynamic"),
        ("65536", "dynamic"),
    ] {
        let outcome = run_on_model(
            "roundtrip",
            "shared:128:bof",
            &[
                ("QEMU_QPL_IAA_SUBMIT", "enqcmd"),
                ("IAA_TEST_PAGE_SIZE", page_size),
                ("QEMU_QPL_IAA_HUFFMAN", huffman),
            ],
            true,
        );
        check_roundtrip(&outcome, "ENQCMD");
    }
}
