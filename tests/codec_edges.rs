//! Edge cases of the codec's unchecked fast paths: matches that end at or
//! just before the end of the page (the decoder's 16-byte chunked copies may
//! only overshoot inside the page), short periods, every distance near the
//! page's end, and page sizes around the 16-bit position limit of the
//! encoder's hash tables. Every decode goes into a page framed by guard
//! bytes that must stay untouched.

mod common;

use miniz_oxide::inflate::decompress_to_vec_with_limit;
use qemu_qpl::codec::{Level, PageDecoder, PageEncoder};

const LEVELS: [Level; 3] = [Level::Turbo, Level::Fast, Level::Strong];
const GUARD: usize = 64;

/// Decodes `stream` into a `size`-byte page framed by guard bytes; checks
/// the guards and returns the page.
fn guarded(dec: &mut PageDecoder, stream: &[u8], size: usize) -> Vec<u8> {
    let mut buf = vec![0x5Au8; size + 2 * GUARD];
    dec.decode(stream, &mut buf[GUARD..GUARD + size])
        .unwrap_or_else(|e| panic!("{size}-byte page: {e:?}"));
    assert!(
        buf[..GUARD].iter().all(|&b| b == 0x5A),
        "wrote before the page"
    );
    assert!(
        buf[GUARD + size..].iter().all(|&b| b == 0x5A),
        "wrote past the page"
    );
    buf[GUARD..GUARD + size].to_vec()
}

fn round_trip(enc: &mut PageEncoder, dec: &mut PageDecoder, page: &[u8]) {
    let mut out = vec![0u8; page.len() + 64];
    let n = enc.encode(page, &mut out).expect("fits with room to spare");
    assert!(guarded(dec, &out[..n], page.len()) == page);
    let theirs = decompress_to_vec_with_limit(&out[..n], page.len()).expect("miniz decodes");
    assert!(theirs == page);
    // Into a page one byte short and one byte long: errors, guards intact.
    if !page.is_empty() {
        let mut buf = vec![0x5Au8; page.len() + 2 * GUARD];
        assert!(dec
            .decode(&out[..n], &mut buf[GUARD..GUARD + page.len() - 1])
            .is_err());
        assert!(buf[..GUARD].iter().all(|&b| b == 0x5A));
        assert!(buf[GUARD + page.len() - 1..].iter().all(|&b| b == 0x5A));
    }
    let mut buf = vec![0x5Au8; page.len() + 1 + 2 * GUARD];
    assert!(dec
        .decode(&out[..n], &mut buf[GUARD..GUARD + page.len() + 1])
        .is_err());
    assert!(buf[..GUARD].iter().all(|&b| b == 0x5A));
    assert!(buf[GUARD + page.len() + 1..].iter().all(|&b| b == 0x5A));
}

#[test]
fn matches_ending_at_and_near_the_page_end() {
    let real = common::real_data(1 << 20);
    let mut dec = PageDecoder::new();
    for level in LEVELS {
        let mut enc = PageEncoder::new(level);
        for size in [4096usize, 512, 300, 64] {
            // A real prefix, then a tail repeating with each period 1..40,
            // of each length 0..40 bytes before the end.
            for period in 1..=40usize {
                for tail in (0..=40usize).step_by(3).chain([258, 259, 270]) {
                    if tail + period + 1 > size {
                        continue;
                    }
                    let mut page = real[size * period..size * (period + 1)].to_vec();
                    let start = size - tail;
                    for i in start..size {
                        page[i] = page[i - period];
                    }
                    round_trip(&mut enc, &mut dec, &page);
                }
            }
        }
    }
}

#[test]
fn every_distance_near_the_page_end() {
    let noise = common::noise(8192, 11);
    let mut dec = PageDecoder::new();
    for level in LEVELS {
        let mut enc = PageEncoder::new(level);
        for dist in (1..=64usize).chain([255, 256, 1000, 4000]) {
            for len in [4usize, 8, 15, 16, 17, 31, 32, 33, 100, 258] {
                if dist + len + 1 > 4096 {
                    continue;
                }
                let mut page = noise[..4096].to_vec();
                let start = 4096 - len;
                for i in start..4096 {
                    page[i] = page[i - dist];
                }
                round_trip(&mut enc, &mut dec, &page);
            }
        }
    }
}

#[test]
fn page_sizes_around_the_16_bit_position_limit() {
    let real = common::real_data(200_000);
    let mut dec = PageDecoder::new();
    for level in LEVELS {
        let mut enc = PageEncoder::new(level);
        for size in [
            1usize, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 4095, 4096, 4097, 32767, 32768, 32769,
            65535, 65536, 65537, 70000,
        ] {
            round_trip(&mut enc, &mut dec, &real[..size]);
            // Repeats at the farthest distances the window allows.
            if size > 40000 {
                let mut page = real[..size].to_vec();
                let (a, b) = page.split_at_mut(32768);
                let n = b.len().min(2000);
                b[..n].copy_from_slice(&a[..n]);
                round_trip(&mut enc, &mut dec, &page);
            }
        }
    }
}

#[test]
fn uniform_and_short_period_pages() {
    let mut dec = PageDecoder::new();
    for level in LEVELS {
        let mut enc = PageEncoder::new(level);
        for period in 1..=20usize {
            let page: Vec<u8> = (0..4096)
                .map(|i| ((i % period) as u8).wrapping_mul(37))
                .collect();
            round_trip(&mut enc, &mut dec, &page);
        }
    }
}
