//! Intel QPL 1.9.0 on its software path, through `csrc/qpl_shim.c`.
//!
//! [`QplMode::Qemu`] is exactly upstream QEMU's job (migration/multifd-qpl.c):
//! `QPL_FLAG_FIRST | QPL_FLAG_LAST | QPL_FLAG_OMIT_VERIFY`, level 1, no
//! `QPL_FLAG_DYNAMIC_HUFFMAN`, which makes QPL emit fixed-Huffman blocks.
//! Decompression is always QEMU's decompression job (same flags, level 1).

use std::ffi::c_int;
use std::ptr::NonNull;

use crate::{len_u32, PageCodec};

#[repr(C)]
struct RawContext {
    _opaque: [u8; 0],
}

extern "C" {
    fn refcodec_qpl_new(out: *mut *mut RawContext) -> c_int;
    fn refcodec_qpl_free(ctx: *mut RawContext);
    fn refcodec_qpl_compress_page(
        ctx: *mut RawContext,
        input: *const u8,
        len: u32,
        out: *mut u8,
        out_cap: u32,
        mode: c_int,
    ) -> i64;
    fn refcodec_qpl_decompress_page(
        ctx: *mut RawContext,
        input: *const u8,
        len: u32,
        out: *mut u8,
        out_cap: u32,
    ) -> i64;
}

/// `qpl_status` values this crate names (see qpl/c_api/status.h).
pub mod status {
    pub const OK: i32 = 0;
    pub const MORE_OUTPUT_NEEDED: i32 = 2;
    pub const MORE_INPUT_NEEDED: i32 = 3;
    pub const LIBRARY_INTERNAL_ERR: i32 = 6;
    pub const INVALID_PARAM_ERR: i32 = 55;
    pub const UNSUPPORTED_COMPRESSION_LEVEL: i32 = 87;
    pub const OBJECT_ALLOCATION_ERR: i32 = 106;
    pub const INVALID_BLOCK_TYPE: i32 = 213;
    pub const BAD_EOF_ERR: i32 = 215;
    pub const BAD_DIST_ERR: i32 = 217;
    pub const REF_BEFORE_START_ERR: i32 = 218;
    pub const DST_IS_SHORT_ERR: i32 = 225;
    pub const SRC_IS_SHORT_ERR: i32 = 232;
}

/// A readable name for a `qpl_status` (numbers this crate does not name are
/// printed as they are).
pub fn status_name(code: i32) -> String {
    let name = match code {
        status::OK => "QPL_STS_OK",
        status::MORE_OUTPUT_NEEDED => "QPL_STS_MORE_OUTPUT_NEEDED",
        status::MORE_INPUT_NEEDED => "QPL_STS_MORE_INPUT_NEEDED",
        status::LIBRARY_INTERNAL_ERR => "QPL_STS_LIBRARY_INTERNAL_ERR",
        status::INVALID_PARAM_ERR => "QPL_STS_INVALID_PARAM_ERR",
        status::UNSUPPORTED_COMPRESSION_LEVEL => "QPL_STS_UNSUPPORTED_COMPRESSION_LEVEL",
        status::OBJECT_ALLOCATION_ERR => "QPL_STS_OBJECT_ALLOCATION_ERR",
        status::INVALID_BLOCK_TYPE => "QPL_STS_INVALID_BLOCK_TYPE",
        status::BAD_EOF_ERR => "QPL_STS_BAD_EOF_ERR",
        status::BAD_DIST_ERR => "QPL_STS_BAD_DIST_ERR",
        status::REF_BEFORE_START_ERR => "QPL_STS_REF_BEFORE_START_ERR",
        status::DST_IS_SHORT_ERR => "QPL_STS_DST_IS_SHORT_ERR",
        status::SRC_IS_SHORT_ERR => "QPL_STS_SRC_IS_SHORT_ERR",
        _ => return format!("qpl_status {code}"),
    };
    format!("{name} ({code})")
}

/// How Intel QPL compresses. The numbers must agree with `csrc/qpl_shim.c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QplMode {
    /// Upstream QEMU's job: level 1, fixed Huffman.
    Qemu,
    /// Level 1 with `QPL_FLAG_DYNAMIC_HUFFMAN`.
    DynamicL1,
    /// Level 3 with `QPL_FLAG_DYNAMIC_HUFFMAN`.
    DynamicL3,
}

impl QplMode {
    fn code(self) -> c_int {
        match self {
            QplMode::Qemu => 0,
            QplMode::DynamicL1 => 1,
            QplMode::DynamicL3 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            QplMode::Qemu => "qpl-qemu",
            QplMode::DynamicL1 => "qpl-dyn-1",
            QplMode::DynamicL3 => "qpl-dyn-3",
        }
    }
}

/// One Intel QPL software-path context: a compression job and a
/// decompression job, each allocated once (`qpl_get_job_size`,
/// `qpl_init_job`) and finished (`qpl_fini_job`) on drop.
pub struct IntelQpl {
    ctx: NonNull<RawContext>,
    mode: QplMode,
}

// The jobs belong to this object alone and QPL's software path keeps no
// thread-affine state, so the object may move to another thread.
unsafe impl Send for IntelQpl {}

impl IntelQpl {
    /// Allocates the jobs. Panics if Intel QPL refuses to initialise them.
    pub fn new(mode: QplMode) -> IntelQpl {
        IntelQpl::try_new(mode).unwrap_or_else(|code| {
            panic!(
                "Intel QPL: software job initialisation failed: {}",
                status_name(code)
            )
        })
    }

    /// Allocates the jobs, or returns the `qpl_status` that refused them.
    pub fn try_new(mode: QplMode) -> Result<IntelQpl, i32> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: `raw` is a valid place for the shim to store its pointer.
        let code = unsafe { refcodec_qpl_new(&mut raw) };
        match NonNull::new(raw) {
            Some(ctx) if code == status::OK => Ok(IntelQpl { ctx, mode }),
            _ => Err(code),
        }
    }

    pub fn mode(&self) -> QplMode {
        self.mode
    }

    /// Compresses `page` with at most `out.len()` bytes of output (QEMU gives
    /// `page_size - 1`). `None` on any non-OK status: QEMU then sends the
    /// page raw.
    pub fn compress(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize> {
        self.compress_status(page, out).ok()
    }

    /// Like [`IntelQpl::compress`], but returns the `qpl_status` of a failure.
    pub fn compress_status(&mut self, page: &[u8], out: &mut [u8]) -> Result<usize, i32> {
        // SAFETY: the pointers and lengths describe live slices; QPL reads
        // only `page` and writes only inside `out`.
        let result = unsafe {
            refcodec_qpl_compress_page(
                self.ctx.as_ptr(),
                page.as_ptr(),
                len_u32(page),
                out.as_mut_ptr(),
                len_u32(out),
                self.mode.code(),
            )
        };
        to_result(result)
    }

    /// Inflates `stream` into `out` with QEMU's decompression job. Returns
    /// the job's `total_out`; QEMU further requires it to equal the page size.
    pub fn decompress(&mut self, stream: &[u8], out: &mut [u8]) -> Result<usize, i32> {
        // SAFETY: as in `compress_status`.
        let result = unsafe {
            refcodec_qpl_decompress_page(
                self.ctx.as_ptr(),
                stream.as_ptr(),
                len_u32(stream),
                out.as_mut_ptr(),
                len_u32(out),
            )
        };
        to_result(result)
    }
}

fn to_result(result: i64) -> Result<usize, i32> {
    if result >= 0 {
        Ok(result as usize)
    } else {
        Err(i32::try_from(-result).unwrap_or(i32::MAX))
    }
}

impl Drop for IntelQpl {
    fn drop(&mut self) {
        // SAFETY: the context came from `refcodec_qpl_new` and is freed once.
        unsafe { refcodec_qpl_free(self.ctx.as_ptr()) }
    }
}

impl PageCodec for IntelQpl {
    fn name(&self) -> &str {
        self.mode.name()
    }

    fn compress(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize> {
        IntelQpl::compress(self, page, out)
    }

    fn decompress(&mut self, stream: &[u8], out: &mut [u8]) -> Result<usize, String> {
        IntelQpl::decompress(self, stream, out).map_err(status_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_pages::{is_random, sample_pages};
    use crate::PAGE_SIZE;

    fn round_trip(mode: QplMode) {
        let mut qpl = IntelQpl::new(mode);
        let mut stream = vec![0u8; PAGE_SIZE - 1];
        let mut page = vec![0u8; PAGE_SIZE];
        for (index, input) in sample_pages().iter().enumerate() {
            match qpl.compress_status(input, &mut stream) {
                Ok(len) => {
                    assert!(!is_random(index), "{mode:?}: random page {index} fitted");
                    let produced = qpl.decompress(&stream[..len], &mut page).unwrap();
                    assert_eq!(produced, PAGE_SIZE, "{mode:?}: page {index}");
                    assert_eq!(&page, input, "{mode:?}: page {index}");
                }
                Err(code) => assert!(
                    is_random(index),
                    "{mode:?}: page {index} failed with {}",
                    status_name(code)
                ),
            }
        }
    }

    #[test]
    fn qemu_mode_round_trips() {
        round_trip(QplMode::Qemu);
    }

    #[test]
    fn dynamic_level_1_round_trips() {
        round_trip(QplMode::DynamicL1);
    }

    #[test]
    fn dynamic_level_3_round_trips() {
        round_trip(QplMode::DynamicL3);
    }

    #[test]
    fn qemu_mode_emits_fixed_huffman_blocks() {
        let mut qpl = IntelQpl::new(QplMode::Qemu);
        let mut stream = vec![0u8; PAGE_SIZE - 1];
        let text = &sample_pages()[1];
        let len = qpl.compress(text, &mut stream).unwrap();
        assert!(len > 0);
        // BTYPE, bits 1-2 of the first byte: 01 = fixed Huffman.
        assert_eq!((stream[0] >> 1) & 3, 1, "first block is not fixed Huffman");
    }

    #[test]
    fn dynamic_mode_emits_dynamic_huffman_blocks() {
        let mut qpl = IntelQpl::new(QplMode::DynamicL1);
        let mut stream = vec![0u8; PAGE_SIZE - 1];
        let len = qpl.compress(&sample_pages()[1], &mut stream).unwrap();
        assert!(len > 0);
        assert_eq!(
            (stream[0] >> 1) & 3,
            2,
            "first block is not dynamic Huffman"
        );
    }

    #[test]
    fn overflow_is_reported_as_a_status() {
        let mut qpl = IntelQpl::new(QplMode::Qemu);
        let mut stream = vec![0u8; PAGE_SIZE - 1];
        let random = &sample_pages()[3];
        let code = qpl.compress_status(random, &mut stream).unwrap_err();
        assert_ne!(code, status::OK);
    }

    #[test]
    fn corrupt_stream_is_rejected() {
        let mut qpl = IntelQpl::new(QplMode::Qemu);
        let mut page = vec![0u8; PAGE_SIZE];
        // BTYPE 11 is reserved.
        assert!(qpl.decompress(&[0x07, 0x00], &mut page).is_err());
    }

    #[test]
    fn truncated_stream_is_rejected() {
        let mut qpl = IntelQpl::new(QplMode::Qemu);
        let mut stream = vec![0u8; PAGE_SIZE - 1];
        let mut page = vec![0u8; PAGE_SIZE];
        let len = qpl.compress(&sample_pages()[2], &mut stream).unwrap();
        let result = qpl.decompress(&stream[..len / 2], &mut page);
        assert!(
            !matches!(result, Ok(PAGE_SIZE)),
            "a truncated stream inflated to a whole page"
        );
    }
}
