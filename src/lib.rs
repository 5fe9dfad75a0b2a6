//! qemu-qpl: the `qpl` multifd compression method of QEMU live migration.
//!
//! Guest pages are compressed one at a time into raw DEFLATE and framed
//! exactly as upstream QEMU's `migration/multifd-qpl.c` frames them, so a QEMU
//! built on this library and one built on Intel QPL migrate to each other.
//! QEMU reaches the library through the C ABI in [`abi`].

#![deny(unsafe_op_in_unsafe_fn)]

pub mod abi;
pub mod channel;
pub mod codec;
pub mod error;
// Nothing of the IAA path belongs in the C header (its constants and the
// kernel's UAPI bindings would otherwise be exported by cbindgen).
/// cbindgen:ignore
pub mod iaa;
pub mod wire;

#[cfg(test)]
mod miri_checks;

pub use channel::{ChannelConfig, PageSource, PreparedPacket, Receiver, Segment, Sender};
pub use codec::Level;
pub use error::{Error, ErrorKind, PacketFault};
