//! Compatibility with Intel QPL 1.9.0, the library upstream QEMU's `qpl`
//! multifd method is built on, over every page of corpus A (256 MiB of real
//! data, 65,536 pages of 4 KiB):
//!
//! * Intel QPL compresses with QEMU's exact job (FIRST | LAST | OMIT_VERIFY,
//!   level 1, fixed Huffman, `available_out` = page size - 1; a page that does
//!   not fit is raw) and our decoder must give every page back exactly; the
//!   same with QPL's dynamic-Huffman level 1, which QEMU does not use;
//! * our encoder compresses (both levels) and Intel QPL's software
//!   decompressor, with QEMU's decompression job, must inflate every stream
//!   to exactly the page;
//! * the same at the wire level: packets of 128 pages framed like upstream's
//!   sender into our `Receiver`, and our `Sender`'s packets (fast level)
//!   through a parser written after upstream's `multifd_qpl_recv` into Intel
//!   QPL.
//!
//! Every page of the corpus goes through as a normal page: zero pages are
//! included (upstream's multifd would send them as zero pages instead, but
//! the `qpl` method must handle them too when zero-page detection is off).
//!
//! Corpus A's path comes from `QEMU_QPL_CORPUS`, which `make test` sets. This
//! test never skips: without the corpus it fails.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::OnceLock;

use qemu_qpl::codec::{Level, PageDecoder, PageEncoder};
use qemu_qpl::{ChannelConfig, Receiver, Sender};
use reference_codecs::intel_qpl::status_name;
use reference_codecs::{IntelQpl, QplMode};

const PAGE_SIZE: usize = 4096;
/// QEMU's packets: 512 KiB of 4 KiB pages.
const PACKET_PAGES: usize = 128;
/// Page-level failures described in full; the rest are only counted.
const MAX_REPORTED: usize = 20;
/// Worker threads per sweep (the CI machine has 2 cores).
const THREADS: usize = 2;

fn corpus() -> &'static [u8] {
    static CORPUS: OnceLock<Vec<u8>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let Some(path) = std::env::var_os("QEMU_QPL_CORPUS") else {
            panic!(
                "QEMU_QPL_CORPUS is not set. The Intel QPL compatibility test needs corpus A: \
                 run `make test`, which builds it and sets QEMU_QPL_CORPUS (or set \
                 QEMU_QPL_CORPUS to the path of corpusA.bin yourself)"
            );
        };
        let data = std::fs::read(&path).unwrap_or_else(|error| {
            panic!(
                "QEMU_QPL_CORPUS={}: {error}",
                PathBuf::from(&path).display()
            )
        });
        assert!(
            !data.is_empty() && data.len() % (PAGE_SIZE * PACKET_PAGES) == 0,
            "QEMU_QPL_CORPUS={}: {} bytes is not a whole number of 512 KiB packets",
            PathBuf::from(&path).display(),
            data.len()
        );
        data
    })
}

fn pages() -> Vec<&'static [u8]> {
    corpus().chunks_exact(PAGE_SIZE).collect()
}

/// Prints a summary line. Written to the stderr handle rather than with
/// `eprintln!`, which libtest captures: the counts must show in `make test`.
fn report(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// What one sweep saw.
#[derive(Default)]
struct Tally {
    pages: u64,
    compressed: u64,
    raw: u64,
    /// Bytes of the compressed pages' streams.
    stream_bytes: u64,
    /// Why the pages sent raw were: Intel QPL's status, or "no fit" for ours.
    raw_reasons: BTreeMap<String, u64>,
    failures: u64,
    details: Vec<String>,
}

impl Tally {
    fn fail(&mut self, page: usize, what: String) {
        self.failures += 1;
        if self.details.len() < MAX_REPORTED {
            self.details.push(format!("page {page}: {what}"));
        }
    }

    fn merge(&mut self, other: Tally) {
        self.pages += other.pages;
        self.compressed += other.compressed;
        self.raw += other.raw;
        self.stream_bytes += other.stream_bytes;
        for (reason, count) in other.raw_reasons {
            *self.raw_reasons.entry(reason).or_default() += count;
        }
        self.failures += other.failures;
        let room = MAX_REPORTED.saturating_sub(self.details.len());
        self.details.extend(other.details.into_iter().take(room));
    }

    /// Prints the counts and fails the test on any mismatch.
    fn finish(self, direction: &str) {
        let wire = self.stream_bytes + self.raw * PAGE_SIZE as u64 + self.pages * 4;
        let mut line = format!(
            "intel_qpl_compat: {direction}: {} pages, {} compressed, {} raw ({:.2} %), \
             ratio {:.3} (4-byte lengths counted), {} failures",
            self.pages,
            self.compressed,
            self.raw,
            100.0 * self.raw as f64 / self.pages.max(1) as f64,
            (self.pages * PAGE_SIZE as u64) as f64 / wire.max(1) as f64,
            self.failures,
        );
        if !self.raw_reasons.is_empty() {
            let reasons: Vec<String> = self
                .raw_reasons
                .iter()
                .map(|(reason, count)| format!("{reason}: {count}"))
                .collect();
            let _ = write!(line, "; raw because {}", reasons.join(", "));
        }
        report(&line);
        assert!(self.pages > 0, "{direction}: no pages were checked");
        if self.failures > 0 {
            let mut message = format!(
                "{direction}: {} of {} pages failed (first {} below; corpus page index, \
                 streams saved under {})\n",
                self.failures,
                self.pages,
                self.details.len(),
                failure_dir().display()
            );
            for detail in &self.details {
                message.push_str("  ");
                message.push_str(detail);
                message.push('\n');
            }
            panic!("{message}");
        }
    }
}

/// Where failing streams are written for a closer look.
fn failure_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("intel_qpl_compat")
}

/// Saves a stream that failed, so the bug can be reproduced in isolation.
fn save_stream(direction: &str, page: usize, stream: &[u8]) -> String {
    let dir = failure_dir();
    let path = dir.join(format!("{direction}-page{page}.deflate"));
    match std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, stream)) {
        Ok(()) => format!("stream saved as {}", path.display()),
        Err(error) => format!("stream not saved: {error}"),
    }
}

/// Describes how an inflated page differs from the original.
fn difference(got: &[u8], want: &[u8]) -> Option<String> {
    if got == want {
        return None;
    }
    let at = got.iter().zip(want).position(|(a, b)| a != b);
    let count = got.iter().zip(want).filter(|(a, b)| a != b).count();
    Some(match at {
        Some(at) => format!(
            "content differs: first at byte {at} (got {:#04x}, want {:#04x}), {count} bytes differ",
            got[at], want[at]
        ),
        None => format!("length {} instead of {}", got.len(), want.len()),
    })
}

/// Runs `work` over the page range in `THREADS` contiguous slices (whole
/// packets each) and merges what they saw.
fn sweep(pages: usize, work: impl Fn(Range<usize>) -> Tally + Sync) -> Tally {
    let packets = pages.div_ceil(PACKET_PAGES);
    let per_thread = packets.div_ceil(THREADS) * PACKET_PAGES;
    let mut total = Tally::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let start = (thread * per_thread).min(pages);
                let end = ((thread + 1) * per_thread).min(pages);
                let work = &work;
                scope.spawn(move || work(start..end))
            })
            .collect();
        for handle in handles {
            total.merge(handle.join().expect("a sweep thread panicked"));
        }
    });
    total
}

/// Intel QPL compresses in `mode`, our decoder inflates.
fn intel_qpl_streams_decode_with_our_decoder(mode: QplMode, direction: &str) {
    let pages = pages();
    let tally = sweep(pages.len(), |range| {
        let mut qpl = IntelQpl::new(mode);
        let mut decoder = PageDecoder::new();
        let mut stream = vec![0u8; PAGE_SIZE - 1];
        let mut page = vec![0u8; PAGE_SIZE];
        let mut tally = Tally::default();
        for index in range {
            let original = pages[index];
            tally.pages += 1;
            match qpl.compress_status(original, &mut stream) {
                Ok(len) => {
                    tally.compressed += 1;
                    tally.stream_bytes += len as u64;
                    if len == 0 || len >= PAGE_SIZE {
                        tally.fail(index, format!("Intel QPL returned total_out {len}"));
                        continue;
                    }
                    let problem = match decoder.decode(&stream[..len], &mut page) {
                        Err(fault) => Some(format!("our decoder: {fault:?}")),
                        Ok(()) => difference(&page, original),
                    };
                    if let Some(problem) = problem {
                        let saved =
                            save_stream(&format!("{}-to-ours", mode.name()), index, &stream[..len]);
                        tally.fail(
                            index,
                            format!("{len}-byte Intel QPL stream: {problem}; {saved}"),
                        );
                    }
                }
                Err(code) => {
                    tally.raw += 1;
                    *tally.raw_reasons.entry(status_name(code)).or_default() += 1;
                }
            }
        }
        tally
    });
    tally.finish(direction);
}

/// Upstream QEMU's job: level 1, fixed Huffman.
#[test]
fn intel_qpl_qemu_streams_decode_with_our_decoder() {
    intel_qpl_streams_decode_with_our_decoder(
        QplMode::Qemu,
        "Intel QPL (QEMU flags) -> our decoder, per page",
    );
}

/// Not what upstream QEMU asks for, but what an Intel QPL peer emits with
/// `QPL_FLAG_DYNAMIC_HUFFMAN`: our decoder must read dynamic blocks too.
#[test]
fn intel_qpl_dynamic_streams_decode_with_our_decoder() {
    intel_qpl_streams_decode_with_our_decoder(
        QplMode::DynamicL1,
        "Intel QPL (level 1, dynamic Huffman) -> our decoder, per page",
    );
}

/// Our encoder compresses at `level`, Intel QPL (QEMU's job) inflates.
fn our_streams_decode_with_intel_qpl(level: Level) {
    let pages = pages();
    let tally = sweep(pages.len(), |range| {
        let mut encoder = PageEncoder::new(level);
        let mut qpl = IntelQpl::new(QplMode::Qemu);
        let mut stream = vec![0u8; PAGE_SIZE - 1];
        let mut page = vec![0u8; PAGE_SIZE];
        let mut tally = Tally::default();
        for index in range {
            let original = pages[index];
            tally.pages += 1;
            let Some(len) = encoder.encode(original, &mut stream) else {
                tally.raw += 1;
                *tally.raw_reasons.entry("no fit".into()).or_default() += 1;
                continue;
            };
            tally.compressed += 1;
            tally.stream_bytes += len as u64;
            if len == 0 || len >= PAGE_SIZE {
                tally.fail(index, format!("our encoder returned {len} bytes"));
                continue;
            }
            // QEMU's check: status OK and total_out equal to the page size.
            let problem = match qpl.decompress(&stream[..len], &mut page) {
                Err(code) => Some(format!("Intel QPL: {}", status_name(code))),
                Ok(PAGE_SIZE) => difference(&page, original),
                Ok(produced) => Some(format!(
                    "Intel QPL inflated {produced} bytes, QEMU expects {PAGE_SIZE}"
                )),
            };
            if let Some(problem) = problem {
                let direction = format!("ours-{}-to-intel", level.name());
                let saved = save_stream(&direction, index, &stream[..len]);
                tally.fail(
                    index,
                    format!("{len}-byte stream of ours: {problem}; {saved}"),
                );
            }
        }
        tally
    });
    tally.finish(&format!(
        "our encoder ({}) -> Intel QPL decompressor, per page",
        level.name()
    ));
}

#[test]
fn our_fast_streams_decode_with_intel_qpl() {
    our_streams_decode_with_intel_qpl(Level::Fast);
}

#[test]
fn our_strong_streams_decode_with_intel_qpl() {
    our_streams_decode_with_intel_qpl(Level::Strong);
}

#[test]
fn our_turbo_streams_decode_with_intel_qpl() {
    our_streams_decode_with_intel_qpl(Level::Turbo);
}

fn config() -> ChannelConfig {
    ChannelConfig {
        channel: 0,
        page_size: PAGE_SIZE as u32,
        pages_per_packet: PACKET_PAGES as u32,
    }
}

/// Upstream's sender (`multifd_qpl_send_prepare` on the software path): the
/// big-endian length array, then each page's QPL stream, or the page itself
/// when QPL's job fails (output does not fit in page size - 1 bytes).
fn upstream_packet(qpl: &mut IntelQpl, pages: &[&[u8]], tally: &mut Tally) -> Vec<u8> {
    let mut lengths = Vec::with_capacity(pages.len() * 4);
    let mut data = Vec::with_capacity(pages.len() * PAGE_SIZE);
    let mut stream = vec![0u8; PAGE_SIZE - 1];
    for page in pages {
        tally.pages += 1;
        match qpl.compress_status(page, &mut stream) {
            Ok(len) => {
                tally.compressed += 1;
                tally.stream_bytes += len as u64;
                lengths.extend_from_slice(&(len as u32).to_be_bytes());
                data.extend_from_slice(&stream[..len]);
            }
            Err(code) => {
                tally.raw += 1;
                *tally.raw_reasons.entry(status_name(code)).or_default() += 1;
                lengths.extend_from_slice(&(PAGE_SIZE as u32).to_be_bytes());
                data.extend_from_slice(page);
            }
        }
    }
    lengths.extend_from_slice(&data);
    lengths
}

/// Packets framed like upstream's Intel QPL sender, into our `Receiver`.
#[test]
fn upstream_intel_qpl_packets_into_our_receiver() {
    let pages = pages();
    let tally = sweep(pages.len(), |range| {
        let mut qpl = IntelQpl::new(QplMode::Qemu);
        let mut receiver = Receiver::new(config()).expect("Receiver::new");
        let mut dest = vec![0u8; PACKET_PAGES * PAGE_SIZE];
        let mut tally = Tally::default();
        for first in range.step_by(PACKET_PAGES) {
            let packet = &pages[first..first + PACKET_PAGES];
            let body = upstream_packet(&mut qpl, packet, &mut tally);
            let mut dest_pages: Vec<&mut [u8]> = dest.chunks_exact_mut(PAGE_SIZE).collect();
            if let Err(error) = receiver.receive_packet(&body, &mut dest_pages) {
                let saved = save_stream("upstream-packet", first, &body);
                tally.fail(
                    first,
                    format!(
                        "packet of pages {first}..{}: receive_packet: {error} \
                         (packet page k is corpus page {first} + k); {saved}",
                        first + PACKET_PAGES
                    ),
                );
                continue;
            }
            for (k, original) in packet.iter().enumerate() {
                if let Some(problem) = difference(&dest[k * PAGE_SIZE..][..PAGE_SIZE], original) {
                    tally.fail(first + k, format!("after receive_packet: {problem}"));
                }
            }
        }
        tally
    });
    tally.finish("upstream-framed Intel QPL packets -> our Receiver");
}

/// Upstream's receiver (`multifd_qpl_recv` and
/// `multifd_qpl_decompress_pages_slow_path`), checks and all, with Intel
/// QPL's software path. Returns the first problem, naming the packet page.
fn upstream_receive(
    qpl: &mut IntelQpl,
    body: &[u8],
    normal_num: usize,
    dest: &mut [u8],
) -> Result<(), String> {
    let in_size = body.len();
    let len = normal_num * 4;
    if len >= in_size {
        return Err(format!(
            "length array of {len} bytes not shorter than the {in_size}-byte payload"
        ));
    }
    let mut zlen = Vec::with_capacity(normal_num);
    let mut zbuf_len = 0usize;
    for (i, bytes) in body[..len].chunks_exact(4).enumerate() {
        let length = u32::from_be_bytes(bytes.try_into().unwrap()) as usize;
        if length > PAGE_SIZE {
            return Err(format!("page {i}: length {length} above the page size"));
        }
        zbuf_len += length;
        zlen.push(length);
    }
    if in_size != len + zbuf_len {
        return Err(format!(
            "payload {in_size} bytes, lengths say {} bytes",
            len + zbuf_len
        ));
    }
    let mut zbuf = &body[len..];
    for (i, &length) in zlen.iter().enumerate() {
        let addr = &mut dest[i * PAGE_SIZE..][..PAGE_SIZE];
        let (stream, rest) = zbuf.split_at(length);
        zbuf = rest;
        if length == PAGE_SIZE {
            addr.copy_from_slice(stream);
            continue;
        }
        match qpl.decompress(stream, addr) {
            Ok(PAGE_SIZE) => {}
            Ok(total_out) => {
                return Err(format!(
                    "page {i}: qpl decompressed len {total_out}, expected len {PAGE_SIZE}"
                ))
            }
            Err(code) => {
                return Err(format!(
                    "page {i}: qpl job failed with error {}",
                    status_name(code)
                ))
            }
        }
    }
    Ok(())
}

/// Our `Sender`'s packets through upstream's receive path on Intel QPL. The
/// framing does not depend on the level, and both levels' streams are swept
/// page by page above, so the wire pass runs at the level QEMU uses.
fn our_sender_into_upstream_receiver(level: Level) {
    let pages = pages();
    let tally = sweep(pages.len(), |range| {
        let mut qpl = IntelQpl::new(QplMode::Qemu);
        let mut sender = Sender::new(config(), level).expect("Sender::new");
        let mut dest = vec![0u8; PACKET_PAGES * PAGE_SIZE];
        let mut tally = Tally::default();
        for first in range.step_by(PACKET_PAGES) {
            let packet = &pages[first..first + PACKET_PAGES];
            let prepared = sender.prepare(packet).expect("Sender::prepare");
            let body = prepared.to_bytes(packet).unwrap();
            if body.len() != prepared.payload_size as usize {
                tally.fail(
                    first,
                    format!(
                        "packet of pages {first}..: payload_size {} but {} bytes of body",
                        prepared.payload_size,
                        body.len()
                    ),
                );
            }
            // Count what the packet carries, from its own length array.
            for bytes in body[..PACKET_PAGES * 4].chunks_exact(4) {
                let length = u32::from_be_bytes(bytes.try_into().unwrap()) as u64;
                tally.pages += 1;
                if length == PAGE_SIZE as u64 {
                    tally.raw += 1;
                    *tally.raw_reasons.entry("no fit".into()).or_default() += 1;
                } else {
                    tally.compressed += 1;
                    tally.stream_bytes += length;
                }
            }
            if let Err(problem) = upstream_receive(&mut qpl, &body, packet.len(), &mut dest) {
                let direction = format!("our-{}-packet", level.name());
                let saved = save_stream(&direction, first, &body);
                tally.fail(
                    first,
                    format!(
                        "packet of pages {first}..{}: {problem} (packet page k is corpus page \
                         {first} + k); {saved}",
                        first + PACKET_PAGES
                    ),
                );
                continue;
            }
            for (k, original) in packet.iter().enumerate() {
                if let Some(problem) = difference(&dest[k * PAGE_SIZE..][..PAGE_SIZE], original) {
                    tally.fail(first + k, format!("after upstream receive: {problem}"));
                }
            }
        }
        tally
    });
    tally.finish(&format!(
        "our Sender ({}) -> upstream receive path on Intel QPL",
        level.name()
    ));
}

#[test]
fn our_fast_sender_packets_into_upstream_intel_qpl_receiver() {
    our_sender_into_upstream_receiver(Level::Fast);
}

#[test]
fn our_turbo_sender_packets_into_upstream_intel_qpl_receiver() {
    our_sender_into_upstream_receiver(Level::Turbo);
}
