//! One error type for the whole library.
//!
//! Every error that concerns data from the network names the page it was found
//! in, so that an operator reading QEMU's migration error knows which packet
//! content was wrong rather than just "decompression failed".

use std::fmt;

/// Which side of the C boundary is at fault, mapped onto the ABI's status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller broke the API contract (bad sizes, null pointers, calls out of order).
    InvalidArgument,
    /// Data that came off the wire is malformed.
    CorruptPacket,
    /// An allocation failed at setup.
    OutOfMemory,
    /// The library caught a bug of its own (a violated invariant).
    Internal,
}

/// Why a packet from the network was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketFault {
    /// The sender announced more pages than one packet may hold.
    TooManyPages { pages: u32, max_pages: u32 },
    /// The payload cannot even hold the length array.
    PayloadShorterThanLengths { payload: u64, lengths_bytes: u64 },
    /// A packet without normal pages must not carry a payload.
    PayloadWithoutPages { payload: u64 },
    /// The page lengths do not add up to the payload that the packet header announced.
    LengthsDoNotMatchPayload { sum: u64, expected: u64 },
    /// A page length larger than the page size.
    LengthAbovePageSize {
        page: u32,
        length: u32,
        page_size: u32,
    },
    /// A page length of zero: no DEFLATE stream is that short.
    EmptyStream { page: u32 },
    /// The DEFLATE stream is invalid (bad block type, bad Huffman code, bad distance...).
    CorruptStream { page: u32, detail: &'static str },
    /// The DEFLATE stream ends before its final block does.
    TruncatedStream { page: u32 },
    /// The stream inflates to more than one page.
    InflatesPastPage { page: u32, page_size: u32 },
    /// The stream's final block ends before a whole page was produced.
    InflatesShortOfPage {
        page: u32,
        produced: u32,
        page_size: u32,
    },
    /// Bytes follow the final block of the stream.
    TrailingBytes { page: u32, extra: u32 },
}

/// The error every fallible function of the crate returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// API misuse, described in words.
    InvalidArgument(String),
    /// A malformed packet on one channel.
    Packet { channel: u32, fault: PacketFault },
    /// An allocation of `bytes` failed.
    OutOfMemory { what: &'static str, bytes: usize },
    /// A violated invariant of the library, described in words.
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::Packet { .. } => ErrorKind::CorruptPacket,
            Error::OutOfMemory { .. } => ErrorKind::OutOfMemory,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }

    /// The packet fault, when this error is about data from the network.
    pub fn packet_fault(&self) -> Option<&PacketFault> {
        match self {
            Error::Packet { fault, .. } => Some(fault),
            _ => None,
        }
    }
}

impl PacketFault {
    /// The index in its packet of the page the fault is in, when it is in one
    /// page rather than in the packet as a whole.
    pub fn page(&self) -> Option<u32> {
        use PacketFault::*;
        match *self {
            TooManyPages { .. }
            | PayloadShorterThanLengths { .. }
            | PayloadWithoutPages { .. }
            | LengthsDoNotMatchPayload { .. } => None,
            LengthAbovePageSize { page, .. }
            | EmptyStream { page }
            | CorruptStream { page, .. }
            | TruncatedStream { page }
            | InflatesPastPage { page, .. }
            | InflatesShortOfPage { page, .. }
            | TrailingBytes { page, .. } => Some(page),
        }
    }
}

impl fmt::Display for PacketFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PacketFault::*;
        match self {
            TooManyPages { pages, max_pages } => write!(
                f,
                "packet announces {pages} pages, more than the {max_pages} pages per packet"
            ),
            PayloadShorterThanLengths {
                payload,
                lengths_bytes,
            } => write!(
                f,
                "payload of {payload} bytes is shorter than its {lengths_bytes}-byte length array"
            ),
            PayloadWithoutPages { payload } => {
                write!(f, "packet without pages carries a {payload}-byte payload")
            }
            LengthsDoNotMatchPayload { sum, expected } => write!(
                f,
                "page lengths add up to {sum} bytes but the payload size in the packet header leaves {expected} bytes after the length array"
            ),
            LengthAbovePageSize {
                page,
                length,
                page_size,
            } => write!(
                f,
                "page {page}: length {length} exceeds the page size {page_size}"
            ),
            EmptyStream { page } => write!(f, "page {page}: length 0 is not a DEFLATE stream"),
            CorruptStream { page, detail } => {
                write!(f, "page {page}: corrupt DEFLATE stream ({detail})")
            }
            TruncatedStream { page } => {
                write!(f, "page {page}: DEFLATE stream ends before its final block")
            }
            InflatesPastPage { page, page_size } => write!(
                f,
                "page {page}: DEFLATE stream inflates to more than the page size {page_size}"
            ),
            InflatesShortOfPage {
                page,
                produced,
                page_size,
            } => write!(
                f,
                "page {page}: DEFLATE stream inflates to {produced} bytes, not the page size {page_size}"
            ),
            TrailingBytes { page, extra } => write!(
                f,
                "page {page}: {extra} bytes follow the final DEFLATE block"
            ),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(message) => write!(f, "qemu-qpl: {message}"),
            Error::Packet { channel, fault } => {
                write!(f, "qpl: multifd channel {channel}: {fault}")
            }
            Error::OutOfMemory { what, bytes } => {
                write!(f, "qemu-qpl: cannot allocate {bytes} bytes for {what}")
            }
            Error::Internal(message) => write!(
                f,
                "qemu-qpl: internal error ({message}); please report this bug"
            ),
        }
    }
}

impl std::error::Error for Error {}
