//! Property tests (proptest): for random pages of every kind, page size and
//! level, a page compresses to a stream shorter than itself that inflates
//! back to it (our decoder and miniz_oxide), or goes raw; for arbitrary
//! bytes, the decoder stays inside its page. Under `make asan` an access
//! outside the input or the page would also stop the run.

use proptest::prelude::*;
use qemu_qpl::codec::{Level, PageDecoder, PageEncoder};

mod common;

const GUARD: usize = 32;

fn page_sizes() -> impl Strategy<Value = usize> {
    (0u32..8).prop_map(|shift| 512usize << shift)
}

fn levels() -> impl Strategy<Value = Level> {
    prop_oneof![Just(Level::Turbo), Just(Level::Fast), Just(Level::Strong)]
}

/// How a test page is made.
#[derive(Debug, Clone)]
enum Kind {
    /// A slice of real data at this offset, with a few bytes changed.
    Real {
        offset: usize,
        edits: Vec<(usize, u8)>,
    },
    /// Bytes from a small alphabet (compressible, few matches).
    Alphabet { symbols: u8, seed: u64 },
    /// Random bytes (incompressible: the page goes raw or stored).
    Random { seed: u64 },
    /// Runs of one byte with random lengths.
    Runs { seed: u64 },
}

fn kinds() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => (any::<usize>(), prop::collection::vec((any::<usize>(), any::<u8>()), 0..8))
            .prop_map(|(offset, edits)| Kind::Real { offset, edits }),
        2 => (2u8..=64, any::<u64>()).prop_map(|(symbols, seed)| Kind::Alphabet { symbols, seed }),
        1 => any::<u64>().prop_map(|seed| Kind::Random { seed }),
        1 => any::<u64>().prop_map(|seed| Kind::Runs { seed }),
    ]
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn make_page(kind: &Kind, size: usize, real: &[u8]) -> Vec<u8> {
    match kind {
        Kind::Real { offset, edits } => {
            let start = offset % (real.len() - size);
            let mut page = real[start..start + size].to_vec();
            for &(at, byte) in edits {
                page[at % size] = byte;
            }
            page
        }
        Kind::Alphabet { symbols, seed } => {
            let mut s = seed | 1;
            (0..size)
                .map(|_| (xorshift(&mut s) % u64::from(*symbols)) as u8)
                .collect()
        }
        Kind::Random { seed } => {
            let mut s = seed | 1;
            (0..size).map(|_| xorshift(&mut s) as u8).collect()
        }
        Kind::Runs { seed } => {
            let mut s = seed | 1;
            let mut page = Vec::with_capacity(size);
            while page.len() < size {
                let r = xorshift(&mut s);
                let run = 1 + (r % 300) as usize;
                page.extend(std::iter::repeat((r >> 32) as u8).take(run.min(size - page.len())));
            }
            page
        }
    }
}

fn real_data() -> &'static [u8] {
    static DATA: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DATA.get_or_init(|| common::real_data(8 << 20))
}

fn miniz_inflate(stream: &[u8], size: usize) -> Option<Vec<u8>> {
    use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
    use miniz_oxide::inflate::TINFLStatus;
    let mut out = vec![0u8; size + 1];
    let mut state = DecompressorOxide::new();
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let (status, read, written) = decompress(&mut state, stream, &mut out, 0, flags);
    (status == TINFLStatus::Done && read == stream.len() && written == size).then(|| {
        out.truncate(size);
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn every_page_round_trips_or_goes_raw(kind in kinds(), size in page_sizes(), level in levels()) {
        let page = make_page(&kind, size, real_data());
        let mut encoder = PageEncoder::new(level);
        let mut stream = vec![0u8; size - 1];
        if let Some(len) = encoder.encode(&page, &mut stream) {
            prop_assert!(len > 0 && len < size);
            let mut out = vec![0u8; size];
            prop_assert_eq!(PageDecoder::new().decode(&stream[..len], &mut out), Ok(()));
            prop_assert!(out == page, "our decoder's page differs");
            prop_assert!(miniz_inflate(&stream[..len], size) == Some(page), "miniz_oxide's page differs");
        } else {
            // At the levels that make a code per page, small alphabets
            // always shrink at these sizes; random bytes and real data
            // (system files hold compressed files too) may not. Turbo's one
            // canned code does not suit every page (see docs/codec.md).
            prop_assert!(
                matches!(kind, Kind::Random { .. } | Kind::Real { .. }) || level == Level::Turbo,
                "a {kind:?} page went raw"
            );
        }
    }

    #[test]
    fn arbitrary_bytes_never_escape_the_page(
        input in prop::collection::vec(any::<u8>(), 0..2048),
        size in page_sizes(),
    ) {
        let mut buffer = vec![0x5Au8; size + 2 * GUARD];
        let result = PageDecoder::new().decode(&input, &mut buffer[GUARD..GUARD + size]);
        prop_assert!(buffer[..GUARD].iter().chain(&buffer[GUARD + size..]).all(|&b| b == 0x5A));
        // Whatever our decoder says, the reference agrees.
        prop_assert_eq!(result.is_ok(), miniz_inflate(&input, size).is_some());
    }

    #[test]
    fn damaged_streams_never_escape_the_page(
        offset in any::<usize>(),
        flips in prop::collection::vec(any::<usize>(), 1..4),
        cut in any::<usize>(),
        size in page_sizes(),
        level in levels(),
    ) {
        let real = real_data();
        let start = offset % (real.len() - size);
        let page = &real[start..start + size];
        let mut stream = vec![0u8; size - 1];
        let Some(len) = PageEncoder::new(level).encode(page, &mut stream) else {
            return Ok(());
        };
        stream.truncate(len);
        for flip in flips {
            stream[flip % len] ^= 1 << (flip % 8);
        }
        stream.truncate(1 + cut % len);
        let mut buffer = vec![0x5Au8; size + 2 * GUARD];
        let result = PageDecoder::new().decode(&stream, &mut buffer[GUARD..GUARD + size]);
        prop_assert!(buffer[..GUARD].iter().chain(&buffer[GUARD + size..]).all(|&b| b == 0x5A));
        let reference = miniz_inflate(&stream, size);
        prop_assert_eq!(result.is_ok(), reference.is_some());
        if let Some(reference) = reference {
            prop_assert!(buffer[GUARD..GUARD + size] == reference[..]);
        }
    }
}
