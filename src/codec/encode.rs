//! The page encoder.

use miniz_oxide::deflate::core::{
    compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
};

use super::Level;

/// Compresses single pages into raw DEFLATE, reusing its state between pages.
pub struct PageEncoder {
    compressor: Box<CompressorOxide>,
}

impl PageEncoder {
    pub fn new(level: Level) -> Self {
        let miniz_level = match level {
            Level::Fast => 1,
            Level::Strong => 6,
        };
        // Negative window bits select raw DEFLATE: no zlib header or trailer,
        // which is what upstream's Intel QPL jobs produce and expect.
        let flags = create_comp_flags_from_zip_params(miniz_level, -15, 0);
        PageEncoder {
            compressor: Box::new(CompressorOxide::new(flags)),
        }
    }

    /// Compresses `page` into `out`. Returns the stream's length, or `None` when
    /// the whole stream does not fit in `out` (the caller then sends the page raw).
    pub fn encode(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize> {
        self.compressor.reset();
        let (status, consumed, written) =
            compress(&mut self.compressor, page, out, TDEFLFlush::Finish);
        // Anything but Done means output was still pending when `out` filled up.
        (status == TDEFLStatus::Done && consumed == page.len()).then_some(written)
    }
}
