//! lz4 block format, one page per block (`LZ4_compress_default`,
//! `LZ4_decompress_safe`).

use std::ffi::{c_char, c_int};

use crate::PageCodec;

#[link(name = "lz4")]
extern "C" {
    fn LZ4_compress_default(
        src: *const c_char,
        dst: *mut c_char,
        src_size: c_int,
        dst_capacity: c_int,
    ) -> c_int;
    fn LZ4_decompress_safe(
        src: *const c_char,
        dst: *mut c_char,
        compressed_size: c_int,
        dst_capacity: c_int,
    ) -> c_int;
}

fn len_int(buffer: &[u8]) -> c_int {
    c_int::try_from(buffer.len()).expect("lz4: buffer longer than 2 GiB")
}

/// lz4 per page. Stateless: `LZ4_compress_default` keeps its state on the stack.
#[derive(Debug, Default)]
pub struct Lz4;

impl Lz4 {
    pub fn new() -> Lz4 {
        Lz4
    }
}

impl PageCodec for Lz4 {
    fn name(&self) -> &str {
        "lz4"
    }

    fn compress(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize> {
        // SAFETY: pointers and lengths describe live slices.
        let written = unsafe {
            LZ4_compress_default(
                page.as_ptr().cast(),
                out.as_mut_ptr().cast(),
                len_int(page),
                len_int(out),
            )
        };
        (written > 0).then_some(written as usize)
    }

    fn decompress(&mut self, stream: &[u8], out: &mut [u8]) -> Result<usize, String> {
        // SAFETY: pointers and lengths describe live slices; the function
        // never writes past `dst_capacity`.
        let produced = unsafe {
            LZ4_decompress_safe(
                stream.as_ptr().cast(),
                out.as_mut_ptr().cast(),
                len_int(stream),
                len_int(out),
            )
        };
        if produced >= 0 {
            Ok(produced as usize)
        } else {
            Err(format!("LZ4_decompress_safe failed ({produced})"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_pages::{is_random, sample_pages};
    use crate::PAGE_SIZE;

    #[test]
    fn round_trips() {
        let mut codec = Lz4::new();
        let mut stream = vec![0u8; PAGE_SIZE - 1];
        let mut page = vec![0u8; PAGE_SIZE];
        for (index, input) in sample_pages().iter().enumerate() {
            match codec.compress(input, &mut stream) {
                Some(len) => {
                    assert_eq!(codec.decompress(&stream[..len], &mut page), Ok(PAGE_SIZE));
                    assert_eq!(&page, input, "page {index}");
                }
                None => assert!(is_random(index), "page {index}"),
            }
        }
    }
}
