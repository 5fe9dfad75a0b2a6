//! qpl-bench: per-page codecs on real data, one core, in one run.
//!
//! Splits the input files into 4 KiB pages and runs every codec over all of
//! them the way QEMU's `qpl` method does: each page on its own, output limited
//! to page size - 1 (a page that does not fit travels raw). Repetitions are
//! interleaved across codecs so that drift on a shared machine hits them all
//! alike; the table shows medians. Every round trip is verified.
//!
//! `cargo run --release --features bench --bin qpl-bench -- [--json] [--reps N] [--only NAME]... [--best] FILE...`
//!
//! `--only NAME` keeps the rows whose codec name contains NAME (repeatable);
//! `--best` shows the fastest repetition instead of the median.

use std::time::{Duration, Instant};

use qemu_qpl::codec::{Level, PageDecoder, PageEncoder};
use reference_codecs::{all_page_codecs, PageCodec, ZstdPacket, PAGES_PER_PACKET};

const PAGE: usize = 4096;
const LENGTH_BYTES: usize = 4;

/// Our codec at one level, seen through the benchmark's codec trait.
struct Ours {
    name: String,
    encoder: PageEncoder,
    decoder: PageDecoder,
}

impl Ours {
    fn new(level: Level) -> Ours {
        Ours {
            name: format!("qemu-qpl/{}", level.name()),
            encoder: PageEncoder::new(level),
            decoder: PageDecoder::new(),
        }
    }
}

impl PageCodec for Ours {
    fn name(&self) -> &str {
        &self.name
    }

    fn compress(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize> {
        self.encoder.encode(page, out)
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
    /// Copying pages: the physical reference.
    Memcpy,
}

struct Row {
    name: String,
    subject: Subject,
    compress: Vec<Duration>,
    decompress: Vec<Duration>,
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

fn run_once(row: &mut Row, pages: &[&[u8]], output: &mut [u8], encoded: &mut Encoded) {
    output.fill(0);
    match &mut row.subject {
        Subject::PerPage(codec) => {
            row.compress
                .push(encode_all(codec.as_mut(), pages, encoded));
            let (wire, raw) = wire_of(encoded);
            row.wire_bytes = wire;
            row.raw_pages = Some(raw);
            let mut decode = |s: &[u8], o: &mut [u8]| codec.decompress(s, o);
            row.decompress
                .push(decode_all(&mut decode, pages, encoded, output));
        }
        Subject::OursDecoding(codec) => {
            encode_all(codec.as_mut(), pages, encoded);
            let (wire, raw) = wire_of(encoded);
            row.wire_bytes = wire;
            row.raw_pages = Some(raw);
            let mut decoder = PageDecoder::new();
            let mut decode = |s: &[u8], o: &mut [u8]| {
                decoder
                    .decode(s, o)
                    .map(|()| o.len())
                    .map_err(|fault| format!("{fault:?}"))
            };
            row.decompress
                .push(decode_all(&mut decode, pages, encoded, output));
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
            row.compress.push(start.elapsed());
            row.wire_bytes = packets.iter().map(Vec::len).sum();
            let start = Instant::now();
            for (packet, dest) in packets
                .iter()
                .zip(output.chunks_mut(PAGE * PAGES_PER_PACKET))
            {
                let mut views: Vec<&mut [u8]> = dest.chunks_exact_mut(PAGE).collect();
                zstd.decompress_packet(packet, &mut views)
                    .expect("zstd packet decompression");
            }
            row.decompress.push(start.elapsed());
        }
        Subject::Memcpy => {
            let mut staging = vec![0u8; pages.len() * PAGE];
            let start = Instant::now();
            for (page, dest) in pages.iter().zip(staging.chunks_exact_mut(PAGE)) {
                dest.copy_from_slice(page);
            }
            row.compress.push(start.elapsed());
            let start = Instant::now();
            for (src, dest) in staging
                .chunks_exact(PAGE)
                .zip(output.chunks_exact_mut(PAGE))
            {
                dest.copy_from_slice(src);
            }
            row.decompress.push(start.elapsed());
            row.wire_bytes = staging.len();
        }
    }
    verify(&row.name, pages, output);
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
    for level in [Level::Fast, Level::Strong] {
        let ours = Ours::new(level);
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
    subjects.push(("memcpy".to_string(), Subject::Memcpy));
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
    let mut output = vec![0u8; data.len()];
    let mut encoded = Encoded {
        streams: Vec::with_capacity(data.len()),
        lengths: Vec::with_capacity(pages.len()),
    };
    for rep in 0..reps {
        eprintln!("qpl-bench: repetition {}/{reps}", rep + 1);
        for row in rows.iter_mut() {
            run_once(row, &pages, &mut output, &mut encoded);
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
