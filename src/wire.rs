//! The packet body of QEMU's multifd `qpl` method, as upstream QEMU (9.1 and
//! later) puts it on the wire after multifd's own packet header:
//!
//! ```text
//! u32 big-endian length[N]      one per normal page
//! page 0 bytes, page 1 bytes, ... page N-1 bytes
//! ```
//!
//! A length equal to the page size means the page travels raw; a shorter one is
//! a raw DEFLATE stream (RFC 1951) that inflates to exactly one page.
//!
//! Everything here checks data that came off the network, so every function
//! returns the precise fault instead of trusting a value.

use crate::error::PacketFault;

/// Bytes of one entry of the length array.
pub const LENGTH_BYTES: usize = 4;

/// How a page travels, decided by its length alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageEncoding {
    /// The page's own bytes, `page_size` of them.
    Raw,
    /// A raw DEFLATE stream of this many bytes, shorter than a page.
    Deflate(u32),
}

/// Bytes of the length array for `pages` pages.
pub fn lengths_bytes(pages: u32) -> u64 {
    u64::from(pages) * LENGTH_BYTES as u64
}

/// Checks the two numbers multifd's packet header gives before anything else is
/// read: the normal page count and the payload size.
pub fn check_packet_shape(pages: u32, max_pages: u32, payload: u64) -> Result<(), PacketFault> {
    if pages > max_pages {
        return Err(PacketFault::TooManyPages { pages, max_pages });
    }
    if pages == 0 {
        return match payload {
            0 => Ok(()),
            _ => Err(PacketFault::PayloadWithoutPages { payload }),
        };
    }
    // Each page needs its 4-byte length and at least one byte of data.
    let lengths = lengths_bytes(pages);
    if payload < lengths + u64::from(pages) {
        return Err(PacketFault::PayloadShorterThanLengths {
            payload,
            lengths_bytes: lengths,
        });
    }
    Ok(())
}

/// Reads the big-endian length array and checks every entry against the page
/// size and their sum against the payload. Fills `encodings` (one per page) and
/// returns the number of page-data bytes that follow the length array.
pub fn parse_lengths(
    raw_lengths: &[u8],
    page_size: u32,
    payload: u64,
    encodings: &mut Vec<PageEncoding>,
) -> Result<u64, PacketFault> {
    encodings.clear();
    let mut sum: u64 = 0;
    for (page, chunk) in raw_lengths.chunks_exact(LENGTH_BYTES).enumerate() {
        let page = page as u32;
        let length = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let encoding = classify_length(page, length, page_size)?;
        encodings.push(encoding);
        sum += u64::from(length);
    }
    let expected = payload - raw_lengths.len() as u64;
    if sum != expected {
        return Err(PacketFault::LengthsDoNotMatchPayload { sum, expected });
    }
    Ok(sum)
}

fn classify_length(page: u32, length: u32, page_size: u32) -> Result<PageEncoding, PacketFault> {
    if length > page_size {
        Err(PacketFault::LengthAbovePageSize {
            page,
            length,
            page_size,
        })
    } else if length == page_size {
        Ok(PageEncoding::Raw)
    } else if length == 0 {
        Err(PacketFault::EmptyStream { page })
    } else {
        Ok(PageEncoding::Deflate(length))
    }
}

/// Writes one big-endian length into the length array.
pub fn put_length(lengths: &mut [u8], page: usize, length: u32) {
    let at = page * LENGTH_BYTES;
    lengths[at..at + LENGTH_BYTES].copy_from_slice(&length.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(lengths: &[u32]) -> Vec<u8> {
        lengths.iter().flat_map(|l| l.to_be_bytes()).collect()
    }

    #[test]
    fn raw_and_deflate_pages_are_told_apart_by_length() {
        let mut encodings = Vec::new();
        let data = parse_lengths(&be(&[4096, 100]), 4096, 8 + 4196, &mut encodings).unwrap();
        assert_eq!(data, 4196);
        assert_eq!(
            encodings,
            vec![PageEncoding::Raw, PageEncoding::Deflate(100)]
        );
    }

    #[test]
    fn shape_checks_reject_impossible_headers() {
        assert!(check_packet_shape(0, 128, 0).is_ok());
        assert_eq!(
            check_packet_shape(0, 128, 5),
            Err(PacketFault::PayloadWithoutPages { payload: 5 })
        );
        assert_eq!(
            check_packet_shape(129, 128, 1 << 20),
            Err(PacketFault::TooManyPages {
                pages: 129,
                max_pages: 128
            })
        );
        assert!(matches!(
            check_packet_shape(2, 128, 9),
            Err(PacketFault::PayloadShorterThanLengths { .. })
        ));
        assert!(check_packet_shape(2, 128, 10).is_ok());
    }

    #[test]
    fn put_length_is_big_endian() {
        let mut lengths = [0u8; 8];
        put_length(&mut lengths, 1, 0x0102_0304);
        assert_eq!(lengths, [0, 0, 0, 0, 1, 2, 3, 4]);
    }
}
