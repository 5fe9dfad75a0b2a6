//! Runs Intel QPL 1.9's hardware path on the IAA model with upstream QEMU's
//! job configuration and checks every page of a corpus:
//!
//! * compression: each page is submitted as QEMU does (a packet of 128
//!   pages submitted, then waited for), output capped at page size - 1; every
//!   stream must inflate to its page with an independent inflater
//!   (miniz_oxide) and with the model's own DECOMPRESS, through Intel QPL;
//! * decompression: every page compressed by Intel QPL's software path, by
//!   qemu-qpl at each level and by zlib must come back exactly;
//! * the CRC-32 Intel QPL reports from the device must equal its software
//!   path's (which leaves the XOR checksum of a compression at 0).
//!
//! Run it with the model preloaded (`make -s iaa-model-env`); without the
//! model the hardware path does not initialise and it fails.

mod device_check;
mod qpl;

use std::process::ExitCode;

use qemu_qpl::codec::{Level, PageEncoder};
use qpl::{Job, JobMode, STS_OK};
use reference_codecs::{IntelQpl, PageCodec, QplMode, Zlib};

const PAGE: usize = 4096;

/// A page encoder: fills the buffer, returns the stream length (None: raw).
type Encoder = Box<dyn FnMut(&[u8], &mut [u8]) -> Option<usize>>;
const PACKET: usize = 128;

struct Options {
    corpus: String,
    pages: Option<usize>,
    modes: Vec<JobMode>,
    decompress: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        corpus: String::new(),
        pages: None,
        modes: vec![JobMode::Qemu],
        decompress: true,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--pages" => {
                options.pages = Some(
                    args.next()
                        .and_then(|n| n.parse().ok())
                        .ok_or("--pages needs a number")?,
                );
            }
            "--modes" => {
                let list = args.next().ok_or("--modes needs a list")?;
                options.modes = list
                    .split(',')
                    .map(|m| {
                        JobMode::parse(m).ok_or(format!(
                            "unknown mode {m:?} (qemu, qemu-verify, dynamic, dynamic-verify)"
                        ))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--no-decompress" => options.decompress = false,
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg}")),
            _ => options.corpus = arg,
        }
    }
    if options.corpus.is_empty() {
        return Err("usage: iaa-validate [--pages N] [--modes qemu,qemu-verify,dynamic,dynamic-verify] [--no-decompress] CORPUS".into());
    }
    Ok(options)
}

/// A packet's jobs, created once on the hardware path (as QEMU's
/// `multifd_qpl_init_hw_job`).
struct HwJobs {
    jobs: Vec<Job>,
}

#[derive(Default, Debug)]
struct Tally {
    ok: usize,
    failed: usize,
    /// qpl_status of the failed jobs, and how many.
    statuses: std::collections::BTreeMap<i32, usize>,
    refused: usize,
    wire_bytes: usize,
}

/// Compresses `pages` on the hardware path, packet by packet: submit all,
/// then wait for each. Returns per page the stream (None: sent raw).
fn hw_compress(
    jobs: &mut HwJobs,
    pages: &[&[u8]],
    mode: JobMode,
    tally: &mut Tally,
    checks: &mut Vec<(u32, u32)>,
) -> Vec<Option<Vec<u8>>> {
    let mut out = Vec::with_capacity(pages.len());
    let mut buffers = vec![vec![0u8; PAGE - 1]; PACKET];
    for packet in pages.chunks(PACKET) {
        let mut submitted = vec![false; packet.len()];
        for (index, page) in packet.iter().enumerate() {
            let job = &mut jobs.jobs[index];
            job.prepare(true, mode, page, &mut buffers[index]);
            submitted[index] = job.submit() == STS_OK;
        }
        for (index, page) in packet.iter().enumerate() {
            let job = &mut jobs.jobs[index];
            if !submitted[index] {
                tally.refused += 1;
                tally.wire_bytes += 4 + PAGE;
                out.push(None);
                checks.push((0, 0));
                continue;
            }
            let status = job.wait();
            if status == STS_OK {
                let len = job.total_out();
                tally.ok += 1;
                tally.wire_bytes += 4 + len;
                checks.push((job.crc(), job.xor()));
                out.push(Some(buffers[index][..len].to_vec()));
            } else {
                tally.failed += 1;
                *tally.statuses.entry(status).or_default() += 1;
                tally.wire_bytes += 4 + page.len();
                checks.push((0, 0));
                out.push(None);
            }
        }
    }
    out
}

/// Decompresses on the hardware path, packet by packet; returns the number
/// of pages that came back exactly, and the first mismatch.
fn hw_decompress(
    jobs: &mut HwJobs,
    pages: &[&[u8]],
    streams: &[Option<Vec<u8>>],
) -> (usize, usize, Option<String>) {
    let mut good = 0;
    let mut tried = 0;
    let mut first_bad = None;
    let mut outputs = vec![vec![0u8; PAGE]; PACKET];
    let indices: Vec<usize> = (0..pages.len()).filter(|&i| streams[i].is_some()).collect();
    for packet in indices.chunks(PACKET) {
        let mut submitted = vec![0i32; packet.len()];
        for (slot, &page) in packet.iter().enumerate() {
            outputs[slot].fill(0xA5);
            let job = &mut jobs.jobs[slot];
            job.prepare(
                false,
                JobMode::Qemu,
                streams[page].as_ref().unwrap(),
                &mut outputs[slot],
            );
            submitted[slot] = job.submit();
        }
        for (slot, &page) in packet.iter().enumerate() {
            tried += 1;
            let job = &mut jobs.jobs[slot];
            let status = if submitted[slot] == STS_OK {
                job.wait()
            } else {
                submitted[slot]
            };
            if status == STS_OK && job.total_out() == PAGE && outputs[slot] == pages[page] {
                good += 1;
            } else if first_bad.is_none() {
                first_bad = Some(format!(
                    "page {page}: status {status}, total_out {}",
                    job.total_out()
                ));
            }
        }
    }
    (good, tried, first_bad)
}

fn inflate_independently(stream: &[u8]) -> Option<Vec<u8>> {
    miniz_oxide::inflate::decompress_to_vec_with_limit(stream, PAGE).ok()
}

fn run(options: &Options) -> Result<(), String> {
    let data = std::fs::read(&options.corpus).map_err(|e| format!("{}: {e}", options.corpus))?;
    let mut pages: Vec<&[u8]> = data.chunks_exact(PAGE).collect();
    if let Some(limit) = options.pages {
        pages.truncate(limit);
    }
    if pages.is_empty() {
        return Err("the corpus holds no whole page".into());
    }
    let mut jobs = HwJobs { jobs: Vec::new() };
    for _ in 0..PACKET {
        jobs.jobs.push(Job::new(true).map_err(|status| {
            format!("Intel QPL's hardware path did not initialise (qpl_status {status}); is the model preloaded (make -s iaa-model-env)?")
        })?);
    }
    println!(
        "Intel QPL 1.9 hardware path initialised on the model; {} pages of {}",
        pages.len(),
        options.corpus
    );
    let mut failures = Vec::new();

    for &mode in &options.modes {
        let mut tally = Tally::default();
        let mut checks = Vec::new();
        let start = std::time::Instant::now();
        let streams = hw_compress(&mut jobs, &pages, mode, &mut tally, &mut checks);
        let elapsed = start.elapsed().as_secs_f64();
        let mut independent_bad = 0;
        let mut first = None;
        for (index, stream) in streams.iter().enumerate() {
            if let Some(stream) = stream {
                if inflate_independently(stream).as_deref() != Some(pages[index]) {
                    independent_bad += 1;
                    first.get_or_insert(index);
                }
            }
        }
        // Intel QPL's software path with the same flags: ratio and checksums.
        let mut sw = Job::new(false).map_err(|s| format!("software job: qpl_status {s}"))?;
        let mut sw_tally = Tally::default();
        let mut checksum_bad = 0;
        let mut buffer = vec![0u8; PAGE - 1];
        for (index, page) in pages.iter().enumerate() {
            sw.prepare(true, mode, page, &mut buffer);
            if sw.execute() == STS_OK {
                sw_tally.ok += 1;
                sw_tally.wire_bytes += 4 + sw.total_out();
                // Intel QPL's software path leaves the XOR checksum at 0 for
                // compression, so only the CRC can be compared.
                if streams[index].is_some() && checks[index].0 != sw.crc() {
                    checksum_bad += 1;
                }
            } else {
                sw_tally.failed += 1;
                sw_tally.wire_bytes += 4 + PAGE;
            }
        }
        let ratio = |t: &Tally| (pages.len() * PAGE) as f64 / t.wire_bytes as f64;
        println!(
            "[{}] hardware path: {} compressed, {} did not fit (qpl_status: count {:?}), {} refused (queue full); ratio {:.3} ({:.1} s); software path: {} compressed, ratio {:.3}",
            mode.name(),
            tally.ok,
            tally.failed,
            tally.statuses,
            tally.refused,
            ratio(&tally),
            elapsed,
            sw_tally.ok,
            ratio(&sw_tally)
        );
        println!(
            "[{}] independent inflate (miniz_oxide): {} of {} streams wrong{}",
            mode.name(),
            independent_bad,
            tally.ok,
            first.map_or(String::new(), |i| format!(" (first: page {i})"))
        );
        println!(
            "[{}] CRC-32 from the device differing from the software path's: {checksum_bad}",
            mode.name()
        );
        if independent_bad > 0 {
            failures.push(format!(
                "{}: {independent_bad} streams do not inflate to their page",
                mode.name()
            ));
        }
        if checksum_bad > 0 {
            failures.push(format!(
                "{}: {checksum_bad} pages with checksums unlike the software path's",
                mode.name()
            ));
        }
        if tally.ok == 0 || tally.ok + pages.len() / 20 < sw_tally.ok {
            failures.push(format!(
                "{}: the hardware path compressed {} pages, the software path {}",
                mode.name(),
                tally.ok,
                sw_tally.ok
            ));
        }
        let (good, tried, bad) = hw_decompress(&mut jobs, &pages, &streams);
        println!(
            "[{}] round trip through the model's DECOMPRESS: {good} of {tried} pages exact",
            mode.name()
        );
        if good != tried {
            failures.push(format!(
                "{}: round trip: {} of {tried} wrong ({})",
                mode.name(),
                tried - good,
                bad.unwrap_or_default()
            ));
        }
    }

    if options.decompress {
        let mut encoders: Vec<(String, Encoder)> = Vec::new();
        let mut intel = IntelQpl::new(QplMode::Qemu);
        encoders.push((
            "Intel QPL software path (QEMU's flags)".into(),
            Box::new(move |p, o| intel.compress(p, o)),
        ));
        for level in [Level::Fast, Level::Strong] {
            let mut encoder = PageEncoder::new(level);
            encoders.push((
                format!("qemu-qpl {}", level.name()),
                Box::new(move |p, o| encoder.encode(p, o)),
            ));
        }
        for level in [1, 9] {
            let mut zlib = Zlib::new(level);
            encoders.push((
                format!("zlib-{level}"),
                Box::new(move |p, o| zlib.compress(p, o)),
            ));
        }
        let mut buffer = vec![0u8; PAGE - 1];
        for (name, encode) in encoders.iter_mut() {
            let streams: Vec<Option<Vec<u8>>> = pages
                .iter()
                .map(|p| encode(p, &mut buffer).map(|n| buffer[..n].to_vec()))
                .collect();
            let (good, tried, bad) = hw_decompress(&mut jobs, &pages, &streams);
            println!(
                "[decompress] {name}: {good} of {tried} pages exact through the hardware path"
            );
            if good != tried || tried == 0 {
                failures.push(format!(
                    "decompress {name}: {} of {tried} wrong ({})",
                    tried - good,
                    bad.unwrap_or_default()
                ));
            }
        }
    }

    if failures.is_empty() {
        println!("iaa-validate: all checks passed");
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// One hardware decompression job, reused (as QEMU reuses its jobs) to
/// decompress into three untouched pages in turn: prints the qpl_status of
/// each. With block-on-fault off, the device reports each destination's
/// page fault and Intel QPL decides whether to touch the page and resubmit.
fn fault_probe() -> ExitCode {
    let page: Vec<u8> = b"fault probe page; ".repeat(228)[..PAGE].to_vec();
    let stream = miniz_oxide::deflate::compress_to_vec(&page, 1);
    let mut job = match Job::new(true) {
        Ok(job) => job,
        Err(status) => {
            eprintln!("fault-probe: no hardware path (qpl_status {status})");
            return ExitCode::FAILURE;
        }
    };
    let mut statuses = Vec::new();
    for _ in 0..3 {
        // SAFETY: a fresh private anonymous mapping: not resident until written.
        let target = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(target != libc::MAP_FAILED);
        // SAFETY: the mapping is PAGE bytes, ours.
        let out = unsafe { std::slice::from_raw_parts_mut(target.cast::<u8>(), PAGE) };
        job.prepare(false, JobMode::Qemu, &stream, out);
        let mut status = job.submit();
        if status == STS_OK {
            status = job.wait();
        }
        statuses.push(status);
        if status == STS_OK && out != page.as_slice() {
            eprintln!("fault-probe: wrong output");
            return ExitCode::FAILURE;
        }
    }
    println!("fault-probe: qpl_status of three decompressions into untouched pages with one job: {statuses:?}");
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("device-check") {
        let scenario = args.get(2).map(String::as_str).unwrap_or("");
        return match device_check::run(scenario) {
            Ok(()) => {
                println!("device-check {scenario}: ok");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("device-check {scenario}: FAILED: {message}");
                ExitCode::FAILURE
            }
        };
    }
    if args.get(1).map(String::as_str) == Some("fault-probe") {
        return fault_probe();
    }
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("iaa-validate: {message}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("iaa-validate: FAILED\n{message}");
            ExitCode::FAILURE
        }
    }
}
