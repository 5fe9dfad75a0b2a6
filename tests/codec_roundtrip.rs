//! The page codec on its own: round trips of real pages at both levels,
//! cross-checks against miniz_oxide in both directions, and decoder
//! robustness against random, truncated and bit-flipped streams.

mod common;

use miniz_oxide::deflate::core::{
    compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
};
use miniz_oxide::inflate::decompress_to_vec_with_limit;
use qemu_qpl::codec::{DecodeFault, Level, PageDecoder, PageEncoder};

const PAGE: usize = 4096;
const LEVELS: [Level; 3] = [Level::Turbo, Level::Fast, Level::Strong];

/// Corpus A when QEMU_QPL_CORPUS names it (every page), else a sample.
fn corpus() -> Vec<u8> {
    let all = std::env::var_os("QEMU_QPL_CORPUS").is_some();
    common::real_data(if all { usize::MAX } else { 24 << 20 })
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// miniz_oxide's raw DEFLATE of `data`; `split` adds sync flushes (empty
/// stored blocks, new blocks) at those offsets; `strategy` 4 forces fixed
/// Huffman blocks.
fn miniz_deflate(data: &[u8], level: u8, strategy: i32, splits: &[usize]) -> Vec<u8> {
    let flags = create_comp_flags_from_zip_params(level as i32, -15, strategy);
    let mut c = Box::new(CompressorOxide::new(flags));
    let mut out = vec![0u8; data.len() * 2 + 1024];
    let mut written = 0;
    let mut start = 0;
    let mut cuts: Vec<usize> = splits.iter().copied().filter(|&s| s < data.len()).collect();
    cuts.push(data.len());
    for (k, &cut) in cuts.iter().enumerate() {
        let last = k + 1 == cuts.len();
        let flush = if last {
            TDEFLFlush::Finish
        } else {
            TDEFLFlush::Sync
        };
        let (status, consumed, w) = compress(&mut c, &data[start..cut], &mut out[written..], flush);
        assert!(status == TDEFLStatus::Okay || status == TDEFLStatus::Done);
        assert_eq!(consumed, cut - start);
        written += w;
        start = cut;
    }
    out.truncate(written);
    out
}

fn miniz_inflate(stream: &[u8], limit: usize) -> Vec<u8> {
    decompress_to_vec_with_limit_raw(stream, limit)
}

fn decompress_to_vec_with_limit_raw(stream: &[u8], limit: usize) -> Vec<u8> {
    // decompress_to_vec_with_limit expects raw DEFLATE (no zlib header).
    decompress_to_vec_with_limit(stream, limit).expect("miniz_oxide rejects our stream")
}

#[test]
fn corpus_round_trips_at_both_levels_and_miniz_agrees() {
    let data = corpus();
    let pages = common::pages(&data, PAGE);
    assert!(pages.len() >= 1000);
    let mut dec = PageDecoder::new();
    let mut out = vec![0u8; PAGE - 1];
    let mut page = vec![0u8; PAGE];
    for level in LEVELS {
        let mut enc = PageEncoder::new(level);
        let (mut wire, mut raw) = (0usize, 0usize);
        for (i, p) in pages.iter().enumerate() {
            match enc.encode(p, &mut out) {
                Some(n) => {
                    assert!(n < PAGE);
                    dec.decode(&out[..n], &mut page)
                        .unwrap_or_else(|e| panic!("{level:?} page {i}: {e:?}"));
                    assert!(page == *p, "{level:?} page {i} differs");
                    assert_eq!(miniz_inflate(&out[..n], PAGE), *p, "miniz, page {i}");
                    wire += n + 4;
                }
                None => {
                    raw += 1;
                    wire += PAGE + 4;
                }
            }
        }
        let ratio = (pages.len() * PAGE) as f64 / wire as f64;
        eprintln!(
            "{level:?}: {} pages, ratio {ratio:.3}, {raw} raw",
            pages.len()
        );
    }
}

#[test]
fn decodes_miniz_streams_of_every_kind() {
    let data = common::real_data(2 << 20);
    let mut dec = PageDecoder::new();
    let mut page = vec![0u8; PAGE];
    for (i, p) in common::pages(&data, PAGE).iter().enumerate().step_by(7) {
        for level in [0u8, 1, 2, 6, 9] {
            for strategy in [0, 4] {
                let splits: &[usize] = if i % 2 == 0 {
                    &[]
                } else {
                    &[100, 1500, 1501, 4000]
                };
                let s = miniz_deflate(p, level, strategy, splits);
                dec.decode(&s, &mut page).unwrap_or_else(|e| {
                    panic!("page {i} level {level} strategy {strategy}: {e:?}")
                });
                assert!(page == *p);
            }
        }
    }
    // Big pages: several stored blocks, multi-block dynamic streams.
    let big = common::real_data(65536);
    let mut page = vec![0u8; 65536];
    for level in [0u8, 1, 6] {
        let s = miniz_deflate(&big, level, 0, &[1000, 30000]);
        dec.decode(&s, &mut page).unwrap();
        assert!(page == big);
    }
}

fn round_trip(level: Level, p: &[u8], out_len: usize) -> Option<usize> {
    let mut enc = PageEncoder::new(level);
    let mut dec = PageDecoder::new();
    let mut out = vec![0u8; out_len];
    let n = enc.encode(p, &mut out)?;
    let mut page = vec![0xA5u8; p.len()];
    dec.decode(&out[..n], &mut page).unwrap();
    assert!(page == p);
    assert_eq!(miniz_inflate(&out[..n], p.len()), p);
    Some(n)
}

#[test]
fn zero_and_uniform_pages() {
    for level in LEVELS {
        for size in [512usize, 4096, 16384, 65536] {
            for byte in [0u8, 1, 0xff] {
                let p = vec![byte; size];
                let n = round_trip(level, &p, size - 1).expect("a uniform page compresses");
                assert!(n < 128, "{size} bytes of {byte} took {n}");
            }
        }
        // Nearly uniform: one different byte in the middle and at the end.
        let mut p = vec![0u8; PAGE];
        p[2000] = 7;
        p[PAGE - 1] = 9;
        round_trip(level, &p, PAGE - 1).unwrap();
    }
}

#[test]
fn page_sizes_and_odd_lengths() {
    let data = common::real_data(1 << 20);
    for level in LEVELS {
        // Below 64 KiB the matchers keep 16-bit positions, from 64 KiB on
        // 32-bit ones.
        for size in [512usize, 4096, 8192, 65535, 65536, 100_003] {
            for p in data.chunks_exact(size).take(24) {
                round_trip(level, p, size - 1);
                // With room to spare the encoder always produces a stream.
                round_trip(level, p, size + 64).expect("a stored block fits");
            }
        }
        for size in 0..40usize {
            let p = &data[1000..1000 + size];
            round_trip(level, p, size + 64).expect("fits");
            round_trip(level, &vec![3u8; size], size + 64).expect("fits");
        }
        let noise = common::noise(PAGE, 7);
        assert!(round_trip(level, &noise, PAGE - 1).is_none());
        round_trip(level, &noise, PAGE + 5).expect("stored block");
        // Distances up to the whole 32 KiB window and beyond it.
        // Noise blocks separated by zeros, repeated 32768 and 32769 bytes on.
        let mut far = vec![0u8; 65536];
        far[..1024].copy_from_slice(&common::noise(1024, 3));
        far[5000..6024].copy_from_slice(&common::noise(1024, 4));
        let (a, b) = far.split_at_mut(32768);
        b[..1024].copy_from_slice(&a[..1024]);
        b[5001..6025].copy_from_slice(&a[5000..6024]);
        for size in [65535, 65536] {
            let n = round_trip(level, &far[..size], size - 1).expect("repeats compress");
            // Turbo's canned code spends more on the noise than a code made
            // for the page.
            let bound = if level == Level::Turbo { 4400 } else { 3600 };
            assert!(n < bound, "{level:?} {size}: {n}");
        }
    }
}

#[test]
fn repeats_found_late_extend_backwards() {
    // Noise, a block, more noise, a copy of the block. The fast level
    // strides through noise (wider the longer it finds nothing), so it
    // inserts few of the block's positions and probes few of the copy's:
    // it finds the copy late, often hundreds of bytes in, and must extend
    // the match backwards without passing the literals it has or making a
    // match longer than 258 bytes.
    // Turbo runs the fast level's matcher; its canned code spends more bits
    // on the noise literals, which would hide what this measures.
    const MATCHERS: [Level; 2] = [Level::Fast, Level::Strong];
    let mut saved = [(0usize, 0usize); MATCHERS.len()];
    for seed in 0..64u64 {
        let s = seed as usize;
        let block_at = 200 + s * 29 % 1400;
        let len = 600 + s * 53 % 1000;
        let copy_at = block_at + len + s * 7 % 300;
        if copy_at + len > PAGE {
            continue;
        }
        let mut p = common::noise(PAGE, seed + 1000);
        let block = common::noise(len, seed + 11);
        p[block_at..block_at + len].copy_from_slice(&block);
        p[copy_at..copy_at + len].copy_from_slice(&block);
        for (level, saved) in MATCHERS.into_iter().zip(&mut saved) {
            let n = round_trip(level, &p, PAGE + 64).expect("fits");
            saved.0 += PAGE.saturating_sub(n);
            saved.1 += len;
        }
    }
    // A stride can step over a copy entirely, but most are found.
    for (level, (saved, copied)) in MATCHERS.into_iter().zip(saved) {
        println!("{level:?}: {saved} of {copied} copied bytes saved");
        assert!(saved > copied / 2, "{level:?}: {saved} of {copied}");
    }
}

#[test]
fn output_limit_is_respected() {
    let data = common::real_data(1 << 20);
    let mut enc = PageEncoder::new(Level::Fast);
    let mut dec = PageDecoder::new();
    for p in data.chunks_exact(PAGE).take(64) {
        let mut out = vec![0u8; PAGE];
        let Some(n) = enc.encode(p, &mut out) else {
            continue;
        };
        for limit in [n - 1, n / 2, 1, 0] {
            let mut small = vec![0u8; limit];
            assert_eq!(enc.encode(p, &mut small), None);
        }
        let mut exact = vec![0u8; n];
        assert_eq!(enc.encode(p, &mut exact), Some(n));
        let mut page = vec![0u8; PAGE];
        dec.decode(&exact, &mut page).unwrap();
        assert!(page == p);
    }
}

#[test]
fn faults_are_named() {
    let data = common::real_data(3 * PAGE);
    let mut enc = PageEncoder::new(Level::Fast);
    let mut dec = PageDecoder::new();
    let mut out = vec![0u8; 3 * PAGE];
    let p = &data[..PAGE];
    let n = enc.encode(p, &mut out).unwrap();
    let stream = out[..n].to_vec();
    let mut page = vec![0u8; PAGE];
    for cut in [1, n / 3, n / 2, n - 1] {
        assert_eq!(
            dec.decode(&stream[..cut], &mut page),
            Err(DecodeFault::Truncated)
        );
    }
    assert_eq!(dec.decode(&[], &mut page), Err(DecodeFault::Truncated));
    let mut trailing = stream.clone();
    trailing.extend_from_slice(&[0xde, 0xad]);
    assert_eq!(
        dec.decode(&trailing, &mut page),
        Err(DecodeFault::TrailingBytes { extra: 2 })
    );
    let mut small = vec![0u8; PAGE - 1];
    assert_eq!(dec.decode(&stream, &mut small), Err(DecodeFault::PastEnd));
    let mut large = vec![0u8; PAGE + 1];
    assert_eq!(
        dec.decode(&stream, &mut large),
        Err(DecodeFault::Short { produced: PAGE })
    );
    assert!(matches!(
        dec.decode(&[0x07], &mut page),
        Err(DecodeFault::Corrupt(_))
    ));
    // Stored block whose length check fails.
    assert!(matches!(
        dec.decode(&[0x01, 0x04, 0x00, 0x00, 0x00, 1, 2, 3, 4], &mut page[..4]),
        Err(DecodeFault::Corrupt(_))
    ));
    assert_eq!(
        dec.decode(&[0x01, 0x04, 0x00, 0xfb, 0xff, 1, 2, 3, 4], &mut page[..4]),
        Ok(())
    );
    assert_eq!(
        dec.decode(&[0x01, 0x04, 0x00, 0xfb, 0xff, 1, 2, 3], &mut page[..4]),
        Err(DecodeFault::Truncated)
    );
    // Several levels' and a fixed-Huffman stream, inflating past the page.
    let two = miniz_deflate(&data[..2 * PAGE], 1, 4, &[]);
    assert_eq!(dec.decode(&two, &mut page), Err(DecodeFault::PastEnd));
}

/// Decodes into the middle of a guarded buffer: must never panic and never
/// touch the guard bytes.
fn guarded_decode(dec: &mut PageDecoder, stream: &[u8], size: usize) -> Result<(), DecodeFault> {
    let mut buf = vec![0x5Au8; size + 128];
    let r = dec.decode(stream, &mut buf[64..64 + size]);
    assert!(buf[..64].iter().all(|&b| b == 0x5A));
    assert!(buf[64 + size..].iter().all(|&b| b == 0x5A));
    r
}

#[test]
fn random_truncated_and_flipped_streams_never_panic() {
    let data = common::real_data(1 << 20);
    let mut dec = PageDecoder::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    // Pure noise streams, with each block type forced in the first bits.
    for round in 0..20000 {
        let len = (xorshift(&mut rng) % 600) as usize;
        let mut s: Vec<u8> = (0..len).map(|_| xorshift(&mut rng) as u8).collect();
        if let Some(first) = s.first_mut() {
            *first = (*first & !6) | ((round % 3) as u8) << 1;
        }
        let size = [PAGE, 512, 1, 65536][round % 4];
        let _ = guarded_decode(&mut dec, &s, size);
    }
    // Valid streams of every kind, damaged.
    let mut streams = Vec::new();
    for (i, p) in data.chunks_exact(PAGE).take(60).enumerate() {
        let mut out = vec![0u8; PAGE - 1];
        let level = LEVELS[i % 2];
        if let Some(n) = PageEncoder::new(level).encode(p, &mut out) {
            streams.push(out[..n].to_vec());
        }
        streams.push(miniz_deflate(
            p,
            (i % 10) as u8,
            if i % 3 == 0 { 4 } else { 0 },
            &[500],
        ));
    }
    for s in &streams {
        for cut in 0..s.len().min(64) {
            assert!(guarded_decode(&mut dec, &s[..cut], PAGE).is_err());
        }
        for _ in 0..200 {
            let mut d = s.clone();
            for _ in 0..=(xorshift(&mut rng) % 3) {
                let bit = (xorshift(&mut rng) % (d.len() as u64 * 8)) as usize;
                d[bit / 8] ^= 1 << (bit % 8);
            }
            let cut = d.len() - (xorshift(&mut rng) % 4) as usize % d.len();
            let _ = guarded_decode(&mut dec, &d[..cut], PAGE);
            let _ = guarded_decode(&mut dec, &d, PAGE);
        }
    }
}
