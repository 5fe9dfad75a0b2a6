//! qpl-bench: per-page codecs on real data, one core, in one run.
//!
//! Splits the input files into 4 KiB pages and runs every codec over all of
//! them the way QEMU's `qpl` method does: each page on its own, output limited
//! to page size - 1 (a page that does not fit travels raw). Codecs take turns
//! block by block (16 MiB) within each repetition, so that this machine's
//! drift, which moves by tens of percent within minutes, hits them all alike;
//! a repetition's time for a codec is the sum over its blocks, and the table
//! shows medians over repetitions. Every round trip is verified.
//!
//! `cargo run --release --features bench --bin qpl-bench -- [--json] [--reps N] [--only NAME]... [--best] FILE...`
//!
//! `--only NAME` keeps the rows whose codec name contains NAME (repeatable);
//! `--best` shows the fastest repetition instead of the median.

use std::time::{Duration, Instant};

use qemu_qpl::abi::copy_guest_page;
use qemu_qpl::codec::{Level, PageDecoder, PageEncoder};
use reference_codecs::{all_page_codecs, PageCodec, ZstdPacket, PAGES_PER_PACKET};

const PAGE: usize = 4096;
const LENGTH_BYTES: usize = 4;
/// Pages per turn: 16 MiB, a whole number of 512 KiB packets.
const BLOCK_PAGES: usize = 4096;
const _: () = assert!(BLOCK_PAGES % PAGES_PER_PACKET == 0);

/// Our codec at one level, seen through the benchmark's codec trait.
struct Ours {
    name: String,
    encoder: PageEncoder,
    decoder: PageDecoder,
    /// When set, each page is first copied out of "guest memory" as the C
    /// ABI's sender does (live pages are read once, into this snapshot).
    snapshot: Option<Vec<u8>>,
}

impl Ours {
    fn new(level: Level, snapshot: bool) -> Ours {
        Ours {
            name: format!(
                "qemu-qpl/{}{}",
                level.name(),
                if snapshot { "+snapshot" } else { "" }
            ),
            encoder: PageEncoder::new(level),
            decoder: PageDecoder::new(),
            snapshot: snapshot.then(|| vec![0u8; PAGE]),
        }
    }
}

impl PageCodec for Ours {
    fn name(&self) -> &str {
        &self.name
    }

    fn compress(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize> {
        match &mut self.snapshot {
            Some(snapshot) => {
                // SAFETY: `page` is PAGE readable bytes, as long as `snapshot`.
                unsafe { copy_guest_page(page.as_ptr(), snapshot) };
                self.encoder.encode(snapshot, out)
            }
            None => self.encoder.encode(page, out),
        }
    }

    fn decompress(&mut self, stream: &[u8], out: &mut [u8]) -> Result<usize, String> {
        self.decoder
            .decode(stream, out)
            .map(|()| out.len())
            .map_err(|fault| format!("{fault:?}"))
    }
}

/// What one benchmark row measures.
enum Subject {
    /// A per-page codec compressing and decompressing its own output.
    PerPage(Box<dyn PageCodec>),
    /// Our decoder reading the streams of another per-page codec.
    OursDecoding(Box<dyn PageCodec>),
    /// zstd over whole 512 KiB packets (QEMU's `zstd` method).
    ZstdPacket(ZstdPacket),
    /// Copying pages through a staging buffer of one block, allocated and
    /// touched before any timing: the physical reference.
    Memcpy(Vec<u8>),
}

struct Row {
    name: String,
    subject: Subject,
    /// Per repetition, summed over the blocks.
    compress: Vec<Duration>,
    decompress: Vec<Duration>,
    /// Over all blocks (the same in every repetition).
    wire_bytes: usize,
    raw_pages: Option<usize>,
}

/// One block's result for one row.
struct Turn {
    compress: Duration,
    decompress: Duration,
    wire_bytes: usize,
    raw_pages: Option<usize>,
}

/// Compressed output of one pass, kept for the decompression pass.
struct Encoded {
    /// Stream bytes of all pages back to back.
    streams: Vec<u8>,
    /// Per page: Some(stream length) or None when sent raw.
    lengths: Vec<Option<u32>>,
}

fn encode_all(codec: &mut dyn PageCodec, pages: &[&[u8]], encoded: &mut Encoded) -> Duration {
    encoded.streams.clear();
    encoded.lengths.clear();
    let mut out = vec![0u8; PAGE - 1];
    let start = Instant::now();
    for page in pages {
        match codec.compress(page, &mut out) {
            Some(len) => {
                encoded.streams.extend_from_slice(&out[..len]);
                encoded.lengths.push(Some(len as u32));
            }
            None => encoded.lengths.push(None),
        }
    }
    start.elapsed()
}

/// One page decoder: compressed stream in, page out; returns the page length.
type DecodeFn<'a> = dyn FnMut(&[u8], &mut [u8]) -> Result<usize, String> + 'a;

fn decode_all(
    decode: &mut DecodeFn<'_>,
    pages: &[&[u8]],
    encoded: &Encoded,
    output: &mut [u8],
) -> Duration {
    let start = Instant::now();
    let mut at = 0;
    for ((length, page), dest) in encoded
        .lengths
        .iter()
        .zip(pages)
        .zip(output.chunks_exact_mut(PAGE))
    {
        match length {
            Some(len) => {
                let stream = &encoded.streams[at..at + *len as usize];
                at += *len as usize;
                if let Err(error) = decode(stream, dest) {
                    dest.fill(0);
                    eprintln!("qpl-bench: decode error: {error}");
                }
            }
            None => dest.copy_from_slice(page),
        }
    }
    start.elapsed()
}

fn verify(name: &str, pages: &[&[u8]], output: &[u8]) {
    for (index, (page, got)) in pages.iter().zip(output.chunks_exact(PAGE)).enumerate() {
        assert!(
            *page == got,
            "qpl-bench: {name}: page {index} did not survive the round trip"
        );
    }
}

fn wire_of(encoded: &Encoded) -> (usize, usize) {
    let raw = encoded.lengths.iter().filter(|l| l.is_none()).count();
    let wire = encoded.lengths.len() * LENGTH_BYTES + encoded.streams.len() + raw * PAGE;
    (wire, raw)
}

fn run_block(row: &mut Row, pages: &[&[u8]], output: &mut [u8], encoded: &mut Encoded) -> Turn {
    let output = &mut output[..pages.len() * PAGE];
    output.fill(0);
    let turn = match &mut row.subject {
        Subject::PerPage(codec) => {
            let compress = encode_all(codec.as_mut(), pages, encoded);
            let (wire_bytes, raw) = wire_of(encoded);
            let mut decode = |s: &[u8], o: &mut [u8]| codec.decompress(s, o);
            let decompress = decode_all(&mut decode, pages, encoded, output);
            Turn {
                compress,
                decompress,
                wire_bytes,
                raw_pages: Some(raw),
            }
        }
        Subject::OursDecoding(codec) => {
            encode_all(codec.as_mut(), pages, encoded);
            let (wire_bytes, raw) = wire_of(encoded);
            let mut decoder = PageDecoder::new();
            let mut decode = |s: &[u8], o: &mut [u8]| {
                decoder
                    .decode(s, o)
                    .map(|()| o.len())
                    .map_err(|fault| format!("{fault:?}"))
            };
            let decompress = decode_all(&mut decode, pages, encoded, output);
            Turn {
                compress: Duration::ZERO, // not reported for this row
                decompress,
                wire_bytes,
                raw_pages: Some(raw),
            }
        }
        Subject::ZstdPacket(zstd) => {
            let mut packets = Vec::new();
            let mut out = vec![0u8; ZstdPacket::compress_bound(PAGES_PER_PACKET)];
            zstd.reset();
            let start = Instant::now();
            for chunk in pages.chunks(PAGES_PER_PACKET) {
                let len = zstd.compress_packet(chunk, &mut out).expect("zstd packet");
                packets.push(out[..len].to_vec());
            }
            let compress = start.elapsed();
            let wire_bytes = packets.iter().map(Vec::len).sum();
            let start = Instant::now();
            for (packet, dest) in packets
                .iter()
                .zip(output.chunks_mut(PAGE * PAGES_PER_PACKET))
            {
                let mut views: Vec<&mut [u8]> = dest.chunks_exact_mut(PAGE).collect();
                zstd.decompress_packet(packet, &mut views)
                    .expect("zstd packet decompression");
            }
            Turn {
                compress,
                decompress: start.elapsed(),
                wire_bytes,
                raw_pages: None,
            }
        }
        Subject::Memcpy(staging) => {
            let start = Instant::now();
            for (page, dest) in pages.iter().zip(staging.chunks_exact_mut(PAGE)) {
                dest.copy_from_slice(page);
            }
            let compress = start.elapsed();
            let start = Instant::now();
            for (src, dest) in staging
                .chunks_exact(PAGE)
                .zip(output.chunks_exact_mut(PAGE))
                .take(pages.len())
            {
                dest.copy_from_slice(src);
            }
            Turn {
                compress,
                decompress: start.elapsed(),
                wire_bytes: pages.len() * PAGE,
                raw_pages: None,
            }
        }
    };
    verify(&row.name, pages, output);
    turn
}

fn median(times: &[Duration]) -> Option<Duration> {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied()
}

fn mbps(bytes: usize, time: Option<Duration>) -> Option<f64> {
    time.map(|t| bytes as f64 / t.as_secs_f64() / 1e6)
}

fn rows() -> Vec<Row> {
    let mut subjects: Vec<(String, Subject)> = Vec::new();
    for (level, snapshot) in [
        (Level::Turbo, false),
        (Level::Fast, false),
        (Level::Fast, true),
        (Level::Strong, false),
    ] {
        let ours = Ours::new(level, snapshot);
        subjects.push((ours.name.clone(), Subject::PerPage(Box::new(ours))));
    }
    for codec in all_page_codecs() {
        let name = match codec.name() {
            "qpl-qemu" => "intel-qpl/qemu-flags".to_string(),
            "qpl-dyn-1" => "intel-qpl/dynamic-1".to_string(),
            "qpl-dyn-3" => "intel-qpl/dynamic-3".to_string(),
            other => other.to_string(),
        };
        if name == "intel-qpl/qemu-flags" {
            let peer = reference_codecs::IntelQpl::new(reference_codecs::QplMode::Qemu);
            subjects.push((
                "qemu-qpl decoding intel-qpl/qemu-flags".to_string(),
                Subject::OursDecoding(Box::new(peer)),
            ));
        }
        subjects.push((name, Subject::PerPage(codec)));
    }
    subjects.push((
        "zstd-1/512KiB-packet".to_string(),
        Subject::ZstdPacket(ZstdPacket::new(1)),
    ));
    subjects.push((
        "memcpy".to_string(),
        Subject::Memcpy(vec![1u8; BLOCK_PAGES * PAGE]),
    ));
    subjects
        .into_iter()
        .map(|(name, subject)| Row {
            name,
            subject,
            compress: Vec::new(),
            decompress: Vec::new(),
            wire_bytes: 0,
            raw_pages: None,
        })
        .collect()
}

fn main() {
    let mut json = false;
    let mut reps = 5usize;
    let mut only: Vec<String> = Vec::new();
    let mut best = false;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--reps" => {
                reps = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .expect("--reps takes a positive number")
            }
            "--best" => best = true,
            "--only" => only.push(args.next().expect("--only takes a codec name fragment")),
            "-h" | "--help" => {
                println!("usage: qpl-bench [--json] [--reps N] [--only NAME]... [--best] FILE...");
                return;
            }
            _ => files.push(arg),
        }
    }
    if files.is_empty() {
        eprintln!("usage: qpl-bench [--json] [--reps N] FILE...");
        std::process::exit(2);
    }
    let mut data = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("qpl-bench: {file}: {e}"));
        data.extend_from_slice(&bytes);
    }
    data.truncate(data.len() / PAGE * PAGE);
    let pages: Vec<&[u8]> = data.chunks_exact(PAGE).collect();
    assert!(!pages.is_empty(), "qpl-bench: less than one page of input");
    let zero_pages = pages.iter().filter(|p| p.iter().all(|&b| b == 0)).count();
    eprintln!(
        "qpl-bench: {} pages ({:.1} MiB, {:.1} % zero), {reps} interleaved repetitions",
        pages.len(),
        data.len() as f64 / (1 << 20) as f64,
        100.0 * zero_pages as f64 / pages.len() as f64
    );

    let mut rows = rows();
    if !only.is_empty() {
        rows.retain(|row| only.iter().any(|o| row.name.contains(o.as_str())));
    }
    let block_pages = BLOCK_PAGES.min(pages.len());
    let mut output = vec![1u8; block_pages * PAGE];
    let mut encoded = Encoded {
        streams: Vec::with_capacity(block_pages * PAGE),
        lengths: Vec::with_capacity(block_pages),
    };
    for rep in 0..reps {
        eprintln!("qpl-bench: repetition {}/{reps}", rep + 1);
        let mut totals: Vec<(Duration, Duration)> = vec![Default::default(); rows.len()];
        for row in rows.iter_mut() {
            row.wire_bytes = 0;
            row.raw_pages = None;
        }
        for block in pages.chunks(BLOCK_PAGES) {
            for (row, total) in rows.iter_mut().zip(totals.iter_mut()) {
                let turn = run_block(row, block, &mut output, &mut encoded);
                total.0 += turn.compress;
                total.1 += turn.decompress;
                row.wire_bytes += turn.wire_bytes;
                if let Some(raw) = turn.raw_pages {
                    row.raw_pages = Some(row.raw_pages.unwrap_or(0) + raw);
                }
            }
        }
        for (row, (compress, decompress)) in rows.iter_mut().zip(totals) {
            // Decoding another codec's streams has no compression time.
            if !matches!(row.subject, Subject::OursDecoding(_)) {
                row.compress.push(compress);
            }
            row.decompress.push(decompress);
        }
    }
    eprintln!("qpl-bench: every round trip verified");

    if !json {
        println!("| codec | compress MB/s | decompress MB/s | ratio | pages sent raw |");
        println!("|---|---|---|---|---|");
    }
    for row in &rows {
        let pick = |times: &[Duration]| {
            if best {
                times.iter().min().copied()
            } else {
                median(times)
            }
        };
        let compress = mbps(data.len(), pick(&row.compress));
        let decompress = mbps(data.len(), pick(&row.decompress));
        let ratio = data.len() as f64 / row.wire_bytes as f64;
        let raw_pct = row.raw_pages.map(|r| 100.0 * r as f64 / pages.len() as f64);
        let show = |v: Option<f64>, digits: usize| match v {
            Some(v) => format!("{v:.digits$}"),
            None => "—".to_string(),
        };
        if json {
            let field = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.3}"));
            println!(
                "{{\"codec\":\"{}\",\"compress_mbps\":{},\"decompress_mbps\":{},\"ratio\":{:.4},\"raw_pct\":{}}}",
                row.name,
                field(compress),
                field(decompress),
                ratio,
                field(raw_pct)
            );
        } else {
            println!(
                "| {} | {} | {} | {:.2} | {} |",
                row.name,
                show(compress, 0),
                show(decompress, 0),
                ratio,
                raw_pct.map_or("—".to_string(), |p| format!("{p:.1} %"))
            );
        }
    }
}
