//! libdeflate raw DEFLATE. The compressor is allocated once per level; the
//! decompressor is asked for an exact-size output (no `actual_out_nbytes`),
//! so a stream inflating to less than the buffer is an error.

use std::ffi::{c_int, c_void};
use std::ptr::NonNull;

use crate::PageCodec;

#[repr(C)]
struct Compressor {
    _opaque: [u8; 0],
}

#[repr(C)]
struct Decompressor {
    _opaque: [u8; 0],
}

#[link(name = "deflate")]
extern "C" {
    fn libdeflate_alloc_compressor(compression_level: c_int) -> *mut Compressor;
    fn libdeflate_deflate_compress(
        compressor: *mut Compressor,
        input: *const c_void,
        in_nbytes: usize,
        out: *mut c_void,
        out_nbytes_avail: usize,
    ) -> usize;
    fn libdeflate_free_compressor(compressor: *mut Compressor);
    fn libdeflate_alloc_decompressor() -> *mut Decompressor;
    fn libdeflate_deflate_decompress(
        decompressor: *mut Decompressor,
        input: *const c_void,
        in_nbytes: usize,
        out: *mut c_void,
        out_nbytes_avail: usize,
        actual_out_nbytes_ret: *mut usize,
    ) -> c_int;
    fn libdeflate_free_decompressor(decompressor: *mut Decompressor);
}

fn result_name(code: c_int) -> String {
    match code {
        1 => "LIBDEFLATE_BAD_DATA".into(),
        2 => "LIBDEFLATE_SHORT_OUTPUT (inflates to less than the page)".into(),
        3 => "LIBDEFLATE_INSUFFICIENT_SPACE (inflates past the page)".into(),
        _ => format!("libdeflate result {code}"),
    }
}

/// libdeflate at one level (1..=12).
pub struct Libdeflate {
    compressor: NonNull<Compressor>,
    decompressor: NonNull<Decompressor>,
    name: String,
}

// Both objects belong to this value alone.
unsafe impl Send for Libdeflate {}

impl Libdeflate {
    pub fn new(level: i32) -> Libdeflate {
        // SAFETY: plain allocation calls; a null result is handled.
        let compressor = NonNull::new(unsafe { libdeflate_alloc_compressor(level) })
            .unwrap_or_else(|| panic!("libdeflate: cannot allocate a level {level} compressor"));
        // SAFETY: as above.
        let decompressor = NonNull::new(unsafe { libdeflate_alloc_decompressor() })
            .expect("libdeflate: cannot allocate a decompressor");
        Libdeflate {
            compressor,
            decompressor,
            name: format!("libdeflate-{level}"),
        }
    }
}

impl Drop for Libdeflate {
    fn drop(&mut self) {
        // SAFETY: both came from their allocation functions, freed once.
        unsafe {
            libdeflate_free_compressor(self.compressor.as_ptr());
            libdeflate_free_decompressor(self.decompressor.as_ptr());
        }
    }
}

impl PageCodec for Libdeflate {
    fn name(&self) -> &str {
        &self.name
    }

    fn compress(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize> {
        // SAFETY: pointers and lengths describe live slices.
        let written = unsafe {
            libdeflate_deflate_compress(
                self.compressor.as_ptr(),
                page.as_ptr().cast(),
                page.len(),
                out.as_mut_ptr().cast(),
                out.len(),
            )
        };
        (written != 0).then_some(written)
    }

    fn decompress(&mut self, stream: &[u8], out: &mut [u8]) -> Result<usize, String> {
        // SAFETY: pointers and lengths describe live slices; a null
        // `actual_out_nbytes_ret` asks for exactly `out.len()` bytes.
        let code = unsafe {
            libdeflate_deflate_decompress(
                self.decompressor.as_ptr(),
                stream.as_ptr().cast(),
                stream.len(),
                out.as_mut_ptr().cast(),
                out.len(),
                std::ptr::null_mut(),
            )
        };
        if code == 0 {
            Ok(out.len())
        } else {
            Err(result_name(code))
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
        for level in [1, 6] {
            let mut codec = Libdeflate::new(level);
            let mut stream = vec![0u8; PAGE_SIZE - 1];
            let mut page = vec![0u8; PAGE_SIZE];
            for (index, input) in sample_pages().iter().enumerate() {
                match codec.compress(input, &mut stream) {
                    Some(len) => {
                        assert_eq!(codec.decompress(&stream[..len], &mut page), Ok(PAGE_SIZE));
                        assert_eq!(&page, input, "level {level} page {index}");
                    }
                    None => assert!(is_random(index), "level {level} page {index}"),
                }
            }
        }
    }

    #[test]
    fn exact_size_is_enforced() {
        let mut codec = Libdeflate::new(1);
        let mut stream = vec![0u8; PAGE_SIZE];
        let len = codec.compress(&sample_pages()[1], &mut stream).unwrap();
        let mut bigger = vec![0u8; PAGE_SIZE + 1];
        assert!(codec.decompress(&stream[..len], &mut bigger).is_err());
        let mut smaller = vec![0u8; PAGE_SIZE - 1];
        assert!(codec.decompress(&stream[..len], &mut smaller).is_err());
    }
}
