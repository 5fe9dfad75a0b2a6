//! zstd, two ways:
//!
//! * [`ZstdPage`]: one frame per page (`ZSTD_compressCCtx` /
//!   `ZSTD_decompressDCtx` with contexts reused page after page);
//! * [`ZstdPacket`]: QEMU's `zstd` multifd method (migration/multifd-zstd.c):
//!   one stream per channel for the whole migration; each packet's pages are
//!   fed with `ZSTD_e_continue` and the last one with `ZSTD_e_flush`, so a
//!   packet ends on a block boundary and the next packet keeps the history.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::ptr::NonNull;

use crate::{PageCodec, PAGE_SIZE};

#[repr(C)]
struct CCtx {
    _opaque: [u8; 0],
}

#[repr(C)]
struct DCtx {
    _opaque: [u8; 0],
}

#[repr(C)]
struct InBuffer {
    src: *const c_void,
    size: usize,
    pos: usize,
}

#[repr(C)]
struct OutBuffer {
    dst: *mut c_void,
    size: usize,
    pos: usize,
}

/// `ZSTD_EndDirective`.
const ZSTD_E_CONTINUE: c_int = 0;
const ZSTD_E_FLUSH: c_int = 1;

// ZSTD_CStream is ZSTD_CCtx and ZSTD_DStream is ZSTD_DCtx since zstd 1.3.0.
#[link(name = "zstd")]
extern "C" {
    fn ZSTD_compressBound(src_size: usize) -> usize;
    fn ZSTD_isError(code: usize) -> c_uint;
    fn ZSTD_getErrorName(code: usize) -> *const c_char;
    fn ZSTD_createCCtx() -> *mut CCtx;
    fn ZSTD_freeCCtx(cctx: *mut CCtx) -> usize;
    fn ZSTD_compressCCtx(
        cctx: *mut CCtx,
        dst: *mut c_void,
        dst_capacity: usize,
        src: *const c_void,
        src_size: usize,
        compression_level: c_int,
    ) -> usize;
    fn ZSTD_createDCtx() -> *mut DCtx;
    fn ZSTD_freeDCtx(dctx: *mut DCtx) -> usize;
    fn ZSTD_decompressDCtx(
        dctx: *mut DCtx,
        dst: *mut c_void,
        dst_capacity: usize,
        src: *const c_void,
        src_size: usize,
    ) -> usize;
    fn ZSTD_initCStream(zcs: *mut CCtx, compression_level: c_int) -> usize;
    fn ZSTD_compressStream2(
        cctx: *mut CCtx,
        output: *mut OutBuffer,
        input: *mut InBuffer,
        end_op: c_int,
    ) -> usize;
    fn ZSTD_initDStream(zds: *mut DCtx) -> usize;
    fn ZSTD_decompressStream(zds: *mut DCtx, output: *mut OutBuffer, input: *mut InBuffer)
        -> usize;
}

fn is_error(code: usize) -> bool {
    // SAFETY: a pure function of its argument.
    unsafe { ZSTD_isError(code) != 0 }
}

fn error_name(code: usize) -> String {
    // SAFETY: zstd returns a static NUL-terminated string for any code.
    let name = unsafe { CStr::from_ptr(ZSTD_getErrorName(code)) };
    name.to_string_lossy().into_owned()
}

/// Checks a zstd return value.
fn check(code: usize, what: &str) -> Result<usize, String> {
    if is_error(code) {
        Err(format!("{what}: {}", error_name(code)))
    } else {
        Ok(code)
    }
}

fn new_cctx() -> NonNull<CCtx> {
    // SAFETY: plain allocation; null is handled.
    NonNull::new(unsafe { ZSTD_createCCtx() }).expect("zstd: cannot allocate a compression context")
}

fn new_dctx() -> NonNull<DCtx> {
    // SAFETY: plain allocation; null is handled.
    NonNull::new(unsafe { ZSTD_createDCtx() })
        .expect("zstd: cannot allocate a decompression context")
}

/// zstd, one frame per page, at one level.
pub struct ZstdPage {
    cctx: NonNull<CCtx>,
    dctx: NonNull<DCtx>,
    level: i32,
    name: String,
}

// The contexts belong to this object alone.
unsafe impl Send for ZstdPage {}

impl ZstdPage {
    pub fn new(level: i32) -> ZstdPage {
        ZstdPage {
            cctx: new_cctx(),
            dctx: new_dctx(),
            level,
            name: format!("zstd-{level}-page"),
        }
    }
}

impl Drop for ZstdPage {
    fn drop(&mut self) {
        // SAFETY: both came from their create functions, freed once.
        unsafe {
            ZSTD_freeCCtx(self.cctx.as_ptr());
            ZSTD_freeDCtx(self.dctx.as_ptr());
        }
    }
}

impl PageCodec for ZstdPage {
    fn name(&self) -> &str {
        &self.name
    }

    fn compress(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize> {
        // SAFETY: pointers and lengths describe live slices.
        let written = unsafe {
            ZSTD_compressCCtx(
                self.cctx.as_ptr(),
                out.as_mut_ptr().cast(),
                out.len(),
                page.as_ptr().cast(),
                page.len(),
                self.level,
            )
        };
        (!is_error(written)).then_some(written)
    }

    fn decompress(&mut self, stream: &[u8], out: &mut [u8]) -> Result<usize, String> {
        // SAFETY: pointers and lengths describe live slices.
        let produced = unsafe {
            ZSTD_decompressDCtx(
                self.dctx.as_ptr(),
                out.as_mut_ptr().cast(),
                out.len(),
                stream.as_ptr().cast(),
                stream.len(),
            )
        };
        check(produced, "ZSTD_decompressDCtx")
    }
}

/// QEMU's `zstd` multifd method for one channel: a sending stream and a
/// receiving stream, each living across packets. Packets must be
/// decompressed in the order they were compressed; [`ZstdPacket::reset`]
/// starts both streams afresh (a new migration).
pub struct ZstdPacket {
    cstream: NonNull<CCtx>,
    dstream: NonNull<DCtx>,
    level: i32,
}

// The streams belong to this object alone.
unsafe impl Send for ZstdPacket {}

impl ZstdPacket {
    pub fn new(level: i32) -> ZstdPacket {
        let mut packet = ZstdPacket {
            cstream: new_cctx(),
            dstream: new_dctx(),
            level,
        };
        packet.reset();
        packet
    }

    /// Starts both streams afresh, like a new migration's channel setup.
    pub fn reset(&mut self) {
        // SAFETY: the streams are live; init only resets their state.
        unsafe {
            check(
                ZSTD_initCStream(self.cstream.as_ptr(), self.level),
                "ZSTD_initCStream",
            )
            .unwrap();
            check(ZSTD_initDStream(self.dstream.as_ptr()), "ZSTD_initDStream").unwrap();
        }
    }

    /// The output buffer a packet of `pages` pages needs at most (QEMU's
    /// `ZSTD_compressBound(MULTIFD_PACKET_SIZE)`).
    pub fn compress_bound(pages: usize) -> usize {
        // SAFETY: a pure function of its argument.
        unsafe { ZSTD_compressBound(pages * PAGE_SIZE) }
    }

    /// Compresses one packet's pages into `out` (QEMU's
    /// `multifd_zstd_send_prepare`) and returns the packet's size.
    pub fn compress_packet<P: AsRef<[u8]>>(
        &mut self,
        pages: &[P],
        out: &mut [u8],
    ) -> Result<usize, String> {
        let mut output = OutBuffer {
            dst: out.as_mut_ptr().cast(),
            size: out.len(),
            pos: 0,
        };
        for (index, page) in pages.iter().enumerate() {
            let page = page.as_ref();
            let last = index + 1 == pages.len();
            let directive = if last { ZSTD_E_FLUSH } else { ZSTD_E_CONTINUE };
            let mut input = InBuffer {
                src: page.as_ptr().cast(),
                size: page.len(),
                pos: 0,
            };
            loop {
                // SAFETY: both buffers describe live slices (`out` and `page`).
                let remaining = check(
                    unsafe {
                        ZSTD_compressStream2(
                            self.cstream.as_ptr(),
                            &mut output,
                            &mut input,
                            directive,
                        )
                    },
                    "ZSTD_compressStream2",
                )?;
                let consumed = input.pos == input.size;
                if consumed && (!last || remaining == 0) {
                    break;
                }
                if output.pos == output.size {
                    return Err(format!(
                        "zstd packet: output buffer of {} bytes too small at page {index}",
                        out.len()
                    ));
                }
            }
        }
        Ok(output.pos)
    }

    /// Decompresses one packet into its pages (QEMU's `multifd_zstd_recv`),
    /// each of which must be filled exactly.
    pub fn decompress_packet<P: AsMut<[u8]>>(
        &mut self,
        packet: &[u8],
        pages: &mut [P],
    ) -> Result<(), String> {
        let mut input = InBuffer {
            src: packet.as_ptr().cast(),
            size: packet.len(),
            pos: 0,
        };
        for (index, page) in pages.iter_mut().enumerate() {
            let page = page.as_mut();
            let mut output = OutBuffer {
                dst: page.as_mut_ptr().cast(),
                size: page.len(),
                pos: 0,
            };
            while output.pos < output.size {
                let before = (input.pos, output.pos);
                // SAFETY: both buffers describe live slices (`packet`, `page`).
                check(
                    unsafe {
                        ZSTD_decompressStream(self.dstream.as_ptr(), &mut output, &mut input)
                    },
                    "ZSTD_decompressStream",
                )?;
                if (input.pos, output.pos) == before {
                    return Err(format!(
                        "zstd packet: page {index} ends after {} of {} bytes",
                        output.pos, output.size
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Drop for ZstdPacket {
    fn drop(&mut self) {
        // SAFETY: both came from their create functions, freed once.
        unsafe {
            ZSTD_freeCCtx(self.cstream.as_ptr());
            ZSTD_freeDCtx(self.dstream.as_ptr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_pages::{is_random, sample_pages};

    #[test]
    fn pages_round_trip() {
        let mut codec = ZstdPage::new(1);
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

    #[test]
    fn packets_round_trip_and_share_history() {
        let samples = sample_pages();
        let packet_pages: Vec<&[u8]> = (0..crate::PAGES_PER_PACKET)
            .map(|i| samples[i % samples.len()].as_slice())
            .collect();
        let mut codec = ZstdPacket::new(1);
        let mut out = vec![0u8; ZstdPacket::compress_bound(packet_pages.len())];
        let mut sizes = Vec::new();
        let mut packets = Vec::new();
        for _ in 0..3 {
            let len = codec.compress_packet(&packet_pages, &mut out).unwrap();
            sizes.push(len);
            packets.push(out[..len].to_vec());
        }
        // The second packet repeats the first: the shared history shrinks it.
        assert!(sizes[1] < sizes[0], "sizes {sizes:?}");
        let mut pages = vec![vec![0u8; PAGE_SIZE]; packet_pages.len()];
        for packet in &packets {
            codec.decompress_packet(packet, &mut pages).unwrap();
            for (index, page) in pages.iter().enumerate() {
                assert_eq!(page.as_slice(), packet_pages[index], "page {index}");
            }
        }
    }
}
