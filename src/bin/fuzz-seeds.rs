//! Writes the fuzz targets' seed corpus (`make fuzz-seeds`): valid pages from
//! every DEFLATE encoder we test against, truncated and bit-flipped ones,
//! stored blocks, maximal code lengths, a distance too far back,
//! over-subscribed and incomplete codes, and whole packets (valid and
//! broken) for the receive path. Deterministic for a given input file.
//!
//! `cargo run --release --features bench --bin fuzz-seeds -- DATA_FILE OUT_DIR`

use std::path::Path;

use qemu_qpl::{ChannelConfig, Level, Sender};
use reference_codecs::{all_page_codecs, Libdeflate};

/// LSB-first bit writer for hand-made streams.
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    acc: u64,
    count: u32,
}

impl Bits {
    fn put(&mut self, value: u32, n: u32) {
        self.acc |= u64::from(value) << self.count;
        self.count += n;
        while self.count >= 8 {
            self.bytes.push(self.acc as u8);
            self.acc >>= 8;
            self.count -= 8;
        }
    }

    /// A Huffman codeword, which DEFLATE sends most significant bit first.
    fn code(&mut self, code: u32, len: u32) {
        self.put(code.reverse_bits() >> (32 - len), len);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.count > 0 {
            self.bytes.push(self.acc as u8);
        }
        self.bytes
    }
}

/// The fixed code's codeword for a literal/length symbol (RFC 1951 3.2.6).
fn fixed_code(sym: u32) -> (u32, u32) {
    match sym {
        0..=143 => (0x30 + sym, 8),
        144..=255 => (0x190 + sym - 144, 9),
        256..=279 => (sym - 256, 7),
        _ => (0xc0 + sym - 280, 8),
    }
}

/// A fixed block that starts with a match at distance 1: nothing is before it.
fn distance_too_far() -> Vec<u8> {
    let mut b = Bits::default();
    b.put(0b011, 3); // final, fixed
    let (code, len) = fixed_code(257); // length 3
    b.code(code, len);
    b.code(0, 5); // distance code 0: distance 1
    let (code, len) = fixed_code(256);
    b.code(code, len);
    b.finish()
}

/// A dynamic block header whose literal/length code lengths are `lens` (the
/// rest of the header valid and minimal), followed by `tail` bits.
fn dynamic_header(ll_lens: &[u8]) -> Vec<u8> {
    let mut b = Bits::default();
    b.put(0b101, 3); // final, dynamic
    b.put((ll_lens.len() - 257) as u32, 5);
    b.put(0, 5); // one distance code
    b.put(19 - 4, 4); // all 19 code-length codes
                      // Code-length code: symbols 0..15 all of length 4 (complete: 16 x 1/16),
                      // 16-18 unused; in RFC order 16 17 18 0 8 7 9 6 10 5 11 4 12 3 13 2 14 1 15.
    for sym in [
        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
    ] {
        b.put(if sym < 16 { 4 } else { 0 }, 3);
    }
    // With all lengths 4, the codeword of symbol s is s itself.
    for &len in ll_lens.iter().chain(&[1u8]) {
        b.code(u32::from(len), 4);
    }
    b.code(0, 1); // whatever follows: the first literal
    b.finish()
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// The decode target's input: a page size selector, then the stream.
fn decode_input(page_size: usize, stream: &[u8]) -> Vec<u8> {
    let selector = (page_size / 512).trailing_zeros() as u8;
    let mut input = vec![selector];
    input.extend_from_slice(stream);
    input
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, data, out] = &args[..] else {
        eprintln!("usage: fuzz-seeds DATA_FILE OUT_DIR");
        std::process::exit(2);
    };
    let data = std::fs::read(data).expect("the data file is readable");
    let out = Path::new(out);
    let page = |k: usize, size: usize| &data[k * size..(k + 1) * size];

    // decode_page: every encoder's pages, then damaged and hand-made streams.
    let mut stream = vec![0u8; 65536];
    let mut seeds = 0;
    for codec in all_page_codecs().iter_mut() {
        let name = codec.name().to_string();
        if name.starts_with("zstd") || name.starts_with("lz4") {
            continue;
        }
        for k in [3usize, 700, 5000] {
            let page = page(k, 4096);
            if let Some(len) = codec.compress(page, &mut stream[..4095]) {
                write(
                    out,
                    "decode_page",
                    &format!("{name}-{k}"),
                    &decode_input(4096, &stream[..len]),
                );
                seeds += 1;
            }
        }
    }
    for (level, name) in [(Level::Fast, "fast"), (Level::Strong, "strong")] {
        let mut encoder = qemu_qpl::codec::PageEncoder::new(level);
        for size in [512usize, 4096, 65536] {
            let page = page(9, size);
            let len = encoder
                .encode(page, &mut stream[..size - 1])
                .expect("real data compresses");
            let good = decode_input(size, &stream[..len]);
            write(
                out,
                "decode_page",
                &format!("qemu-qpl-{name}-{size}"),
                &good,
            );
            write(
                out,
                "decode_page",
                &format!("qemu-qpl-{name}-{size}-truncated"),
                &good[..good.len() / 2],
            );
            let mut flipped = good.clone();
            flipped[good.len() / 3] ^= 0x10;
            write(
                out,
                "decode_page",
                &format!("qemu-qpl-{name}-{size}-flipped"),
                &flipped,
            );
            seeds += 3;
        }
    }
    // A stored block: the whole page after a 5-byte header.
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut stored = vec![1u8, 0x00, 0x10, 0xff, 0xef];
    stored.extend_from_slice(&noise);
    write(out, "decode_page", "stored", &decode_input(4096, &stored));
    // Maximal code lengths: libdeflate on a page whose symbol counts grow
    // like Fibonacci numbers gets codewords of 15 bits.
    let mut fib_page = Vec::new();
    let (mut a, mut b) = (1usize, 1usize);
    for sym in 0u8..24 {
        fib_page.extend(std::iter::repeat(sym.wrapping_mul(37)).take(a.min(4096)));
        (a, b) = (b, a + b);
    }
    fib_page.truncate(4096);
    fib_page.resize(4096, 0xee);
    let mut deflate = Libdeflate::new(12);
    use reference_codecs::PageCodec;
    if let Some(len) = deflate.compress(&fib_page, &mut stream[..4095]) {
        write(
            out,
            "decode_page",
            "long-codes",
            &decode_input(4096, &stream[..len]),
        );
    }
    write(
        out,
        "decode_page",
        "distance-too-far",
        &decode_input(4096, &distance_too_far()),
    );
    // Over-subscribed: 257 literal/length codes all of length 1.
    write(
        out,
        "decode_page",
        "over-subscribed",
        &decode_input(4096, &dynamic_header(&[1u8; 257])),
    );
    // Incomplete: only two codes of length 2.
    let mut incomplete = vec![0u8; 257];
    incomplete[0] = 2;
    incomplete[256] = 2;
    write(
        out,
        "decode_page",
        "incomplete",
        &decode_input(4096, &dynamic_header(&incomplete)),
    );
    seeds += 5;

    // receive_abi: whole packets from our sender, valid and broken.
    for (size, count) in [(512usize, 4usize), (4096, 8)] {
        let config = ChannelConfig {
            channel: 5,
            page_size: size as u32,
            pages_per_packet: count as u32,
        };
        let mut sender = Sender::new(config, Level::Fast).unwrap();
        let mut pages: Vec<&[u8]> = (20..20 + count - 1).map(|k| page(k, size)).collect();
        pages.push(&noise[..size]);
        let body = {
            let packet = sender.prepare(pages.as_slice()).unwrap();
            packet.to_bytes(pages.as_slice()).unwrap()
        };
        let header = |count: usize, payload: Option<u64>| {
            let mut input = vec![
                (size / 512).trailing_zeros() as u8,
                (count - 1) as u8,
                count as u8,
            ];
            input.extend_from_slice(&payload.map_or(0, |p| p | 1 << 63).to_le_bytes());
            input
        };
        let mut valid = header(count, None);
        valid.extend_from_slice(&body);
        write(out, "receive_abi", &format!("valid-{size}"), &valid);
        let mut too_long = valid.clone();
        too_long[11..15].copy_from_slice(&(size as u32 + 1).to_be_bytes());
        write(
            out,
            "receive_abi",
            &format!("length-above-page-{size}"),
            &too_long,
        );
        let mut zero = valid.clone();
        zero[11..15].copy_from_slice(&0u32.to_be_bytes());
        write(out, "receive_abi", &format!("zero-length-{size}"), &zero);
        write(
            out,
            "receive_abi",
            &format!("truncated-{size}"),
            &valid[..valid.len() - 100],
        );
        let mut huge = header(count, Some(u64::MAX >> 2));
        huge.extend_from_slice(&body);
        write(out, "receive_abi", &format!("huge-payload-{size}"), &huge);
        let mut flipped = valid.clone();
        flipped[11 + 4 * count + 7] ^= 0x42;
        write(out, "receive_abi", &format!("flipped-{size}"), &flipped);
        seeds += 6;
    }

    // send_roundtrip: page size, level, count, then content.
    for (k, (size_sel, level, count)) in [(3u8, 0u8, 4u8), (0, 1, 7), (7, 0, 0), (3, 1, 2)]
        .into_iter()
        .enumerate()
    {
        let mut input = vec![size_sel, level, count];
        input.extend_from_slice(page(40 + k, 4096));
        write(out, "send_roundtrip", &format!("real-{k}"), &input);
        seeds += 1;
    }
    write(out, "send_roundtrip", "zeros", &[3, 0, 3, 0, 0, 0, 0]);
    write(
        out,
        "send_roundtrip",
        "noise",
        &[[3u8, 1, 1].as_slice(), &noise].concat(),
    );
    eprintln!("fuzz-seeds: {} seeds in {}", seeds + 2, out.display());
}
