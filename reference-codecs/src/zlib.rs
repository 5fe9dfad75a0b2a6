//! zlib raw DEFLATE (window bits -15), through `csrc/zlib_shim.c`, which keeps
//! one deflate and one inflate `z_stream` and resets them per page.

use std::ffi::c_int;
use std::ptr::NonNull;

use crate::{len_u32, PageCodec};

#[repr(C)]
struct RawContext {
    _opaque: [u8; 0],
}

extern "C" {
    fn refcodec_zlib_new(level: c_int, out: *mut *mut RawContext) -> c_int;
    fn refcodec_zlib_free(ctx: *mut RawContext);
    fn refcodec_zlib_compress(
        ctx: *mut RawContext,
        input: *const u8,
        len: u32,
        out: *mut u8,
        out_cap: u32,
    ) -> i64;
    fn refcodec_zlib_decompress(
        ctx: *mut RawContext,
        input: *const u8,
        len: u32,
        out: *mut u8,
        out_cap: u32,
    ) -> i64;
}

fn error_name(code: i64) -> String {
    match code {
        -2 => "Z_STREAM_ERROR".into(),
        -3 => "Z_DATA_ERROR (invalid stream)".into(),
        -4 => "Z_MEM_ERROR".into(),
        -5 => "Z_BUF_ERROR".into(),
        -100 => "output limit reached".into(),
        -101 => "no final block before input or output ran out".into(),
        -102 => "bytes follow the final block".into(),
        _ => format!("zlib error {code}"),
    }
}

/// zlib at one level (0 = stored blocks only, 1..=9).
pub struct Zlib {
    ctx: NonNull<RawContext>,
    name: String,
}

// The streams belong to this object alone.
unsafe impl Send for Zlib {}

impl Zlib {
    pub fn new(level: i32) -> Zlib {
        let mut raw = std::ptr::null_mut();
        // SAFETY: `raw` is a valid place for the shim to store its pointer.
        let code = unsafe { refcodec_zlib_new(level, &mut raw) };
        let ctx = NonNull::new(raw).filter(|_| code == 0).unwrap_or_else(|| {
            panic!(
                "zlib: level {level} init failed: {}",
                error_name(i64::from(code))
            )
        });
        Zlib {
            ctx,
            name: format!("zlib-{level}"),
        }
    }
}

impl Drop for Zlib {
    fn drop(&mut self) {
        // SAFETY: the context came from `refcodec_zlib_new`, freed once.
        unsafe { refcodec_zlib_free(self.ctx.as_ptr()) }
    }
}

impl PageCodec for Zlib {
    fn name(&self) -> &str {
        &self.name
    }

    fn compress(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize> {
        // SAFETY: pointers and lengths describe live slices.
        let result = unsafe {
            refcodec_zlib_compress(
                self.ctx.as_ptr(),
                page.as_ptr(),
                len_u32(page),
                out.as_mut_ptr(),
                len_u32(out),
            )
        };
        (result >= 0).then_some(result as usize)
    }

    fn decompress(&mut self, stream: &[u8], out: &mut [u8]) -> Result<usize, String> {
        // SAFETY: pointers and lengths describe live slices.
        let result = unsafe {
            refcodec_zlib_decompress(
                self.ctx.as_ptr(),
                stream.as_ptr(),
                len_u32(stream),
                out.as_mut_ptr(),
                len_u32(out),
            )
        };
        if result >= 0 {
            Ok(result as usize)
        } else {
            Err(error_name(result))
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
            let mut zlib = Zlib::new(level);
            let mut stream = vec![0u8; PAGE_SIZE - 1];
            let mut page = vec![0u8; PAGE_SIZE];
            for (index, input) in sample_pages().iter().enumerate() {
                match zlib.compress(input, &mut stream) {
                    Some(len) => {
                        assert_eq!(zlib.decompress(&stream[..len], &mut page), Ok(PAGE_SIZE));
                        assert_eq!(&page, input, "level {level} page {index}");
                    }
                    None => assert!(is_random(index), "level {level} page {index}"),
                }
            }
        }
    }

    #[test]
    fn rejects_truncated_and_trailing_streams() {
        let mut zlib = Zlib::new(1);
        let mut stream = vec![0u8; PAGE_SIZE];
        let mut page = vec![0u8; PAGE_SIZE];
        let len = zlib.compress(&sample_pages()[2], &mut stream).unwrap();
        assert!(zlib.decompress(&stream[..len - 1], &mut page).is_err());
        assert!(zlib.decompress(&stream[..len + 1], &mut page).is_err());
    }
}
