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
use qemu_qpl::iaa::Counters;
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

/// One channel's round trip: every stream checked with miniz_oxide, every
/// page compared; returns (sender, receiver, wire bytes, path lines).
fn channel_roundtrip(
    channel: u32,
    pages: &[&[u8]],
    page_size: usize,
    level: Level,
) -> (Counters, Counters, usize, String, String) {
    let per_packet = (512 * 1024 / page_size).max(4);
    let config = ChannelConfig {
        channel,
        page_size: page_size as u32,
        pages_per_packet: per_packet as u32,
    };
    let mut sender = Sender::new(config, level).unwrap();
    let mut receiver = Receiver::new(config).unwrap();
    let mut dest = vec![vec![0u8; page_size]; per_packet];
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
                    panic!("channel {channel}, page {index}: {e}");
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
                "channel {channel}, page {index} differs after the round trip"
            );
        }
    }
    let (mut send_path, mut recv_path) = (String::new(), String::new());
    sender.describe(&mut send_path).unwrap();
    receiver.describe(&mut recv_path).unwrap();
    (
        sender.counters(),
        receiver.counters(),
        wire,
        send_path,
        recv_path,
    )
}

fn add(total: &mut Counters, c: &Counters) {
    total.pages_iaa += c.pages_iaa;
    total.pages_cpu += c.pages_cpu;
    total.pages_raw += c.pages_raw;
    let (t, d) = (&mut total.device, &c.device);
    t.descriptors += d.descriptors;
    t.submit_retries += d.submit_retries;
    t.page_faults += d.page_faults;
    t.fallback_queue_full += d.fallback_queue_full;
    t.fallback_error += d.fallback_error;
    t.fallback_page_fault += d.fallback_page_fault;
    t.fallback_timeout += d.fallback_timeout;
    t.fallback_rejected += d.fallback_rejected;
}

/// Child: packets of real pages (and some raw and zero pages) through
/// senders and receivers that must use the device (`IAA_TEST_THREADS`
/// channels at once, each with its own pages).
fn roundtrip() {
    let page_size: usize = env_or("IAA_TEST_PAGE_SIZE", "4096").parse().unwrap();
    let level = match env_or("IAA_TEST_LEVEL", "fast").as_str() {
        "strong" => Level::Strong,
        _ => Level::Fast,
    };
    let bytes: usize = env_or("IAA_TEST_BYTES", "4194304").parse().unwrap();
    let threads: u32 = env_or("IAA_TEST_THREADS", "1").parse().unwrap();
    let data = common::real_data(bytes);
    let noise = common::noise(8 * page_size, 3);
    let zero = vec![0u8; page_size];
    let mut pages: Vec<&[u8]> = common::pages(&data, page_size);
    pages.extend(common::pages(&noise, page_size));
    pages.push(&zero);
    let start = Instant::now();
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|channel| {
                let pages = &pages;
                scope.spawn(move || channel_roundtrip(channel, pages, page_size, level))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    println!("RESULT seconds={:.3}", start.elapsed().as_secs_f64());
    let (mut send, mut recv) = (Counters::default(), Counters::default());
    let mut wire = 0;
    for (s, r, w, send_path, recv_path) in &results {
        add(&mut send, s);
        add(&mut recv, r);
        wire += w;
        println!("PATH send {send_path}");
        println!("PATH recv {recv_path}");
    }
    println!("RESULT send_path={}", results[0].3);
    println!("RESULT recv_path={}", results[0].4);
    println!("RESULT wire_bytes={wire}");
    for (side, c) in [("send", send), ("recv", recv)] {
        println!("RESULT {side}_iaa={}", c.pages_iaa);
        println!("RESULT {side}_cpu={}", c.pages_cpu);
        println!("RESULT {side}_raw={}", c.pages_raw);
        println!("RESULT {side}_faults={}", c.device.page_faults);
        println!("RESULT {side}_descriptors={}", c.device.descriptors);
        println!("RESULT {side}_queue_full={}", c.device.fallback_queue_full);
        println!("RESULT {side}_error={}", c.device.fallback_error);
        println!("RESULT {side}_page_fault={}", c.device.fallback_page_fault);
        println!("RESULT {side}_timeout={}", c.device.fallback_timeout);
        println!("RESULT {side}_rejected={}", c.device.fallback_rejected);
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
    println!("RESULT pages={}", pages.len() as u64 * u64::from(threads));
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

/// A round trip on a queue deeper than a packet: the device did all the work.
fn check_roundtrip(outcome: &iaa_common::Outcome, method: &str) {
    check_paths(outcome, method);
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
}

/// Both sides used the device through `method`; one NOOP probed the queue;
/// no descriptor was lost.
fn check_paths(outcome: &iaa_common::Outcome, method: &str) {
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
    check_paths(&outcome, "MOVDIR64B");
    check_counts(&outcome);
    // Sixteen pages of each packet fit the queue; the rest went to the CPU
    // as refused by a full queue, not lost.
    let packets = outcome.number("pages").div_ceil(128);
    for side in ["send", "recv"] {
        let iaa = outcome.number(&format!("{side}_iaa"));
        assert!(
            iaa >= 16 * (packets - 1),
            "{side}: {iaa} pages on the device:\n{}",
            outcome.output
        );
        assert!(outcome.number(&format!("{side}_queue_full")) > 0);
    }
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
        // A queue that holds a packet of 512-byte pages (1024 of them).
        let outcome = run_on_model(
            "roundtrip",
            "shared:1024:bof",
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

/// Every page counted once on each side, every page exact (the child checks).
fn check_counts(outcome: &iaa_common::Outcome) {
    let pages = outcome.number("pages");
    for side in ["send", "recv"] {
        let total: u64 = ["iaa", "cpu", "raw"]
            .iter()
            .map(|k| outcome.number(&format!("{side}_{k}")))
            .sum();
        assert_eq!(
            total, pages,
            "{side}: every page counted once:\n{}",
            outcome.output
        );
    }
}

#[test]
fn a_full_queue_sends_pages_to_the_cpu() {
    // Four channels on a queue of four entries: each often finds it full
    // with none of its own jobs to wait for.
    let outcome = run_on_model(
        "roundtrip",
        "shared:4",
        &[
            ("QEMU_QPL_IAA_SUBMIT", "enqcmd"),
            ("IAA_TEST_THREADS", "4"),
            ("IAA_TEST_BYTES", "1048576"),
        ],
        true,
    );
    check_counts(&outcome);
    let full = outcome.number("send_queue_full") + outcome.number("recv_queue_full");
    assert!(full > 0, "no page met a full queue:\n{}", outcome.output);
    assert!(outcome.stat("refused") > 0);
    assert!(outcome.number("send_iaa") > 0 && outcome.number("recv_iaa") > 0);
}

#[test]
fn error_completions_send_their_pages_to_the_cpu() {
    let outcome = run_on_model(
        "roundtrip",
        "shared:128:bof",
        &[
            ("QEMU_QPL_IAA_SUBMIT", "enqcmd"),
            ("IAA_MODEL_FAIL_RATE", "0.1"),
            ("IAA_MODEL_FAIL_SEED", "7"),
        ],
        true,
    );
    check_counts(&outcome);
    let (send_errors, recv_errors) = (outcome.number("send_error"), outcome.number("recv_error"));
    assert!(send_errors > 0 && recv_errors > 0, "{}", outcome.output);
    // Exactly the failed pages went to the CPU (which may find that one
    // does not shrink and send it raw).
    let send_cpu = outcome.number("send_cpu");
    assert!(send_cpu <= send_errors && send_errors <= send_cpu + outcome.number("send_raw"));
    assert_eq!(outcome.number("recv_cpu"), recv_errors);
    // The model's error completions: these, and any failed NOOP probe.
    assert!(outcome.stat("errors") - outcome.stat("output_overflow") >= send_errors + recv_errors);
}

#[test]
fn page_faults_are_touched_and_resubmitted() {
    // Without block on fault, every page of the output slots given back to
    // the kernel before each packet faults once on the device.
    let outcome = run_on_model(
        "roundtrip",
        "shared:128",
        &[
            ("QEMU_QPL_IAA_SUBMIT", "enqcmd"),
            ("QEMU_QPL_IAA_EVICT_EVERY", "1"),
        ],
        true,
    );
    check_counts(&outcome);
    let faults = outcome.number("send_faults") + outcome.number("recv_faults");
    assert!(faults > 0, "{}", outcome.output);
    assert_eq!(outcome.stat("page_faults"), faults);
    assert_eq!(
        outcome.number("send_page_fault") + outcome.number("recv_page_fault"),
        0
    );
    assert_eq!(outcome.number("send_cpu") + outcome.number("recv_cpu"), 0);
    // With block on fault the device resolves them itself.
    let outcome = run_on_model(
        "roundtrip",
        "shared:128:bof",
        &[
            ("QEMU_QPL_IAA_SUBMIT", "enqcmd"),
            ("QEMU_QPL_IAA_EVICT_EVERY", "1"),
        ],
        true,
    );
    assert_eq!(
        outcome.number("send_faults") + outcome.number("recv_faults"),
        0
    );
    assert!(outcome.stat("faults_resolved") > 0);
    assert_eq!(outcome.number("send_cpu") + outcome.number("recv_cpu"), 0);
}

#[test]
fn a_device_that_stops_completing_is_given_up() {
    // The device completes the probe and 100 descriptors, then nothing:
    // after 200 ms the channel gives the device up and finishes on the CPU.
    let outcome = run_on_model(
        "roundtrip",
        "shared:128:bof",
        &[
            ("QEMU_QPL_IAA_SUBMIT", "enqcmd"),
            ("IAA_MODEL_STALL_AFTER", "101"),
            ("QEMU_QPL_IAA_TIMEOUT_MS", "200"),
        ],
        true,
    );
    check_counts(&outcome);
    assert!(outcome.number("send_timeout") > 0, "{}", outcome.output);
    assert!(outcome.number("send_cpu") > 0);
    let path = outcome.result("send_path");
    assert!(
        path.starts_with("CPU since IAA timed out: iax1 wq1.0"),
        "{path}"
    );
    assert!(outcome.number("recv_timeout") > 0, "{}", outcome.output);
    assert!(outcome
        .result("recv_path")
        .starts_with("CPU since IAA timed out"));
}
