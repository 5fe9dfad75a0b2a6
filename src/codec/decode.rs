//! The page decoder.

use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

use super::DecodeFault;

/// Inflates raw DEFLATE streams into exactly one page each.
pub struct PageDecoder {
    decompressor: Box<DecompressorOxide>,
}

impl Default for PageDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl PageDecoder {
    pub fn new() -> Self {
        PageDecoder {
            decompressor: Box::default(),
        }
    }

    /// Inflates `stream` into `page`, which it must fill exactly. Writes only
    /// inside `page`; on error the page's content is unspecified.
    pub fn decode(&mut self, stream: &[u8], page: &mut [u8]) -> Result<(), DecodeFault> {
        self.decompressor.init();
        // No zlib header, the whole stream is here, and `page` is the entire
        // output window (no ring buffer).
        let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
        let (status, consumed, produced) =
            decompress(&mut self.decompressor, stream, page, 0, flags);
        match status {
            TINFLStatus::Done if produced != page.len() => Err(DecodeFault::Short { produced }),
            TINFLStatus::Done if consumed != stream.len() => Err(DecodeFault::TrailingBytes {
                extra: stream.len() - consumed,
            }),
            TINFLStatus::Done => Ok(()),
            TINFLStatus::HasMoreOutput => Err(DecodeFault::PastEnd),
            TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => {
                Err(DecodeFault::Truncated)
            }
            TINFLStatus::BadParam => Err(DecodeFault::Corrupt("invalid decoder parameters")),
            TINFLStatus::Adler32Mismatch => Err(DecodeFault::Corrupt("checksum mismatch")),
            TINFLStatus::Failed => Err(DecodeFault::Corrupt("invalid block or Huffman code")),
        }
    }
}
