//! ISA-L igzip raw DEFLATE through `csrc/isal_shim.c`: the stateless
//! (one-shot) deflate at level 0 or 1 and the stateless inflate.

use std::ptr::NonNull;

use crate::{len_u32, PageCodec};

#[repr(C)]
struct RawContext {
    _opaque: [u8; 0],
}

extern "C" {
    fn refcodec_isal_new(level: u32, out: *mut *mut RawContext) -> i32;
    fn refcodec_isal_free(ctx: *mut RawContext);
    fn refcodec_isal_compress(
        ctx: *mut RawContext,
        input: *const u8,
        len: u32,
        out: *mut u8,
        out_cap: u32,
    ) -> i64;
    fn refcodec_isal_decompress(
        ctx: *mut RawContext,
        input: *const u8,
        len: u32,
        out: *mut u8,
        out_cap: u32,
    ) -> i64;
}

fn inflate_error_name(code: i64) -> String {
    match code {
        -1 => "ISAL_INVALID_BLOCK".into(),
        -2 => "ISAL_INVALID_SYMBOL".into(),
        -3 => "ISAL_INVALID_LOOKBACK".into(),
        -4 => "ISAL_INVALID_WRAPPER".into(),
        -1001 => "ISAL_END_INPUT (stream ends before its final block)".into(),
        -1002 => "ISAL_OUT_OVERFLOW (inflates past the output buffer)".into(),
        _ => format!("ISA-L inflate error {code}"),
    }
}

/// ISA-L igzip at level 0 or 1.
pub struct Isal {
    ctx: NonNull<RawContext>,
    name: String,
}

// The streams and level buffer belong to this object alone.
unsafe impl Send for Isal {}

impl Isal {
    /// Level 0 or 1; panics on any other.
    pub fn new(level: u32) -> Isal {
        let mut raw = std::ptr::null_mut();
        // SAFETY: `raw` is a valid place for the shim to store its pointer.
        let code = unsafe { refcodec_isal_new(level, &mut raw) };
        let ctx = NonNull::new(raw)
            .filter(|_| code == 0)
            .unwrap_or_else(|| panic!("ISA-L: level {level} init failed with {code}"));
        Isal {
            ctx,
            name: format!("isal-{level}"),
        }
    }
}

impl Drop for Isal {
    fn drop(&mut self) {
        // SAFETY: the context came from `refcodec_isal_new`, freed once.
        unsafe { refcodec_isal_free(self.ctx.as_ptr()) }
    }
}

impl PageCodec for Isal {
    fn name(&self) -> &str {
        &self.name
    }

    fn compress(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize> {
        // SAFETY: pointers and lengths describe live slices.
        let result = unsafe {
            refcodec_isal_compress(
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
            refcodec_isal_decompress(
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
            Err(inflate_error_name(result))
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
        for level in [0, 1] {
            let mut isal = Isal::new(level);
            let mut stream = vec![0u8; PAGE_SIZE - 1];
            let mut page = vec![0u8; PAGE_SIZE];
            for (index, input) in sample_pages().iter().enumerate() {
                match isal.compress(input, &mut stream) {
                    Some(len) => {
                        assert_eq!(isal.decompress(&stream[..len], &mut page), Ok(PAGE_SIZE));
                        assert_eq!(&page, input, "level {level} page {index}");
                    }
                    None => assert!(is_random(index), "level {level} page {index}"),
                }
            }
        }
    }
}
