//! Reference page codecs for qemu-qpl's tests and benchmark.
//!
//! Each codec compresses ONE page into a caller buffer whose length is the
//! output limit (a page that does not fit is sent raw by the caller, as QEMU's
//! `qpl` method does), and decompresses one stream into one page buffer.
//! Contexts are allocated once and reused page after page.
//!
//! * [`intel_qpl`] — Intel QPL 1.9.0, software path: the compatibility
//!   reference (upstream QEMU's `qpl` method).
//! * [`isal`], [`zlib`], [`libdeflate`] — other raw DEFLATE implementations.
//! * [`zstd`], [`lz4`] — non-DEFLATE comparison points, including zstd over a
//!   whole 512 KiB packet like QEMU's `zstd` multifd method.
//!
//! This crate is a dev-dependency only: the qemu-qpl library never links it.

pub mod intel_qpl;
pub mod isal;
pub mod libdeflate;
pub mod lz4;
pub mod zlib;
pub mod zstd;

pub use intel_qpl::{IntelQpl, QplMode};
pub use isal::Isal;
pub use libdeflate::Libdeflate;
pub use lz4::Lz4;
pub use zlib::Zlib;
pub use zstd::{ZstdPacket, ZstdPage};

/// QEMU's target page size on x86_64.
pub const PAGE_SIZE: usize = 4096;

/// Pages in one multifd packet (512 KiB of 4 KiB pages).
pub const PAGES_PER_PACKET: usize = 128;

/// One page-at-a-time codec.
pub trait PageCodec {
    /// A short, stable name for tables (e.g. `"libdeflate-1"`).
    fn name(&self) -> &str;

    /// Compresses `page` into `out`; `out.len()` is the output limit. `None`
    /// when the stream does not fit (the page then travels raw).
    fn compress(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize>;

    /// Decompresses `stream` into `out` and returns the bytes produced.
    fn decompress(&mut self, stream: &[u8], out: &mut [u8]) -> Result<usize, String>;
}

/// Every per-page codec of the benchmark, in a fixed order.
pub fn all_page_codecs() -> Vec<Box<dyn PageCodec + Send>> {
    vec![
        Box::new(IntelQpl::new(QplMode::Qemu)),
        Box::new(IntelQpl::new(QplMode::DynamicL1)),
        Box::new(IntelQpl::new(QplMode::DynamicL3)),
        Box::new(Isal::new(0)),
        Box::new(Isal::new(1)),
        Box::new(Libdeflate::new(1)),
        Box::new(Libdeflate::new(6)),
        Box::new(Zlib::new(1)),
        Box::new(ZstdPage::new(1)),
        Box::new(Lz4::new()),
    ]
}

/// The length of a slice as the `u32` the C libraries take.
pub(crate) fn len_u32(buffer: &[u8]) -> u32 {
    u32::try_from(buffer.len()).expect("reference-codecs: buffer longer than 4 GiB")
}

#[cfg(test)]
pub(crate) mod test_pages {
    use super::PAGE_SIZE;

    /// A few pages of different character: zero, text, structured binary,
    /// pseudo-random (incompressible) and a half-random page.
    pub fn sample_pages() -> Vec<Vec<u8>> {
        let mut pages = Vec::new();
        pages.push(vec![0u8; PAGE_SIZE]);

        let text = b"QEMU multifd live migration sends guest pages over several channels; \
                     the qpl method compresses each 4 KiB page into raw DEFLATE. ";
        pages.push(text.iter().copied().cycle().take(PAGE_SIZE).collect());

        // 16-byte records (tag, little-endian counter, zero padding):
        // structured binary.
        let mut records = Vec::with_capacity(PAGE_SIZE);
        for i in 0..(PAGE_SIZE / 16) as u32 {
            records.extend_from_slice(b"rec\0");
            records.extend_from_slice(&(i * 37).to_le_bytes());
            records.extend_from_slice(&[0u8; 8]);
        }
        pages.push(records);

        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut random = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        };
        pages.push((0..PAGE_SIZE).map(|_| random()).collect());

        let mut half: Vec<u8> = (0..PAGE_SIZE / 2).map(|_| random()).collect();
        half.resize(PAGE_SIZE, b'x');
        pages.push(half);
        pages
    }

    /// Is this sample page the incompressible one?
    pub fn is_random(index: usize) -> bool {
        index == 3
    }
}

#[cfg(test)]
mod cross_tests {
    //! Intel QPL's decoder (QEMU's decompression job) against the output of
    //! the other DEFLATE encoders, and everyone's decoder against QPL's output.

    use super::*;
    use crate::test_pages::sample_pages;

    /// BTYPE of the first block: 0 stored, 1 fixed, 2 dynamic.
    fn first_block_type(stream: &[u8]) -> u8 {
        (stream[0] >> 1) & 3
    }

    fn deflate_encoders() -> Vec<Box<dyn PageCodec + Send>> {
        vec![
            Box::new(Zlib::new(0)),
            Box::new(Zlib::new(1)),
            Box::new(Zlib::new(6)),
            Box::new(Zlib::new(9)),
            Box::new(Libdeflate::new(1)),
            Box::new(Libdeflate::new(6)),
            Box::new(Libdeflate::new(12)),
            Box::new(Isal::new(0)),
            Box::new(Isal::new(1)),
            Box::new(IntelQpl::new(QplMode::Qemu)),
            Box::new(IntelQpl::new(QplMode::DynamicL1)),
            Box::new(IntelQpl::new(QplMode::DynamicL3)),
        ]
    }

    #[test]
    fn intel_qpl_inflates_other_encoders_dynamic_and_stored_blocks() {
        let mut qpl = IntelQpl::new(QplMode::Qemu);
        let mut page = vec![0u8; PAGE_SIZE];
        let mut seen_types = [0usize; 3];
        for mut encoder in deflate_encoders() {
            // No output limit here: a stored page (4101 bytes) must inflate too.
            let mut stream = vec![0u8; 2 * PAGE_SIZE];
            for (index, input) in sample_pages().iter().enumerate() {
                let name = encoder.name().to_string();
                let len = encoder
                    .compress(input, &mut stream)
                    .unwrap_or_else(|| panic!("{name}: page {index} did not fit 8 KiB"));
                seen_types[first_block_type(&stream) as usize] += 1;
                let produced = qpl
                    .decompress(&stream[..len], &mut page)
                    .unwrap_or_else(|code| {
                        panic!(
                            "Intel QPL rejects {name}'s page {index}: {}",
                            intel_qpl::status_name(code)
                        )
                    });
                assert_eq!(produced, PAGE_SIZE, "{name}: page {index}");
                assert_eq!(&page, input, "{name}: page {index}");
            }
        }
        assert!(
            seen_types.iter().all(|&n| n > 0),
            "block types {seen_types:?}"
        );
    }

    #[test]
    fn intel_qpl_inflates_hand_made_stored_blocks() {
        let input = &sample_pages()[3];
        // Three stored blocks of 1000, 0 and 3096 bytes; only the last is final.
        let mut stream = Vec::new();
        let mut offset = 0;
        for (size, last) in [(1000usize, false), (0, false), (PAGE_SIZE - 1000, true)] {
            stream.push(u8::from(last));
            let len = size as u16;
            stream.extend_from_slice(&len.to_le_bytes());
            stream.extend_from_slice(&(!len).to_le_bytes());
            stream.extend_from_slice(&input[offset..offset + size]);
            offset += size;
        }
        let mut page = vec![0u8; PAGE_SIZE];
        let mut qpl = IntelQpl::new(QplMode::Qemu);
        assert_eq!(qpl.decompress(&stream, &mut page), Ok(PAGE_SIZE));
        assert_eq!(&page, input);
    }

    #[test]
    fn other_decoders_inflate_intel_qpl_output() {
        let mut decoders: Vec<Box<dyn PageCodec + Send>> = vec![
            Box::new(Zlib::new(1)),
            Box::new(Libdeflate::new(1)),
            Box::new(Isal::new(1)),
        ];
        for mode in [QplMode::Qemu, QplMode::DynamicL1, QplMode::DynamicL3] {
            let mut qpl = IntelQpl::new(mode);
            let mut stream = vec![0u8; PAGE_SIZE - 1];
            let mut page = vec![0u8; PAGE_SIZE];
            for (index, input) in sample_pages().iter().enumerate() {
                let Some(len) = qpl.compress(input, &mut stream) else {
                    continue;
                };
                for decoder in &mut decoders {
                    let name = decoder.name().to_string();
                    assert_eq!(
                        decoder.decompress(&stream[..len], &mut page),
                        Ok(PAGE_SIZE),
                        "{name} on {mode:?} page {index}"
                    );
                    assert_eq!(&page, input, "{name} on {mode:?} page {index}");
                }
            }
        }
    }

    #[test]
    fn every_page_codec_round_trips() {
        let mut stream = vec![0u8; PAGE_SIZE - 1];
        let mut page = vec![0u8; PAGE_SIZE];
        for mut codec in all_page_codecs() {
            for input in sample_pages() {
                if let Some(len) = codec.compress(&input, &mut stream) {
                    assert_eq!(codec.decompress(&stream[..len], &mut page), Ok(PAGE_SIZE));
                    assert_eq!(page, input, "{}", codec.name());
                }
            }
        }
    }
}
